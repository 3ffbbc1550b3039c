//! Where a client's CancelRequest goes. A key this replica issued goes to its own server
//! (`upstream::cancel`). Behind a Service with several replicas the cancel's new connection
//! usually lands on another replica than the session's, so a key this replica does not own is
//! forwarded to its peers (`--peers`), all at once, in a task of its own: the client's
//! connection is closed at once, as PostgreSQL does. The replica that owns the key sends it to
//! its server; the others drop it. Peer messages carry an HMAC under a shared secret, a
//! timestamp and a nonce, so only replicas of the deployment can use the peer port, and a
//! captured message cannot be used again. What arrives on the peer port is handled locally
//! only and never forwarded again, so there is no loop, and a replica listing itself among its
//! peers only answers "not mine" to itself.
//!
//! - `peer_list`: the `--peers` syntax and the resolver that looks names up every few seconds.
//! - `peer_message`: the codec of the peer port (request, reply, HMAC), no IO.
//! - `peer_secret`: `--peer-secret-file`.
//! - `replay_guard`: the nonces of accepted requests while they are fresh.
//! - `forward`: asking every peer concurrently within the forward timeout.
//! - `peer_listener`: `--peer-address`, where peers' requests arrive.

pub mod forward;
pub mod peer_list;
pub mod peer_listener;
pub mod peer_message;
pub mod peer_secret;
pub mod replay_guard;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::Instrument;

use crate::net::crypto::crypto_provider;
use crate::ops::metrics::Metrics;
use crate::protocol::CancelKey;
use crate::upstream::UpstreamEndpoint;
use crate::upstream::cancel::{CancelRegistry, IssueError, Registration, ServerCancel};
use forward::ForwardResult;
use peer_list::PeerAddresses;
use peer_message::{NONCE_LEN, PeerMessageError, PeerRequest, Verdict};
use peer_secret::PeerSecret;
use replay_guard::ReplayGuard;

/// What became of one cancel, for logs and the `outcome` label of
/// `redshift_proxy_cancel_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// A client's cancel for a session of this replica, sent to its server.
    Local,
    /// A client's cancel for another replica's session: a peer said it owns the key.
    Forwarded,
    /// A client's cancel whose key no live session has, here or at any peer that answered
    /// (a closed session's, a forged one, a server's own): dropped, sent to no server.
    Unknown,
    /// The server of a session of this replica could not be reached.
    UpstreamError,
    /// A peer forwarded a cancel for a session of this replica, which sent it to its server.
    PeerReceived,
    /// A message on the peer port that was refused: bad MAC, stale, replayed or malformed.
    PeerRefused,
}

impl CancelOutcome {
    /// Every outcome, in the order of [`CancelCounts`].
    pub const ALL: [CancelOutcome; 6] = [
        CancelOutcome::Local,
        CancelOutcome::Forwarded,
        CancelOutcome::Unknown,
        CancelOutcome::UpstreamError,
        CancelOutcome::PeerReceived,
        CancelOutcome::PeerRefused,
    ];

