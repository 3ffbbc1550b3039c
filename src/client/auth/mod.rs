//! Client authentication: how a client proves who it is to the proxy before the proxy uses
//! its IAM identity for it (`--client-auth`). Anyone who reaches a listener with `trust`
//! acts with the proxy's IAM role, so `trust` is for loopback and Unix sockets; `scram`
//! checks a password against a users file of SCRAM-SHA-256 verifiers; `cert` takes the
//! user name from a client certificate verified against `--client-ca`.
//!
//! Authentication runs after the StartupMessage and before any credential is fetched or
//! the server is contacted. A refused client learns no more than PostgreSQL would tell it:
//! an unknown user and a wrong password get the same message.

mod cert_name;
mod scram;
mod users;

pub use cert_name::{CertNameError, common_name};
pub use scram::{MECHANISM, MECHANISM_PLUS, ScramFailure, ScramServer};
pub use users::{
    ScramUsers, ScramVerifier, UserNameError, UsersFileError, VerifierError, check_user_name,
    hash_password,
};

use crate::protocol::sqlstate;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::BytesMut;
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::client::tls::ClientTls;
use crate::net::pg_stream::{PgStream, ReadError};
use crate::protocol::frame::HEADER_LEN;
use crate::protocol::password;
use crate::protocol::sasl;
use crate::protocol::scram::{constant_time_eq, hmac_sha256, stored_key};
use zeroize::Zeroizing;

/// PostgreSQL's limit for one SASL message from the client (`PG_MAX_AUTH_TOKEN_LENGTH`).
const MAX_SASL_MESSAGE_LEN: usize = 65_535;
/// Iterations of the made-up verifier an unknown user is given: PostgreSQL's default, the
/// same as `hash-password` writes, so the answer looks like a real user's.
const MOCK_ITERATIONS: u32 = 4096;

/// How clients authenticate to the proxy, as `--client-auth` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuthMethod {
    /// Every client is let in: only safe where nobody else can connect.
    #[default]
    Trust,
    /// SCRAM-SHA-256 against `--client-users`.
    Scram,
    /// The password in cleartext (authentication code 3), checked against the SCRAM
    /// verifiers of `--client-users`: for drivers without SCRAM, such as Redshift's JDBC
    /// driver. Only over TLS or on loopback, since the password crosses the connection.
    Password,
    /// Mutual TLS: a certificate signed by `--client-ca` whose CN is the user name.
    Cert,
}

impl ClientAuthMethod {
    /// The spelling users write.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuthMethod::Trust => "trust",
            ClientAuthMethod::Scram => "scram",
            ClientAuthMethod::Password => "password",
            ClientAuthMethod::Cert => "cert",
        }
    }
}

/// The method with what it needs at run time.
#[derive(Debug)]
pub enum ClientAuth {
    /// No check.
    Trust,
    /// The users file and a per-process secret for unknown users' made-up salts.
    Scram {
        /// The verifiers by user name.
        users: ScramUsers,
        /// Keys the made-up salts, so they stay the same for a name while the process
        /// runs but cannot be told apart from real ones.
        mock_secret: [u8; 32],
    },
    /// The password in cleartext, checked against the same verifiers as `Scram`.
    Password {
        /// The verifiers by user name.
        users: ScramUsers,
        /// Keys the made-up salts of unknown users, as for `Scram`.
        mock_secret: [u8; 32],
    },
    /// The TLS layer verified the certificate; the session compares its CN.
    Cert,
}

impl ClientAuth {
    /// `scram` with `users`; the mock secret comes from the TLS provider's random source.
    pub fn scram(users: ScramUsers) -> Result<ClientAuth, ClientAuthError> {
        Ok(ClientAuth::Scram {
            users,
            mock_secret: mock_secret()?,
        })
    }

    /// `password` with `users`; the mock secret as for `scram`.
    pub fn password(users: ScramUsers) -> Result<ClientAuth, ClientAuthError> {
        Ok(ClientAuth::Password {
            users,
            mock_secret: mock_secret()?,
        })
    }
}

/// Whether a client must use TLS on TCP (`--client-sslmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ClientSslMode {
    /// TLS when the client asks for it (and client TLS is configured), plain text otherwise.
    #[default]
    Prefer,
    /// Plain-text TCP clients are refused with 08P01.
    Require,
}

