//! The proxy's relay ceiling: how fast it forwards a result stream when the proxy itself is
//! the bottleneck.
//!
//! A relayed session costs the proxy, per byte, one TLS decryption (the upstream side is
//! TLS, the client side here is plain TCP, as on a loopback or sidecar listener), a read from
//! one socket and a write to the other. This program measures that cost with nothing else in
//! the way: a synthetic upstream on 127.0.0.1 that speaks just enough of the PostgreSQL v3
//! protocol (TLS, cleartext password, then one `COPY ... TO STDOUT` answer streamed as fast
//! as it can from pre-built CopyData messages) and a client that counts bytes and parses
//! nothing. Pin the proxy to one CPU (`--proxy-cpu`) and this program to another (with
//! `taskset`), and the proxy's core is the one that runs out.
//!
//! Each round measures two paths (three with `--forwarder`) on fresh connections:
//!
//! - `direct`: this program's client does TLS itself, straight to the synthetic upstream; a
//!   baseline for what the machine does without the proxy (encryption, decryption and both
//!   socket copies on this program's core).
//! - `proxy`: plain TCP to the proxy binary (`--proxy`), which logs in with the static
//!   password mode and relays. The proxy's CPU time over the transfer comes from
//!   `/proc/PID/stat` (utime + stime).
//!
//! - `forwarder` (with `--forwarder target/release/examples/tcp_forwarder`): the same number of
//!   plain bytes, no TLS anywhere, from a source thread here through the forwarder (pinned
//!   like the proxy, one runtime thread) to a sink thread here. Its CPU per byte is the
//!   kernel's share of relaying alone (two socket copies, loopback TCP, wake-ups), which a
//!   relay pays whatever it does in user space.
//!
//! `proxy_gb_per_cpu_second` (bytes relayed per second of proxy CPU) is the figure that
//! carries over to other machines: compare it with the single-core AES-256-GCM decryption
//! rate from `openssl speed -evp aes-256-gcm` (its 16 KiB column, a TLS record), which is
//! the floor of the proxy's per-byte cost; what remains is the socket copies and the relay
//! itself.
//!
//! `--bytes` is the CopyData payload the upstream sends; `bytes=` in the output is what the
//! client receives after its Query, message headers and the closing messages included, and
//! every rate is computed from it (timed from sending the Query to the last byte).
//!
//! ```sh
//! cargo build --release --bin redshift-auth-proxy --example relay_ceiling
//! taskset -c 1 target/release/examples/relay_ceiling \
//!     --proxy target/release/redshift-auth-proxy --proxy-cpu 0 --bytes 2G
//! ```
//!
//! Together with AES-GCM's rate, the forwarder's figure bounds what any decrypt-and-forward
//! relay can reach on the machine: `1 / (1 / forwarder_gb_per_cpu_second + 1 / aes_gbps)`,
//! a relay with no user-space copy at all.
//!
//! Output: `key=value` lines on stdout (`bytes`, `rounds`, `direct_gbps`, `proxy_gbps`,
//! `proxy_cpu_seconds`, `proxy_gb_per_cpu_second`, and with `--forwarder` also
//! `forwarder_gbps` and `forwarder_gb_per_cpu_second`; medians over the rounds, GB = 1e9
//! bytes), then one line per round starting with `# `. Progress goes to stderr.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use clap::Parser;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConnection, ServerConnection, StreamOwned};

