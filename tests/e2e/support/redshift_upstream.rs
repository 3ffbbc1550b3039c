//! A Redshift-flavoured upstream in front of the tests' real PostgreSQL: it does what a
//! Redshift endpoint does before a session starts, then relays bytes both ways.
//!
//! - Many connections, a task each. SSLRequest gets `S` and a TLS handshake with the test
//!   PKI's `localhost` certificate ([`Transport::Tls`]; plain connections are served too, as
//!   by a Redshift cluster without `require_ssl`), or `N` ([`Transport::Plain`]).
//! - A CancelRequest, plain or inside TLS, is forwarded to PostgreSQL unchanged: the greeting
//!   carries PostgreSQL's own BackendKeyData, so the key names a real backend.
//! - A StartupMessage is answered with Redshift's digest (13) or MD5 (5), per user, against
//!   the passwords registered with [`RedshiftUpstream::register`] (the AWS fake's, from its
//!   `on_issue` hook, with their expiry). A wrong, expired or unknown password gets 28P01
//!   `password authentication failed for user "…"` and a close, as from Redshift.
//! - The Redshift drivers' startup parameters PostgreSQL would refuse
//!   ([`REDSHIFT_ONLY_STARTUP_PARAMETERS`], `_pq_.*`) are stripped, everything received is
//!   recorded ([`RedshiftUpstream::startups`]), and the upstream logs in to PostgreSQL as one
//!   mapped role, [`BACKEND_ROLE`], for every Redshift user.
//! - The client gets AuthenticationOk and PostgreSQL's greeting rewritten as Redshift's
//!   ([`REDSHIFT_PARAMETERS`]), then the relay.
//! - A client that asks with `_pq_.compression=lz4` gets Redshift's wire compression
//!   ([`compress`]): `'z'` before the authentication request, then everything toward it as
//!   LZ4 blocks with a continuing 64 KiB dictionary, plain messages between blocks and `'k'`
//!   resets; [`CORRUPT_BLOCK_MARKER`] in a query makes it send a broken block.
//!
//! It makes the IAM + digest login testable end to end, with real queries behind it.

mod auth;
mod backend;
mod compress;
mod greeting;
mod wire;

use std::collections::HashMap;
use std::io::Result;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::SystemTime;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::pg::PgServer;
pub use auth::Method;
use backend::{Backend, Login};
pub use compress::CORRUPT_BLOCK_MARKER;
pub use greeting::REDSHIFT_PARAMETERS;
use wire::Io;

/// The PostgreSQL role every Redshift user's session runs as (created once per test run,
/// with a SCRAM password: the upstream answers PostgreSQL's SCRAM itself).
pub const BACKEND_ROLE: &str = "redshift_backend";
const BACKEND_PASSWORD: &str = "redshift-backend-pw-8";

/// Startup parameters the Redshift drivers send and PostgreSQL would refuse
/// ("unrecognized configuration parameter"); `_pq_.*` are stripped too.
pub const REDSHIFT_ONLY_STARTUP_PARAMETERS: [&str; 10] = [
    "client_protocol_version",
    "driver_version",
    "os_version",
    "plugin_name",
    "driver_discovery_version",
    "idp_type",
    "provider_name",
    "token_type",
    "identity_namespace",
    "idc_client_display_name",
];

/// Whether the upstream answers SSLRequest with TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `S` and TLS; plain connections are accepted too.
    Tls,
    /// `N`: plain only.
    Plain,
}

/// One StartupMessage the upstream received.
#[derive(Debug, Clone)]
pub struct Startup {
    /// The protocol version field (0x0003_0000 for 3.0).
    pub version: u32,
    /// Every parameter, in order, as received.
    pub received: Vec<(String, String)>,
    /// What went on to PostgreSQL (before `user` was replaced by the mapped role).
    pub forwarded: Vec<(String, String)>,
}

impl Startup {
    /// A received parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.received
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone)]
struct Password {
    password: String,
    expires: Option<SystemTime>,
    method: Method,
}

struct Shared {
    tls: Option<TlsAcceptor>,
    method: Method,
    backend: Backend,
    users: Mutex<HashMap<String, Password>>,
    startups: Mutex<Vec<Startup>>,
    cancels: AtomicUsize,
    startups_seen: AtomicUsize,
}

