//! Step 2: whether this client may go on, decided before any credential is fetched or the
//! server contacted: the target's `--max-connections`, `--client-sslmode require`, and
//! client authentication (`--client-auth`), all within the `--startup-timeout` that began
//! at the accept.

use tokio::io::{AsyncRead, AsyncWrite};

use super::{Outcome, Session, Summary};
use crate::client::auth::{self, ClientAuthError};
use crate::protocol::{ErrorResponse, StartupParams, sqlstate};

impl<C> Session<'_, C>
where
    C: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// Lets the client in, or refuses it with the reason. `admitted` is false when the
    /// target was at `--max-connections` as the client connected.
    pub(super) async fn admit(
        &mut self,
        params: &StartupParams,
        admitted: bool,
    ) -> Result<(), Summary> {
        let ctx = self.ctx;
        if !admitted {
            let message = format!(
                "sorry, too many clients already: target {} is at the proxy's --max-connections; try again later",
                ctx.target.label()
            );
            let error = ErrorResponse::fatal(sqlstate::TOO_MANY_CONNECTIONS, message);
            return Err(self.refuse(Outcome::TooManyConnections, error).await);
        }
        if ctx.client.require_tls && !self.client.get_ref().is_tls() && !self.peer.is_local_socket()
        {
            let error = ErrorResponse::fatal(
                sqlstate::PROTOCOL_VIOLATION,
                "this proxy requires TLS (--client-sslmode require): connect with sslmode=require (or verify-ca, verify-full)",
            );
            return Err(self.refuse(Outcome::ClientAuthFailed, error).await);
        }
        let user = params.get("user");
        let deadline = tokio::time::Instant::from_std(self.started + ctx.startup_timeout);
        let client = &mut self.client;
        let end_point = self.end_point.as_deref();
        let authenticated = tokio::time::timeout_at(deadline, async {
            let certificate = client.get_ref().peer_certificate().cloned();
            let channel = auth::Channel {
                certificate: certificate.as_ref(),
                end_point,
            };
            auth::authenticate(&ctx.client.auth, client, user, channel).await
        })
        .await;
        let error = match authenticated {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(ClientAuthError::Gone)) => {
                tracing::debug!("client left during client authentication");
                return Err(Summary::new(Outcome::ClientAuthFailed));
            }
            Ok(Err(e)) => e,
            Err(_) => ClientAuthError::Protocol(format!(
                "client authentication not completed within {:?} (--startup-timeout)",
                ctx.startup_timeout
            )),
        };
        if let ClientAuthError::Password { known, .. } = &error {
            // Whether the user exists goes to the log only: the client hears the same
            // message either way.
            tracing::Span::current().record("known_user", known);
        }
        if let Some(reason) = error.metric_reason() {
            ctx.metrics.auth_failure(reason);
        }
        let mut response = ErrorResponse::fatal(error.sqlstate(), error.to_string());
        if let Some(hint) = error.hint() {
            response = response.with_hint(hint);
        }
        Err(self.refuse(Outcome::ClientAuthFailed, response).await)
    }
}