    /// The metric label and log field.
    pub fn as_str(self) -> &'static str {
        match self {
            CancelOutcome::Local => "local",
            CancelOutcome::Forwarded => "forwarded",
            CancelOutcome::Unknown => "unknown",
            CancelOutcome::UpstreamError => "upstream_error",
            CancelOutcome::PeerReceived => "peer_received",
            CancelOutcome::PeerRefused => "peer_refused",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Counts by outcome since start, for tests and `--check`-like callers that read no metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CancelCounts {
    /// Sent to this replica's server for a client.
    pub local: u64,
    /// Claimed by a peer.
    pub forwarded: u64,
    /// Owned by nobody who answered.
    pub unknown: u64,
    /// This replica's server could not be reached.
    pub upstream_error: u64,
    /// Sent to this replica's server for a peer.
    pub peer_received: u64,
    /// Peer messages refused.
    pub peer_refused: u64,
}

/// What this replica knows of its peers: the shared secret, where to forward (with
/// `--peers`), and for how long to wait.
#[derive(Debug)]
pub struct Peering {
    /// The key of every peer message.
    pub secret: Arc<PeerSecret>,
    /// The peers' addresses, kept current by the resolver; `None` without `--peers`.
    pub addresses: Option<PeerAddresses>,
    /// How long a forward waits for the owner's answer.
    pub forward_timeout: Duration,
}

/// Whether a client's cancel was settled before its connection closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCancel {
    /// Handled here.
    Done(CancelOutcome),
    /// Sent to the peers in a task of its own; its outcome is counted when they answer.
    Forwarding,
}

/// Why a message on the peer port was refused. None carries the message's bytes.
#[derive(Debug, thiserror::Error)]
pub enum PeerRefusal {
    /// Malformed, a bad MAC, or stale.
    #[error(transparent)]
    Message(#[from] PeerMessageError),
    /// A copy of a request already accepted.
    #[error("replayed peer message: its nonce was already used")]
    Replayed,
}

impl PeerRefusal {
    /// The reason as a fixed word, for logs.
    pub fn reason(&self) -> &'static str {
        match self {
            PeerRefusal::Message(e) => e.reason(),
            PeerRefusal::Replayed => "replayed",
        }
    }
}

/// A peer's request that passed every check.
#[derive(Debug)]
pub struct AcceptedPeerRequest {
    /// Its nonce, which the reply is bound to.
    pub nonce: [u8; NONCE_LEN],
    /// The cancel to send when this replica owns the key.
    pub server: Option<ServerCancel>,
}

/// The cancel registry of this replica's sessions and the way to its peers, shared by every
/// listener and the peer listener.
#[derive(Debug)]
pub struct CancelRouter {
    registry: Arc<CancelRegistry>,
    peering: Option<Peering>,
    replay: ReplayGuard,
    metrics: Arc<Metrics>,
    counts: [AtomicU64; 6],
}

impl CancelRouter {
    /// A router with no session yet; `peering` is `None` for a single replica.
    pub fn new(metrics: Arc<Metrics>, peering: Option<Peering>) -> Arc<CancelRouter> {
        Arc::new(CancelRouter {
            registry: CancelRegistry::new(),
            peering,
            replay: ReplayGuard::default(),
            metrics,
            counts: Default::default(),
        })
    }

    /// Issues the client's cancel key for a session (see [`CancelRegistry::register`]).
    pub fn register(
        &self,
        server_key: CancelKey,
        endpoint: Arc<UpstreamEndpoint>,
    ) -> Result<Registration, IssueError> {
        self.registry.register(server_key, endpoint)
    }

    /// Live sessions with a registered key.
    pub fn len(&self) -> usize {
        self.registry.len()
    }

    /// True when no session is registered.
    pub fn is_empty(&self) -> bool {
        self.registry.is_empty()
    }

    /// Counts by outcome since start.
    pub fn counts(&self) -> CancelCounts {
        let n = |o: CancelOutcome| self.counts[o.index()].load(Ordering::Relaxed);
        CancelCounts {
            local: n(CancelOutcome::Local),
            forwarded: n(CancelOutcome::Forwarded),
            unknown: n(CancelOutcome::Unknown),
            upstream_error: n(CancelOutcome::UpstreamError),
            peer_received: n(CancelOutcome::PeerReceived),
            peer_refused: n(CancelOutcome::PeerRefused),
        }
    }

    fn count(&self, outcome: CancelOutcome) {
        self.counts[outcome.index()].fetch_add(1, Ordering::Relaxed);
        self.metrics.cancel_request(outcome.as_str());
    }