/// A running upstream; clones share it. It serves until the test's runtime ends.
#[derive(Clone)]
pub struct RedshiftUpstream {
    port: u16,
    shared: Arc<Shared>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RedshiftUpstream {
    /// Listens on 127.0.0.1 in front of `server`, asking users registered without a method
    /// (and unknown users) with `method`.
    pub async fn start(server: &PgServer, transport: Transport, method: Method) -> Self {
        static BACKEND_ROLE_MADE: OnceLock<()> = OnceLock::new();
        BACKEND_ROLE_MADE.get_or_init(|| server.set_login_password(BACKEND_ROLE, BACKEND_PASSWORD));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let shared = Arc::new(Shared {
            tls: (transport == Transport::Tls)
                .then(|| TlsAcceptor::from(server.pki().server_config())),
            method,
            backend: Backend {
                port: server.port(),
                tls: Arc::new(server.pki().client_config()),
                role: BACKEND_ROLE.to_owned(),
                password: BACKEND_PASSWORD.to_owned(),
            },
            users: Mutex::new(HashMap::new()),
            startups: Mutex::new(Vec::new()),
            cancels: AtomicUsize::new(0),
            startups_seen: AtomicUsize::new(0),
        });
        let serving = shared.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let shared = serving.clone();
                tokio::spawn(async move {
                    if let Err(e) = shared.serve(tcp).await {
                        eprintln!("redshift upstream: connection ended: {e}");
                    }
                });
            }
        });
        RedshiftUpstream { port, shared }
    }

    /// The port it listens on (127.0.0.1; the certificate names `localhost`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Accepts `password` for `user` (e.g. `IAM:alice`) until `expires`, asked with the
    /// upstream's default method. Replaces an earlier password.
    pub fn register(&self, user: &str, password: &str, expires: Option<SystemTime>) {
        self.register_with(user, password, expires, self.shared.method);
    }

    /// As [`RedshiftUpstream::register`], asked with `method`.
    pub fn register_with(
        &self,
        user: &str,
        password: &str,
        expires: Option<SystemTime>,
        method: Method,
    ) {
        let entry = Password {
            password: password.to_owned(),
            expires,
            method,
        };
        lock(&self.shared.users).insert(user.to_owned(), entry);
    }

    /// Every StartupMessage received so far, in order.
    pub fn startups(&self) -> Vec<Startup> {
        lock(&self.shared.startups).clone()
    }

    /// CancelRequests forwarded to PostgreSQL so far.
    pub fn cancels(&self) -> usize {
        self.shared.cancels.load(Ordering::SeqCst)
    }
}

impl Shared {
    /// One connection: first packets until a StartupMessage or a CancelRequest.
    async fn serve(&self, tcp: TcpStream) -> Result<()> {
        let mut client: Io = Box::new(tcp);
        let mut encrypted = false;
        loop {
            let (code, body) = wire::read_first_packet(&mut client).await?;
            match code {
                wire::SSL_REQUEST if !encrypted => match &self.tls {
                    Some(acceptor) => {
                        wire::send(&mut client, b"S").await?;
                        client = Box::new(acceptor.accept(client).await?);
                        encrypted = true;
                    }
                    None => wire::send(&mut client, b"N").await?,
                },
                wire::GSSENC_REQUEST if !encrypted => wire::send(&mut client, b"N").await?,
                wire::CANCEL_REQUEST => return self.forward_cancel(&body).await,
                version if version >> 16 == 3 => return self.session(client, version, &body).await,
                other => {
                    let refusal =
                        wire::fatal("08P01", &format!("unsupported first packet {other}"));
                    return wire::send(&mut client, &refusal).await;
                }
            }
        }
    }

    /// Sends the CancelRequest on to PostgreSQL, which reads it and closes.
    async fn forward_cancel(&self, key: &[u8]) -> Result<()> {
        if key.len() != 8 {
            return Err(wire::invalid(format!(
                "CancelRequest key of {} bytes",
                key.len()
            )));
        }
        let mut packet = 16u32.to_be_bytes().to_vec();
        packet.extend_from_slice(&wire::CANCEL_REQUEST.to_be_bytes());
        packet.extend_from_slice(key);
        let mut postgres = TcpStream::connect(("127.0.0.1", self.backend.port)).await?;
        wire::send(&mut postgres, &packet).await?;
        postgres.read_to_end(&mut Vec::new()).await?;
        self.cancels.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Password check, PostgreSQL login, greeting, relay.
    async fn session(&self, mut client: Io, version: u32, body: &[u8]) -> Result<()> {
        let received = wire::startup_params(body)?;
        let user = received
            .iter()
            .find(|(n, _)| n == "user")
            .map_or(String::new(), |(_, v)| v.clone());
        let forwarded: Vec<(String, String)> = received
            .iter()
            .filter(|(name, _)| {
                !name.starts_with("_pq_.")
                    && !REDSHIFT_ONLY_STARTUP_PARAMETERS.contains(&name.as_str())
            })
            .cloned()
            .collect();
        let compress = received
            .iter()
            .any(|(name, value)| name == "_pq_.compression" && value == "lz4");
        lock(&self.startups).push(Startup {
            version,
            received,
            forwarded: forwarded.clone(),
        });
        if compress {
            let seed = self.startups_seen.fetch_add(1, Ordering::SeqCst) as u64;
            client = Box::new(compress::Compressing::new(client, 0x9e37_79b9 + seed));
        }

        let known = lock(&self.users).get(&user).cloned();
        let method = known.as_ref().map_or(self.method, |p| p.method);
        let password = known.as_ref().map(|p| p.password.as_str());
        let answered = auth::challenge(&mut client, method, &user, password).await?;
        let current = known
            .as_ref()
            .is_some_and(|p| p.expires.is_none_or(|t| t > SystemTime::now()));
        if !(answered && current) {
            let text = format!("password authentication failed for user \"{user}\"");
            return wire::send(&mut client, &wire::fatal("28P01", &text)).await;
        }

        match self.backend.login(&forwarded).await? {
            Login::Refused(error) => wire::send(&mut client, &wire::message(b'E', &error)).await,
            Login::Ready(mut server, postgres_greeting) => {
                let hello = greeting::rewrite(&postgres_greeting, &user);
                wire::send(&mut client, &hello).await?;
                // Large reads toward the client, so compressed writes fill whole blocks.
                tokio::io::copy_bidirectional_with_sizes(&mut client, &mut server, 8192, 65536)
                    .await?;
                Ok(())
            }
        }
    }
}
