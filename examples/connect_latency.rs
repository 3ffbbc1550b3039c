//! What a BI tool feels when it opens a connection: `scripts/bench --upstream-rtt` runs this
//! against each path (direct, proxy, PgBouncer) in turn.
//!
//! `paced` opens `--count` connections, one every `--interval-ms` (started on that schedule
//! whether or not the previous one has finished, as users clicking through a dashboard do),
//! and each runs connect → `select 1` → close with tokio-postgres (the simple query protocol:
//! one round trip). It times each from the start of the connect to the first row and prints
//! the percentiles as `key=value` lines. A failed connection is counted, not timed.
//!
//! `tls-handshake` times what TLS resumption saves on the upstream side: `--count`
//! SSLRequest + rustls handshakes to a PostgreSQL server with one shared client
//! configuration (so rustls's session cache offers the server's tickets, as the proxy's
//! per-target configuration does), then as many with a fresh configuration each time (always
//! a full handshake). It prints the medians, how many handshakes were resumed, and how many
//! needed a HelloRetryRequest (the cache also remembers the key-exchange group the server
//! chose, which saves that round trip).
//!
//! ```sh
//! cargo build --release --example connect_latency
//! target/release/examples/connect_latency paced --conninfo 'host=127.0.0.1 port=6432 user=bench dbname=bench'
//! target/release/examples/connect_latency tls-handshake --address 127.0.0.1:5432 --server-name localhost --ca-file ca.pem
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser, Debug)]
#[command(about = "Times connect-to-first-row and upstream TLS handshakes")]
struct Args {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Paced connections, each connect → `select 1` → close.
    Paced {
        /// A libpq-style connection string (`host=… port=… user=… dbname=… password=…`).
        #[arg(long)]
        conninfo: String,
        /// Use TLS, checking the server's certificate against this CA (and its name): as
        /// libpq's `sslmode=verify-full`. Without it the connection is plain.
        #[arg(long)]
        ca_file: Option<PathBuf>,
        /// Connections to open.
        #[arg(long, default_value_t = 100)]
        count: usize,
        /// Milliseconds between the starts of two connections.
        #[arg(long, default_value_t = 100)]
        interval_ms: u64,
        /// Connections opened first and not timed (they warm caches on every path).
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        /// Also write every time, in milliseconds, one a line, to this file.
        #[arg(long)]
        raw: Option<PathBuf>,
    },
    /// SSLRequest + TLS handshakes with and without a shared session cache.
    TlsHandshake {
        /// The PostgreSQL server.
        #[arg(long)]
        address: SocketAddr,
        /// The name its certificate carries (SNI).
        #[arg(long)]
        server_name: String,
        /// The CA its certificate chains to.
        #[arg(long)]
        ca_file: PathBuf,
        /// Handshakes of each kind.
        #[arg(long, default_value_t = 20)]
        count: usize,
    },
}

fn main() -> Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    match args.mode {
        Mode::Paced {
            conninfo,
            ca_file,
            count,
            interval_ms,
            warmup,
            raw,
        } => runtime.block_on(paced(
            &conninfo,
            ca_file.as_deref(),
            count,
            Duration::from_millis(interval_ms),
            warmup,
            raw.as_deref(),
        )),
        Mode::TlsHandshake {
            address,
            server_name,
            ca_file,
            count,
        } => runtime.block_on(tls_handshakes(address, &server_name, &ca_file, count)),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn client_config(ca_file: &Path) -> Result<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file)
        .with_context(|| format!("reading {}", ca_file.display()))?
    {
        roots.add(cert.with_context(|| format!("reading {}", ca_file.display()))?)?;
    }
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// One connection's time to its first row.
async fn connect_to_first_row(
    config: &tokio_postgres::Config,
    tls: Option<&tokio_postgres_rustls::MakeRustlsConnect>,
) -> Result<Duration> {
    let started = Instant::now();
    let client = match tls {
        Some(tls) => {
            let (client, connection) = config.connect(tls.clone()).await?;
            tokio::spawn(connection);
            client
        }
        None => {
            let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
            tokio::spawn(connection);
            client
        }
    };
    let messages = client.simple_query("select 1").await?;
    let elapsed = started.elapsed();
    let got_row = messages
        .iter()
        .any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)));
    if !got_row {
        bail!("select 1 returned no row");
    }
    drop(client);
    Ok(elapsed)
}

