//! A remote server on a local machine: a TCP relay that holds every chunk it forwards for half
//! a round-trip time in each direction, so the server behind it answers as one across a
//! network would.
//!
//! On loopback a round trip costs microseconds, so a benchmark there cannot show what a user of
//! a remote Redshift feels: a login is a handful of round trips (TCP, SSLRequest, the TLS
//! handshake, the authentication exchange) and each costs tens of milliseconds across a
//! region. `scripts/bench --upstream-rtt MS` puts this relay between every path (direct,
//! proxy, PgBouncer) and PostgreSQL, so all see the same remote server.
//!
//! What it models, per connection:
//! - **Propagation.** Each direction delivers each chunk `rtt / 2` after it arrived, in order.
//! - **The TCP handshake.** The client's connect to the relay returns at once, but a real
//!   connect costs one round trip before the first byte can leave: bytes toward the upstream
//!   are treated as sent no earlier than one `rtt` after the accept. A client that sends at
//!   once therefore gets its first answer after two round trips, as across a network.
//! - **Bandwidth** (`--mbps`, off by default): a token bucket per direction, filled at that
//!   many Mbit/s and holding at most `--burst-kib`; a chunk enters the "wire" only when the
//!   bucket has paid for it, so a bulk transfer settles at the rate.
//!
//! Backpressure is kept: each direction holds at most `--max-in-flight` chunks, past which it
//! stops reading, so a COPY cannot fill memory.
//!
//! Each direction is a reader and a writer thread with blocking sockets: the kernel's sleep is
//! precise to tens of microseconds, where tokio's timer wheel rounds every hold up to the next
//! whole millisecond (20 ms asked came out as 22.7 ms). A benchmark opens few connections at a
//! time, so four threads per connection cost nothing that matters.
//!
//! ```sh
//! cargo build --release --example delay_relay
//! target/release/examples/delay_relay --listen 127.0.0.1:6544 --upstream 127.0.0.1:5432 --rtt-ms 20
//! ```

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;

#[derive(Parser, Debug, Clone)]
#[command(about = "Forwards TCP connections to one upstream with a round-trip delay")]
struct Args {
    /// Where to listen.
    #[arg(long)]
    listen: SocketAddr,
    /// Where every connection is forwarded.
    #[arg(long)]
    upstream: SocketAddr,
    /// Round-trip time to add, in milliseconds (half in each direction).
    #[arg(long)]
    rtt_ms: f64,
    /// Bandwidth cap per direction in Mbit/s (default: none).
    #[arg(long)]
    mbps: Option<f64>,
    /// Largest burst the bandwidth cap lets through at once, in KiB.
    #[arg(long, default_value_t = 64)]
    burst_kib: u64,
    /// Chunks (of at most 64 KiB) each direction may hold before it stops reading.
    #[arg(long, default_value_t = 512)]
    max_in_flight: usize,
    /// Do not charge the one round trip a TCP handshake costs.
    #[arg(long)]
    no_connect_rtt: bool,
    /// Log each connection's end to stderr.
    #[arg(long)]
    verbose: bool,
}

/// Bytes read in one go.
const CHUNK: usize = 64 * 1024;

