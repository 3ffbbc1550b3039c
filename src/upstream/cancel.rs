//! Query cancellation. Clients never see the server's BackendKeyData: each session gets a
//! key the proxy draws (a random process id and secret from the system CSPRNG), and the
//! registry maps it, while the session lives, to the server that owns the session and the
//! server's real key. A CancelRequest naming a live proxy key is forwarded with the server's
//! key over a fresh connection; any other key (stale, forged, or a server key learned some
//! other way) reaches no server here. A client can neither learn nor guess a server key
//! through the proxy, and the proxy's key space is its own, which is what lets replicas
//! route cancels among themselves (`crate::cancel`).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex, PoisonError};

use crate::net::crypto::crypto_provider;
use crate::net::pg_stream::PgStream;
use crate::protocol::frame::HEADER_LEN;

use crate::protocol::CancelKey;
use crate::protocol::startup::encode_cancel_request;
use crate::upstream::{self, UpstreamEndpoint};

/// How many keys are drawn before giving up on finding an unused one. With 63 random bits
/// a single collision is already unheard of; a second in a row means the generator is broken.
const MAX_DRAWS: usize = 8;

/// Live sessions' proxy-issued keys and what each stands for, shared by every listener (a
/// driver may send its cancel to any port the proxy serves).
#[derive(Debug, Default)]
pub struct CancelRegistry {
    sessions: Mutex<HashMap<CancelKey, Owner>>,
}

/// The session behind a proxy-issued key: the server that runs it and the key that server
/// gave it, the only one it will honour.
#[derive(Debug, Clone)]
struct Owner {
    endpoint: Arc<UpstreamEndpoint>,
    server_key: CancelKey,
}

/// Why no key could be issued for a session. The session is refused rather than given a key
/// that is predictable or shared with another session.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The system random number generator failed.
    #[error("the system random number generator failed: cannot issue a cancel key")]
    Random,
    /// Every drawn key was already in use.
    #[error("no unused cancel key after {MAX_DRAWS} random draws")]
    Exhausted,
}

/// Keeps a session's key registered for as long as the session lives.
#[derive(Debug)]
pub struct Registration {
    registry: Arc<CancelRegistry>,
    key: CancelKey,
}

impl Registration {
    /// The key issued to the client, to put in its BackendKeyData.
    pub fn client_key(&self) -> CancelKey {
        self.key
    }
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CancelKey, Owner>> {
        // The map stays consistent even if a holder panicked: every update is one call.
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Issues a fresh random key for a session on `endpoint` whose server gave it
    /// `server_key`, and keeps it until the returned guard drops. The key is unique among
    /// live sessions and is never the server's own.
    pub fn register(
        self: &Arc<Self>,
        server_key: CancelKey,
        endpoint: Arc<UpstreamEndpoint>,
    ) -> Result<Registration, IssueError> {
        self.register_with(server_key, endpoint, random_key)
    }

    /// [`register`](Self::register) with the key source given, so tests can force collisions.
    fn register_with(
        self: &Arc<Self>,
        server_key: CancelKey,
        endpoint: Arc<UpstreamEndpoint>,
        mut draw: impl FnMut() -> Result<CancelKey, IssueError>,
    ) -> Result<Registration, IssueError> {
        for _ in 0..MAX_DRAWS {
            let key = draw()?;
            // PostgreSQL process ids are positive; some drivers print or parse them as such.
            if key.process_id <= 0 || key == server_key {
                continue;
            }
            if let Entry::Vacant(slot) = self.lock().entry(key) {
                slot.insert(Owner {
                    endpoint: endpoint.clone(),
                    server_key,
                });
                return Ok(Registration {
                    registry: self.clone(),
                    key,
                });
            }
        }
        Err(IssueError::Exhausted)
    }

    /// Live sessions with a registered key.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no session is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cancel for the session holding the proxy-issued `key`, if one lives here.
    pub fn lookup(&self, key: CancelKey) -> Option<ServerCancel> {
        self.lock().get(&key).map(|owner| ServerCancel {
            endpoint: owner.endpoint.clone(),
            server_key: owner.server_key,
        })
    }
}

/// A cancel this replica can deliver: the server that runs the session and the key that
/// server gave it.
#[derive(Debug, Clone)]
pub struct ServerCancel {
    endpoint: Arc<UpstreamEndpoint>,
    server_key: CancelKey,
}

impl ServerCancel {
    /// The server's address, for logs.
    pub fn address(&self) -> String {
        self.endpoint.address()
    }

