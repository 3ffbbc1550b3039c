//! SCRAM-SHA-256 toward PostgreSQL-compatible upstreams (RFC 5802 and 7677, as libpq speaks
//! it), with the server's final signature verified so an impostor that does not know the
//! password cannot complete the login.
//!
//! The costly step, `Hi()` (PBKDF2, 4096 rounds by default), depends only on the password and
//! on the salt and round count the server stores for the role, which stay the same from one
//! login to the next. So the keys derived from it are kept (`KeyCache`), and a client that
//! reconnects with the same password costs two HMACs instead of 4096 (`benches/auth.rs`
//! measures both; `docs/benchmarks.md` has the figures). The keys are as secret
//! as the password they come from: they are zeroed when dropped and never printed, and at most
//! `KEY_CACHE_ENTRIES` are kept.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, LazyLock, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::AuthError;
use crate::protocol::scram::{
    ScramKeys, constant_time_eq, normalize_password, salted_password, sha256,
};

/// The mechanism the proxy uses. Channel binding (`-PLUS`) is not offered: the GS2 header
/// says "n" (client does not support it), which servers accept whether or not they offer PLUS.
pub const MECHANISM: &str = "SCRAM-SHA-256";

/// `n,,`: no channel binding, no authorization identity. Its base64 (`biws`) is the
/// channel-binding attribute of the final message.
const GS2_HEADER: &str = "n,,";

/// More rounds than this are refused: each login would block a runtime thread for seconds.
/// PostgreSQL's default is 4096; deployments that raise `scram_iterations` stay far below.
pub const MAX_ITERATIONS: u32 = 1_000_000;

/// How many (password, salt, rounds) keys are kept; the oldest goes first.
const KEY_CACHE_ENTRIES: usize = 256;

/// One SCRAM exchange in progress.
pub struct ScramClient {
    password: Vec<u8>,
    client_nonce: String,
    state: State,
}

enum State {
    /// The client-first-message is out; waiting for server-first.
    SentFirst,
    /// The client-final-message is out; the server's signature must be this.
    SentFinal { server_signature: [u8; 32] },
    /// Finished, or failed: nothing more may happen.
    Done,
}

impl Drop for ScramClient {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.password);
    }
}

impl ScramClient {
    /// Picks SCRAM-SHA-256 from the offered list and returns the client-first-message.
    /// `client_nonce` must be fresh random printable text without commas.
    pub fn start(
        mechanisms: &[String],
        password: &[u8],
        client_nonce: String,
    ) -> Result<(ScramClient, Vec<u8>), AuthError> {
        if !mechanisms.iter().any(|m| m == MECHANISM) {
            return Err(AuthError::NoScramMechanism(mechanisms.to_vec()));
        }
        // PostgreSQL ignores this user name in favour of the StartupMessage's, as libpq
        // relies on by sending it empty.
        let first = format!("{GS2_HEADER}{}", client_first_bare(&client_nonce)).into_bytes();
        let client = ScramClient {
            password: normalize_password(password),
            client_nonce,
            state: State::SentFirst,
        };
        Ok((client, first))
    }

    /// Takes the server-first-message and returns the client-final-message.
    pub fn server_first(&mut self, data: &[u8]) -> Result<Vec<u8>, AuthError> {
        if !matches!(self.state, State::SentFirst) {
            return Err(AuthError::SaslOutOfOrder("continue"));
        }
        self.state = State::Done;
        let server_first = std::str::from_utf8(data)
            .map_err(|_| scram_error("the server-first-message is not UTF-8"))?;
        let ServerFirst {
            nonce,
            salt,
            iterations,
        } = parse_server_first(server_first, &self.client_nonce)?;
        let keys = KeyCache::shared().keys(&self.password, &salt, iterations);
        let without_proof = format!("c={},r={nonce}", STANDARD.encode(GS2_HEADER));
        let auth_message = format!(
            "{},{server_first},{without_proof}",
            client_first_bare(&self.client_nonce)
        );
        let proof = keys.client_proof(auth_message.as_bytes());
        self.state = State::SentFinal {
            server_signature: keys.server_signature(auth_message.as_bytes()),
        };
        Ok(format!("{without_proof},p={}", STANDARD.encode(proof)).into_bytes())
    }

