//! A Redshift-like compressing server on a local machine, for benchmarks of `compression=lz4`:
//! a relay in front of PostgreSQL (which cannot compress) that does what a Redshift endpoint
//! does when a client asks with `_pq_.compression=lz4`, and nothing otherwise.
//!
//! Per connection: SSLRequest is answered `S` and TLS with `--cert`/`--key`; the
//! StartupMessage goes on to PostgreSQL over its own TLS (checked against `--ca`) without its
//! `_pq_.*` parameters, and from then on bytes are relayed, the login included, so the client
//! answers PostgreSQL's authentication itself. A client that asked for lz4 first gets `'z'`
//! (CompressionAck), then everything toward it as `'m'` messages: one LZ4 block per 16 KiB of
//! the stream (the last one of a read shorter), each compressed with the previous 64 KiB of
//! the stream as its dictionary (lz4_flex's `compress_with_dict`, as the server's
//! `LZ4_compress_fast_continue`), cut wherever the 16 KiB fall, inside messages or not.
//! CancelRequests are forwarded as they are.
//!
//! ```sh
//! cargo build --release --example compressing_upstream
//! target/release/examples/compressing_upstream --listen 127.0.0.1:6545 \
//!   --upstream 127.0.0.1:5432 --cert server.pem --key server.key --ca ca.pem
//! ```
//!
//! With `--stats`, each compressed connection's plain and compressed byte counts go to
//! stderr when it ends, which gives a table's compression ratio.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Parser;
use lz4_flex::block::compress_with_dict;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const SSL_REQUEST: u32 = 80_877_103;
const CANCEL_REQUEST: u32 = 80_877_102;
/// The most plain bytes one block holds.
const BLOCK: usize = 16 * 1024;
/// How far back a block may refer.
const WINDOW: usize = 64 * 1024;

#[derive(Parser, Debug)]
#[command(about = "Serves PostgreSQL with Redshift's lz4 wire compression for clients that ask")]
struct Args {
    /// Where to listen.
    #[arg(long)]
    listen: SocketAddr,
    /// The PostgreSQL server (TLS, host name localhost).
    #[arg(long)]
    upstream: SocketAddr,
    /// PEM certificate chain served to clients.
    #[arg(long)]
    cert: PathBuf,
    /// Its PEM private key.
    #[arg(long)]
    key: PathBuf,
    /// PEM CA that signed PostgreSQL's certificate.
    #[arg(long)]
    ca: PathBuf,
    /// Print each compressed connection's plain and wire bytes to stderr when it ends.
    #[arg(long)]
    stats: bool,
}

struct Shared {
    args: Args,
    acceptor: TlsAcceptor,
    connector: TlsConnector,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain = CertificateDer::pem_file_iter(&args.cert)
        .context("reading --cert")?
        .collect::<Result<Vec<_>, _>>()
        .context("reading --cert")?;
    let key = PrivateKeyDer::from_pem_file(&args.key).context("reading --key")?;
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(&args.ca).context("reading --ca")? {
        roots.add(ca.context("reading --ca")?)?;
    }
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let shared = Arc::new(Shared {
        args,
        acceptor: TlsAcceptor::from(Arc::new(server)),
        connector: TlsConnector::from(Arc::new(client)),
    });
    loop {
        let (socket, _) = listener.accept().await?;
        let _ = socket.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Err(e) = shared.serve(socket).await {
                eprintln!("compressing_upstream: connection ended: {e:#}");
            }
        });
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// An untagged first packet: its code and the rest of its body.
async fn first_packet(stream: &mut (impl AsyncRead + Unpin)) -> Result<(u32, Vec<u8>)> {
    let len = stream.read_u32().await? as usize;
    if !(8..=10_000).contains(&len) {
        bail!("first packet of {len} bytes");
    }
    let code = stream.read_u32().await?;
    let mut body = vec![0; len - 8];
    stream.read_exact(&mut body).await?;
    Ok((code, body))
}