/// How clients reach a session: TLS offered and required, and how they prove who they are.
/// Shared by every target (the settings are global).
#[derive(Debug)]
pub struct ClientPolicy {
    /// The TLS configuration offered to clients that send SSLRequest; `None` answers `N`.
    pub tls: Option<Arc<ClientTls>>,
    /// Refuse plain-text TCP clients (Unix-socket clients are local and exempt).
    pub require_tls: bool,
    /// The authentication method.
    pub auth: ClientAuth,
}

impl ClientPolicy {
    /// No TLS, no authentication: the behaviour on loopback by default.
    pub fn trust() -> ClientPolicy {
        ClientPolicy {
            tls: None,
            require_tls: false,
            auth: ClientAuth::Trust,
        }
    }
}

/// Why a client was not let in. The `Display` text is what the client is sent; it never
/// says whether a user exists.
#[derive(Debug, thiserror::Error)]
pub enum ClientAuthError {
    /// No `user` in the StartupMessage.
    #[error("no user name in the startup packet: connect with user=NAME")]
    NoUser,
    /// Wrong password or unknown user (the log line says which).
    #[error("password authentication failed for user \"{user}\"")]
    Password {
        /// The user the client named.
        user: String,
        /// Whether the users file lists it (for the proxy's log only).
        known: bool,
    },
    /// The SCRAM messages did not follow the protocol.
    #[error("{0}")]
    Protocol(String),
    /// SCRAM channel binding failed: the binding data is not this connection's, or the
    /// offer of -PLUS did not reach the client (`ScramFailure::BindingMismatch` and
    /// `BindingNegotiation`): another TLS session sits in between.
    #[error("{0}")]
    ChannelBinding(ScramFailure),
    /// `cert` and the client sent no certificate (or no TLS at all).
    #[error("connection requires a valid client certificate")]
    NoCertificate,
    /// The certificate's CN could not be read.
    #[error("certificate authentication failed for user \"{user}\": {why}")]
    CertificateName {
        /// The user the client named.
        user: String,
        /// Why.
        why: CertNameError,
    },
    /// The CN is another user.
    #[error(
        "certificate authentication failed for user \"{user}\": the client certificate is for \"{cn}\" (its CN); connect with user={cn}"
    )]
    CertificateUser {
        /// The user the client named.
        user: String,
        /// The certificate's CN.
        cn: String,
    },
    /// The client left (or sent Terminate) part way.
    #[error("the client left during authentication")]
    Gone,
    /// The operating system's random source failed.
    #[error("cannot generate a random nonce")]
    Random,
}

impl ClientAuthError {
    /// The SQLSTATE the client is refused with (PostgreSQL's, for each case).
    pub fn sqlstate(&self) -> &'static str {
        match self {
            ClientAuthError::Password { .. } => sqlstate::INVALID_PASSWORD,
            ClientAuthError::NoUser
            | ClientAuthError::NoCertificate
            | ClientAuthError::CertificateName { .. }
            | ClientAuthError::CertificateUser { .. }
            | ClientAuthError::ChannelBinding(_) => sqlstate::INVALID_AUTHORIZATION,
            ClientAuthError::Protocol(_) | ClientAuthError::Gone => sqlstate::PROTOCOL_VIOLATION,
            ClientAuthError::Random => sqlstate::INTERNAL_ERROR,
        }
    }

    /// What to do about it, when there is something the user can change.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            ClientAuthError::NoCertificate => Some(
                "connect with sslmode=require (or verify-full) and sslcert=/sslkey= naming a certificate signed by the proxy's --client-ca",
            ),
            ClientAuthError::ChannelBinding(_) => Some(
                "something between the client and the proxy terminates TLS with another certificate (a TLS proxy or load balancer): connect to the proxy directly, or pass TCP through unchanged",
            ),
            _ => None,
        }
    }

    /// A fixed label for the auth-failures metric, or `None` when the client just left.
    pub fn metric_reason(&self) -> Option<&'static str> {
        match self {
            ClientAuthError::Password { .. } => Some("client_password"),
            ClientAuthError::NoCertificate
            | ClientAuthError::CertificateName { .. }
            | ClientAuthError::CertificateUser { .. } => Some("client_certificate"),
            ClientAuthError::ChannelBinding(_) => Some("client_channel_binding"),
            ClientAuthError::NoUser | ClientAuthError::Protocol(_) => Some("client_protocol"),
            ClientAuthError::Gone | ClientAuthError::Random => None,
        }
    }
}

