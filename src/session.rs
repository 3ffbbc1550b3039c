//! One client connection from its first byte to its close: negotiate, startup, credentials,
//! upstream, auth, greeting, relay (design section 2). Each step's failure becomes an
//! ErrorResponse with a SQLSTATE and a message the user can act on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::auth::PasswordAuthenticator;
use crate::cancel::CancelRegistry;
use crate::client_auth::{self, ClientAuthError, ClientPolicy};
use crate::client_stream::{ClientAddr, ClientStream};
use crate::client_tls::ClientTls;
use crate::credentials::{
    CredentialError, CredentialRequest, CredentialSource, Origin, resolve_db_user,
};
use crate::metrics::TargetMetrics;
use crate::protocol::startup::{self, StartupError};
use crate::protocol::{ErrorResponse, FirstPacket, StartupParams, messages};
use crate::relay::{self, LiveCounters, RelayControl, RelayEnd, RelayStats};
use crate::target::Target;
use crate::upstream::{self, UpstreamEndpoint, UpstreamError};

/// How long a refusal may take to write: a client that does not read is not waited for.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Redshift's default database, used when neither the target nor the client names one and
/// the user comes from the IAM identity.
const DEFAULT_DATABASE: &str = "dev";
/// At most this much client input is read and dropped while closing after a refusal.
const DISCARD_LIMIT: usize = 64 * 1024;
/// SQLSTATE invalid_password: what the server answers a wrong or expired password with.
const INVALID_PASSWORD: &str = "28P01";

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
    /// End a session idle this long (`--idle-timeout`).
    pub idle_timeout: Option<Duration>,
    /// The target's metric handles.
    pub metrics: TargetMetrics,
    /// Client TLS and client authentication (the same for every target).
    pub client: Arc<ClientPolicy>,
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
    /// The proxy shut down while the session was open.
    Shutdown,
    /// The session was idle for `--idle-timeout`.
    IdleTimeout,
    /// The target was at `--max-connections`.
    TooManyConnections,
    /// The client did not authenticate to the proxy (`--client-auth`), or a plain-text
    /// client met `--client-sslmode require`.
    ClientAuthFailed,
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
            Outcome::Shutdown => "shutdown",
            Outcome::IdleTimeout => "idle_timeout",
            Outcome::TooManyConnections => "too_many_connections",
            Outcome::ClientAuthFailed => "client_auth_failed",
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
    #[error("client TLS handshake failed: {0}")]
    Handshake(std::io::Error),
}

impl NegotiationError {
    /// The SQLSTATE the client is refused with: `0A000` for a protocol version the proxy
    /// does not speak, `08P01` for every other broken negotiation.
    fn sqlstate(&self) -> &'static str {
        match self {
            NegotiationError::Packet(e) => e.sqlstate(),
            _ => "08P01",
        }
    }
}

/// What one connection did, for its close log line and the metrics.
#[derive(Debug)]
struct Summary {
    outcome: Outcome,
    /// The SQLSTATE the client was sent, if the proxy or the server refused it.
    sqlstate: Option<String>,
    /// The user name the server saw.
    db_user: Option<String>,
    stats: RelayStats,
}

impl Summary {
    fn new(outcome: Outcome) -> Summary {
        Summary {
            outcome,
            sqlstate: None,
            db_user: None,
            stats: RelayStats::default(),
        }
    }

    fn refused(outcome: Outcome, sqlstate: &str) -> Summary {
        Summary {
            sqlstate: Some(sqlstate.to_owned()),
            ..Summary::new(outcome)
        }
    }
}

/// One count in the active-connections gauge, taken back when dropped: also when a stop
/// drops a session that is still logging in after its grace period, so the gauge returns to
/// 0 whatever ends the session.
struct ActiveConnection(prometheus_client::metrics::gauge::Gauge);

impl ActiveConnection {
    fn open(gauge: &prometheus_client::metrics::gauge::Gauge) -> ActiveConnection {
        gauge.inc();
        ActiveConnection(gauge.clone())
    }
}