/// The client's read buffer, reused for the whole stream.
const CLIENT_BUFFER: usize = 256 * 1024;
/// About how many bytes of pre-built CopyData messages the upstream hands rustls per write.
const UPSTREAM_BATCH: usize = 1024 * 1024;
/// The SSLRequest packet: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 4, 210, 22, 47];
/// The variable holding the (ignored) upstream password, for the proxy's `password_env`.
const PASSWORD_ENV: &str = "RELAY_CEILING_PW";
/// The query the client sends; the upstream answers any query the same way.
const QUERY: &str = "COPY bench TO STDOUT";
/// How long any single read may wait before the run is declared stuck.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Parser, Debug)]
#[command(about = "Measures how fast the proxy relays a TLS stream when it is the bottleneck")]
struct Args {
    /// The proxy binary, e.g. target/release/redshift-auth-proxy.
    #[arg(long)]
    proxy: PathBuf,
    /// Run the proxy under `taskset -c CPU` (a CPU list as taskset takes it, e.g. 0).
    #[arg(long, value_name = "CPU")]
    proxy_cpu: Option<String>,
    /// CopyData payload per transfer; K, M and G suffixes are powers of 1024.
    #[arg(long, default_value = "2G", value_parser = parse_size)]
    bytes: u64,
    /// Payload bytes per CopyData message.
    #[arg(long, default_value_t = 8192, value_parser = clap::value_parser!(u32).range(1..=(64 << 20)))]
    message_size: u32,
    /// Rounds; each measures direct, then proxy. Medians are reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Also measure the kernel's share alone: examples/tcp_forwarder (this path), pinned like
    /// the proxy, forwarding the same number of plain bytes from a source to a sink in this
    /// program (no TLS anywhere), once per round.
    #[arg(long, value_name = "PATH")]
    forwarder: Option<PathBuf>,
}

fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, shift) = match text.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&text[..text.len() - 1], 10),
        Some('M') => (&text[..text.len() - 1], 20),
        Some('G') => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size (e.g. 2G, 512M, 100000)"))?;
    let size = number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("`{text}` is too large"))?;
    if size == 0 {
        return Err("the size must be more than 0".to_owned());
    }
    Ok(size)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let plan = Plan::new(args.bytes, args.message_size as usize);

    // Certificates: a CA and a server certificate for localhost and 127.0.0.1.
    let pki = Pki::generate()?;
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, &pki.ca_pem).context("writing the CA certificate")?;

    let upstream_port = start_upstream(pki.server_config()?, plan.clone())?;
    let proxy = MeasuredChild::start(&args, upstream_port, &ca_path, dir.path())?;
    eprintln!(
        "relay_ceiling: upstream 127.0.0.1:{upstream_port}, proxy pid {} on 127.0.0.1:{}{}",
        proxy.pid,
        proxy.port,
        args.proxy_cpu
            .as_deref()
            .map(|cpu| format!(" (CPU {cpu})"))
            .unwrap_or_default()
    );
    eprintln!(
        "relay_ceiling: {} CopyData messages of {} bytes, {} bytes on the wire per transfer",
        plan.messages(),
        plan.message_size,
        plan.answer_len()
    );

    let forwarder = match &args.forwarder {
        Some(program) => {
            let sink = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding the sink")?;
            let sink_port = sink.local_addr()?.port();
            let child = MeasuredChild::start_forwarder(&args, program, sink_port, dir.path())?;
            eprintln!(
                "relay_ceiling: forwarder pid {} on 127.0.0.1:{} to a sink on 127.0.0.1:{sink_port}",
                child.pid, child.port
            );
            Some((child, sink))
        }
        None => None,
    };

    let tick_rate = clock_ticks_per_second();
    let client_config = pki.client_config()?;
    let mut rounds = Vec::new();
    let mut forwarded = Vec::new();
    for round in 1..=args.rounds {
        let direct = run_direct(&client_config, upstream_port, &plan)
            .with_context(|| format!("round {round}: direct transfer"))?;
        eprintln!(
            "relay_ceiling: round {round} direct: {:.3} s, {:.3} GB/s ({})",
            direct.seconds,
            gbps(plan.answer_len(), direct.seconds),
            direct.cipher_suite
        );
        let relayed = run_proxied(&proxy, &plan, tick_rate)
            .with_context(|| format!("round {round}: transfer through the proxy"))
            .map_err(|error| proxy.explain(error))?;
        let busy = 100.0 * relayed.cpu_seconds / relayed.seconds;
        eprintln!(
            "relay_ceiling: round {round} proxy: {:.3} s, {:.3} GB/s, proxy CPU {:.3} s ({busy:.0}% busy)",
            relayed.seconds,
            gbps(plan.answer_len(), relayed.seconds),
            relayed.cpu_seconds,
        );
        if busy < 80.0 {
            eprintln!(
                "relay_ceiling: note: the proxy was busy only {busy:.0}% of the transfer, so \
                 something else (this program's CPU, other load) held proxy_gbps down; \
                 proxy_gb_per_cpu_second is the steadier figure"
            );
        }
        rounds.push((direct.seconds, relayed));
        if let Some((child, sink)) = &forwarder {
            let result = run_forwarded(child, sink, plan.answer_len(), tick_rate)
                .with_context(|| format!("round {round}: transfer through the forwarder"))
                .map_err(|error| child.explain(error))?;
            eprintln!(
                "relay_ceiling: round {round} forwarder (plain bytes, no TLS): {:.3} s, {:.3} GB/s, forwarder CPU {:.3} s",
                result.seconds,
                gbps(plan.answer_len(), result.seconds),
                result.cpu_seconds,
            );
            forwarded.push(result);
        }
    }
    drop(proxy);
    drop(forwarder);

    let bytes = plan.answer_len();
    let direct_gbps = median(rounds.iter().map(|(d, _)| gbps(bytes, *d)).collect());
    let proxy_gbps = median(rounds.iter().map(|(_, p)| gbps(bytes, p.seconds)).collect());
    let cpu_seconds = median(rounds.iter().map(|(_, p)| p.cpu_seconds).collect());
    if cpu_seconds * tick_rate < 100.0 {
        eprintln!(
            "relay_ceiling: note: the proxy's CPU time is {:.0} clock ticks of {:.0} ms, too few \
             for a precise proxy_gb_per_cpu_second (inf when 0); use a larger --bytes",
            cpu_seconds * tick_rate,
            1000.0 / tick_rate
        );
    }
    println!("bytes={bytes}");
    println!("rounds={}", rounds.len());
    println!("direct_gbps={direct_gbps:.3}");
    println!("proxy_gbps={proxy_gbps:.3}");
    println!("proxy_cpu_seconds={cpu_seconds:.3}");
    println!("proxy_gb_per_cpu_second={:.3}", gbps(bytes, cpu_seconds));
    if !forwarded.is_empty() {
        let seconds = median(forwarded.iter().map(|f| f.seconds).collect());
        let cpu = median(forwarded.iter().map(|f| f.cpu_seconds).collect());
        println!("forwarder_gbps={:.3}", gbps(bytes, seconds));
        println!("forwarder_gb_per_cpu_second={:.3}", gbps(bytes, cpu));
    }
    for (i, (direct, proxied)) in rounds.iter().enumerate() {
        let forwarder = forwarded
            .get(i)
            .map(|f| {
                format!(
                    " forwarder_gbps={:.3} forwarder_gb_per_cpu_second={:.3}",
                    gbps(bytes, f.seconds),
                    gbps(bytes, f.cpu_seconds)
                )
            })
            .unwrap_or_default();
        println!(
            "# round={} direct_seconds={direct:.3} direct_gbps={:.3} proxy_seconds={:.3} \
             proxy_gbps={:.3} proxy_cpu_seconds={:.3} proxy_gb_per_cpu_second={:.3}{forwarder}",
            i + 1,
            gbps(bytes, *direct),
            proxied.seconds,
            gbps(bytes, proxied.seconds),
            proxied.cpu_seconds,
            gbps(bytes, proxied.cpu_seconds),
        );
    }
    Ok(())
}

fn gbps(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 / seconds / 1e9
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

// ---------------------------------------------------------------------------------------------
// Wire format helpers

/// Appends one tagged message (tag, int32 length including itself, payload).
fn push_message(out: &mut Vec<u8>, tag: u8, payload: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&(payload.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(payload);
}

fn message(tag: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 5);
    push_message(&mut out, tag, payload);
    out
}

/// Reads one tagged message; `None` at a clean end of stream before the tag.
fn read_message(stream: &mut impl Read) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut tag = [0u8; 1];
    if stream.read(&mut tag)? == 0 {
        return Ok(None);
    }
    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if !(4..=(1 << 30)).contains(&len) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("message {:?} has a bad length {len}", tag[0] as char),
        ));
    }
    let mut payload = vec![0u8; len - 4];
    stream.read_exact(&mut payload)?;
    Ok(Some((tag[0], payload)))
}

