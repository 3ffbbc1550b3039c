//! One client connection from its first byte to its close, in steps, one file each:
//!
//! 1. [`negotiate`]: SSLRequest (and the client TLS handshake) or direct TLS, GSSENCRequest,
//!    CancelRequest, up to the StartupMessage;
//! 2. [`admit`]: `--max-connections`, `--client-sslmode require` and client authentication;
//! 3. [`login`]: credentials, then the server's connection and login, with one retry when
//!    the server refuses a cached password;
//! 4. [`greet`]: the server's greeting to the client, the cancel key registered first;
//! 5. [`relay`]: the hand-off to the relay, and the farewell when the proxy ends a session.
//!
//! Each step that fails refuses the client through [`Session::refuse`]: one ErrorResponse
//! with a SQLSTATE and a message the user can act on, one log line, one outcome. Every log
//! line of a connection is inside one `connection` span that names the target, the client's
//! address, its user and a connection id, so no line repeats them.

mod admit;
mod greet;
mod login;
mod negotiate;
mod relay;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::cancel::CancelRouter;
use crate::client::auth::ClientPolicy;
use crate::client::stream::{ClientAddr, ClientStream};
use crate::credentials::{CredentialError, CredentialRequest, CredentialSource, resolve_db_user};
use crate::net::either::MaybeTls;
use crate::net::pg_stream::PgStream;
use crate::ops::metrics::TargetMetrics;
use crate::protocol::ErrorResponse;
use crate::relay::RelayStats;
use crate::target::Target;
use crate::upstream::UpstreamEndpoint;
use crate::upstream::warm::WarmPool;

/// Redshift's default database, used when neither the target nor the client names one and
/// the user comes from the IAM identity.
const DEFAULT_DATABASE: &str = "dev";

/// Numbers connections in log lines, so the lines of one connection can be told apart.
static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

/// Everything a session needs to know about its target, shared by all its sessions.
#[derive(Debug)]
pub struct TargetContext {
    /// The parsed target.
    pub target: Target,
    /// Where its server is and how to reach it.
    pub endpoint: Arc<UpstreamEndpoint>,
    /// Where its credentials come from.
    pub credentials: Arc<dyn CredentialSource>,
    /// Cancel keys of live sessions, and the way to the peers' sessions.
    pub cancel: Arc<CancelRouter>,
    /// How long a client may take to send its StartupMessage.
    pub startup_timeout: Duration,
    /// End a session idle this long (`--idle-timeout`).
    pub idle_timeout: Option<Duration>,
    /// The target's metric handles.
    pub metrics: TargetMetrics,
    /// Client TLS and client authentication (the same for every target).
    pub client: Arc<ClientPolicy>,
    /// The target's warm upstream sessions (`--warm-sessions`); `None` when it keeps none.
    pub warm: Option<Arc<WarmPool>>,
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

    /// What the log says when a connection is refused with this outcome.
    fn refusal(self) -> &'static str {
        match self {
            Outcome::ProtocolError => "bad startup packet",
            Outcome::TooManyConnections => "refused: --max-connections reached",
            Outcome::ClientAuthFailed => "client authentication failed",
            Outcome::CredentialError => "no credentials",
            Outcome::UpstreamError => "upstream login failed",
            Outcome::LoginRefused => "server refused the login",
            _ => "connection refused",
        }
    }
}

/// What one connection did, for its close log line and the metrics.
#[derive(Debug)]
struct Summary {
    outcome: Outcome,
    /// The SQLSTATE the client was sent, if the proxy or the server refused it.
    sqlstate: Option<String>,
    stats: RelayStats,
}

impl Summary {
    fn new(outcome: Outcome) -> Summary {
        Summary {
            outcome,
            sqlstate: None,
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

/// What every step of one connection shares: the client, framed; the target; and when the
/// connection was accepted (`--startup-timeout` counts from then).
struct Session<'a, C> {
    client: PgStream<ClientStream<C>>,
    /// The `tls-server-end-point` data of the certificate this connection's handshake
    /// served, for SCRAM-SHA-256-PLUS; `None` on plain text.
    end_point: Option<Arc<[u8]>>,
    peer: ClientAddr,
    ctx: &'a TargetContext,
    started: Instant,
}

impl<C> Session<'_, C>
where
    C: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// The one way a step refuses the client: logs the refusal once (a warning when the
    /// proxy's own set-up is at fault, else information), sends the ErrorResponse, closes,
    /// and says how the connection ended.
    async fn refuse(&mut self, outcome: Outcome, error: ErrorResponse) -> Summary {
        let event = outcome.refusal();
        match outcome {
            Outcome::CredentialError | Outcome::UpstreamError => {
                tracing::warn!(sqlstate = error.code, error = %error.message, "{event}")
            }
            _ => tracing::info!(sqlstate = error.code, error = %error.message, "{event}"),
        }
        self.client.refuse(&error).await;
        Summary::refused(outcome, error.code)
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
    let span = tracing::info_span!(
        "connection",
        id = NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed),
        target_name = ctx.target.label(),
        client = %peer,
        user = tracing::field::Empty,
        db_user = tracing::field::Empty,
        known_user = tracing::field::Empty,
    );
    let started = Instant::now();
    let active = ActiveConnection::open(&ctx.metrics.active);
    let mut session = Session {
        client: PgStream::new(MaybeTls::Plain(client)),
        end_point: None,
        peer,
        ctx: &ctx,
        started,
    };
    // The span is entered for the steps before the relay and for log lines, not around the
    // relay itself, which is polled for every message and logs nothing while it runs.
    let summary = match session.open(admitted).instrument(span.clone()).await {
        Ok(greeted) => session.relay(greeted, shutdown, &span).await,
        Err(summary) => summary,
    };
    drop(active);
    let duration = started.elapsed();
    ctx.metrics.connection_closed(summary.outcome.as_str());
    if summary.outcome != Outcome::NoStartup && summary.outcome != Outcome::Cancel {
        let stats = &summary.stats;
        span.in_scope(|| {
            tracing::info!(
                duration_ms = duration.as_millis() as u64,
                bytes_client_to_server = stats.client_to_server.bytes,
                bytes_server_to_client = stats.server_to_client.bytes,
                queries = stats.client_to_server.queries,
                outcome = summary.outcome.as_str(),
                sqlstate = summary.sqlstate.as_deref().unwrap_or(""),
                "connection closed"
            )
        });
    }
    summary.outcome
}

impl<C> Session<'_, C>
where
    C: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// The steps before the relay, in order; each returns the summary when the connection
    /// ends there.
    async fn open(&mut self, admitted: bool) -> Result<greet::Greeted, Summary> {
        let params = self.negotiate().await?;
        if let Some(user) = params.get("user") {
            tracing::Span::current().record("user", user);
        }
        self.admit(&params, admitted).await?;
        let logged_in = self.login(&params).await?;
        self.greet(&params, logged_in).await
    }
}

/// Decides the database user and database for a client that sent `client_user` and
/// `client_database`. As PostgreSQL does, the database defaults to
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
