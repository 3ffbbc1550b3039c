//! A large result read by tokio-postgres and hashed as it arrives: the Rust client of the
//! compression benchmark (`scripts/bench-compression`), beside psql, pgjdbc
//! (`tests/e2e/drivers/CompressedLinkCheck.java`) and psycopg
//! (`tests/e2e/drivers/compressed_link_check.py`), which take the same arguments and print
//! the same JSON line.
//!
//! `--mode copy` runs a `COPY … TO STDOUT` and hashes the bytes received. `--mode select`
//! runs a plain SELECT with the simple query protocol (rows in text form, streamed, never all
//! held) and hashes each row as COPY text would carry it: columns joined by a tab, a newline
//! after each row. For a result with no NULLs, tabs, newlines or backslashes both modes give
//! the MD5 of the table's COPY text, so every client and path can be checked against one
//! reference. It prints `{"md5": …, "bytes": …, "rows": …, "seconds": …}`, seconds from the
//! start of the connect to the last byte.
//!
//! ```sh
//! cargo build --release --example result_checksum
//! target/release/examples/result_checksum --host 127.0.0.1 --port 5439 --user bench \
//!     --dbname bench --mode select --query 'select * from orders'
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use futures_util::StreamExt;
use md5::{Digest, Md5};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};
use tokio_postgres::SimpleQueryMessage;

#[derive(Parser, Debug)]
#[command(about = "Reads a large result with tokio-postgres and prints its MD5")]
struct Args {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long)]
    port: u16,
    #[arg(long)]
    user: String,
    #[arg(long)]
    dbname: String,
    #[arg(long)]
    password: Option<String>,
    /// `disable` (plain) or `verify-full` (TLS, the certificate checked against
    /// `--sslrootcert` and the host name), as libpq's option of that name.
    #[arg(long, default_value = "disable")]
    sslmode: String,
    #[arg(long)]
    sslrootcert: Option<PathBuf>,
    #[arg(long, value_enum)]
    mode: Mode,
    #[arg(long)]
    query: String,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mode {
    /// `COPY … TO STDOUT`: the bytes as received.
    Copy,
    /// A SELECT: each row as a COPY text line.
    Select,
}

/// What the client received.
struct Received {
    md5: Md5,
    bytes: u64,
    rows: u64,
}

/// Hashed in 256 KiB pieces: one `update` per row would cost more than the row's transfer.
const HASH_CHUNK: usize = 256 * 1024;

fn main() -> Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let received = runtime.block_on(read_result(&args))?;
    let seconds = started.elapsed().as_secs_f64();
    let md5: String = received
        .md5
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    println!(
        "{{\"md5\": \"{md5}\", \"bytes\": {}, \"rows\": {}, \"seconds\": {seconds:.3}}}",
        received.bytes, received.rows
    );
    Ok(())
}

async fn read_result(args: &Args) -> Result<Received> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&args.host)
        .port(args.port)
        .user(&args.user)
        .dbname(&args.dbname);
    if let Some(password) = &args.password {
        config.password(password);
    }
    let client = match args.sslmode.as_str() {
        "disable" => {
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
            let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
            tokio::spawn(connection);
            client
        }
        "verify-full" => {
            let ca = args
                .sslrootcert
                .as_deref()
                .context("--sslmode verify-full needs --sslrootcert")?;
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(client_config(ca)?);
            let (client, connection) = config.connect(tls).await?;
            tokio::spawn(connection);
            client
        }
        other => bail!("--sslmode {other}: use disable or verify-full"),
    };
    let mut received = Received {
        md5: Md5::new(),
        bytes: 0,
        rows: 0,
    };
    match args.mode {
        Mode::Copy => {
            let stream = client.copy_out(&args.query).await?;
            let mut stream = std::pin::pin!(stream);
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                received.bytes += chunk.len() as u64;
                received.rows += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
                received.md5.update(&chunk);
            }
        }
        Mode::Select => {
            let stream = client.simple_query_raw(&args.query).await?;
            let mut stream = std::pin::pin!(stream);
            let mut pending = Vec::with_capacity(HASH_CHUNK + 4096);
            while let Some(message) = stream.next().await {
                let SimpleQueryMessage::Row(row) = message? else {
                    continue;
                };
                for column in 0..row.len() {
                    if column > 0 {
                        pending.push(b'\t');
                    }
                    let value = row
                        .try_get(column)?
                        .context("a NULL: the result must have none")?;
                    pending.extend_from_slice(value.as_bytes());
                }
                pending.push(b'\n');
                received.rows += 1;
                if pending.len() >= HASH_CHUNK {
                    received.bytes += pending.len() as u64;
                    received.md5.update(&pending);
                    pending.clear();
                }
            }
            received.bytes += pending.len() as u64;
            received.md5.update(&pending);
        }
    }
    Ok(received)
}

fn client_config(ca_file: &Path) -> Result<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file)
        .with_context(|| format!("reading {}", ca_file.display()))?
    {
        roots.add(cert.with_context(|| format!("reading {}", ca_file.display()))?)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