/// A StartupMessage body without `_pq_.*`, and whether it asked for lz4.
fn strip_extensions(body: &[u8]) -> (Vec<u8>, bool) {
    let mut kept = Vec::with_capacity(body.len());
    let mut lz4 = false;
    let fields: Vec<&[u8]> = body.split(|&b| b == 0).collect();
    for pair in fields.chunks(2) {
        let [name, value] = pair else { break };
        if name.is_empty() {
            break;
        }
        if name.starts_with(b"_pq_.") {
            lz4 |= *name == b"_pq_.compression" && *value == b"lz4";
            continue;
        }
        kept.extend_from_slice(name);
        kept.push(0);
        kept.extend_from_slice(value);
        kept.push(0);
    }
    kept.push(0);
    (kept, lz4)
}

impl Shared {
    async fn serve(&self, socket: TcpStream) -> Result<()> {
        let mut client: Box<dyn Stream> = Box::new(socket);
        let (mut code, mut body) = first_packet(&mut client).await?;
        if code == SSL_REQUEST {
            client.write_all(b"S").await?;
            client = Box::new(self.acceptor.accept(client).await?);
            (code, body) = first_packet(&mut client).await?;
        }
        if code == CANCEL_REQUEST {
            let mut postgres = TcpStream::connect(self.args.upstream).await?;
            postgres.write_all(&16u32.to_be_bytes()).await?;
            postgres.write_all(&code.to_be_bytes()).await?;
            postgres.write_all(&body).await?;
            return Ok(());
        }
        let (params, lz4) = strip_extensions(&body);
        let mut postgres = self.connect_postgres().await?;
        let mut startup = ((params.len() + 8) as u32).to_be_bytes().to_vec();
        startup.extend_from_slice(&code.to_be_bytes());
        startup.extend_from_slice(&params);
        postgres.write_all(&startup).await?;
        postgres.flush().await?;
        if !lz4 {
            tokio::io::copy_bidirectional_with_sizes(&mut client, &mut postgres, 65536, 65536)
                .await?;
            return Ok(());
        }
        let (mut client_read, mut client_write) = tokio::io::split(client);
        let (mut postgres_read, mut postgres_write) = tokio::io::split(postgres);
        let up = async {
            tokio::io::copy(&mut client_read, &mut postgres_write).await?;
            postgres_write.shutdown().await
        };
        let down = compress_stream(&mut postgres_read, &mut client_write);
        let (up, down) = tokio::join!(up, down);
        let (plain, wire) = down?;
        if self.args.stats {
            eprintln!(
                "compressed connection: {plain} plain bytes, {wire} on the wire, ratio {:.2}",
                plain as f64 / wire.max(1) as f64
            );
        }
        up.ok();
        Ok(())
    }

    async fn connect_postgres(&self) -> Result<Box<dyn Stream>> {
        let mut tcp = TcpStream::connect(self.args.upstream)
            .await
            .context("connecting to PostgreSQL")?;
        let _ = tcp.set_nodelay(true);
        tcp.write_all(&8u32.to_be_bytes()).await?;
        tcp.write_all(&SSL_REQUEST.to_be_bytes()).await?;
        if tcp.read_u8().await? != b'S' {
            bail!("PostgreSQL refused TLS");
        }
        let name = ServerName::try_from("localhost")?;
        Ok(Box::new(self.connector.connect(name, tcp).await?))
    }
}

/// `'z'`, then everything read from `from` as `'m'` blocks; returns the plain and wire bytes.
async fn compress_stream(
    from: &mut (impl AsyncRead + Unpin),
    to: &mut (impl AsyncWrite + Unpin),
) -> Result<(u64, u64)> {
    let mut out = vec![b'z', 0, 0, 0, 4];
    let mut history: Vec<u8> = Vec::with_capacity(4 * WINDOW);
    let mut buf = vec![0u8; 64 * 1024];
    let (mut plain, mut wire) = (0u64, 0u64);
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        plain += n as u64;
        for chunk in buf[..n].chunks(BLOCK) {
            let dictionary = &history[history.len().saturating_sub(WINDOW)..];
            let block = compress_with_dict(chunk, dictionary);
            out.push(b'm');
            out.extend_from_slice(&(block.len() as u32 + 4).to_be_bytes());
            out.extend_from_slice(&block);
            history.extend_from_slice(chunk);
            if history.len() > 3 * WINDOW {
                history.drain(..history.len() - WINDOW);
            }
        }
        to.write_all(&out).await?;
        to.flush().await?;
        wire += out.len() as u64;
        out.clear();
    }
    to.shutdown().await?;
    Ok((plain, wire))
}