/// A StartupMessage (protocol 3.0) with these parameters.
fn startup_message(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = vec![0, 3, 0, 0];
    for (name, value) in params {
        body.extend_from_slice(name.as_bytes());
        body.push(0);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut packet = (body.len() as u32 + 4).to_be_bytes().to_vec();
    packet.extend(body);
    packet
}

/// The readable part of an ErrorResponse: its `M` (message) field, or all fields.
fn error_text(payload: &[u8]) -> String {
    let fields: Vec<String> = payload
        .split(|&b| b == 0)
        .filter(|field| !field.is_empty())
        .map(|field| String::from_utf8_lossy(field).into_owned())
        .collect();
    fields
        .iter()
        .find_map(|field| field.strip_prefix('M').map(str::to_owned))
        .unwrap_or_else(|| fields.join(" "))
}

/// What one transfer sends, and therefore what the client must receive.
#[derive(Clone, Debug)]
struct Plan {
    payload_bytes: u64,
    message_size: usize,
}

impl Plan {
    fn new(payload_bytes: u64, message_size: usize) -> Plan {
        Plan {
            payload_bytes,
            message_size,
        }
    }

    /// Whole messages of `message_size`.
    fn full_messages(&self) -> u64 {
        self.payload_bytes / self.message_size as u64
    }

    /// The size of the last, shorter message (0: none).
    fn last_message_size(&self) -> usize {
        (self.payload_bytes % self.message_size as u64) as usize
    }

    fn messages(&self) -> u64 {
        self.full_messages() + u64::from(self.last_message_size() > 0)
    }

    /// CopyOutResponse: text format, one text column.
    fn head(&self) -> Vec<u8> {
        message(b'H', &[0, 0, 1, 0, 0])
    }

    /// CopyDone, CommandComplete and ReadyForQuery.
    fn trailer(&self) -> Vec<u8> {
        let mut out = message(b'c', b"");
        push_message(
            &mut out,
            b'C',
            format!("COPY {}\0", self.messages()).as_bytes(),
        );
        push_message(&mut out, b'Z', b"I");
        out
    }

    /// Every byte of the answer to the Query.
    fn answer_len(&self) -> u64 {
        self.head().len() as u64
            + self.messages() * 5
            + self.payload_bytes
            + self.trailer().len() as u64
    }
}

// ---------------------------------------------------------------------------------------------
// Certificates

struct Pki {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    server_der: CertificateDer<'static>,
    server_key: Vec<u8>,
}

impl Pki {
    fn generate() -> Result<Pki> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "relay_ceiling benchmark CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

        let server_key = KeyPair::generate()?;
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let server = params.signed_by(&server_key, &ca)?;
        Ok(Pki {
            ca_pem: ca.pem(),
            ca_der: ca.der().clone(),
            server_der: server.der().clone(),
            server_key: server_key.serialize_der(),
        })
    }

    fn server_config(&self) -> Result<Arc<rustls::ServerConfig>> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone()));
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![self.server_der.clone()], key)?;
        Ok(Arc::new(config))
    }

    fn client_config(&self) -> Result<Arc<rustls::ClientConfig>> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone())?;
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Arc::new(config))
    }
}

// ---------------------------------------------------------------------------------------------
// The synthetic upstream: one thread per connection, blocking rustls.

