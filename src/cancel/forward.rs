//! Sends a forwarded cancel to every peer at once and waits, at most the forward timeout, for
//! the one that owns the key. The client that sent the cancel is not waiting: this runs in
//! its own task after the client's connection was closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use super::peer_message::{NONCE_LEN, PeerMessageError, PeerRequest, REPLY_LEN, Verdict};
use super::peer_secret::PeerSecret;

/// What the peers said.
#[derive(Debug, PartialEq, Eq)]
pub enum ForwardResult {
    /// This peer owns the key and sends the cancel to its server.
    Owner(SocketAddr),
    /// No peer claimed the key; those that could not answer, with why.
    NoOwner {
        /// Peers that were asked.
        asked: usize,
        /// Peers that did not answer in time or answered wrongly.
        failed: Vec<(SocketAddr, PeerError)>,
    },
}

/// Why one peer gave no usable answer.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// Connecting, writing or reading failed (a peer that is down).
    #[error("{0}")]
    Io(String),
    /// No answer within the forward timeout (a peer that is slow or silent).
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The answer did not verify: the peer has another secret, or is not a proxy.
    #[error("refused its answer: {0}")]
    Reply(#[from] PeerMessageError),
}

/// Asks every address in `peers` whether it owns `request`'s key, concurrently, each within
/// `timeout`; returns as soon as one does.
pub async fn forward(
    peers: &[SocketAddr],
    request: PeerRequest,
    secret: &Arc<PeerSecret>,
    timeout: Duration,
) -> ForwardResult {
    let bytes = request.encode(secret);
    let mut asking = JoinSet::new();
    for &peer in peers {
        let secret = secret.clone();
        asking.spawn(async move {
            let answer = tokio::time::timeout(timeout, ask(peer, bytes, &request.nonce, &secret))
                .await
                .unwrap_or(Err(PeerError::Timeout(timeout)));
            (peer, answer)
        });
    }
    let mut failed = Vec::new();
    while let Some(joined) = asking.join_next().await {
        match joined {
            Ok((peer, Ok(Verdict::Owner))) => return ForwardResult::Owner(peer),
            Ok((_, Ok(Verdict::NotOwner))) => {}
            Ok((peer, Err(e))) => failed.push((peer, e)),
            // A task that panicked or was aborted: nothing to learn from it.
            Err(_) => {}
        }
    }
    ForwardResult::NoOwner {
        asked: peers.len(),
        failed,
    }
}

/// One peer: connect, send the request, read and check the reply.
async fn ask(
    peer: SocketAddr,
    request: [u8; super::peer_message::REQUEST_LEN],
    nonce: &[u8; NONCE_LEN],
    secret: &PeerSecret,
) -> Result<Verdict, PeerError> {
    let io = |e: std::io::Error| PeerError::Io(e.to_string());
    let mut stream = TcpStream::connect(peer).await.map_err(io)?;
    let _ = stream.set_nodelay(true);
    stream.write_all(&request).await.map_err(io)?;
    let mut reply = [0u8; REPLY_LEN];
    let mut got = 0;
    while got < REPLY_LEN {
        match stream.read(&mut reply[got..]).await.map_err(io)? {
            0 => break,
            n => got += n,
        }
    }
    Ok(Verdict::decode(&reply[..got], nonce, secret)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::CancelKey;
    use std::time::Instant;
    use tokio::net::TcpListener;

    fn secret() -> Arc<PeerSecret> {
        Arc::new(PeerSecret::from_bytes(b"0123456789abcdef").expect("long"))
    }

    fn request() -> PeerRequest {
        PeerRequest {
            key: CancelKey {
                process_id: 7,
                secret_key: 8,
            },
            timestamp_ms: 1,
            nonce: [3; NONCE_LEN],
        }
    }

    /// A peer that answers `verdict` to one request.
    async fn answering(verdict: Verdict) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut request = [0u8; super::super::peer_message::REQUEST_LEN];
            socket.read_exact(&mut request).await.expect("request");
            let reply = verdict.encode(&request[12..28].try_into().expect("nonce"), &secret());
            socket.write_all(&reply).await.expect("reply");
        });
        address
    }

    #[tokio::test]
    async fn the_owner_answers_while_a_silent_and_a_closed_peer_cost_nothing() {
        let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let closed = {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            listener.local_addr().expect("address")
        };
        let owner = answering(Verdict::Owner).await;
        let peers = [
            silent.local_addr().expect("address"),
            closed,
            answering(Verdict::NotOwner).await,
            owner,
        ];
        let started = Instant::now();
        let result = forward(&peers, request(), &secret(), Duration::from_secs(5)).await;
        assert_eq!(result, ForwardResult::Owner(owner));
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn without_an_owner_the_failures_are_reported_within_the_timeout() {
        let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let other_secret = {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let address = listener.local_addr().expect("address");
            tokio::spawn(async move {
                let (mut socket, _) = listener.accept().await.expect("accept");
                let wrong = PeerSecret::from_bytes(b"another secret!!").expect("long");
                let reply = Verdict::Owner.encode(&[3; NONCE_LEN], &wrong);
                socket.write_all(&reply).await.expect("reply");
            });
            address
        };
        let silent_address = silent.local_addr().expect("address");
        let not_owner = answering(Verdict::NotOwner).await;
        let started = Instant::now();
        let timeout = Duration::from_millis(300);
        let result = forward(
            &[silent_address, other_secret, not_owner],
            request(),
            &secret(),
            timeout,
        )
        .await;
        let elapsed = started.elapsed();
        assert!(elapsed >= timeout && elapsed < timeout * 3, "{elapsed:?}");
        let ForwardResult::NoOwner { asked, mut failed } = result else {
            panic!("{result:?}");
        };
        assert_eq!(asked, 3);
        failed.sort_by_key(|(peer, _)| *peer == silent_address);
        assert_eq!(
            failed,
            vec![
                (other_secret, PeerError::Reply(PeerMessageError::BadMac)),
                (silent_address, PeerError::Timeout(timeout)),
            ]
        );
    }
}
