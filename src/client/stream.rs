//! The client's side of a session: a TCP or Unix-socket stream that may turn into TLS after
//! SSLRequest, and the peer address the logs name. The session reads and writes it the same
//! way before and after the switch.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::net::either::MaybeTls;

/// Who connected: a TCP peer, or a process on this machine through the Unix socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAddr {
    /// A TCP client.
    Tcp(SocketAddr),
    /// A Unix-socket client (`--unix-socket`).
    Unix,
}

impl ClientAddr {
    /// True for the Unix socket, whose clients are on this machine and cannot be overheard.
    pub fn is_local_socket(self) -> bool {
        matches!(self, ClientAddr::Unix)
    }
}

impl fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientAddr::Tcp(address) => address.fmt(f),
            // PostgreSQL's own name for a Unix-socket client in its logs.
            ClientAddr::Unix => f.write_str("[local]"),
        }
    }
}

impl From<SocketAddr> for ClientAddr {
    fn from(address: SocketAddr) -> ClientAddr {
        ClientAddr::Tcp(address)
    }
}

/// A client connection: plain until an SSLRequest is answered with a handshake.
pub type ClientStream<C> = MaybeTls<C, TlsStream<C>>;

impl<C> ClientStream<C>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    /// The end-entity certificate the client presented, already verified by rustls against
    /// `--client-ca`.
    pub fn peer_certificate(&self) -> Option<&CertificateDer<'static>> {
        self.tls()?.get_ref().1.peer_certificates()?.first()
    }

    /// Runs the server side of a TLS handshake over the plain stream. On failure the
    /// stream is gone (`Closed`): nothing more can be said to the client in plain text.
    pub async fn start_tls(&mut self, acceptor: TlsAcceptor) -> io::Result<()> {
        let Some(plain) = self.take_plain() else {
            return Err(io::Error::other("TLS is already on"));
        };
        let tls = acceptor.accept(plain).await?;
        *self = MaybeTls::Tls(Box::new(tls));
        Ok(())
    }
}
