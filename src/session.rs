//! One client connection from its first byte to its close: negotiate, startup, credentials,
//! upstream, auth, greeting, relay (design section 2). Each step's failure becomes an
//! ErrorResponse with a SQLSTATE and a message the user can act on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::auth::PasswordAuthenticator;
use crate::cancel::CancelRegistry;
use crate::credentials::{CredentialError, CredentialRequest, CredentialSource, resolve_db_user};
use crate::protocol::startup::{self, StartupError};
use crate::protocol::{ErrorResponse, FirstPacket, StartupParams, messages};
use crate::relay::{self, RelayStats};
use crate::target::Target;
use crate::upstream::{self, UpstreamEndpoint, UpstreamError};

/// How long a refusal may take to write: a client that does not read is not waited for.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Redshift's default database, used when neither the target nor the client names one and
/// the user comes from the IAM identity.
const DEFAULT_DATABASE: &str = "dev";
/// At most this much client input is read and dropped while closing after a refusal.
const DISCARD_LIMIT: usize = 64 * 1024;

/// Everything a session needs to know about its target, shared by all its sessions.
#[derive(Debug)]
pub struct TargetContext {
    /// The parsed target.
    pub target: Target,
    /// Where its server is and how to reach it.
    pub endpoint: Arc<UpstreamEndpoint>,
    /// Where its credentials come from.
    pub credentials: Arc<dyn CredentialSource>,
    /// Backend keys of live sessions, for cancels.
    pub cancel: Arc<CancelRegistry>,
    /// How long a client may take to send its StartupMessage.
    pub startup_timeout: Duration,
}

/// How a session ended, for the close log line and metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The relay ran and both sides closed.
    Closed,
    /// A CancelRequest was handled.
    Cancel,
    /// The client connected and left without a StartupMessage (health checks, port scans).
    NoStartup,
    /// The client sent a bad first packet or none in time.
    ProtocolError,
    /// No credentials could be had.
    CredentialError,
    /// The server could not be reached or the TLS handshake failed.
    UpstreamError,
    /// The server refused the login (forwarded as it sent it).
    LoginRefused,
    /// The relay ended with an IO error on one side.
    RelayError,
}

impl Outcome {
    /// The metric/log label.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Closed => "closed",
            Outcome::Cancel => "cancel",
            Outcome::NoStartup => "no_startup",
            Outcome::ProtocolError => "protocol_error",
            Outcome::CredentialError => "credential_error",
            Outcome::UpstreamError => "upstream_error",
            Outcome::LoginRefused => "login_refused",
            Outcome::RelayError => "relay_error",
        }
    }
}

/// What the negotiation phase produced.
enum Negotiated {
    Startup(StartupParams),
    Cancel(crate::protocol::CancelKey),
    Gone,
}

