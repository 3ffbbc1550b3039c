//! Where database credentials come from. Sessions ask a `CredentialSource` for a user name
//! and password and do not care whether they came from the environment or from AWS, so new
//! sources (the IAM APIs) plug in without touching the session code.

mod secret;
mod static_password;

pub use secret::Secret;
pub use static_password::StaticPassword;

use std::future::Future;
use std::pin::Pin;
use std::time::SystemTime;

/// What a session asks for: the database user and database it resolved from the target and
/// the client's startup parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRequest {
    /// The database user to log in as, before any `IAM:` prefix AWS may add.
    pub db_user: String,
    /// The database the session will open.
    pub database: String,
}

/// A user name and password to log in with.
#[derive(Debug, Clone)]
pub struct DbCredentials {
    /// The name to put in the StartupMessage (for IAM: `IAM:alice`, `IAMR:role`, …).
    pub user: String,
    /// The password.
    pub password: Secret,
    /// When the password stops working, if it expires.
    pub expires_at: Option<SystemTime>,
}

/// Why no credentials could be had. Messages go to the client: they say what to fix and
/// never carry a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// The client's user is not on the target's `allowed_users` list.
    #[error(
        "user \"{user}\" is not allowed through this proxy target: allowed_users ({source_name}) lists {allowed}"
    )]
    UserNotAllowed {
        /// The user the client asked for.
        user: String,
        /// The users allowed, comma-separated.
        allowed: String,
        /// Where the list was configured.
        source_name: String,
    },
    /// Neither the target nor the client named a database user.
    #[error(
        "no database user: the client sent no user name and the target sets no db_user; set db_user on the target or user= in the connection string"
    )]
    NoUser,
    /// The source could not provide credentials for another reason.
    #[error("{message}")]
    Unavailable {
        /// SQLSTATE for the client.
        sqlstate: &'static str,
        /// What went wrong and what to do.
        message: String,
    },
}

impl CredentialError {
    /// The SQLSTATE the client receives.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            CredentialError::UserNotAllowed { .. } | CredentialError::NoUser => "28000",
            CredentialError::Unavailable { sqlstate, .. } => sqlstate,
        }
    }
}

/// A boxed future, so sources can be used as trait objects.
pub type CredentialFuture<'a> =
    Pin<Box<dyn Future<Output = Result<DbCredentials, CredentialError>> + Send + 'a>>;

/// Anything that can produce credentials for a request: the static password source here,
/// the IAM sources and their cache later.
pub trait CredentialSource: Send + Sync + std::fmt::Debug {
    /// Fetches (or returns cached) credentials for `request`.
    fn credentials<'a>(&'a self, request: &'a CredentialRequest) -> CredentialFuture<'a>;

    /// The name of the API behind this source, for logs and metric labels.
    fn api(&self) -> &'static str;
}

/// Decides the database user as design section 2 says: the target's fixed `db_user` when
/// set, otherwise the client's `user`, which must then be on `allowed_users` if that is set.
pub fn resolve_db_user(
    fixed: Option<&str>,
    client_user: Option<&str>,
    allowed_users: &[String],
    allowed_source: &str,
) -> Result<String, CredentialError> {
    if let Some(user) = client_user.filter(|_| !allowed_users.is_empty())
        && !allowed_users.iter().any(|allowed| allowed == user)
    {
        return Err(CredentialError::UserNotAllowed {
            user: user.to_owned(),
            allowed: allowed_users.join(", "),
            source_name: allowed_source.to_owned(),
        });
    }
    match (fixed, client_user) {
        (Some(user), _) => Ok(user.to_owned()),
        (None, Some(user)) if !user.is_empty() => Ok(user.to_owned()),
        _ => Err(CredentialError::NoUser),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_user_wins() {
        assert_eq!(
            resolve_db_user(Some("alice"), Some("bob"), &[], "t").unwrap(),
            "alice"
        );
    }

    #[test]
    fn client_user_checked_against_list() {
        let allowed = vec!["bob".to_owned()];
        assert_eq!(
            resolve_db_user(None, Some("bob"), &allowed, "t").unwrap(),
            "bob"
        );
        let err = resolve_db_user(None, Some("eve"), &allowed, "target x").unwrap_err();
        assert_eq!(err.sqlstate(), "28000");
        assert!(err.to_string().contains("\"eve\"") && err.to_string().contains("target x"));
        assert_eq!(
            resolve_db_user(None, None, &[], "t").unwrap_err(),
            CredentialError::NoUser
        );
    }
}
