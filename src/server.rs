//! Listeners, one per target, and the accept loops that hand each client to a session task.
//! Sessions are tracked so shutdown can stop accepting, end them, and wait for every task.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::session::{self, TargetContext};

/// A target's context with its bound listener.
#[derive(Debug)]
struct BoundTarget {
    listener: TcpListener,
    ctx: Arc<TargetContext>,
}

/// The proxy's listeners, bound and ready to accept.
#[derive(Debug)]
pub struct Server {
    targets: Vec<BoundTarget>,
    tracker: TaskTracker,
}

/// A listener that could not be opened.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot listen on {address} for target {target}: {source} (is another proxy or PostgreSQL already on that port? choose another with --port or the target's port= option)"
)]
pub struct BindError {
    /// The address asked for.
    pub address: SocketAddr,
    /// The target's label.
    pub target: String,
    /// The OS error.
    pub source: std::io::Error,
}

impl Server {
    /// Binds one listener per `(address, context)`; nothing is accepted until `run`.
    pub async fn bind(
        targets: impl IntoIterator<Item = (SocketAddr, Arc<TargetContext>)>,
    ) -> Result<Server, BindError> {
        let mut bound = Vec::new();
        for (address, ctx) in targets {
            let listener = TcpListener::bind(address)
                .await
                .map_err(|source| BindError {
                    address,
                    target: ctx.target.label().to_owned(),
                    source,
                })?;
            bound.push(BoundTarget { listener, ctx });
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

    /// Accepts clients until `shutdown` fires, then ends open sessions and waits for every
    /// session task to finish, so no socket or task outlives the call.
    pub async fn run(self, shutdown: CancellationToken) {
        let tracker = self.tracker;
        for bound in self.targets {
            let tracker_for_loop = tracker.clone();
            let shutdown = shutdown.clone();
            tracker.spawn(accept_loop(bound, tracker_for_loop, shutdown));
        }
        shutdown.cancelled().await;
        tracker.close();
        tracker.wait().await;
    }
}

async fn accept_loop(bound: BoundTarget, tracker: TaskTracker, shutdown: CancellationToken) {
    let label = bound.ctx.target.label().to_owned();
    if let Ok(address) = bound.listener.local_addr() {
        tracing::info!(target_name = %label, listen = %address, upstream = %bound.ctx.endpoint.address(), "listening");
    }
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = bound.listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let ctx = bound.ctx.clone();
                let shutdown = shutdown.clone();
                tracker.spawn(async move {
                    tokio::select! {
                        _ = serve_tcp(stream, peer, ctx) => {}
                        _ = shutdown.cancelled() => {}
                    }
                });
            }
            Err(e) => {
                // Running out of file descriptors or similar: back off instead of spinning.
                tracing::warn!(target_name = %label, error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve_tcp(stream: TcpStream, peer: SocketAddr, ctx: Arc<TargetContext>) {
    let _ = stream.set_nodelay(true);
    session::serve(stream, peer, ctx).await;
}