/// Why the negotiation phase ended without a StartupMessage.
#[derive(Debug, thiserror::Error)]
enum NegotiationError {
    #[error(transparent)]
    Packet(#[from] StartupError),
    #[error("{0} sent twice: send it once, before the StartupMessage")]
    Repeated(&'static str),
    #[error("connection lost during startup: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves one client connection to completion. Never panics on client or server input and
/// always closes both sockets before returning.
pub async fn serve<C>(mut client: C, peer: SocketAddr, ctx: Arc<TargetContext>) -> Outcome
where
    C: AsyncRead + AsyncWrite + Unpin + Send,
{
    let started = Instant::now();
    let target = ctx.target.label();
    let params = match tokio::time::timeout(ctx.startup_timeout, negotiate(&mut client)).await {
        Err(_) => {
            let message = format!(
                "no startup packet received within {:?} (--startup-timeout): the client must send its StartupMessage after connecting",
                ctx.startup_timeout
            );
            tracing::info!(target_name = target, client = %peer, "startup timed out");
            refuse(&mut client, ErrorResponse::fatal("08P01", message)).await;
            return Outcome::ProtocolError;
        }
        Ok(Err(NegotiationError::Io(e))) => {
            tracing::debug!(target_name = target, client = %peer, error = %e, "client left during startup");
            return Outcome::NoStartup;
        }
        Ok(Err(e)) => {
            tracing::info!(target_name = target, client = %peer, error = %e, "bad startup packet");
            refuse(&mut client, ErrorResponse::fatal("08P01", e.to_string())).await;
            return Outcome::ProtocolError;
        }
        Ok(Ok(Negotiated::Gone)) => return Outcome::NoStartup,
        Ok(Ok(Negotiated::Cancel(key))) => {
            let outcome = ctx.cancel.cancel(key).await;
            tracing::info!(target_name = target, client = %peer, outcome = outcome.as_str(), "cancel request");
            let _ = client.shutdown().await;
            return Outcome::Cancel;
        }
        Ok(Ok(Negotiated::Startup(params))) => params,
    };
    open_session(client, peer, &ctx, params, started).await
}

/// Reads first packets until the StartupMessage, refusing SSL and GSS encryption (client
/// TLS is configured in a later step of the roadmap).
async fn negotiate<C>(client: &mut C) -> Result<Negotiated, NegotiationError>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let mut ssl_seen = false;
    let mut gss_seen = false;
    loop {
        let mut length = [0u8; 4];
        match client.read(&mut length[..1]).await? {
            0 => return Ok(Negotiated::Gone),
            _ => client.read_exact(&mut length[1..]).await?,
        };
        let len = startup::packet_len(length)?;
        let mut packet = vec![0u8; len];
        packet[..4].copy_from_slice(&length);
        client.read_exact(&mut packet[4..]).await?;
        match startup::parse_first_packet(&packet)? {
            FirstPacket::SslRequest if ssl_seen => {
                return Err(NegotiationError::Repeated("SSLRequest"));
            }
            FirstPacket::GssEncRequest if gss_seen => {
                return Err(NegotiationError::Repeated("GSSENCRequest"));
            }
            FirstPacket::SslRequest => {
                ssl_seen = true;
                client.write_all(&[messages::REFUSE_ENCRYPTION]).await?;
            }
            FirstPacket::GssEncRequest => {
                gss_seen = true;
                client.write_all(&[messages::REFUSE_ENCRYPTION]).await?;
            }
            FirstPacket::Cancel(key) => return Ok(Negotiated::Cancel(key)),
            FirstPacket::Startup(params) => return Ok(Negotiated::Startup(params)),
        }
    }
}

/// Steps 2–7 for a client that sent a StartupMessage.
async fn open_session<C>(
    mut client: C,
    peer: SocketAddr,
    ctx: &TargetContext,
    params: StartupParams,
    started: Instant,
) -> Outcome
where
    C: AsyncRead + AsyncWrite + Unpin + Send,
{
    let target = ctx.target.label();
    let request = match credential_request(ctx, params.get("user"), params.get("database")) {
        Ok(request) => request,
        Err(e) => {
            tracing::info!(target_name = target, client = %peer, error = %e, "database user refused");
            refuse(
                &mut client,
                ErrorResponse::fatal(e.sqlstate(), e.to_string()),
            )
            .await;
            return Outcome::CredentialError;
        }
    };
    let CredentialRequest { db_user, database } = request.clone();
    let credentials = match ctx.credentials.credentials(&request).await {
        Ok(credentials) => credentials,
        Err(e) => {
            tracing::warn!(target_name = target, client = %peer, db_user = db_user.as_deref().unwrap_or(""), api = ctx.credentials.api(), reason = e.reason(), error = %e, "no credentials");
            refuse(
                &mut client,
                ErrorResponse::fatal(e.sqlstate(), e.to_string()),
            )
            .await;
            return Outcome::CredentialError;
        }
    };

    let (upstream_params, dropped) =
        upstream::upstream_startup_params(&params.params, &credentials.user, &database);
    for name in &dropped {
        tracing::debug!(
            target_name = target,
            parameter = name,
            "dropped protocol extension parameter"
        );
    }
    let mut auth = PasswordAuthenticator::new(credentials.user.clone(), credentials.password);
    let address = ctx.endpoint.address();
    let login = async {
        let mut server = upstream::connect(&ctx.endpoint).await?;
        let greeting = upstream::login(&mut server, &address, &upstream_params, &mut auth).await?;
        Ok::<_, UpstreamError>((server, greeting))
    };
    let (mut server, greeting) = match login.await {
        Ok(ok) => ok,
        Err(UpstreamError::Server {
            forward,
            sqlstate,
            message,
        }) => {
            tracing::info!(target_name = target, client = %peer, db_user = %credentials.user, sqlstate = %sqlstate, message = %message, "server refused the login");
            // 28P01 invalid_password / 28000 invalid_authorization: this password is no good.
            if sqlstate.starts_with("28") {
                ctx.credentials.invalidate(&request);
            }
            forward_and_close(&mut client, &forward).await;
            return Outcome::LoginRefused;
        }
        Err(e) => {
            tracing::warn!(target_name = target, client = %peer, upstream = %address, kind = e.kind(), error = %e, "upstream login failed");
            if let Some(error) = e.client_error() {
                refuse(&mut client, error).await;
            }
            return Outcome::UpstreamError;
        }
    };

    let mut hello = BytesMut::with_capacity(greeting.forward.len() + 64);
    if params.minor_version > 0 || !dropped.is_empty() {
        messages::negotiate_protocol_version(startup::PROTOCOL_3_0, &dropped, &mut hello);
    }
    hello.extend_from_slice(&greeting.forward);
    // Registered before the client sees BackendKeyData, so a cancel sent right away finds it.
    let _registration = greeting
        .backend_key
        .map(|key| ctx.cancel.register(key, ctx.endpoint.clone()));
    if let Err(e) = client.write_all(&hello).await {
        tracing::debug!(target_name = target, client = %peer, error = %e, "client left before the greeting");
        return Outcome::RelayError;
    }
    let setup = started.elapsed();
    tracing::info!(
        target_name = target,
        client = %peer,
        db_user = %credentials.user,
        database = %database,
        server_version = greeting.server_version.as_deref().unwrap_or(""),
        setup_ms = setup.as_millis() as u64,
        "connection opened"
    );

    let result = relay::relay(&mut client, &mut server, &greeting.after).await;
    let duration = started.elapsed();
    let (outcome, stats, error) = match result {
        Ok(stats) => (Outcome::Closed, stats, None),
        Err(e) => (
            Outcome::RelayError,
            RelayStats::default(),
            Some(e.to_string()),
        ),
    };
    tracing::info!(
        target_name = target,
        client = %peer,
        db_user = %credentials.user,
        duration_ms = duration.as_millis() as u64,
        bytes_client_to_server = stats.client_to_server.bytes,
        bytes_server_to_client = stats.server_to_client.bytes,
        queries = stats.client_to_server.queries,
        terminated = stats.client_terminated,
        outcome = outcome.as_str(),
        error = error.as_deref().unwrap_or(""),
        "connection closed"
    );
    outcome
}

/// Decides the database user and database for a client that sent `client_user` and
/// `client_database` (design section 2, step 2). As PostgreSQL does, the database defaults to
/// the user name; with an IAM-derived user, to Redshift's default database.
pub fn credential_request(
    ctx: &TargetContext,
    client_user: Option<&str>,
    client_database: Option<&str>,
) -> Result<CredentialRequest, CredentialError> {
    let db_user = resolve_db_user(
        ctx.target.db_user.as_deref(),
        client_user,
        &ctx.target.allowed_users,
        &format!("target {}", ctx.target.label()),
        ctx.credentials.user_from_identity(),
    )?;
    let database = ctx
        .target
        .database
        .clone()
        .or_else(|| client_database.filter(|d| !d.is_empty()).map(str::to_owned))
        .or_else(|| db_user.clone())
        .unwrap_or_else(|| DEFAULT_DATABASE.to_owned());
    Ok(CredentialRequest { db_user, database })
}

/// Sends a proxy-owned ErrorResponse and closes the client connection.
async fn refuse<C>(client: &mut C, error: ErrorResponse)
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let mut out = BytesMut::new();
    error.encode(&mut out);
    forward_and_close(client, &out).await;
}

/// Writes `bytes` (best effort, bounded in time) and shuts the connection down. Whatever
/// the client still sends is read and discarded until it closes (briefly): closing a socket
/// with unread input makes the kernel send a reset, which can destroy the error message
/// before the client reads it.
async fn forward_and_close<C>(client: &mut C, bytes: &[u8])
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, async {
        client.write_all(bytes).await?;
        client.shutdown().await?;
        let mut scratch = [0u8; 1024];
        let mut discarded = 0usize;
        while discarded < DISCARD_LIMIT {
            match client.read(&mut scratch).await? {
                0 => break,
                n => discarded += n,
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
}
