//! Answers to the server's authentication requests, made with the temporary password so the
//! client never needs one. Pure: the caller does the IO (see `upstream.rs`).

mod md5;
mod redshift_digest;
mod scram;

pub use md5::md5_password;
pub use redshift_digest::{redshift_digest, redshift_digest_with_nonce};

use bytes::BytesMut;
use postgres_protocol::message::frontend;

use crate::credentials::Secret;
use crate::protocol::AuthRequest;
use crate::protocol::messages;

/// Why the proxy could not log in to the server with the credentials it has.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The server asked for a method a password cannot answer (Kerberos, GSSAPI, SSPI).
    #[error(
        "the server asked for {0} authentication, which the proxy cannot answer with a password: configure the server to use md5, scram-sha-256 or password for this user"
    )]
    Unsupported(&'static str),
    /// Redshift asked for a native identity-provider token.
    #[error(
        "the server asked for a Redshift identity-provider token (authentication code 14): the proxy logs in with IAM temporary passwords; use an IAM database user or password_env"
    )]
    IdpToken,
    /// Redshift's digest with an algorithm other than SHA-256.
    #[error(
        "the server asked for Redshift digest algorithm {0} ({name}), but the proxy implements only 0 (SHA-256): store the user's password as sha256 or md5",
        name = digest_algorithm_name(*.0)
    )]
    UnknownDigestAlgorithm(u32),
    /// SASL without SCRAM-SHA-256 among the offered mechanisms.
    #[error("the server offered SASL mechanisms {0:?}, none of which is SCRAM-SHA-256")]
    NoScramMechanism(Vec<String>),
    /// A SASL step out of order.
    #[error("the server sent a SASL {0} message outside a SASL exchange")]
    SaslOutOfOrder(&'static str),
    /// The SCRAM exchange failed, including a server signature that does not verify (the
    /// server does not know the password: it may be an impostor).
    #[error("SCRAM-SHA-256 exchange with the server failed: {0}")]
    Scram(std::io::Error),
    /// A password containing a NUL cannot be sent.
    #[error("the password cannot be sent: {0}")]
    Encoding(std::io::Error),
    /// The system's random source failed, so no SCRAM nonce could be made.
    #[error("cannot generate a random SCRAM nonce")]
    Random,
}

impl AuthError {
    /// A short, fixed reason for metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Unsupported(_) | AuthError::IdpToken | AuthError::NoScramMechanism(_) => {
                "unsupported_method"
            }
            AuthError::UnknownDigestAlgorithm(_) => "unsupported_digest",
            AuthError::SaslOutOfOrder(_) | AuthError::Scram(_) | AuthError::Encoding(_) => {
                "protocol"
            }
            AuthError::Random => "internal",
        }
    }
}

/// A fresh client nonce: 18 random bytes in base64 (printable, no commas), as libpq makes.
fn nonce() -> Result<String, AuthError> {
    let mut bytes = [0u8; 18];
    crate::net::crypto::crypto_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| AuthError::Random)?;
    Ok(base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        bytes,
    ))
}

fn digest_algorithm_name(code: u32) -> &'static str {
    match code {
        0 => "SHA-256",
        1 => "scrypt",
        2 => "argon2",
        _ => "unknown",
    }
}

/// What the caller does after an answer.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthStep {
    /// Send what was appended to the output buffer and wait for the next request.
    Reply,
    /// Nothing to send; wait for the next request (after SASL final).
    Wait,
    /// AuthenticationOk arrived: the login is complete.
    Done,
}

/// The login state for one upstream connection: the user name as sent in the StartupMessage,
/// the password, and the SCRAM exchange while one runs.
pub struct PasswordAuthenticator {
    user: String,
    password: Secret,
    scram: Option<scram::ScramClient>,
}

impl std::fmt::Debug for PasswordAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordAuthenticator")
            .field("user", &self.user)
            .field("password", &self.password)
            .finish_non_exhaustive()
    }
}

impl PasswordAuthenticator {
    /// Logs in as `user` (the name in the StartupMessage, e.g. `IAM:alice`) with `password`.
    pub fn new(user: impl Into<String>, password: Secret) -> PasswordAuthenticator {
        PasswordAuthenticator {
            user: user.into(),
            password,
            scram: None,
        }
    }

    /// Appends the answer to `request` to `out`.
    pub fn answer(
        &mut self,
        request: &AuthRequest,
        out: &mut BytesMut,
    ) -> Result<AuthStep, AuthError> {
        let password = self.password.expose().as_bytes();
        match request {
            AuthRequest::Ok => return Ok(AuthStep::Done),
            AuthRequest::Cleartext => {
                frontend::password_message(password, out).map_err(AuthError::Encoding)?;
            }
            AuthRequest::Md5 { salt } => {
                let hashed = md5_password(self.user.as_bytes(), password, *salt);
                frontend::password_message(hashed.as_bytes(), out).map_err(AuthError::Encoding)?;
            }
            AuthRequest::Sasl { mechanisms } => {
                let (client, first) = scram::ScramClient::start(mechanisms, password, nonce()?)?;
                frontend::sasl_initial_response(scram::MECHANISM, &first, out)
                    .map_err(AuthError::Encoding)?;
                self.scram = Some(client);
            }
            AuthRequest::SaslContinue { data } => {
                let client = self
                    .scram
                    .as_mut()
                    .ok_or(AuthError::SaslOutOfOrder("continue"))?;
                let reply = client.server_first(data)?;
                frontend::sasl_response(&reply, out).map_err(AuthError::Encoding)?;
            }
            AuthRequest::SaslFinal { data } => {
                let mut client = self
                    .scram
                    .take()
                    .ok_or(AuthError::SaslOutOfOrder("final"))?;
                client.server_final(data)?;
                return Ok(AuthStep::Wait);
            }
            AuthRequest::RedshiftDigest {
                algorithm,
                salt,
                server_nonce,
            } => {
                if *algorithm != 0 {
                    return Err(AuthError::UnknownDigestAlgorithm(*algorithm));
                }
                let (digest, client_nonce) = redshift_digest(password, salt, server_nonce);
                messages::redshift_digest_reply(&digest, client_nonce.as_bytes(), out);
            }
            AuthRequest::RedshiftIdpToken => return Err(AuthError::IdpToken),
            AuthRequest::Other(code) => {
                return Err(AuthError::Unsupported(AuthRequest::method_name(*code)));
            }
        }
        Ok(AuthStep::Reply)
    }
}