/// What the client's TLS session, if any, brings to its authentication.
#[derive(Debug, Clone, Copy, Default)]
pub struct Channel<'a> {
    /// The verified end-entity certificate the client presented.
    pub certificate: Option<&'a CertificateDer<'a>>,
    /// The `tls-server-end-point` data of the certificate the proxy served on this
    /// connection: `Some` offers SCRAM-SHA-256-PLUS.
    pub end_point: Option<&'a [u8]>,
}

/// Authenticates the client that sent `user` in its StartupMessage over `channel`. Returns
/// the user name it proved (`None` with `trust`). On success with `scram` the client has
/// been sent AuthenticationSASLFinal; AuthenticationOk follows with the server's greeting.
pub async fn authenticate<S>(
    auth: &ClientAuth,
    client: &mut PgStream<S>,
    user: Option<&str>,
    channel: Channel<'_>,
) -> Result<Option<String>, ClientAuthError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match auth {
        ClientAuth::Trust => Ok(None),
        ClientAuth::Cert => {
            let certificate = channel.certificate.ok_or(ClientAuthError::NoCertificate)?;
            let user = user.ok_or(ClientAuthError::NoUser)?;
            let cn = common_name(certificate).map_err(|why| ClientAuthError::CertificateName {
                user: user.to_owned(),
                why,
            })?;
            if cn != user {
                return Err(ClientAuthError::CertificateUser {
                    user: user.to_owned(),
                    cn,
                });
            }
            Ok(Some(cn))
        }
        ClientAuth::Scram { users, mock_secret } => {
            let user = user.ok_or(ClientAuthError::NoUser)?;
            let server = scram_server(users.get(user), user, mock_secret, channel.end_point)?;
            scram_exchange(client, server, user, users.get(user).is_some()).await?;
            Ok(Some(user.to_owned()))
        }
        ClientAuth::Password { users, mock_secret } => {
            let user = user.ok_or(ClientAuthError::NoUser)?;
            password_exchange(client, user, users.get(user), mock_secret).await?;
            Ok(Some(user.to_owned()))
        }
    }
}

/// Asks for the password in cleartext and checks it against the user's verifier the way
/// PostgreSQL checks a cleartext password against a SCRAM secret: the salted password with
/// the stored salt and rounds, then `StoredKey`, compared in constant time. An unknown user
/// is checked against a made-up verifier, so it costs the same time and gets the same answer.
async fn password_exchange<S>(
    client: &mut PgStream<S>,
    user: &str,
    verifier: Option<&ScramVerifier>,
    mock_secret: &[u8; 32],
) -> Result<(), ClientAuthError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    send(client, &password::AUTHENTICATION_CLEARTEXT_PASSWORD).await?;
    let payload = Zeroizing::new(read_password_message(client, "a password").await?);
    let password = password::parse_password_message(&payload)
        .map_err(|e| ClientAuthError::Protocol(e.to_string()))?;
    let mock = mock_verifier(mock_secret, user);
    let checked = verifier.unwrap_or(&mock);
    let stored = stored_key(password, &checked.salt, checked.iterations);
    if verifier.is_some() && !password.is_empty() && constant_time_eq(&stored, &checked.stored_key)
    {
        return Ok(());
    }
    Err(ClientAuthError::Password {
        user: user.to_owned(),
        known: verifier.is_some(),
    })
}

/// The exchange for `user`: against its verifier or a made-up one, with -PLUS offered when
/// the connection has binding data.
fn scram_server(
    verifier: Option<&ScramVerifier>,
    user: &str,
    mock_secret: &[u8; 32],
    end_point: Option<&[u8]>,
) -> Result<ScramServer, ClientAuthError> {
    let mut nonce = [0u8; 18];
    random(&mut nonce)?;
    let server = ScramServer::new(
        verifier,
        mock_verifier(mock_secret, user),
        STANDARD.encode(nonce),
    );
    Ok(match end_point {
        Some(end_point) => server.with_tls_server_end_point(end_point.to_vec()),
        None => server,
    })
}

