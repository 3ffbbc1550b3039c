//! Static password mode (`password_env=VAR`): a fixed password read from the environment at
//! start-up, for clusters without IAM and for local development.

use super::{
    CredentialError, CredentialFuture, CredentialRequest, CredentialSource, DbCredentials, Origin,
    Secret,
};

/// Logs in as the resolved database user with one password from the environment.
#[derive(Debug, Clone)]
pub struct StaticPassword {
    password: Secret,
}

/// The environment variable a target names is not set.
#[derive(Debug, thiserror::Error)]
#[error(
    "password_env names {0}, but {0} is not set (or not UTF-8): export {0}=<password> before starting the proxy"
)]
pub struct MissingPasswordEnv(pub String);

impl StaticPassword {
    /// Reads the password from `var` once, so a missing variable fails at start-up rather
    /// than on the first client.
    pub fn from_env(var: &str) -> Result<StaticPassword, MissingPasswordEnv> {
        std::env::var(var)
            .map(|value| StaticPassword::new(Secret::new(value)))
            .map_err(|_| MissingPasswordEnv(var.to_owned()))
    }

    /// A source that always answers with `password`.
    pub fn new(password: Secret) -> StaticPassword {
        StaticPassword { password }
    }
}

impl CredentialSource for StaticPassword {
    fn credentials<'a>(&'a self, request: &'a CredentialRequest) -> CredentialFuture<'a> {
        Box::pin(async move {
            let user = request.db_user.clone().ok_or(CredentialError::NoUser)?;
            Ok(DbCredentials {
                user,
                password: self.password.clone(),
                expires_at: None,
                origin: Origin::Fixed,
            })
        })
    }

    fn api(&self) -> &'static str {
        "static"
    }
}