    /// Verifies the server-final-message's signature.
    pub fn server_final(&mut self, data: &[u8]) -> Result<(), AuthError> {
        let State::SentFinal { server_signature } = self.state else {
            return Err(AuthError::SaslOutOfOrder("final"));
        };
        self.state = State::Done;
        let text = std::str::from_utf8(data)
            .map_err(|_| scram_error("the server-final-message is not UTF-8"))?;
        let first = text.split(',').next().unwrap_or_default();
        if let Some(error) = first.strip_prefix("e=") {
            return Err(scram_error(format!(
                "the server refused the proof: {error:?}"
            )));
        }
        let verifier = first
            .strip_prefix("v=")
            .ok_or_else(|| scram_error("the server-final-message has no verifier"))?;
        let signature = STANDARD
            .decode(verifier)
            .map_err(|_| scram_error("the server's signature is not base64"))?;
        if !constant_time_eq(&signature, &server_signature) {
            return Err(scram_error(
                "the server's signature does not match: it does not know the password",
            ));
        }
        Ok(())
    }
}

fn client_first_bare(client_nonce: &str) -> String {
    format!("n=,r={client_nonce}")
}

fn scram_error(why: impl Into<String>) -> AuthError {
    AuthError::Scram(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        why.into(),
    ))
}

/// The parts of a server-first-message (`r=…,s=…,i=…`).
#[derive(Debug, PartialEq, Eq)]
struct ServerFirst<'a> {
    nonce: &'a str,
    salt: Vec<u8>,
    iterations: u32,
}

fn parse_server_first<'a>(text: &'a str, client_nonce: &str) -> Result<ServerFirst<'a>, AuthError> {
    let mut attributes = text.split(',');
    let nonce = attributes
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .ok_or_else(|| {
            // `m=` would be a mandatory extension, which this client does not know.
            scram_error("the server-first-message does not start with a nonce")
        })?;
    if nonce.len() <= client_nonce.len() || !nonce.starts_with(client_nonce) {
        return Err(scram_error(
            "the server's nonce does not extend the client's",
        ));
    }
    let salt = attributes
        .next()
        .and_then(|a| a.strip_prefix("s="))
        .ok_or_else(|| scram_error("the server-first-message has no salt"))?;
    let salt = STANDARD
        .decode(salt)
        .map_err(|_| scram_error("the server's salt is not base64"))?;
    let iterations = attributes
        .next()
        .and_then(|a| a.strip_prefix("i="))
        .ok_or_else(|| scram_error("the server-first-message has no iteration count"))?;
    let iterations: u32 = iterations
        .parse()
        .map_err(|_| scram_error("the server's iteration count is not a number"))?;
    if iterations == 0 || iterations > MAX_ITERATIONS {
        return Err(scram_error(format!(
            "the server asked for {iterations} SCRAM iterations; the proxy accepts 1 to {MAX_ITERATIONS}"
        )));
    }
    Ok(ServerFirst {
        nonce,
        salt,
        iterations,
    })
}

/// The keys derived from (password, salt, rounds), kept across logins.
struct KeyCache {
    inner: Mutex<KeyCacheInner>,
}

#[derive(Default)]
struct KeyCacheInner {
    /// Keyed by a SHA-256 over password, salt and rounds, so the map holds no password.
    keys: HashMap<[u8; 32], Arc<ScramKeys>>,
    /// Insertion order, oldest first.
    order: VecDeque<[u8; 32]>,
}

static SHARED_KEYS: LazyLock<KeyCache> = LazyLock::new(KeyCache::new);

impl KeyCache {
    fn new() -> KeyCache {
        KeyCache {
            inner: Mutex::new(KeyCacheInner::default()),
        }
    }

