//! The client's side of a session: a TCP or Unix-socket stream that may turn into TLS after
//! SSLRequest or at once (direct TLS), and the peer address the logs name. The session
//! reads and writes it the same way before and after the switch.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::CertificateDer;
use rustls::server::Acceptor;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tokio_rustls::{LazyConfigAcceptor, TlsAcceptor};

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

    /// The ALPN protocol the handshake agreed on, if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.tls()?.get_ref().1.alpn_protocol()
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

    /// The same handshake for a client that opened with it (direct TLS): `read_ahead`, the
    /// bytes already read to tell it from a startup packet, is fed to rustls first. On
    /// failure the stream is gone, as for `start_tls`.
    pub async fn start_direct_tls(
        &mut self,
        config: Arc<ServerConfig>,
        read_ahead: &[u8],
    ) -> io::Result<()> {
        let Some(plain) = self.take_plain() else {
            return Err(io::Error::other("TLS is already on"));
        };
        let mut acceptor = Acceptor::default();
        let mut rest = read_ahead;
        while !rest.is_empty() {
            if acceptor.read_tls(&mut rest)? == 0 {
                return Err(io::Error::other("the TLS record could not be buffered"));
            }
        }
        let start = LazyConfigAcceptor::new(acceptor, plain).await?;
        let tls = start.into_stream(config).await?;
        *self = MaybeTls::Tls(Box::new(tls));
        Ok(())
    }
}