impl Drop for ActiveConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Serves one client connection to completion and logs one line when it closes. Never
/// panics on client or server input and always closes both sockets before returning.
/// `shutdown` ends an open session with ErrorResponse 57P01. A client that was not
/// `admitted` (its target is at `--max-connections`) may still cancel, but its
/// StartupMessage is refused with 53300.
pub async fn serve<C>(
    client: C,
    peer: ClientAddr,
    ctx: Arc<TargetContext>,
    shutdown: CancellationToken,
    admitted: bool,
) -> Outcome
where
    C: AsyncRead + AsyncWrite + Unpin + Send,
{
    let started = Instant::now();
    let active = ActiveConnection::open(&ctx.metrics.active);
    let mut client = ClientStream::Plain(client);
    let summary = serve_inner(&mut client, peer, &ctx, shutdown, started, admitted).await;
    drop(active);
    let duration = started.elapsed();
    ctx.metrics.connection_closed(summary.outcome.as_str());
    if summary.outcome != Outcome::NoStartup && summary.outcome != Outcome::Cancel {
        let stats = &summary.stats;
        tracing::info!(
            target_name = ctx.target.label(),
            client = %peer,
            db_user = summary.db_user.as_deref().unwrap_or(""),
            duration_ms = duration.as_millis() as u64,
            bytes_client_to_server = stats.client_to_server.bytes,
            bytes_server_to_client = stats.server_to_client.bytes,
            queries = stats.client_to_server.queries,
            outcome = summary.outcome.as_str(),
            sqlstate = summary.sqlstate.as_deref().unwrap_or(""),
            "connection closed"
        );
    }
    summary.outcome
}

async fn serve_inner<C>(
    client: &mut ClientStream<C>,
    peer: ClientAddr,
    ctx: &TargetContext,
    shutdown: CancellationToken,
    started: Instant,
    admitted: bool,
) -> Summary
where
    C: AsyncRead + AsyncWrite + Unpin + Send,
{
    let target = ctx.target.label();
    let tls = ctx.client.tls.as_deref();
    let params = match tokio::time::timeout(ctx.startup_timeout, negotiate(client, tls)).await {
        Err(_) => {
            let message = format!(
                "no startup packet received within {:?} (--startup-timeout): the client must send its StartupMessage after connecting",
                ctx.startup_timeout
            );
            refuse(client, ErrorResponse::fatal("08P01", message)).await;
            return Summary::refused(Outcome::ProtocolError, "08P01");
        }
        Ok(Err(NegotiationError::Io(e))) => {
            tracing::debug!(target_name = target, client = %peer, error = %e, "client left during startup");
            return Summary::new(Outcome::NoStartup);
        }
        Ok(Err(NegotiationError::Handshake(e))) => {
            // Nothing can be sent: the client expects TLS and the TLS session failed.
            tracing::info!(target_name = target, client = %peer, error = %e, "client TLS handshake failed");
            return Summary::new(Outcome::ProtocolError);
        }
        Ok(Err(e)) => {
            tracing::info!(target_name = target, client = %peer, error = %e, "bad startup packet");
            let sqlstate = e.sqlstate();
            refuse(client, ErrorResponse::fatal(sqlstate, e.to_string())).await;
            return Summary::refused(Outcome::ProtocolError, sqlstate);
        }
        Ok(Ok(Negotiated::Gone)) => return Summary::new(Outcome::NoStartup),
        Ok(Ok(Negotiated::Cancel(key))) => {
            let outcome = ctx.cancel.cancel(key).await;
            ctx.metrics.cancel_request(outcome.as_str());
            tracing::info!(target_name = target, client = %peer, outcome = outcome.as_str(), "cancel request");
            let _ = client.shutdown().await;
            return Summary::new(Outcome::Cancel);
        }
        Ok(Ok(Negotiated::Startup(params))) => params,
    };
    if !admitted {
        let message = format!(
            "sorry, too many clients already: target {target} is at the proxy's --max-connections; try again later"
        );
        tracing::info!(target_name = target, client = %peer, "refused: --max-connections reached");
        refuse(client, ErrorResponse::fatal("53300", message)).await;
        return Summary::refused(Outcome::TooManyConnections, "53300");
    }
    if let Err(summary) = admit_client(client, peer, ctx, &params, started).await {
        return summary;
    }
    open_session(client, peer, ctx, params, started, shutdown).await
}

