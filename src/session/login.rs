//! Step 3: the login on the server. The database user and database are decided, the
//! credentials fetched (from the cache when it can), and the server connected to and logged
//! in to with them. A password served from the cache may have expired or been replaced
//! since it was fetched: when the server refuses it as a wrong password, it is forgotten and
//! the login tried once more with fresh credentials before the client hears of it.
//!
//! With warm sessions (`--warm-sessions`) a silent spare with the client's key, when there is
//! one, takes the place of the connect and login; either way the login starts the refill
//! of the key's spares.

use tokio::io::{AsyncRead, AsyncWrite};

use super::{Outcome, Session, Summary, credential_request};
use crate::credentials::{CredentialError, CredentialRequest, DbCredentials, Origin};
use crate::net::pg_stream::PgStream;
use crate::protocol::{ErrorResponse, StartupParams, sqlstate};
use crate::upstream::auth::PasswordAuthenticator;
use crate::upstream::warm::{Taken, WarmKey};
use crate::upstream::{self, Greeting, ServerStream, UpstreamError};

/// A session logged in on the server, ready to greet the client.
pub(super) struct LoggedIn {
    /// The server connection, with any bytes it sent past the greeting.
    pub server: PgStream<ServerStream>,
    /// What the server said after AuthenticationOk.
    pub greeting: Greeting,
    /// `_pq_.*` parameters the client sent and the server was not given.
    pub dropped: Vec<String>,
    /// The database logged in to.
    pub database: String,
    /// Whether the session is a warm spare logged in before the client came.
    pub warm: bool,
}

impl<C> Session<'_, C>
where
    C: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// Hands over a warm spare with the client's key, or fetches credentials and logs in on
    /// the server; or refuses the client.
    pub(super) async fn login(&mut self, params: &StartupParams) -> Result<LoggedIn, Summary> {
        let ctx = self.ctx;
        let request = match credential_request(ctx, params.get("user"), params.get("database")) {
            Ok(request) => request,
            Err(e) => return Err(self.no_credentials(e).await),
        };
        let Some(pool) = &ctx.warm else {
            return self.log_in_upstream(params, &request).await;
        };
        let key = WarmKey::new(&request, &params.params);
        let taken = pool.take(&key);
        ctx.metrics.warm_handoff(taken.as_str());
        let logged_in = match taken {
            Taken::Hit(spare) => {
                let (server, greeting, db_user) = spare.into_parts();
                tracing::Span::current().record("db_user", db_user.as_str());
                let (_, dropped) = upstream::upstream_startup_params(&params.params, "", "");
                for name in &dropped {
                    tracing::debug!(parameter = name, "dropped protocol extension parameter");
                    ctx.metrics.startup_parameter_dropped(name);
                }
                LoggedIn {
                    server,
                    greeting,
                    dropped: dropped.into_iter().map(str::to_owned).collect(),
                    database: request.database.clone(),
                    warm: true,
                }
            }
            Taken::Stale => {
                tracing::info!(
                    "a warm session had closed or sent something since its login: discarded, logging in as usual"
                );
                self.log_in_upstream(params, &request).await?
            }
            Taken::Miss => self.log_in_upstream(params, &request).await?,
        };
        pool.logged_in(&key);
        Ok(logged_in)
    }

    /// Fetches credentials and logs in on the server, with one retry when the server refuses
    /// a cached password; or refuses the client.
    async fn log_in_upstream(
        &mut self,
        params: &StartupParams,
        request: &CredentialRequest,
    ) -> Result<LoggedIn, Summary> {
        let ctx = self.ctx;
        let mut credentials = self.fetch(request).await?;
        let mut retried = false;
        loop {
            let (upstream_params, dropped) = upstream::upstream_startup_params(
                &params.params,
                &credentials.user,
                &request.database,
            );
            if !retried {
                for name in &dropped {
                    tracing::debug!(parameter = name, "dropped protocol extension parameter");
                    ctx.metrics.startup_parameter_dropped(name);
                }
            }
            let dropped: Vec<String> = dropped.into_iter().map(str::to_owned).collect();
            let mut auth =
                PasswordAuthenticator::new(credentials.user.clone(), credentials.password.clone());
            let login = upstream::connect_and_login(&ctx.endpoint, &upstream_params, &mut auth);
            let error = match login.await {
                Ok((server, greeting)) => {
                    return Ok(LoggedIn {
                        server,
                        greeting,
                        dropped,
                        database: request.database.clone(),
                        warm: false,
                    });
                }
                Err(error) => error,
            };
            let UpstreamError::Server {
                forward,
                sqlstate: code,
                message,
            } = error
            else {
                if let UpstreamError::Auth(auth_error) = &error {
                    ctx.metrics.auth_failure(auth_error.reason());
                }
                let mut summary = Summary::new(Outcome::UpstreamError);
                if let Some(response) = error.client_error() {
                    summary = self.refuse(Outcome::UpstreamError, response).await;
                }
                return Err(summary);
            };
            tracing::info!(sqlstate = %code, message = %message, retried, "server refused the login");
            if sqlstate::is_auth_failure(&code) {
                ctx.credentials.invalidate(request, &credentials);
                ctx.metrics.auth_failure("server_rejected");
            }
            if code == sqlstate::INVALID_PASSWORD
                && credentials.origin == Origin::Cached
                && !retried
            {
                retried = true;
                tracing::info!(
                    api = ctx.credentials.api(),
                    "the server refused a cached password (expired or replaced since it was fetched): fetching fresh credentials and logging in once more"
                );
                credentials = self.fetch(request).await?;
                continue;
            }
            // The server's own ErrorResponse goes to the client as the server sent it.
            self.client.send_and_close(&forward).await;
            return Err(Summary::refused(Outcome::LoginRefused, &code));
        }
    }

    /// Credentials for `request`, or the client refused for want of them.
    async fn fetch(&mut self, request: &CredentialRequest) -> Result<DbCredentials, Summary> {
        match self.ctx.credentials.credentials(request).await {
            Ok(credentials) => {
                tracing::Span::current().record("db_user", credentials.user.as_str());
                Ok(credentials)
            }
            Err(e) => {
                tracing::debug!(
                    requested_user = request.db_user.as_deref().unwrap_or(""),
                    api = self.ctx.credentials.api(),
                    reason = e.reason(),
                    "credential request failed"
                );
                Err(self.no_credentials(e).await)
            }
        }
    }

    /// Refuses a client for which no credentials could be had: 28000 when a permission or
    /// an identity is wrong, 08001 when AWS cannot be reached (the error's own SQLSTATE).
    async fn no_credentials(&mut self, e: CredentialError) -> Summary {
        if sqlstate::is_auth_failure(e.sqlstate()) {
            self.ctx.metrics.auth_failure(e.reason());
        }
        let error = ErrorResponse::fatal(e.sqlstate(), e.to_string());
        self.refuse(Outcome::CredentialError, error).await
    }
}