fn start_upstream(config: Arc<rustls::ServerConfig>, plan: Plan) -> Result<u16> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding the upstream listener")?;
    let port = listener.local_addr()?.port();
    let batch = Arc::new(CopyBatch::new(&plan));
    thread::Builder::new()
        .name("upstream-accept".to_owned())
        .spawn(move || {
            for tcp in listener.incoming() {
                let tcp = match tcp {
                    Ok(tcp) => tcp,
                    Err(error) => {
                        eprintln!("relay_ceiling: upstream accept: {error}");
                        continue;
                    }
                };
                let (config, plan, batch) = (config.clone(), plan.clone(), batch.clone());
                let spawned = thread::Builder::new()
                    .name("upstream".to_owned())
                    .spawn(move || {
                        if let Err(error) = serve_upstream(tcp, config, &plan, &batch) {
                            eprintln!("relay_ceiling: upstream connection: {error:#}");
                        }
                    });
                if let Err(error) = spawned {
                    eprintln!("relay_ceiling: upstream thread: {error}");
                }
            }
        })
        .context("starting the upstream thread")?;
    Ok(port)
}

/// Pre-built CopyData messages, shared by every connection and written over and over.
struct CopyBatch {
    /// `per_batch` whole messages of `message_size`, back to back.
    bytes: Vec<u8>,
    per_batch: u64,
    /// The last, shorter message, if the payload does not divide evenly.
    last: Vec<u8>,
}

impl CopyBatch {
    fn new(plan: &Plan) -> CopyBatch {
        let row = |size: usize| {
            let mut payload = vec![b'x'; size];
            if let Some(end) = payload.last_mut() {
                *end = b'\n';
            }
            message(b'd', &payload)
        };
        let one = row(plan.message_size);
        let per_batch = (UPSTREAM_BATCH / one.len()).max(1) as u64;
        let per_batch = per_batch.min(plan.full_messages().max(1));
        CopyBatch {
            bytes: one.repeat(per_batch as usize),
            per_batch,
            last: match plan.last_message_size() {
                0 => Vec::new(),
                size => row(size),
            },
        }
    }
}