/// `--client-sslmode require` and `--client-auth` (design section 2, before step 3): the
/// client is refused before any credential is fetched or the server is contacted.
async fn admit_client<C>(
    client: &mut ClientStream<C>,
    peer: ClientAddr,
    ctx: &TargetContext,
    params: &StartupParams,
    started: Instant,
) -> Result<(), Summary>
where
    C: AsyncRead + AsyncWrite + Unpin + Send,
{
    let target = ctx.target.label();
    if ctx.client.require_tls && !client.is_tls() && !peer.is_local_socket() {
        tracing::info!(target_name = target, client = %peer, "refused: plain-text client and --client-sslmode require");
        let error = ErrorResponse::fatal(
            "08P01",
            "this proxy requires TLS (--client-sslmode require): connect with sslmode=require (or verify-ca, verify-full)",
        );
        refuse(client, error).await;
        return Err(Summary::refused(Outcome::ClientAuthFailed, "08P01"));
    }
    let user = params.get("user");
    // One --startup-timeout from accept covers the StartupMessage and client authentication
    // together, so a client that never answers holds its --max-connections slot no longer.
    let deadline = tokio::time::Instant::from_std(started + ctx.startup_timeout);
    let authenticated = tokio::time::timeout_at(deadline, async {
        let certificate = client.peer_certificate().cloned();
        client_auth::authenticate(&ctx.client.auth, client, user, certificate.as_ref()).await
    })
    .await;
    let error = match authenticated {
        Ok(Ok(_)) => return Ok(()),
        Ok(Err(ClientAuthError::Gone)) => {
            tracing::debug!(target_name = target, client = %peer, "client left during client authentication");
            return Err(Summary::new(Outcome::ClientAuthFailed));
        }
        Ok(Err(e)) => e,
        Err(_) => ClientAuthError::Protocol(format!(
            "client authentication not completed within {:?} (--startup-timeout)",
            ctx.startup_timeout
        )),
    };
    let known = match &error {
        ClientAuthError::Password { known, .. } => Some(*known),
        _ => None,
    };
    tracing::info!(target_name = target, client = %peer, user = user.unwrap_or(""), known_user = ?known, sqlstate = error.sqlstate(), error = %error, "client authentication failed");
    if let Some(reason) = error.metric_reason() {
        ctx.metrics.auth_failure(reason);
    }
    let sqlstate = error.sqlstate();
    let mut response = ErrorResponse::fatal(sqlstate, error.to_string());
    if let Some(hint) = error.hint() {
        response = response.with_hint(hint);
    }
    refuse(client, response).await;
    Err(Summary::refused(Outcome::ClientAuthFailed, sqlstate))
}