/// The SASL conversation: offer the mechanisms, answer the client's first message, check
/// its proof (and binding), send the server's signature.
async fn scram_exchange<S>(
    client: &mut PgStream<S>,
    mut server: ScramServer,
    user: &str,
    known: bool,
) -> Result<(), ClientAuthError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let failed = |failure: ScramFailure| match failure {
        ScramFailure::WrongProof => ClientAuthError::Password {
            user: user.to_owned(),
            known,
        },
        ScramFailure::BindingMismatch | ScramFailure::BindingNegotiation => {
            ClientAuthError::ChannelBinding(failure)
        }
        other => ClientAuthError::Protocol(other.to_string()),
    };

    let mut out = BytesMut::new();
    let offered = server.mechanisms();
    sasl::authentication_sasl(offered, &mut out);
    send(client, &out).await?;

    let payload = read_password_message(client, "a SASL response").await?;
    let (mechanism, first) = sasl::parse_sasl_initial_response(&payload)
        .map_err(|e| ClientAuthError::Protocol(e.to_string()))?;
    if !server.select_mechanism(mechanism) {
        return Err(ClientAuthError::Protocol(format!(
            "client selected an invalid SASL authentication mechanism {mechanism:?}: the proxy offers {} on this connection",
            offered.join(" and ")
        )));
    }
    let server_first = server.client_first(first).map_err(failed)?;
    out.clear();
    sasl::authentication_sasl_continue(server_first.as_bytes(), &mut out);
    send(client, &out).await?;

    let payload = read_password_message(client, "a SASL response").await?;
    let server_final = server.client_final(&payload).map_err(failed)?;
    out.clear();
    sasl::authentication_sasl_final(server_final.as_bytes(), &mut out);
    send(client, &out).await
}

/// A per-process secret for unknown users' made-up salts, from the TLS provider's random
/// source.
fn mock_secret() -> Result<[u8; 32], ClientAuthError> {
    let mut secret = [0u8; 32];
    random(&mut secret)?;
    Ok(secret)
}

/// A verifier for a user the file does not list: a salt derived from the name, so asking
/// twice gives the same answer, as for a real user.
fn mock_verifier(secret: &[u8; 32], user: &str) -> ScramVerifier {
    let salt = hmac_sha256(secret, user.as_bytes());
    ScramVerifier {
        iterations: MOCK_ITERATIONS,
        salt: salt[..16].to_vec(),
        stored_key: [0; 32],
        server_key: [0; 32],
    }
}

async fn send<S>(client: &mut PgStream<S>, bytes: &[u8]) -> Result<(), ClientAuthError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    client
        .write_message(bytes)
        .await
        .map_err(|_| ClientAuthError::Gone)?;
    client.flush().await.map_err(|_| ClientAuthError::Gone)
}

/// Reads one password-family message (`'p'`, `what` it should carry) and returns its
/// payload. Terminate or a closed connection means the client gave up (libpq does so to ask
/// the user for a password).
async fn read_password_message<S>(
    client: &mut PgStream<S>,
    what: &str,
) -> Result<Vec<u8>, ClientAuthError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let message = match client.read_message(MAX_SASL_MESSAGE_LEN + HEADER_LEN).await {
        Ok(message) => message,
        Err(ReadError::TooLong { len, .. }) => {
            return Err(ClientAuthError::Protocol(format!(
                "invalid length {} of {what}",
                len - 1
            )));
        }
        Err(ReadError::BadLength(e)) => return Err(ClientAuthError::Protocol(e.to_string())),
        Err(_) => return Err(ClientAuthError::Gone),
    };
    match message.header.tag {
        b'p' => Ok(message.payload().to_vec()),
        b'X' => Err(ClientAuthError::Gone),
        other => Err(ClientAuthError::Protocol(format!(
            "expected {what}, got message type '{}'",
            char::from(other).escape_default()
        ))),
    }
}

/// Fills `buf` from the TLS provider's random source (aws-lc), the one the handshakes use.
fn random(buf: &mut [u8]) -> Result<(), ClientAuthError> {
    crate::net::crypto::crypto_provider()
        .secure_random
        .fill(buf)
        .map_err(|_| ClientAuthError::Random)
}

#[cfg(test)]
mod tests;
