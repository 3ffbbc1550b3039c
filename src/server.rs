//! Listeners, one per target, and the accept loops that hand each client to a session task.
//! A target at `--max-connections` refuses the next client with 53300. Sessions are tracked
//! so a stop can close the listeners, let sessions finish, then end the rest, and wait for
//! every task: no socket or task outlives `run`. The first target may also listen on a Unix
//! socket (`--unix-socket`), sharing its connection limit.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::client::stream::ClientAddr;
use crate::client::unix_socket::{self, SocketFile, UnixSocketError};
use crate::ops::health::{Capacity, Health};
use crate::session::{self, Outcome, TargetContext};

/// After sessions are told to end, how long one still in its login may take before it is
/// dropped (a session in the relay ends at once, with 57P01).
const KILL_GRACE: Duration = Duration::from_secs(3);

/// A target's context with its bound listener.
#[derive(Debug)]
struct BoundTarget {
    listener: TcpListener,
    /// The Unix socket serving the same target, with its file (removed when dropped).
    unix: Option<(UnixListener, SocketFile)>,
    ctx: Arc<TargetContext>,
    capacity: Capacity,
}

/// The proxy's listeners, bound and ready to accept.
#[derive(Debug)]
pub struct Server {
    targets: Vec<BoundTarget>,
    tracker: TaskTracker,
}

/// When to stop accepting and when to end open sessions; fired by the shutdown driver.
#[derive(Debug, Clone, Default)]
pub struct StopTokens {
    /// Close the listeners; open sessions go on.
    pub stop_accepting: CancellationToken,
    /// End every open session (57P01 for those in the relay).
    pub end_sessions: CancellationToken,
}

/// A listener that could not be opened.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot listen on {address} for target {target}: {error} (is another proxy or PostgreSQL already on that port? choose another with --port or the target's port= option)"
)]
pub struct BindError {
    /// The address asked for.
    pub address: SocketAddr,
    /// The target's label.
    pub target: String,
    /// The OS error.
    pub error: std::io::Error,
}

impl Server {
    /// Binds one listener per `(address, context)`, each admitting at most `max_connections`
    /// sessions; nothing is accepted until `run`.
    pub async fn bind(
        targets: impl IntoIterator<Item = (SocketAddr, Arc<TargetContext>)>,
        max_connections: Option<usize>,
    ) -> Result<Server, BindError> {
        let mut bound = Vec::new();
        for (address, ctx) in targets {
            let listener = TcpListener::bind(address)
                .await
                .map_err(|error| BindError {
                    address,
                    target: ctx.target.label().to_owned(),
                    error,
                })?;
            let capacity = Capacity {
                open: Arc::new(AtomicUsize::new(0)),
                limit: max_connections,
            };
            bound.push(BoundTarget {
                listener,
                unix: None,
                ctx,
                capacity,
            });
        }
        Ok(Server {
            targets: bound,
            tracker: TaskTracker::new(),
        })
    }

    /// The addresses actually bound (useful with port 0 in tests), in target order.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.targets
            .iter()
            .filter_map(|t| t.listener.local_addr().ok())
            .collect()
    }

    /// Also serves the first target on `DIR/.s.PGSQL.<port>`, with the port it listens on
    /// over TCP (libpq's name, so `psql -h DIR -p PORT` finds it). Returns the socket's path.
    pub fn add_unix_socket(&mut self, dir: &Path) -> Result<PathBuf, UnixSocketError> {
        let Some(first) = self.targets.first_mut() else {
            return Err(UnixSocketError::NotADirectory(dir.to_owned()));
        };
        let port = first
            .listener
            .local_addr()
            .map(|a| a.port())
            .map_err(|source| UnixSocketError::Bind {
                path: dir.to_owned(),
                source,
            })?;
        let (listener, file) = unix_socket::bind(dir, port)?;
        let path = file.path().to_owned();
        first.unix = Some((listener, file));
        Ok(path)
    }

    /// Accepts clients until `stop.stop_accepting` fires, then waits for every session to
    /// finish (or to be ended by `stop.end_sessions`). Returns how many sessions were cut.
    pub async fn run(self, health: Arc<Health>, stop: StopTokens) -> usize {
        let tracker = self.tracker;
        let cut = Arc::new(AtomicUsize::new(0));
        for bound in self.targets {
            health.add_capacity(bound.capacity.clone());
            tracker.spawn(accept_loop(
                bound,
                tracker.clone(),
                stop.clone(),
                cut.clone(),
            ));
        }
        health.set_started();
        stop.stop_accepting.cancelled().await;
        tracker.close();
        tracker.wait().await;
        cut.load(Ordering::SeqCst)
    }
}