fn serve_upstream(
    tcp: TcpStream,
    config: Arc<rustls::ServerConfig>,
    plan: &Plan,
    batch: &CopyBatch,
) -> Result<()> {
    tcp.set_nodelay(true)?;
    let mut tcp = tcp;
    let mut first = [0u8; 8];
    match tcp.read_exact(&mut first) {
        Ok(()) => {}
        // A connection that closes at once (nobody connects to the upstream to probe it, but
        // be quiet about it anyway).
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
        Err(error) => return Err(error.into()),
    }
    ensure!(
        first == SSL_REQUEST,
        "expected an SSLRequest, got {first:?}"
    );
    tcp.write_all(b"S")?;

    let mut conn = ServerConnection::new(config)?;
    // Let one write take a whole batch, so it goes out in a few large socket writes.
    conn.set_buffer_limit(Some(2 * batch.bytes.len().max(64 * 1024)));
    let mut tls = StreamOwned::new(conn, tcp);

    let mut len = [0u8; 4];
    tls.read_exact(&mut len)
        .context("reading the StartupMessage")?;
    let len = u32::from_be_bytes(len) as usize;
    ensure!((8..=10_000).contains(&len), "StartupMessage length {len}");
    let mut body = vec![0u8; len - 4];
    tls.read_exact(&mut body)?;
    ensure!(
        body[..4] == [0, 3, 0, 0],
        "not protocol 3.0: {:?}",
        &body[..4]
    );

    // AuthenticationCleartextPassword, then any PasswordMessage is right.
    tls.write_all(&message(b'R', &3u32.to_be_bytes()))?;
    tls.flush()?;
    match read_message(&mut tls)? {
        Some((b'p', _)) => {}
        Some((tag, _)) => bail!("expected a PasswordMessage, got {:?}", tag as char),
        None => return Ok(()),
    }
    let mut greeting = message(b'R', &0u32.to_be_bytes());
    for (name, value) in [
        ("server_version", "15.0"),
        ("client_encoding", "UTF8"),
        ("server_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
    ] {
        push_message(&mut greeting, b'S', format!("{name}\0{value}\0").as_bytes());
    }
    let mut key_data = 4242u32.to_be_bytes().to_vec();
    key_data.extend_from_slice(&0x5eed_cafe_u32.to_be_bytes());
    push_message(&mut greeting, b'K', &key_data);
    push_message(&mut greeting, b'Z', b"I");
    tls.write_all(&greeting)?;
    tls.flush()?;

    loop {
        let next = match read_message(&mut tls) {
            // A client that closes without TLS close_notify: an end like any other here.
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => None,
            next => next?,
        };
        match next {
            None | Some((b'X', _)) => break,
            Some((b'Q', _)) => stream_copy(&mut tls, plan, batch)?,
            Some((tag, _)) => bail!("unexpected message {:?}", tag as char),
        }
    }
    tls.conn.send_close_notify();
    let _ = tls.flush();
    Ok(())
}

fn stream_copy(tls: &mut impl Write, plan: &Plan, batch: &CopyBatch) -> Result<()> {
    tls.write_all(&plan.head())?;
    let one = batch.bytes.len() / batch.per_batch as usize;
    let mut left = plan.full_messages();
    while left > 0 {
        let count = left.min(batch.per_batch);
        tls.write_all(&batch.bytes[..count as usize * one])?;
        left -= count;
    }
    tls.write_all(&batch.last)?;
    tls.write_all(&plan.trailer())?;
    tls.flush()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The proxy child process

/// A program under measure (the proxy, or the plain forwarder), on `--proxy-cpu` when given.
struct MeasuredChild {
    child: Child,
    pid: u32,
    port: u16,
    log: PathBuf,
    /// "proxy" or "forwarder", for messages.
    name: &'static str,
}

impl MeasuredChild {
    fn start(args: &Args, upstream_port: u16, ca: &Path, dir: &Path) -> Result<MeasuredChild> {
        let port = free_port()?;
        let mut command = pinned(args, &args.proxy);
        command
            .arg(format!(
                "localhost:{upstream_port}/bench?db_user=bench&password_env={PASSWORD_ENV}"
            ))
            .arg("--upstream-ca")
            .arg(ca)
            .args(["--address", "127.0.0.1", "--port", &port.to_string()])
            .args(["--http-address", "off", "--log-level", "warn"])
            .env(PASSWORD_ENV, "anything");
        MeasuredChild::spawn(command, "proxy", port, dir)
    }

    /// The plain forwarder with one runtime thread, so it is as pinned as the proxy.
    fn start_forwarder(
        args: &Args,
        program: &Path,
        sink_port: u16,
        dir: &Path,
    ) -> Result<MeasuredChild> {
        let port = free_port()?;
        let mut command = pinned(args, program);
        command
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--upstream", &format!("127.0.0.1:{sink_port}")])
            .args(["--worker-threads", "1"]);
        MeasuredChild::spawn(command, "forwarder", port, dir)
    }

    fn spawn(
        mut command: Command,
        name: &'static str,
        port: u16,
        dir: &Path,
    ) -> Result<MeasuredChild> {
        let log = dir.join(format!("{name}.log"));
        let log_file =
            std::fs::File::create(&log).with_context(|| format!("creating the {name} log file"))?;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        let child = command
            .spawn()
            .with_context(|| format!("could not start {:?}", command.get_program()))?;
        // `taskset` execs the program, so this is the program's pid once it listens.
        let pid = child.id();
        let mut started = MeasuredChild {
            child,
            pid,
            port,
            log,
            name,
        };
        started.wait_listening()?;
        Ok(started)
    }

    fn wait_listening(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the {} exited with {status} before listening; its stderr:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the {} did not listen on {address} within 30 s; its stderr:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_text(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        if text.trim().is_empty() {
            "(empty)".to_owned()
        } else {
            text
        }
    }

    /// Adds the program's state and stderr to an error from a transfer through it.
    fn explain(&self, error: anyhow::Error) -> anyhow::Error {
        let state = match std::fs::metadata(format!("/proc/{}", self.pid)) {
            Ok(_) => format!("the {} is still running", self.name),
            Err(_) => format!("the {} has exited", self.name),
        };
        error.context(format!("{state}; its stderr:\n{}", self.log_text()))
    }

    /// utime + stime of the whole process, in clock ticks.
    fn cpu_ticks(&self) -> Result<u64> {
        let path = format!("/proc/{}/stat", self.pid);
        let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        // Fields after the command name, which is in parentheses and may hold anything.
        let rest = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .ok_or_else(|| anyhow!("unexpected {path}: {stat}"))?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // Field 3 (state) is fields[0]; utime is field 14, stime field 15.
        let field = |n: usize| -> Result<u64> {
            fields
                .get(n - 3)
                .and_then(|value| value.parse().ok())
                .ok_or_else(|| anyhow!("no field {n} in {path}: {stat}"))
        };
        Ok(field(14)? + field(15)?)
    }
}

impl Drop for MeasuredChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `program`, under `taskset -c CPU` when `--proxy-cpu` is given.
fn pinned(args: &Args, program: &Path) -> Command {
    match &args.proxy_cpu {
        Some(cpu) => {
            let mut command = Command::new("taskset");
            command.arg("-c").arg(cpu).arg(program);
            command
        }
        None => Command::new(program),
    }
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|ticks| *ticks > 0.0)
        .unwrap_or(100.0)
}

// ---------------------------------------------------------------------------------------------
// The client

struct DirectResult {
    seconds: f64,
    cipher_suite: String,
}

struct ProxiedResult {
    seconds: f64,
    cpu_seconds: f64,
}

fn connect(port: u16) -> Result<TcpStream> {
    let tcp = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .with_context(|| format!("connecting to 127.0.0.1:{port}"))?;
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(READ_TIMEOUT))?;
    Ok(tcp)
}

fn run_direct(
    config: &Arc<rustls::ClientConfig>,
    upstream_port: u16,
    plan: &Plan,
) -> Result<DirectResult> {
    let mut tcp = connect(upstream_port)?;
    tcp.write_all(&SSL_REQUEST)?;
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer)?;
    ensure!(
        answer[0] == b'S',
        "the upstream refused TLS: {:?}",
        answer[0]
    );
    let conn = ClientConnection::new(config.clone(), ServerName::try_from("localhost")?)?;
    let mut tls = StreamOwned::new(conn, tcp);
    login(&mut tls)?;
    let cipher_suite = tls
        .conn
        .negotiated_cipher_suite()
        .map(|suite| format!("{:?}", suite.suite()))
        .unwrap_or_default();
    let seconds = copy_out(&mut tls, plan)?;
    terminate(&mut tls);
    tls.conn.send_close_notify();
    let _ = tls.flush();
    Ok(DirectResult {
        seconds,
        cipher_suite,
    })
}

