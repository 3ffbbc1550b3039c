//! `--check`: the proxy's "Test connection" button. For each target it does what a session
//! does (credentials, connect, TLS, login) and runs `select 1`, then reports one line, so a
//! CI pipeline or a person learns in seconds whether permissions, network and TLS are right.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::net::pg_stream::{PgStream, ReadError};
use crate::protocol::error_response;
use crate::session::{TargetContext, credential_request};
use crate::target::TargetKind;
use crate::upstream;
use crate::upstream::auth::PasswordAuthenticator;
use crate::upstream::compression::Compression;

/// The answer to `select 1` is a few small messages; anything huge is not a PostgreSQL server.
const MAX_CHECK_MESSAGE_LEN: usize = 1 << 20;

/// What one target's check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// The target's label.
    pub target: String,
    /// `provisioned`, `serverless` or `static`.
    pub kind: &'static str,
    /// The credential API (or `static`).
    pub api: &'static str,
    /// The user the server saw, when credentials were had.
    pub db_user: Option<String>,
    /// The server's `server_version`.
    pub server_version: Option<String>,
    /// With `compression` on: whether the server acknowledged it (`'z'`) and compresses.
    pub compressed: Option<bool>,
    /// Credentials to the answer of `select 1`.
    pub setup: Duration,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

impl CheckReport {
    /// One line for the terminal.
    pub fn line(&self) -> String {
        let status = if self.error.is_none() { "ok" } else { "FAILED" };
        let mut line = format!(
            "{status:6} {} kind={} api={} db_user={} server_version={} setup={}ms",
            self.target,
            self.kind,
            self.api,
            self.db_user.as_deref().unwrap_or("-"),
            self.server_version.as_deref().unwrap_or("-"),
            self.setup.as_millis()
        );
        match self.compressed {
            Some(true) => line.push_str(" compression=acknowledged"),
            Some(false) => line.push_str(" compression=not-acknowledged"),
            None => {}
        }
        if let Some(error) = &self.error {
            line.push_str(": ");
            line.push_str(error);
        }
        line
    }
}

/// Checks one target as the OS user `os_user` would connect (used when the target has no
/// `db_user` and the API needs one).
pub async fn check_target(ctx: &TargetContext, os_user: Option<&str>) -> CheckReport {
    let started = Instant::now();
    let kind = match (&ctx.target.kind, ctx.target.is_static()) {
        (_, true) => "static",
        (TargetKind::Provisioned { .. }, _) => "provisioned",
        (TargetKind::Serverless { .. }, _) => "serverless",
        (TargetKind::Unknown, _) => "unknown",
    };
    let mut report = CheckReport {
        target: ctx.target.label().to_owned(),
        kind,
        api: ctx.credentials.api(),
        db_user: None,
        server_version: None,
        compressed: None,
        setup: Duration::ZERO,
        error: None,
    };
    let result = run_check(ctx, os_user, &mut report).await;
    report.setup = started.elapsed();
    report.error = result.err();
    report
}

async fn run_check(
    ctx: &TargetContext,
    os_user: Option<&str>,
    report: &mut CheckReport,
) -> Result<(), String> {
    // An IAM-derived user needs no client name; otherwise the OS user stands in for one.
    let client_user = os_user.filter(|_| !ctx.credentials.user_from_identity());
    let request = credential_request(ctx, client_user, None).map_err(|e| e.to_string())?;
    let credentials = ctx
        .credentials
        .credentials(&request)
        .await
        .map_err(|e| e.to_string())?;
    report.db_user = Some(credentials.user.clone());
    let params = vec![
        ("user".to_owned(), credentials.user.clone()),
        ("database".to_owned(), request.database.clone()),
        (
            "application_name".to_owned(),
            "redshift-auth-proxy --check".to_owned(),
        ),
    ];
    let mut auth = PasswordAuthenticator::new(credentials.user.clone(), credentials.password);
    let address = ctx.endpoint.address();
    let (mut server, greeting) = upstream::connect_and_login(&ctx.endpoint, &params, &mut auth)
        .await
        .map_err(|e| e.to_string())?;
    report.server_version = greeting.server_version.clone();
    if ctx.endpoint.compression != Compression::Off {
        report.compressed = Some(server.get_ref().compressed());
    }

    let mut out = BytesMut::new();
    frontend::query("select 1", &mut out).map_err(|e| e.to_string())?;
    frontend::terminate(&mut out);
    let lost = |e: std::io::Error| format!("connection to {address} lost during select 1: {e}");
    server.write_message(&out).await.map_err(lost)?;
    server.flush().await.map_err(lost)?;
    let deadline = ctx.endpoint.connect_timeout;
    tokio::time::timeout(deadline, read_until_ready(&mut server))
        .await
        .map_err(|_| format!("select 1 did not answer within {deadline:?}"))?
        .map_err(|e| format!("connection to {address} lost during select 1: {e}"))?
        .map_err(|message| format!("select 1 failed: {message}"))
}

/// Reads messages until ReadyForQuery; an ErrorResponse's message is the inner error.
async fn read_until_ready<S>(server: &mut PgStream<S>) -> Result<Result<(), String>, ReadError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut failure = None;
    loop {
        let message = server.read_message(MAX_CHECK_MESSAGE_LEN).await?;
        match message.header.tag {
            b'E' => {
                failure = Some(
                    error_response::field(message.payload(), b'M')
                        .unwrap_or("error")
                        .to_owned(),
                )
            }
            b'Z' => return Ok(failure.map_or(Ok(()), Err)),
            _ => {}
        }
    }
}