    /// Sends the CancelRequest with the server's own key over a fresh connection.
    pub async fn send(&self) -> Result<(), upstream::UpstreamError> {
        send_cancel(&self.endpoint, self.server_key).await
    }
}

/// A key from the system CSPRNG: 31 bits of process id (kept positive) and 32 of secret.
fn random_key() -> Result<CancelKey, IssueError> {
    let mut bytes = [0u8; 8];
    crypto_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| IssueError::Random)?;
    let key = CancelKey::from_payload(&bytes).ok_or(IssueError::Random)?;
    Ok(CancelKey {
        process_id: key.process_id & i32::MAX,
        secret_key: key.secret_key,
    })
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

    const SERVER_KEY: CancelKey = CancelKey {
        process_id: 4242,
        secret_key: 77,
    };

    #[test]
    fn unknown_keys_find_nothing_and_registrations_expire() {
        let registry = CancelRegistry::new();
        let registration = registry.register(SERVER_KEY, endpoint()).expect("issued");
        let issued = registration.client_key();
        assert_ne!(issued, SERVER_KEY, "the client never gets the server's key");
        assert!(issued.process_id > 0);
        assert_eq!(registry.len(), 1);
        // The server's own key is not a key the proxy knows: it reaches no server.
        assert!(registry.lookup(SERVER_KEY).is_none());
        assert!(registry.lookup(issued).is_some());
        drop(registration);
        assert!(registry.is_empty());
        // A closed session's key is stale.
        assert!(registry.lookup(issued).is_none());
    }

    #[test]
    fn issued_keys_are_random_and_distinct() {
        let registry = CancelRegistry::new();
        let registrations: Vec<_> = (0..200)
            .map(|_| registry.register(SERVER_KEY, endpoint()).expect("issued"))
            .collect();
        let keys: std::collections::HashSet<_> =
            registrations.iter().map(Registration::client_key).collect();
        assert_eq!(keys.len(), 200);
        assert_eq!(registry.len(), 200);
        let secrets: std::collections::HashSet<_> = keys.iter().map(|k| k.secret_key).collect();
        assert!(
            secrets.len() > 190,
            "secrets are not a counter or a constant"
        );
    }

    #[test]
    fn collisions_and_unusable_draws_are_retried_then_refused() {
        let registry = CancelRegistry::new();
        let taken = CancelKey {
            process_id: 5,
            secret_key: 6,
        };
        let first = registry
            .register_with(SERVER_KEY, endpoint(), || Ok(taken))
            .expect("issued");
        assert_eq!(first.client_key(), taken);
        // The live key, the server's key and a non-positive pid are skipped.
        let mut draws = vec![
            taken,
            SERVER_KEY,
            CancelKey {
                process_id: 0,
                secret_key: 1,
            },
            CancelKey {
                process_id: 8,
                secret_key: 9,
            },
        ]
        .into_iter();
        let second = registry
            .register_with(SERVER_KEY, endpoint(), || {
                draws.next().ok_or(IssueError::Random)
            })
            .expect("issued after retries");
        assert_eq!(second.client_key().process_id, 8);
        // Nothing but collisions: refused, not shared.
        let refused = registry.register_with(SERVER_KEY, endpoint(), || Ok(taken));
        assert!(matches!(refused, Err(IssueError::Exhausted)), "{refused:?}");
        let failed = registry.register_with(SERVER_KEY, endpoint(), || Err(IssueError::Random));
        assert!(matches!(failed, Err(IssueError::Random)), "{failed:?}");
        assert_eq!(registry.len(), 2);
    }

    #[tokio::test]
    async fn a_live_key_forwards_the_servers_key_to_its_endpoint() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let server = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut request = [0u8; 16];
            socket.read_exact(&mut request).await.expect("request");
            request
        });
        let endpoint = Arc::new(UpstreamEndpoint {
            port,
            ..(*endpoint()).clone()
        });
        let registry = CancelRegistry::new();
        let registration = registry.register(SERVER_KEY, endpoint).expect("issued");
        let cancel = registry
            .lookup(registration.client_key())
            .expect("a live key");
        cancel.send().await.expect("sent");
        let request = server.await.expect("server task");
        assert_eq!(request, encode_cancel_request(SERVER_KEY));
    }
}
