//! The server's side of a session: the TCP and TLS connection (`connect`), the login that
//! answers the server's authentication request with the temporary password and collects the
//! greeting (`login`, `auth`), and cancel requests forwarded to the server that owns a
//! session (`cancel`).

pub mod auth;
pub mod cancel;
pub mod compression;
mod connect;
mod login;
pub(crate) mod read_ahead;
pub mod tls;
pub mod warm;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rustls::ClientConfig;

use crate::protocol::error_response::ErrorResponse;
use crate::protocol::sqlstate;
use auth::AuthError;
use compression::{Compression, Lz4StreamError, WireCounters};
use tls::SslMode;

pub use connect::{
    ServerStream, UpstreamStream, connect, connect_and_login, socket_is_quiet, tls_resumed,
};
pub use login::{Greeting, login, upstream_startup_params};

/// Where and how to reach one server.
#[derive(Debug, Clone)]
pub struct UpstreamEndpoint {
    /// Host name or address, also the TLS server name (SNI).
    pub host: String,
    /// Server port.
    pub port: u16,
    /// How the certificate is checked.
    pub sslmode: SslMode,
    /// The rustls configuration for `sslmode`; `None` exactly when `sslmode` is `disable`.
    pub tls: Option<Arc<ClientConfig>>,
    /// How long TCP connect, the TLS handshake and the login together may take.
    pub connect_timeout: Duration,
    /// Whether the proxy asks the server to compress what it sends.
    pub compression: Compression,
    /// Bytes that cross the connection, as sent (compressed when the server compresses).
    pub wire: WireCounters,
}

impl UpstreamEndpoint {
    /// `host:port`, as users write it in messages.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Why the proxy could not open a session on the server.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The host name does not resolve.
    #[error("cannot resolve the server's host name \"{host}\": {source}")]
    Resolve {
        /// The name.
        host: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// No address accepted the TCP connection.
    #[error(
        "cannot connect to the server at {address}: {source}; check the host, the port and that security groups or firewalls let this machine in"
    )]
    Connect {
        /// `host:port`.
        address: String,
        /// The last connect error.
        source: io::Error,
    },
    /// TCP connect and TLS handshake took longer than `--connect-timeout`.
    #[error(
        "the server at {address} did not answer within {timeout:?} (--connect-timeout): check the host, port and network path"
    )]
    Timeout {
        /// `host:port`.
        address: String,
        /// The limit that passed.
        timeout: Duration,
    },
    /// The server answered SSLRequest with something other than `S`.
    #[error(
        "the server at {address} refused TLS: Redshift always offers TLS, so check that {address} is the cluster endpoint; for a local server without TLS use sslmode=disable"
    )]
    TlsRefused {
        /// `host:port`.
        address: String,
    },
    /// The TLS handshake failed; the message says which check and how to fix it.
    #[error("TLS with the server at {address} failed: {message}")]
    Handshake {
        /// `host:port`.
        address: String,
        /// What failed and what to do.
        message: String,
    },
    /// The server's ErrorResponse during login (wrong password, unknown database, …),
    /// forwarded to the client as the server sent it.
    #[error("the server refused the login: {sqlstate} {message}")]
    Server {
        /// Bytes to forward to the client: the greeting so far, then the ErrorResponse.
        forward: BytesMut,
        /// The server's SQLSTATE.
        sqlstate: String,
        /// The server's message.
        message: String,
    },
    /// The server asked for something the proxy cannot answer.
    #[error("{0}")]
    Auth(#[from] AuthError),
    /// The server's compressed stream could not be decoded during the login.
    #[error("the server at {address} sent a broken compressed stream: {source}")]
    Compression {
        /// `host:port`.
        address: String,
        /// What was wrong with it.
        source: Lz4StreamError,
    },
    /// The server broke the protocol or closed during login.
    #[error("the server at {address} broke off the login: {why}")]
    Protocol {
        /// `host:port`.
        address: String,
        /// What happened.
        why: String,
    },
}

impl UpstreamError {
    /// The ErrorResponse the client gets for a failure the proxy owns, or `None` when the
    /// server's own bytes are forwarded instead.
    pub fn client_error(&self) -> Option<ErrorResponse> {
        let code = match self {
            UpstreamError::Server { .. } => return None,
            UpstreamError::Auth(_) => sqlstate::INVALID_AUTHORIZATION,
            UpstreamError::Protocol { .. } => sqlstate::CONNECTION_FAILURE,
            UpstreamError::Compression { .. } => sqlstate::PROTOCOL_VIOLATION,
            _ => sqlstate::CLIENT_UNABLE_TO_ESTABLISH_CONNECTION,
        };
        Some(ErrorResponse::fatal(code, self.to_string()))
    }

    /// A short, fixed label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Resolve { .. } => "resolve",
            UpstreamError::Connect { .. } => "connect",
            UpstreamError::Timeout { .. } => "timeout",
            UpstreamError::TlsRefused { .. } => "tls_refused",
            UpstreamError::Handshake { .. } => "tls_handshake",
            UpstreamError::Server { .. } => "server_error",
            UpstreamError::Auth(_) => "auth_method",
            UpstreamError::Protocol { .. } => "protocol",
            UpstreamError::Compression { .. } => "compression",
        }
    }
}