/// Reads first packets until the StartupMessage. SSLRequest gets `S` and a TLS handshake
/// when client TLS is configured (`tls`), else `N`; GSSENCRequest always gets `N`.
async fn negotiate<C>(
    client: &mut ClientStream<C>,
    tls: Option<&ClientTls>,
) -> Result<Negotiated, NegotiationError>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let mut ssl_seen = false;
    let mut gss_seen = false;
    loop {
        let mut length = [0u8; 4];
        if client.read(&mut length[..1]).await? == 0 {
            return Ok(Negotiated::Gone);
        }
        fill(client, &mut length, 1, startup::MIN_STARTUP_PACKET_LEN).await?;
        let len = startup::packet_len(length)?;
        let mut packet = vec![0u8; len];
        packet[..4].copy_from_slice(&length);
        fill(client, &mut packet, 4, len).await?;
        match startup::parse_first_packet(&packet)? {
            FirstPacket::SslRequest if ssl_seen => {
                return Err(NegotiationError::Repeated("SSLRequest"));
            }
            FirstPacket::GssEncRequest if gss_seen => {
                return Err(NegotiationError::Repeated("GSSENCRequest"));
            }
            FirstPacket::SslRequest => {
                ssl_seen = true;
                match tls {
                    Some(tls) if !client.is_tls() => {
                        client.write_all(&[messages::ACCEPT_ENCRYPTION]).await?;
                        client.flush().await?;
                        client
                            .start_tls(tls.acceptor())
                            .await
                            .map_err(NegotiationError::Handshake)?;
                    }
                    _ => client.write_all(&[messages::REFUSE_ENCRYPTION]).await?,
                }
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

/// Reads into `buf` after its first `filled` bytes until it is full. An end of stream part
/// way through is an incomplete packet (a protocol error, as PostgreSQL logs it), unlike a
/// client that leaves between packets.
async fn fill<C>(
    client: &mut C,
    buf: &mut [u8],
    mut filled: usize,
    expected: usize,
) -> Result<(), NegotiationError>
where
    C: AsyncRead + Unpin,
{
    while filled < buf.len() {
        match client.read(&mut buf[filled..]).await? {
            0 => {
                let got = filled;
                return Err(StartupError::Truncated { expected, got }.into());
            }
            n => filled += n,
        }
    }
    Ok(())
}

/// Steps 2–7 for a client that sent a StartupMessage.
async fn open_session<C>(
    client: &mut C,
    peer: ClientAddr,
    ctx: &TargetContext,
    params: StartupParams,
    started: Instant,
    shutdown: CancellationToken,
) -> Summary
where
    C: AsyncRead + AsyncWrite + Unpin + Send,
{
    let target = ctx.target.label();
    let request = match credential_request(ctx, params.get("user"), params.get("database")) {
        Ok(request) => request,
        Err(e) => {
            tracing::info!(target_name = target, client = %peer, error = %e, "database user refused");
            if e.sqlstate().starts_with("28") {
                ctx.metrics.auth_failure(e.reason());
            }
            refuse(client, ErrorResponse::fatal(e.sqlstate(), e.to_string())).await;
            return Summary::refused(Outcome::CredentialError, e.sqlstate());
        }
    };
    let mut credentials = match ctx.credentials.credentials(&request).await {
        Ok(credentials) => credentials,
        Err(e) => return no_credentials(client, peer, ctx, &request, e).await,
    };

    // A password served from the cache may have expired or been replaced since it was
    // fetched: when the server refuses it as a wrong password (28P01), it is forgotten and
    // the login tried once more with fresh credentials before the client hears of it.
    let mut retried = false;
    let (mut server, greeting, dropped) = loop {
        let (upstream_params, dropped) =
            upstream::upstream_startup_params(&params.params, &credentials.user, &request.database);
        if !retried {
            for name in &dropped {
                tracing::debug!(
                    target_name = target,
                    parameter = name,
                    "dropped protocol extension parameter"
                );
            }
        }
        let mut auth =
            PasswordAuthenticator::new(credentials.user.clone(), credentials.password.clone());
        let address = ctx.endpoint.address();
        let login = upstream::connect_and_login(&ctx.endpoint, &upstream_params, &mut auth);
        let db_user = Some(credentials.user.clone());
        match login.await {
            Ok((server, greeting)) => break (server, greeting, dropped),
            Err(UpstreamError::Server {
                forward,
                sqlstate,
                message,
            }) => {
                tracing::info!(target_name = target, client = %peer, db_user = %credentials.user, sqlstate = %sqlstate, message = %message, retried, "server refused the login");
                // 28P01 invalid_password / 28000 invalid_authorization: this password is no good.
                if sqlstate.starts_with("28") {
                    ctx.credentials.invalidate(&request, &credentials);
                    ctx.metrics.auth_failure("server_rejected");
                }
                if sqlstate == INVALID_PASSWORD && credentials.origin == Origin::Cached && !retried
                {
                    retried = true;
                    tracing::info!(
                        target_name = target,
                        client = %peer,
                        db_user = %credentials.user,
                        api = ctx.credentials.api(),
                        "the server refused a cached password (expired or replaced since it was fetched): fetching fresh credentials and logging in once more"
                    );
                    credentials = match ctx.credentials.credentials(&request).await {
                        Ok(fresh) => fresh,
                        Err(e) => return no_credentials(client, peer, ctx, &request, e).await,
                    };
                    continue;
                }
                forward_and_close(client, &forward).await;
                return Summary {
                    db_user,
                    ..Summary::refused(Outcome::LoginRefused, &sqlstate)
                };
            }
            Err(e) => {
                tracing::warn!(target_name = target, client = %peer, upstream = %address, kind = e.kind(), error = %e, "upstream login failed");
                if let UpstreamError::Auth(auth_error) = &e {
                    ctx.metrics.auth_failure(auth_error.reason());
                }
                let mut summary = Summary::new(Outcome::UpstreamError);
                if let Some(error) = e.client_error() {
                    summary.sqlstate = Some(error.code.to_owned());
                    refuse(client, error).await;
                }
                return Summary { db_user, ..summary };
            }
        }
    };
    let db_user = Some(credentials.user.clone());

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
        return Summary {
            db_user,
            ..Summary::new(Outcome::RelayError)
        };
    }
    let setup = started.elapsed();
    ctx.metrics.setup_seconds.observe(setup.as_secs_f64());
    tracing::info!(
        target_name = target,
        client = %peer,
        db_user = %credentials.user,
        database = %request.database,
        server_version = greeting.server_version.as_deref().unwrap_or(""),
        setup_ms = setup.as_millis() as u64,
        "connection opened"
    );

    let control = RelayControl {
        up: LiveCounters {
            bytes: ctx.metrics.bytes_up.clone(),
            messages: ctx.metrics.messages_up.clone(),
            queries: ctx.metrics.queries.clone(),
        },
        down: LiveCounters {
            bytes: ctx.metrics.bytes_down.clone(),
            messages: ctx.metrics.messages_down.clone(),
            queries: Default::default(),
        },
        shutdown,
        idle_timeout: ctx.idle_timeout,
    };
    let relay_started = Instant::now();
    let result = relay::relay(client, &mut server, &greeting.after, &control).await;
    ctx.metrics
        .session_seconds
        .observe(relay_started.elapsed().as_secs_f64());
    let stats = match result {
        Ok(stats) => stats,
        Err(e) => {
            tracing::info!(target_name = target, client = %peer, error = %e, "relay ended with an error");
            return Summary {
                db_user,
                ..Summary::new(Outcome::RelayError)
            };
        }
    };
    let (outcome, farewell) = match (stats.end, ctx.idle_timeout) {
        (RelayEnd::Closed, _) => (Outcome::Closed, None),
        (RelayEnd::Shutdown, _) => (
            Outcome::Shutdown,
            Some(ErrorResponse::fatal(
                "57P01",
                "terminating connection because the proxy is shutting down: reconnect to continue",
            )),
        ),
        (RelayEnd::Idle, limit) => (
            Outcome::IdleTimeout,
            Some(ErrorResponse::fatal(
                "57P05",
                format!(
                    "terminating connection due to idle-session timeout: no activity for {:?} (--idle-timeout)",
                    limit.unwrap_or_default()
                ),
            )),
        ),
    };
    let mut summary = Summary {
        outcome,
        sqlstate: None,
        db_user,
        stats,
    };
    if let Some(error) = farewell {
        // Only between messages: a proxy message inside a half-sent server message would
        // corrupt the client's stream, so then the connection is just closed.
        if stats.client_at_boundary {
            summary.sqlstate = Some(error.code.to_owned());
            let mut out = BytesMut::new();
            error.encode(&mut out);
            let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, client.write_all(&out)).await;
        }
        let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, client.shutdown()).await;
    }
    summary
}

/// Refuses a client for which no credentials could be had: 28000 when a permission or an
/// identity is wrong, 08001 when AWS cannot be reached (the error's own SQLSTATE).
async fn no_credentials<C>(
    client: &mut C,
    peer: ClientAddr,
    ctx: &TargetContext,
    request: &CredentialRequest,
    e: CredentialError,
) -> Summary
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let target = ctx.target.label();
    tracing::warn!(target_name = target, client = %peer, db_user = request.db_user.as_deref().unwrap_or(""), api = ctx.credentials.api(), reason = e.reason(), error = %e, "no credentials");
    if e.sqlstate().starts_with("28") {
        ctx.metrics.auth_failure(e.reason());
    }
    refuse(client, ErrorResponse::fatal(e.sqlstate(), e.to_string())).await;
    Summary::refused(Outcome::CredentialError, e.sqlstate())
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