fn run_proxied(proxy: &MeasuredChild, plan: &Plan, tick_rate: f64) -> Result<ProxiedResult> {
    let mut tcp = connect(proxy.port)?;
    login(&mut tcp)?;
    let before = proxy.cpu_ticks()?;
    let seconds = copy_out(&mut tcp, plan)?;
    let after = proxy.cpu_ticks()?;
    terminate(&mut tcp);
    Ok(ProxiedResult {
        seconds,
        cpu_seconds: after.saturating_sub(before) as f64 / tick_rate,
    })
}

/// Plain bytes through the forwarder: a source thread writes `bytes` zeros to it, a sink thread
/// behind it reads and discards them; timed from the first write to the sink's end of stream.
fn run_forwarded(
    forwarder: &MeasuredChild,
    sink: &TcpListener,
    bytes: u64,
    tick_rate: f64,
) -> Result<ProxiedResult> {
    let sink = sink.try_clone().context("sharing the sink listener")?;
    let drained = thread::spawn(move || -> Result<u64> {
        let mut buf = vec![0u8; CLIENT_BUFFER];
        // Connections that carry nothing (the start-up check that the forwarder listens,
        // which it forwards too) are drained and skipped.
        loop {
            let (mut stream, _) = sink.accept().context("the sink's accept")?;
            stream.set_read_timeout(Some(READ_TIMEOUT))?;
            let mut total = 0u64;
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => total += n as u64,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e).context("the sink's read"),
                }
            }
            if total > 0 {
                return Ok(total);
            }
        }
    });
    let mut source = connect(forwarder.port)?;
    let chunk = vec![0u8; UPSTREAM_BATCH];
    let before = forwarder.cpu_ticks()?;
    let start = Instant::now();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        source
            .write_all(&chunk[..n])
            .context("the source's write")?;
        left -= n as u64;
    }
    source
        .shutdown(std::net::Shutdown::Write)
        .context("the source's shutdown")?;
    let received = drained
        .join()
        .map_err(|_| anyhow!("the sink thread panicked"))??;
    let seconds = start.elapsed().as_secs_f64();
    let after = forwarder.cpu_ticks()?;
    ensure!(
        received == bytes,
        "the sink received {received} bytes, not {bytes}"
    );
    Ok(ProxiedResult {
        seconds,
        cpu_seconds: after.saturating_sub(before) as f64 / tick_rate,
    })
}

