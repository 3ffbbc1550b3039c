//! Step 4: the server's greeting to the client. AuthenticationOk, ParameterStatus,
//! NoticeResponse and ReadyForQuery go out as the server sent them; BackendKeyData carries a
//! key the proxy issues instead of the server's (the registry maps it back), so a client
//! never learns a server's cancel key and a forged one reaches no server. Only a
//! client that asked for a newer minor protocol version (3.x, x > 0) first gets a
//! NegotiateProtocolVersion, listing the `_pq_.*` options the server was not given. A 3.0
//! client's `_pq_.*` options are dropped silently, as a Redshift server that does not
//! compress ignores `_pq_.compression`: the Redshift JDBC driver's login loop reads only
//! `'R'` and `'E'`, so a `'v'` there would fail every connection. The session's cancel key
//! is registered before the client can see it, so a cancel sent at once finds it. A greeting
//! whose key cannot be replaced is not sent at all: it would hand over the server's key.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};

use super::login::LoggedIn;
use super::{Outcome, Session, Summary, TargetContext};
use crate::net::pg_stream::PgStream;
use crate::protocol::startup::BackendKeyError;
use crate::protocol::{CancelKey, ErrorResponse, StartupParams, messages, sqlstate, startup};
use crate::upstream::ServerStream;
use crate::upstream::cancel::{IssueError, Registration};

/// A greeted session, ready for the relay.
pub(super) struct Greeted {
    /// The server connection.
    pub server: PgStream<ServerStream>,
    /// Keeps the cancel key registered while the session lives.
    pub _registration: Option<Registration>,
}

impl<C> Session<'_, C>
where
    C: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// Sends the greeting and logs the opened connection.
    pub(super) async fn greet(
        &mut self,
        params: &StartupParams,
        logged_in: LoggedIn,
    ) -> Result<Greeted, Summary> {
        let ctx = self.ctx;
        let LoggedIn {
            server,
            greeting,
            dropped,
            database,
            warm,
        } = logged_in;
        let mut forward = greeting.forward;
        let registration = match greeting.backend_key {
            None => None,
            Some(server_key) => match issue_key(ctx, server_key, &mut forward) {
                Ok(registration) => Some(registration),
                Err(e) => {
                    let error = ErrorResponse::fatal(
                        sqlstate::INTERNAL_ERROR,
                        format!("cannot issue a cancel key for the session: {e}"),
                    );
                    return Err(self.refuse(Outcome::UpstreamError, error).await);
                }
            },
        };
        let mut hello = BytesMut::with_capacity(forward.len() + 64);
        if params.minor_version > 0 {
            let dropped: Vec<&str> = dropped.iter().map(String::as_str).collect();
            messages::negotiate_protocol_version(startup::PROTOCOL_3_0, &dropped, &mut hello);
        }
        hello.extend_from_slice(&forward);
        let sent = async {
            self.client.write_message(&hello).await?;
            self.client.flush().await
        };
        if let Err(e) = sent.await {
            tracing::debug!(error = %e, "client left before the greeting");
            return Err(Summary::new(Outcome::RelayError));
        }
        let setup = self.started.elapsed();
        ctx.metrics.setup_seconds.observe(setup.as_secs_f64());
        tracing::info!(
            database = %database,
            server_version = greeting.server_version.as_deref().unwrap_or(""),
            setup_ms = setup.as_millis() as u64,
            warm_session = warm,
            "connection opened"
        );
        Ok(Greeted {
            server,
            _registration: registration,
        })
    }
}

/// Why a session's greeting could not be given a proxy-issued cancel key.
#[derive(Debug, thiserror::Error)]
enum KeyError {
    /// No key could be drawn.
    #[error(transparent)]
    Issue(#[from] IssueError),
    /// The greeting's BackendKeyData could not be replaced.
    #[error(transparent)]
    Greeting(#[from] BackendKeyError),
    /// The replaced key is not the one the login read: the greeting would not match the
    /// registry, so it is not sent.
    #[error("the greeting's BackendKeyData is not the one the login read")]
    Mismatch,
}

/// Registers a key for the session whose server gave it `server_key` and puts that key in
/// the greeting in place of the server's.
fn issue_key(
    ctx: &TargetContext,
    server_key: CancelKey,
    forward: &mut [u8],
) -> Result<Registration, KeyError> {
    let registration = ctx.cancel.register(server_key, ctx.endpoint.clone())?;
    match startup::replace_backend_key(forward, registration.client_key())? {
        Some(replaced) if replaced == server_key => Ok(registration),
        _ => Err(KeyError::Mismatch),
    }
}