/// Counts a session against its target's limit while it lives.
struct Admission(Arc<AtomicUsize>);

impl Admission {
    /// Admits one more session unless `capacity` is full.
    fn try_new(capacity: &Capacity) -> Option<Admission> {
        let before = capacity.open.fetch_add(1, Ordering::SeqCst);
        if capacity.limit.is_some_and(|limit| before >= limit) {
            capacity.open.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Admission(capacity.open.clone()))
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn accept_loop(
    bound: BoundTarget,
    tracker: TaskTracker,
    stop: StopTokens,
    cut: Arc<AtomicUsize>,
) {
    let label = bound.ctx.target.label().to_owned();
    if let Ok(address) = bound.listener.local_addr() {
        tracing::info!(target_name = %label, listen = %address, upstream = %bound.ctx.endpoint.address(), "listening");
    }
    if let Some((_, file)) = &bound.unix {
        tracing::info!(target_name = %label, socket = %file.path().display(), upstream = %bound.ctx.endpoint.address(), "listening");
    }
    loop {
        let accepted = tokio::select! {
            _ = stop.stop_accepting.cancelled() => break,
            accepted = accept(&bound.listener, bound.unix.as_ref().map(|(l, _)| l)) => accepted,
        };
        match accepted {
            Ok(stream) => {
                let ctx = bound.ctx.clone();
                let end = stop.end_sessions.clone();
                let admission = Admission::try_new(&bound.capacity);
                let cut = cut.clone();
                tracker.spawn(async move {
                    // Over the limit, the session still answers a CancelRequest, and refuses
                    // a StartupMessage with 53300 after the usual SSLRequest answer, so
                    // libpq shows the message.
                    let admitted = admission.is_some();
                    let outcome = tokio::select! {
                        biased;
                        outcome = serve_accepted(stream, ctx, end.clone(), admitted) => outcome,
                        // A session still logging in when the end comes is dropped.
                        _ = async { end.cancelled().await; tokio::time::sleep(KILL_GRACE).await } => Outcome::Shutdown,
                    };
                    if outcome == Outcome::Shutdown {
                        cut.fetch_add(1, Ordering::SeqCst);
                    }
                    drop(admission);
                });
            }
            Err(e) => {
                // Running out of file descriptors or similar: back off instead of spinning.
                tracing::warn!(target_name = %label, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    drop(bound.listener);
    // Removes the socket file.
    drop(bound.unix);
    tracing::info!(target_name = %label, "listener closed");
}

/// A connection from either listener of a target.
enum Accepted {
    Tcp(TcpStream, SocketAddr),
    Unix(UnixStream),
}

async fn accept(tcp: &TcpListener, unix: Option<&UnixListener>) -> std::io::Result<Accepted> {
    let Some(unix) = unix else {
        return tcp.accept().await.map(|(s, peer)| Accepted::Tcp(s, peer));
    };
    tokio::select! {
        accepted = tcp.accept() => accepted.map(|(s, peer)| Accepted::Tcp(s, peer)),
        accepted = unix.accept() => accepted.map(|(s, _)| Accepted::Unix(s)),
    }
}

async fn serve_accepted(
    accepted: Accepted,
    ctx: Arc<TargetContext>,
    end: CancellationToken,
    admitted: bool,
) -> Outcome {
    match accepted {
        Accepted::Tcp(stream, peer) => {
            let _ = stream.set_nodelay(true);
            session::serve(stream, ClientAddr::Tcp(peer), ctx, end, admitted).await
        }
        Accepted::Unix(stream) => {
            session::serve(stream, ClientAddr::Unix, ctx, end, admitted).await
        }
    }
}