async fn paced(
    conninfo: &str,
    ca_file: Option<&Path>,
    count: usize,
    interval: Duration,
    warmup: usize,
    raw: Option<&Path>,
) -> Result<()> {
    let mut config: tokio_postgres::Config = conninfo.parse().context("parsing --conninfo")?;
    let tls = match ca_file {
        Some(ca) => {
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
            Some(tokio_postgres_rustls::MakeRustlsConnect::new(
                client_config(ca)?,
            ))
        }
        None => {
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
            None
        }
    };
    for _ in 0..warmup {
        connect_to_first_row(&config, tls.as_ref())
            .await
            .context("warm-up connection")?;
    }
    let config = Arc::new(config);
    let tls = Arc::new(tls);
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut runs = Vec::with_capacity(count);
    for _ in 0..count {
        ticks.tick().await;
        let config = config.clone();
        let tls = tls.clone();
        runs.push(tokio::spawn(async move {
            connect_to_first_row(&config, tls.as_ref().as_ref()).await
        }));
    }
    let mut times = Vec::with_capacity(count);
    let mut failed = 0usize;
    let mut first_error = None;
    for run in runs {
        match run.await {
            Ok(Ok(time)) => times.push(time.as_secs_f64() * 1000.0),
            Ok(Err(error)) => {
                failed += 1;
                first_error.get_or_insert(format!("{error:#}"));
            }
            Err(error) => {
                failed += 1;
                first_error.get_or_insert(error.to_string());
            }
        }
    }
    if let Some(path) = raw {
        let lines: String = times.iter().map(|t| format!("{t:.3}\n")).collect();
        std::fs::write(path, lines).with_context(|| format!("writing {}", path.display()))?;
    }
    times.sort_by(f64::total_cmp);
    println!("connections={}", times.len());
    println!("failed={failed}");
    if let Some(error) = first_error {
        eprintln!("connect_latency: first failure: {error}");
    }
    if times.is_empty() {
        bail!("no connection succeeded");
    }
    for (name, q) in [("p50_ms", 0.50), ("p95_ms", 0.95), ("p99_ms", 0.99)] {
        println!("{name}={:.3}", percentile(&times, q));
    }
    println!(
        "mean_ms={:.3}",
        times.iter().sum::<f64>() / times.len() as f64
    );
    Ok(())
}

/// The nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// SSLRequest, then a TLS handshake; returns the time from the TCP connect on and the kind
/// of handshake (full, full after a HelloRetryRequest, resumed).
async fn tls_handshake(
    address: SocketAddr,
    server_name: &ServerName<'static>,
    config: Arc<ClientConfig>,
) -> Result<(Duration, Option<rustls::HandshakeKind>)> {
    let started = Instant::now();
    let mut tcp = TcpStream::connect(address).await?;
    tcp.set_nodelay(true)?;
    tcp.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]).await?;
    if tcp.read_u8().await? != b'S' {
        bail!("the server refused TLS");
    }
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(server_name.clone(), tcp)
        .await?;
    let elapsed = started.elapsed();
    let kind = tls.get_ref().1.handshake_kind();
    // A StartupMessage for nobody in particular lets a TLS 1.3 server send its tickets (they
    // follow the handshake) before the connection is closed; its answer is read and dropped.
    let mut startup = Vec::new();
    let body = b"\0\x03\0\0user\0nobody\0\0";
    startup.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    startup.extend_from_slice(body);
    tls.write_all(&startup).await?;
    let mut answer = [0u8; 512];
    let _ = tokio::time::timeout(Duration::from_secs(2), tls.read(&mut answer)).await;
    Ok((elapsed, kind))
}

async fn tls_handshakes(
    address: SocketAddr,
    server_name: &str,
    ca_file: &Path,
    count: usize,
) -> Result<()> {
    let server_name = ServerName::try_from(server_name.to_owned())?;
    let shared = Arc::new(client_config(ca_file)?);
    let mut with_cache = Vec::new();
    let (mut resumed, mut shared_retries, mut fresh_retries) = (0usize, 0usize, 0usize);
    let retried = |kind| kind == Some(rustls::HandshakeKind::FullWithHelloRetryRequest);
    // The first handshake fills the cache and is not counted.
    tls_handshake(address, &server_name, shared.clone()).await?;
    for _ in 0..count {
        let (time, kind) = tls_handshake(address, &server_name, shared.clone()).await?;
        with_cache.push(time.as_secs_f64() * 1000.0);
        resumed += usize::from(kind == Some(rustls::HandshakeKind::Resumed));
        shared_retries += usize::from(retried(kind));
    }
    let mut without = Vec::new();
    for _ in 0..count {
        let fresh = Arc::new(client_config(ca_file)?);
        let (time, kind) = tls_handshake(address, &server_name, fresh).await?;
        without.push(time.as_secs_f64() * 1000.0);
        fresh_retries += usize::from(retried(kind));
    }
    with_cache.sort_by(f64::total_cmp);
    without.sort_by(f64::total_cmp);
    println!("handshakes={count}");
    println!("resumed={resumed}");
    // A HelloRetryRequest costs a round trip: the server did not take the key share offered
    // first. The cache also remembers which group the server chose, so only a fresh
    // configuration should meet it.
    println!("shared_config_hello_retries={shared_retries}");
    println!("fresh_config_hello_retries={fresh_retries}");
    println!("shared_config_p50_ms={:.3}", percentile(&with_cache, 0.5));
    println!("fresh_config_p50_ms={:.3}", percentile(&without, 0.5));
    Ok(())
}
