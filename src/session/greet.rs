//! Step 4: the server's greeting to the client. AuthenticationOk, ParameterStatus,
//! BackendKeyData, NoticeResponse and ReadyForQuery go out as the server sent them. Only a
//! client that asked for a newer minor protocol version (3.x, x > 0) first gets a
//! NegotiateProtocolVersion, listing the `_pq_.*` options the server was not given. A 3.0
//! client's `_pq_.*` options are dropped silently, as a Redshift server that does not
//! compress ignores `_pq_.compression`: the Redshift JDBC driver's login loop reads only
//! `'R'` and `'E'`, so a `'v'` there would fail every connection. The session's cancel key
//! is registered before the client can see it, so a cancel sent at once finds it.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};

use super::login::LoggedIn;
use super::{Outcome, Session, Summary};
use crate::net::pg_stream::PgStream;
use crate::protocol::{StartupParams, messages, startup};
use crate::upstream::UpstreamStream;
use crate::upstream::cancel::Registration;

/// A greeted session, ready for the relay.
pub(super) struct Greeted {
    /// The server connection.
    pub server: PgStream<UpstreamStream>,
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
        } = logged_in;
        let mut hello = BytesMut::with_capacity(greeting.forward.len() + 64);
        if params.minor_version > 0 {
            let dropped: Vec<&str> = dropped.iter().map(String::as_str).collect();
            messages::negotiate_protocol_version(startup::PROTOCOL_3_0, &dropped, &mut hello);
        }
        hello.extend_from_slice(&greeting.forward);
        let registration = greeting
            .backend_key
            .map(|key| ctx.cancel.register(key, ctx.endpoint.clone()));
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
            "connection opened"
        );
        Ok(Greeted {
            server,
            _registration: registration,
        })
    }
}
