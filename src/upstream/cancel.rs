//! Query cancellation. Clients receive the server's own BackendKeyData, so a CancelRequest
//! that reaches the proxy names a server backend; the registry remembers which server owns
//! each key while its session lives, and the request is forwarded over a fresh connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::net::pg_stream::PgStream;
use crate::protocol::frame::HEADER_LEN;

use crate::protocol::CancelKey;
use crate::protocol::startup::encode_cancel_request;
use crate::upstream::{self, UpstreamEndpoint};

/// Live sessions' backend keys and the servers that own them, shared by every listener
/// (a driver may send its cancel to any port the proxy serves).
#[derive(Debug, Default)]
pub struct CancelRegistry {
    sessions: Mutex<HashMap<CancelKey, Arc<UpstreamEndpoint>>>,
    forwarded: AtomicU64,
    unknown: AtomicU64,
    failed: AtomicU64,
}

/// What became of one CancelRequest, for logs and the cancel metric's `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// Sent to the server that owns the key.
    Forwarded,
    /// No live session has that key: dropped silently, as PostgreSQL does.
    UnknownKey,
    /// The server could not be reached.
    Failed,
}

impl CancelOutcome {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            CancelOutcome::Forwarded => "forwarded",
            CancelOutcome::UnknownKey => "unknown_key",
            CancelOutcome::Failed => "failed",
        }
    }
}

/// Counts of cancel requests by outcome since start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CancelCounts {
    /// Forwarded to a server.
    pub forwarded: u64,
    /// Dropped for an unknown key.
    pub unknown: u64,
    /// Failed to reach the server.
    pub failed: u64,
}

/// Keeps a session's key registered for as long as the session lives.
#[derive(Debug)]
pub struct Registration {
    registry: Arc<CancelRegistry>,
    key: CancelKey,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.key);
    }
}

impl CancelRegistry {
    /// An empty registry.
    pub fn new() -> Arc<CancelRegistry> {
        Arc::new(CancelRegistry::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CancelKey, Arc<UpstreamEndpoint>>> {
        // The map stays consistent even if a holder panicked: every update is one call.
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that `key` belongs to a session on `endpoint` until the returned guard drops.
    pub fn register(
        self: &Arc<Self>,
        key: CancelKey,
        endpoint: Arc<UpstreamEndpoint>,
    ) -> Registration {
        self.lock().insert(key, endpoint);
        Registration {
            registry: self.clone(),
            key,
        }
    }

    /// Live sessions with a registered key.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no session is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counts by outcome since start.
    pub fn counts(&self) -> CancelCounts {
        CancelCounts {
            forwarded: self.forwarded.load(Ordering::Relaxed),
            unknown: self.unknown.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }

    /// Forwards a client's CancelRequest to the server that owns `key`, if any session has it.
    pub async fn cancel(&self, key: CancelKey) -> CancelOutcome {
        let endpoint = self.lock().get(&key).cloned();
        let outcome = match endpoint {
            None => CancelOutcome::UnknownKey,
            Some(endpoint) => match send_cancel(&endpoint, key).await {
                Ok(()) => CancelOutcome::Forwarded,
                Err(e) => {
                    tracing::warn!(upstream = %endpoint.address(), error = %e, "cancel request could not be forwarded");
                    CancelOutcome::Failed
                }
            },
        };
        let counter = match outcome {
            CancelOutcome::Forwarded => &self.forwarded,
            CancelOutcome::UnknownKey => &self.unknown,
            CancelOutcome::Failed => &self.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        outcome
    }
}

/// Opens a fresh connection (TLS as for sessions), sends the CancelRequest and closes, as
/// libpq's `PQcancel` does.
async fn send_cancel(
    endpoint: &UpstreamEndpoint,
    key: CancelKey,
) -> Result<(), upstream::UpstreamError> {
    let mut stream = PgStream::new(upstream::connect(endpoint).await?);
    let io_error = |e: std::io::Error| upstream::UpstreamError::Protocol {
        address: endpoint.address(),
        why: e.to_string(),
    };
    stream
        .write_message(&encode_cancel_request(key))
        .await
        .map_err(io_error)?;
    stream.flush().await.map_err(io_error)?;
    // The server closes without answering; wait briefly so the request is not cut short.
    let _ = tokio::time::timeout(endpoint.connect_timeout, stream.read_message(HEADER_LEN)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn endpoint() -> Arc<UpstreamEndpoint> {
        Arc::new(UpstreamEndpoint {
            host: "127.0.0.1".into(),
            port: 1,
            sslmode: crate::upstream::tls::SslMode::Disable,
            tls: None,
            connect_timeout: Duration::from_millis(200),
        })
    }

    #[tokio::test]
    async fn unknown_keys_are_counted_and_registrations_expire() {
        let registry = CancelRegistry::new();
        let key = CancelKey {
            process_id: 1,
            secret_key: 2,
        };
        assert_eq!(registry.cancel(key).await, CancelOutcome::UnknownKey);
        let registration = registry.register(key, endpoint());
        assert_eq!(registry.len(), 1);
        drop(registration);
        assert!(registry.is_empty());
        assert_eq!(registry.counts().unknown, 1);
    }
}