fn main() -> Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.rtt_ms.is_finite() && args.rtt_ms >= 0.0,
        "--rtt-ms must be a number of milliseconds, 0 or more"
    );
    if let Some(mbps) = args.mbps {
        anyhow::ensure!(mbps.is_finite() && mbps > 0.0, "--mbps must be above 0");
    }
    let listener =
        TcpListener::bind(args.listen).with_context(|| format!("binding {}", args.listen))?;
    eprintln!(
        "delay_relay: {} -> {}, rtt {} ms, bandwidth {}",
        listener.local_addr()?,
        args.upstream,
        args.rtt_ms,
        args.mbps
            .map(|m| format!("{m} Mbit/s per direction"))
            .unwrap_or_else(|| "unlimited".to_owned())
    );
    loop {
        let (client, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(error) => {
                eprintln!("delay_relay: accept: {error}");
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let args = args.clone();
        thread::spawn(move || {
            let outcome = relay(client, &args);
            if args.verbose {
                match outcome {
                    Ok((up, down)) => eprintln!("delay_relay: {peer}: {up} bytes up, {down} down"),
                    Err(error) => eprintln!("delay_relay: {peer}: {error:#}"),
                }
            }
        });
    }
}

/// One direction's settings.
#[derive(Clone, Copy)]
struct Link {
    /// How long each chunk is held.
    delay: Duration,
    /// Bytes per second and burst, if capped.
    cap: Option<(f64, f64)>,
    /// Nothing leaves before this instant (the end of the emulated TCP handshake).
    opens_at: Instant,
    /// Chunks held at most.
    max_in_flight: usize,
}

fn relay(client: TcpStream, args: &Args) -> Result<(u64, u64)> {
    let accepted = Instant::now();
    let server = TcpStream::connect(args.upstream)
        .with_context(|| format!("connecting to {}", args.upstream))?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let rtt = Duration::from_secs_f64(args.rtt_ms / 1000.0);
    let cap = args
        .mbps
        .map(|mbps| (mbps * 1e6 / 8.0, (args.burst_kib * 1024) as f64));
    let up = Link {
        delay: rtt / 2,
        cap,
        opens_at: if args.no_connect_rtt {
            accepted
        } else {
            accepted + rtt
        },
        max_in_flight: args.max_in_flight.max(1),
    };
    let down = Link {
        opens_at: accepted,
        ..up
    };
    let upward = {
        let (from, to) = (client.try_clone()?, server.try_clone()?);
        thread::spawn(move || direction(from, to, up))
    };
    let moved_down = direction(server, client, down);
    let moved_up = upward.join().unwrap_or(0);
    Ok((moved_up, moved_down))
}

/// A chunk and when it may be written; `None` data is the sender's end of stream.
struct Held {
    data: Option<Vec<u8>>,
    due: Instant,
}

/// Moves one direction: a reader stamps each chunk with the time it may be delivered, a
/// writer (this thread) delivers it then. Returns the bytes moved.
fn direction(mut from: TcpStream, mut to: TcpStream, link: Link) -> u64 {
    let (sender, receiver) = mpsc::sync_channel::<Held>(link.max_in_flight);
    let reader = thread::spawn(move || {
        let mut bucket = link.cap.map(|(rate, burst)| TokenBucket::new(rate, burst));
        loop {
            let mut buffer = vec![0u8; CHUNK];
            let read = from.read(&mut buffer);
            let mut leaves = Instant::now().max(link.opens_at);
            let n = match read {
                Ok(0) | Err(_) => {
                    // The end of stream travels like data, after everything sent before it.
                    let _ = sender.send(Held {
                        data: None,
                        due: leaves + link.delay,
                    });
                    return;
                }
                Ok(n) => n,
            };
            buffer.truncate(n);
            if let Some(bucket) = bucket.as_mut() {
                leaves = bucket.pay(n as f64, leaves);
            }
            let held = Held {
                data: Some(buffer),
                due: leaves + link.delay,
            };
            if sender.send(held).is_err() {
                // The writer is gone: stop reading, so the sender hears of it.
                let _ = from.shutdown(Shutdown::Read);
                return;
            }
        }
    });
    let mut moved = 0u64;
    while let Ok(held) = receiver.recv() {
        sleep_until(held.due);
        match held.data {
            Some(data) => {
                if to.write_all(&data).is_err() {
                    break;
                }
                moved += data.len() as u64;
            }
            None => break,
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    drop(receiver);
    let _ = reader.join();
    moved
}

fn sleep_until(due: Instant) {
    let now = Instant::now();
    if due > now {
        thread::sleep(due - now);
    }
}

/// A token bucket in bytes: filled at `rate` bytes per second up to `burst`, and allowed to
/// go into debt for a chunk larger than the burst, which is then paid off before the next.
struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    fn new(rate: f64, burst: f64) -> TokenBucket {
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            at: Instant::now(),
        }
    }

    /// Charges `bytes` and returns when they have left: not before `earliest`, and not before
    /// the bucket had paid for them (it waits that long).
    fn pay(&mut self, bytes: f64, earliest: Instant) -> Instant {
        let now = Instant::now().max(earliest);
        let filled = now.saturating_duration_since(self.at).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + filled).min(self.burst) - bytes;
        self.at = now;
        if self.tokens >= 0.0 {
            return now;
        }
        let until = now + Duration::from_secs_f64(-self.tokens / self.rate);
        sleep_until(until);
        self.tokens = 0.0;
        self.at = until;
        until
    }
}
