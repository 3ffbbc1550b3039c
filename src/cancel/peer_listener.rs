//! `--peer-address`: where this replica takes the cancels its peers forward. Each connection
//! carries one request; an accepted one gets a signed reply ("mine" or "not mine") and, when
//! this replica owns the key, the cancel goes to its server after the reply, so the sender is
//! not kept waiting on that server. A refused message is counted, logged once, and the
//! connection closed without a reply. Nothing that arrives here is forwarded again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::CancelRouter;
use super::peer_message::REQUEST_LEN;

/// A peer sends its request as soon as it connects; one that does not within this long is
/// treated as a truncated message.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// The peer port could not be opened.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot listen for peers on {address} (--peer-address): {error} (is another process on that port?)"
)]
pub struct PeerBindError {
    /// The address asked for.
    pub address: SocketAddr,
    /// The OS error.
    pub error: std::io::Error,
}

/// Binds the peer port.
pub async fn bind(address: SocketAddr) -> Result<TcpListener, PeerBindError> {
    TcpListener::bind(address)
        .await
        .map_err(|error| PeerBindError { address, error })
}

/// Accepts peers' requests until `stop`.
pub async fn serve(listener: TcpListener, router: Arc<CancelRouter>, stop: CancellationToken) {
    if let Ok(address) = listener.local_addr() {
        tracing::info!(listen = %address, "listening for peers' cancels");
    }
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, from)) => {
                tokio::spawn(handle(stream, from, router.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "peer accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn handle(mut stream: TcpStream, from: SocketAddr, router: Arc<CancelRouter>) {
    let _ = stream.set_nodelay(true);
    let mut request = [0u8; REQUEST_LEN];
    let mut got = 0;
    let deadline = tokio::time::Instant::now() + READ_TIMEOUT;
    while got < REQUEST_LEN {
        match tokio::time::timeout_at(deadline, stream.read(&mut request[got..])).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => got += n,
        }
    }
    if got == 0 {
        // A connection check or port scan: not a message.
        tracing::debug!(peer = %from, "peer connection closed without a message");
        return;
    }
    let accepted = match router.peer_request(&request[..got]) {
        Ok(accepted) => accepted,
        Err(refusal) => {
            tracing::warn!(peer = %from, reason = refusal.reason(), error = %refusal, "peer message refused");
            return;
        }
    };
    if let Some(reply) = router.peer_reply(&accepted) {
        let _ = stream.write_all(&reply).await;
        let _ = stream.shutdown().await;
    }
    drop(stream);
    match accepted.server {
        Some(server) => {
            tracing::info!(outcome = "peer_received", peer = %from, "cancel request");
            router.send_to_server(&server).await;
        }
        None => tracing::debug!(peer = %from, "peer cancel for a key this replica did not issue"),
    }
}
