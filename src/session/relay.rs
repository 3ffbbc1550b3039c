//! Step 5: the hand-off to the relay, and how the session ends. The relay gets both streams
//! and whatever either side sent past its last framed message. When the proxy itself ends
//! the session (shutdown, `--idle-timeout`), the client is told why with a FATAL
//! ErrorResponse, but only between messages: a message inside a half-sent server message
//! would corrupt the client's stream, so then the connection is just closed.

use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use super::greet::Greeted;
use super::{Outcome, Session, Summary};
use crate::net::pg_stream::PgStream;
use crate::protocol::{ErrorResponse, sqlstate};
use crate::relay::{self, LiveCounters, RelayControl, RelayEnd, RelayError};

impl<C> Session<'_, C>
where
    C: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// Relays until the session ends and says how it ended.
    /// `span` is the connection's, entered only to log.
    pub(super) async fn relay(
        self,
        greeted: Greeted,
        shutdown: CancellationToken,
        span: &tracing::Span,
    ) -> Summary {
        let ctx = self.ctx;
        let Greeted {
            server,
            _registration,
        } = greeted;
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
        let (mut client, to_server) = self.client.into_parts();
        let (mut server, mut to_client) = server.into_parts();
        server.settle(&mut to_client);
        let relay_started = Instant::now();
        let result = relay::relay(&mut client, &mut server, &to_client, &to_server, &control).await;
        ctx.metrics
            .session_seconds
            .observe(relay_started.elapsed().as_secs_f64());
        let stats = match result {
            Ok(stats) => stats,
            Err(RelayError::Decompress {
                error,
                client_at_boundary,
            }) => {
                span.in_scope(|| {
                    tracing::warn!(error = %error, "the server's compressed stream is broken: ending the session")
                });
                let response = ErrorResponse::fatal(
                    sqlstate::PROTOCOL_VIOLATION,
                    format!(
                        "{error}: the session cannot go on; reconnect, and if this repeats set compression=off for this target"
                    ),
                );
                let said = client_at_boundary.then_some(&response);
                PgStream::new(client).close_with(said).await;
                let mut summary = Summary::new(Outcome::RelayError);
                summary.sqlstate = said.map(|error| error.code.to_owned());
                return summary;
            }
            Err(e) => {
                span.in_scope(|| tracing::info!(error = %e, "relay ended with an error"));
                return Summary::new(Outcome::RelayError);
            }
        };
        let (outcome, farewell) = match stats.end {
            RelayEnd::Closed => (Outcome::Closed, None),
            RelayEnd::Shutdown => (
                Outcome::Shutdown,
                Some(ErrorResponse::fatal(
                    sqlstate::ADMIN_SHUTDOWN,
                    "terminating connection because the proxy is shutting down: reconnect to continue",
                )),
            ),
            RelayEnd::Idle => (
                Outcome::IdleTimeout,
                Some(ErrorResponse::fatal(
                    sqlstate::IDLE_SESSION_TIMEOUT,
                    format!(
                        "terminating connection due to idle-session timeout: no activity for {:?} (--idle-timeout)",
                        ctx.idle_timeout.unwrap_or_default()
                    ),
                )),
            ),
        };
        let mut summary = Summary {
            outcome,
            sqlstate: None,
            stats,
        };
        if let Some(error) = farewell {
            let said = stats.client_at_boundary.then_some(&error);
            summary.sqlstate = said.map(|error| error.code.to_owned());
            PgStream::new(client).close_with(said).await;
        }
        summary
    }
}
