//! The floor under any proxy's latency: a plain TCP forwarder that does nothing but move bytes
//! between two sockets, on the same tokio runtime the proxy uses.
//!
//! `scripts/bench` puts it between libpq and PostgreSQL (TLS stays end to end, so it neither
//! decrypts nor parses anything) and runs `pgbench -S` through it beside the direct, proxy and
//! PgBouncer paths. Whatever TPS a request-response workload loses through it is the price of
//! one more loopback hop on that machine (two more socket writes and reads and two more
//! wake-ups per transaction, on CPUs that pgbench and PostgreSQL also need), which no proxy,
//! whatever it does per byte, can get under. The gap between the forwarder and the proxy is
//! the proxy's own cost: TLS to the server, frame walking, counters.
//!
//! ```sh
//! cargo build --release --example tcp_forwarder
//! target/release/examples/tcp_forwarder --listen 127.0.0.1:6543 --upstream 127.0.0.1:5432
//! ```
//!
//! It runs until killed. Each connection's end (bytes each way, or the error) goes to stderr
//! only with `--verbose`.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use clap::Parser;
use tokio::net::{TcpListener, TcpStream};

#[derive(Parser, Debug)]
#[command(about = "Forwards TCP connections to one upstream, doing nothing else")]
struct Args {
    /// Where to listen.
    #[arg(long)]
    listen: SocketAddr,
    /// Where every connection is forwarded.
    #[arg(long)]
    upstream: SocketAddr,
    /// Runtime worker threads (default: one per CPU, as the proxy).
    #[arg(long)]
    worker_threads: Option<usize>,
    /// Bytes each direction reads and writes at a time (the proxy's relay uses 64 KiB).
    #[arg(long, default_value_t = 64 * 1024)]
    buffer_size: usize,
    /// Log each connection's end to stderr.
    #[arg(long)]
    verbose: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.worker_threads {
        builder.worker_threads(threads.max(1));
    }
    let runtime = builder
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> Result<()> {
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    eprintln!(
        "tcp_forwarder: {} -> {}",
        listener.local_addr()?,
        args.upstream
    );
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors and the like: keep serving the connections already open.
                eprintln!("tcp_forwarder: accept: {error}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let upstream = args.upstream;
        let verbose = args.verbose;
        let buffer_size = args.buffer_size.max(1);
        tokio::spawn(async move {
            let outcome = forward(client, upstream, buffer_size).await;
            if verbose {
                match outcome {
                    Ok((up, down)) => {
                        eprintln!("tcp_forwarder: {peer}: {up} bytes up, {down} down")
                    }
                    Err(error) => eprintln!("tcp_forwarder: {peer}: {error:#}"),
                }
            }
        });
    }
}

/// Connects to the upstream and copies both ways until both sides have closed.
async fn forward(
    mut client: TcpStream,
    upstream: SocketAddr,
    buffer_size: usize,
) -> Result<(u64, u64)> {
    let mut server = TcpStream::connect(upstream)
        .await
        .with_context(|| format!("connecting to {upstream}"))?;
    // As the proxy does: small request-response messages must not wait for Nagle.
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let moved = tokio::io::copy_bidirectional_with_sizes(
        &mut client,
        &mut server,
        buffer_size,
        buffer_size,
    )
    .await
    .context("relaying")?;
    Ok(moved)
}
