//! The logins that make spares, in the background after a client's login, and the polite
//! close of a spare nobody will use: a Terminate, then the TLS close, so the server ends the
//! session at once instead of logging a lost connection.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::key::WarmKey;
use super::pool::{Slot, Spare, WarmPool};
use crate::net::pg_stream::PgStream;
use crate::protocol::sqlstate;
use crate::upstream::auth::PasswordAuthenticator;
use crate::upstream::{
    Greeting, ServerStream, UpstreamError, connect_and_login, upstream_startup_params,
};

/// Terminate: `'X'` and a length of 4.
const TERMINATE: [u8; 5] = [b'X', 0, 0, 0, 4];

/// How long closing one spare may take; a server that does not read is not waited for.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long to wait before each new attempt at a spare whose login failed: the server at a
/// connection limit (`CONNECTION LIMIT`, Redshift's per-cluster maximum) until a session
/// ends, a network blip, credentials refused and being fetched again. Without a retry a key
/// would have no spares until its next client login.
const RETRY_DELAYS: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];

/// Logs in one spare for `key` with the target's credentials and hands it to the pool,
/// trying again after [`RETRY_DELAYS`] while the key is still in use and the pool open.
pub(super) async fn make_spare(pool: Arc<WarmPool>, key: WarmKey, slot: Slot) {
    let mut delays = RETRY_DELAYS.iter();
    let spare = loop {
        let why = match log_in(&pool, &key).await {
            Ok((server, greeting, user)) => break Some(Spare::new(server, greeting, user, slot)),
            Err(why) => why,
        };
        match delays.next().filter(|_| pool.wants(&key)) {
            Some(delay) => {
                tracing::debug!(
                    target_name = pool.metrics.target(),
                    error = %why,
                    retry_in_ms = delay.as_millis() as u64,
                    "could not log in a warm session; trying again"
                );
                if !pool.pause(*delay).await {
                    break None;
                }
            }
            None => {
                tracing::warn!(
                    target_name = pool.metrics.target(),
                    error = %why,
                    "could not log in a warm session; clients with this key log in as usual"
                );
                break None;
            }
        }
    };
    pool.spare_made(&key, spare);
}

/// Why a spare could not be made.
#[derive(Debug, thiserror::Error)]
enum SpareError {
    #[error(transparent)]
    Credentials(#[from] crate::credentials::CredentialError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

/// One login with `key`: the server stream, its greeting and the database user.
async fn log_in(
    pool: &WarmPool,
    key: &WarmKey,
) -> Result<(PgStream<ServerStream>, Greeting, String), SpareError> {
    let request = key.request();
    let credentials = pool.credentials.credentials(request).await?;
    let (params, _dropped) =
        upstream_startup_params(key.params(), &credentials.user, &request.database);
    let mut auth =
        PasswordAuthenticator::new(credentials.user.clone(), credentials.password.clone());
    match connect_and_login(&pool.endpoint, &params, &mut auth).await {
        Ok((server, greeting)) => Ok((server, greeting, credentials.user)),
        Err(error) => {
            if let UpstreamError::Server { sqlstate: code, .. } = &error
                && sqlstate::is_auth_failure(code)
            {
                // The next attempt (or client) fetches fresh credentials instead of meeting
                // the refusal.
                pool.credentials.invalidate(request, &credentials);
            }
            Err(error.into())
        }
    }
}

/// Closes `spares` in the background.
pub(super) fn close_soon(spares: Vec<Spare>) {
    for spare in spares {
        tokio::spawn(close(spare));
    }
}

/// Closes `spares` together and returns when all are closed (or their time is up).
pub(super) async fn close_all(spares: Vec<Spare>) {
    let mut closing = tokio::task::JoinSet::new();
    for spare in spares {
        closing.spawn(close(spare));
    }
    while closing.join_next().await.is_some() {}
}

async fn close(mut spare: Spare) {
    let server = spare.server_mut();
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        server.write_message(&TERMINATE).await?;
        server.flush().await?;
        server.get_mut().shutdown().await
    })
    .await;
}