/// Sends the StartupMessage (and a password if asked) and reads up to ReadyForQuery.
fn login(stream: &mut (impl Read + Write)) -> Result<()> {
    stream.write_all(&startup_message(&[
        ("user", "bench"),
        ("database", "bench"),
    ]))?;
    stream.flush()?;
    loop {
        let (tag, payload) = read_message(stream)
            .context("reading the login answer")?
            .ok_or_else(|| anyhow!("the server closed the connection during the login"))?;
        match tag {
            b'R' => match payload.get(..4) {
                Some([0, 0, 0, 0]) => {}
                Some([0, 0, 0, 3]) => {
                    stream.write_all(&message(b'p', b"anything\0"))?;
                    stream.flush()?;
                }
                _ => bail!("unexpected authentication request {payload:?}"),
            },
            b'E' => bail!("login refused: {}", error_text(&payload)),
            b'Z' => return Ok(()),
            // ParameterStatus, BackendKeyData, NoticeResponse.
            _ => {}
        }
    }
}

/// Sends the Query and reads the whole answer into a reused buffer, counting bytes. Returns
/// the seconds from sending the Query to the last byte.
fn copy_out(stream: &mut (impl Read + Write), plan: &Plan) -> Result<f64> {
    let total = plan.answer_len();
    let trailer = plan.trailer();
    let mut query = QUERY.as_bytes().to_vec();
    query.push(0);
    let query = message(b'Q', &query);
    let mut buf = vec![0u8; CLIENT_BUFFER];
    // Touch the buffer before the clock starts.
    buf.fill(1);
    let mut tail: Vec<u8> = Vec::with_capacity(trailer.len() * 2 + CLIENT_BUFFER.min(64));
    let mut received: u64 = 0;

    let start = Instant::now();
    stream.write_all(&query)?;
    stream.flush()?;
    while received < total {
        let want = (total - received).min(buf.len() as u64) as usize;
        let n = match stream.read(&mut buf[..want]) {
            Ok(0) => bail!("the connection closed after {received} of {total} bytes"),
            Ok(n) => n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => {
                return Err(error).with_context(|| format!("after {received} of {total} bytes"));
            }
        };
        if received == 0 && buf[0] != b'H' {
            bail!(
                "expected CopyOutResponse, got {:?}",
                String::from_utf8_lossy(&buf[..n.min(300)])
            );
        }
        received += n as u64;
        tail.extend_from_slice(&buf[n.saturating_sub(trailer.len())..n]);
        if tail.len() > trailer.len() {
            tail.drain(..tail.len() - trailer.len());
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    ensure!(
        tail == trailer,
        "the answer does not end with CopyDone, CommandComplete and ReadyForQuery: {:?}",
        String::from_utf8_lossy(&tail)
    );
    Ok(seconds)
}

/// Sends Terminate; the connection closes when the stream is dropped.
fn terminate(stream: &mut impl Write) {
    let _ = stream.write_all(&message(b'X', b""));
    let _ = stream.flush();
}