    fn shared() -> &'static KeyCache {
        &SHARED_KEYS
    }

    /// The keys for this password, salt and round count: from the cache, or derived (and
    /// kept) when not there.
    fn keys(&self, password: &[u8], salt: &[u8], iterations: u32) -> Arc<ScramKeys> {
        let id = cache_id(password, salt, iterations);
        if let Some(keys) = self.lock().keys.get(&id) {
            return keys.clone();
        }
        // Derived outside the lock: two first logins at once both pay, neither waits.
        let keys = Arc::new(ScramKeys::derive(&salted_password(
            password, salt, iterations,
        )));
        let mut inner = self.lock();
        if inner.keys.insert(id, keys.clone()).is_none() {
            inner.order.push_back(id);
            while inner.order.len() > KEY_CACHE_ENTRIES {
                if let Some(oldest) = inner.order.pop_front() {
                    inner.keys.remove(&oldest);
                }
            }
        }
        keys
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, KeyCacheInner> {
        // The map is only ever left complete, so a panic elsewhere cannot have broken it.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().keys.len()
    }
}

/// Length-prefixed fields, so no two (password, salt) pairs share an input.
fn cache_id(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut input = zeroize::Zeroizing::new(Vec::with_capacity(password.len() + salt.len() + 20));
    input.extend_from_slice(&(password.len() as u64).to_be_bytes());
    input.extend_from_slice(password);
    input.extend_from_slice(&(salt.len() as u64).to_be_bytes());
    input.extend_from_slice(salt);
    input.extend_from_slice(&iterations.to_be_bytes());
    sha256(&input)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::auth::{ScramServer, ScramVerifier, hash_password};

    fn mechanisms() -> Vec<String> {
        vec!["SCRAM-SHA-256-PLUS".to_owned(), MECHANISM.to_owned()]
    }

    fn text(bytes: &[u8]) -> &str {
        std::str::from_utf8(bytes).unwrap()
    }

    /// Verifiers made by postgres-protocol (as `hash-password` and PostgreSQL make them,
    /// SASLprep included) must accept what this client computes, through the proxy's own
    /// SCRAM server.
    #[test]
    fn agrees_with_postgres_protocol_verifiers() {
        for password in ["pencil", "p\u{00AA}ss", "I\u{00AD}X", "a\u{0007}b", ""] {
            let verifier = ScramVerifier::parse(&hash_password(password)).unwrap();
            let mut server =
                ScramServer::new(Some(&verifier), verifier.clone(), "SERVERNONCE".into());
            let (mut client, first) = ScramClient::start(
                &mechanisms(),
                password.as_bytes(),
                "rOprNGfwEbeRWgbNEkqO".into(),
            )
            .unwrap();
            assert_eq!(text(&first), "n,,n=,r=rOprNGfwEbeRWgbNEkqO");
            let server_first = server.client_first(&first).unwrap();
            let client_final = client.server_first(server_first.as_bytes()).unwrap();
            assert!(
                text(&client_final).starts_with("c=biws,r=rOprNGfwEbeRWgbNEkqOSERVERNONCE,p="),
                "{password:?}"
            );
            let server_final = server
                .client_final(&client_final)
                .unwrap_or_else(|e| panic!("{password:?}: {e}"));
            client.server_final(server_final.as_bytes()).unwrap();
        }
    }

    #[test]
    fn the_rfc_7677_proof() {
        // RFC 7677 section 3's server-first-message. The RFC's client sends n=user; the auth
        // message is rebuilt here with the empty name PostgreSQL clients send.
        let (mut client, _) =
            ScramClient::start(&mechanisms(), b"pencil", "rOprNGfwEbeRWgbNEkqO".into()).unwrap();
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let client_final = client.server_first(server_first.as_bytes()).unwrap();
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let keys = ScramKeys::derive(&salted_password(b"pencil", &salt, 4096));
        let without_proof = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let auth_message = format!("n=,r=rOprNGfwEbeRWgbNEkqO,{server_first},{without_proof}");
        let proof = STANDARD.encode(keys.client_proof(auth_message.as_bytes()));
        assert_eq!(text(&client_final), format!("{without_proof},p={proof}"));
        let signature = STANDARD.encode(keys.server_signature(auth_message.as_bytes()));
        client
            .server_final(format!("v={signature}").as_bytes())
            .unwrap();
    }

    #[test]
    fn refuses_a_wrong_server_signature_and_server_errors() {
        let server_first = "r=abcdefXYZ,s=c2FsdA==,i=4096";
        let (mut client, _) = ScramClient::start(&mechanisms(), b"pw", "abcdef".into()).unwrap();
        client.server_first(server_first.as_bytes()).unwrap();
        let error = client
            .server_final(format!("v={}", STANDARD.encode([0u8; 32])).as_bytes())
            .unwrap_err();
        assert!(
            error.to_string().contains("does not know the password"),
            "{error}"
        );

        let (mut client, _) = ScramClient::start(&mechanisms(), b"pw", "abcdef".into()).unwrap();
        client.server_first(server_first.as_bytes()).unwrap();
        let error = client.server_final(b"e=invalid-proof").unwrap_err();
        assert!(error.to_string().contains("invalid-proof"), "{error}");
    }

    #[test]
    fn refuses_bad_server_first_messages() {
        for (message, why) in [
            ("s=c2FsdA==,i=4096", "does not start with a nonce"),
            (
                "m=ext,r=abcdefX,s=c2FsdA==,i=4096",
                "does not start with a nonce",
            ),
            ("r=abcdef,s=c2FsdA==,i=4096", "does not extend"),
            ("r=zzzzzzX,s=c2FsdA==,i=4096", "does not extend"),
            ("r=abcdefX,i=4096", "no salt"),
            ("r=abcdefX,s=!!!,i=4096", "not base64"),
            ("r=abcdefX,s=c2FsdA==", "no iteration count"),
            ("r=abcdefX,s=c2FsdA==,i=lots", "not a number"),
            ("r=abcdefX,s=c2FsdA==,i=0", "accepts 1 to"),
            ("r=abcdefX,s=c2FsdA==,i=4000000000", "accepts 1 to"),
        ] {
            let (mut client, _) =
                ScramClient::start(&mechanisms(), b"pw", "abcdef".into()).unwrap();
            let error = client.server_first(message.as_bytes()).unwrap_err();
            assert!(error.to_string().contains(why), "{message}: {error}");
            // A failed step ends the exchange.
            assert!(matches!(
                client.server_final(b"v=AAAA"),
                Err(AuthError::SaslOutOfOrder(_))
            ));
        }
    }

    #[test]
    fn refuses_steps_out_of_order_and_servers_without_scram() {
        assert!(matches!(
            ScramClient::start(&["SCRAM-SHA-1".to_owned()], b"pw", "n".into()),
            Err(AuthError::NoScramMechanism(_))
        ));
        let (mut client, _) = ScramClient::start(&mechanisms(), b"pw", "abcdef".into()).unwrap();
        assert!(matches!(
            client.server_final(b"v=AAAA"),
            Err(AuthError::SaslOutOfOrder("final"))
        ));
        client.server_first(b"r=abcdefX,s=c2FsdA==,i=1").unwrap();
        assert!(matches!(
            client.server_first(b"r=abcdefX,s=c2FsdA==,i=1"),
            Err(AuthError::SaslOutOfOrder("continue"))
        ));
    }

    #[test]
    fn the_key_cache_reuses_derives_once_and_stays_bounded() {
        let cache = KeyCache::new();
        let first = cache.keys(b"pw", b"salt", 16);
        let again = cache.keys(b"pw", b"salt", 16);
        assert!(Arc::ptr_eq(&first, &again));
        assert!(!Arc::ptr_eq(&first, &cache.keys(b"pw", b"salt", 17)));
        assert!(!Arc::ptr_eq(&first, &cache.keys(b"pw", b"salu", 16)));
        assert!(!Arc::ptr_eq(&first, &cache.keys(b"pv", b"salt", 16)));
        // Length-prefixed: moving a byte from the password to the salt is another entry.
        assert_ne!(cache_id(b"pws", b"alt", 1), cache_id(b"pw", b"salt", 1));
        for i in 0..(KEY_CACHE_ENTRIES as u32 + 10) {
            cache.keys(b"pw", b"other", i + 1);
        }
        assert_eq!(cache.len(), KEY_CACHE_ENTRIES);
        // The oldest went first.
        assert!(!Arc::ptr_eq(&first, &cache.keys(b"pw", b"salt", 16)));
    }
}