    /// A client's CancelRequest for `key`: sent to this replica's server when it owns the key,
    /// else handed to a task that asks the peers, so the caller can close the client's
    /// connection at once.
    pub async fn client_cancel(self: &Arc<Self>, key: CancelKey) -> ClientCancel {
        if let Some(server) = self.registry.lookup(key) {
            let outcome = match self.send_to_server(&server).await {
                true => CancelOutcome::Local,
                false => CancelOutcome::UpstreamError,
            };
            if outcome == CancelOutcome::Local {
                self.count(outcome);
            }
            return ClientCancel::Done(outcome);
        }
        let addresses = self.peering.as_ref().and_then(|p| p.addresses.clone());
        match addresses {
            None => {
                self.count(CancelOutcome::Unknown);
                ClientCancel::Done(CancelOutcome::Unknown)
            }
            Some(addresses) => {
                let router = self.clone();
                tokio::spawn(
                    async move { router.forward(key, addresses).await }
                        .instrument(tracing::Span::current()),
                );
                ClientCancel::Forwarding
            }
        }
    }

    /// Asks the peers whether one owns `key`, and counts the answer.
    async fn forward(&self, key: CancelKey, addresses: PeerAddresses) {
        let Some(peering) = &self.peering else {
            return;
        };
        let peers = addresses.current();
        let mut nonce = [0u8; NONCE_LEN];
        if crypto_provider().secure_random.fill(&mut nonce).is_err() {
            tracing::warn!("the system random number generator failed: cancel not forwarded");
            self.count(CancelOutcome::Unknown);
            return;
        }
        let request = PeerRequest {
            key,
            timestamp_ms: now_ms(),
            nonce,
        };
        match forward::forward(&peers, request, &peering.secret, peering.forward_timeout).await {
            ForwardResult::Owner(peer) => {
                self.count(CancelOutcome::Forwarded);
                tracing::info!(outcome = "forwarded", peer = %peer, "cancel request");
            }
            ForwardResult::NoOwner { asked, failed } => {
                for (peer, error) in &failed {
                    tracing::warn!(peer = %peer, error = %error, "peer did not answer a forwarded cancel");
                }
                self.count(CancelOutcome::Unknown);
                tracing::info!(
                    outcome = "unknown",
                    peers_asked = asked,
                    peers_failed = failed.len(),
                    "cancel request"
                );
            }
        }
    }

    /// Checks a request that arrived on the peer port: MAC, freshness, not seen before. An
    /// accepted one is looked up among this replica's sessions, never forwarded again.
    pub fn peer_request(&self, bytes: &[u8]) -> Result<AcceptedPeerRequest, PeerRefusal> {
        let result = self.check_peer_request(bytes);
        match &result {
            Ok(accepted) if accepted.server.is_some() => self.count(CancelOutcome::PeerReceived),
            Ok(_) => {}
            Err(_) => self.count(CancelOutcome::PeerRefused),
        }
        result
    }

    fn check_peer_request(&self, bytes: &[u8]) -> Result<AcceptedPeerRequest, PeerRefusal> {
        let Some(peering) = &self.peering else {
            // The peer listener only runs with a secret; without one nothing is accepted.
            return Err(PeerMessageError::BadMac.into());
        };
        let now = now_ms();
        let request = PeerRequest::decode(bytes, &peering.secret, now)?;
        if !self
            .replay
            .first_use(request.nonce, request.timestamp_ms, now)
        {
            return Err(PeerRefusal::Replayed);
        }
        Ok(AcceptedPeerRequest {
            nonce: request.nonce,
            server: self.registry.lookup(request.key),
        })
    }

    /// The signed reply to an accepted request.
    pub fn peer_reply(
        &self,
        accepted: &AcceptedPeerRequest,
    ) -> Option<[u8; peer_message::REPLY_LEN]> {
        let peering = self.peering.as_ref()?;
        let verdict = match accepted.server {
            Some(_) => Verdict::Owner,
            None => Verdict::NotOwner,
        };
        Some(verdict.encode(&accepted.nonce, &peering.secret))
    }

    /// Sends a cancel to this replica's server; false (counted `upstream_error`, logged)
    /// when the server cannot be reached.
    pub async fn send_to_server(&self, server: &ServerCancel) -> bool {
        match server.send().await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(upstream = %server.address(), error = %e, "cancel request could not be forwarded");
                self.count(CancelOutcome::UpstreamError);
                false
            }
        }
    }
}

/// The wall clock in Unix milliseconds (0 before 1970, which no peer will accept).
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
