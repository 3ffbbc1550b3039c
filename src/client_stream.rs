//! The client's side of a session: a TCP or Unix-socket stream that may turn into TLS after
//! SSLRequest, and the peer address the logs name. The session reads and writes it the same
//! way before and after the switch.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

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

/// A client connection, plain or TLS.
#[derive(Debug)]
pub enum ClientStream<C> {
    /// Before (or without) TLS.
    Plain(C),
    /// After a TLS handshake.
    Tls(Box<TlsStream<C>>),
    /// A handshake failed or was abandoned: reads see the end, writes fail.
    Closed,
}

impl<C> ClientStream<C>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    /// True once TLS is up.
    pub fn is_tls(&self) -> bool {
        matches!(self, ClientStream::Tls(_))
    }

    /// The end-entity certificate the client presented, already verified by rustls against
    /// `--client-ca`.
    pub fn peer_certificate(&self) -> Option<&CertificateDer<'static>> {
        match self {
            ClientStream::Tls(tls) => tls.get_ref().1.peer_certificates()?.first(),
            _ => None,
        }
    }

    /// Runs the server side of a TLS handshake over the plain stream. On failure the
    /// stream is gone (`Closed`): nothing more can be said to the client in plain text.
    pub async fn start_tls(&mut self, acceptor: TlsAcceptor) -> io::Result<()> {
        let ClientStream::Plain(plain) = std::mem::replace(self, ClientStream::Closed) else {
            return Err(io::Error::other("TLS is already on"));
        };
        let tls = acceptor.accept(plain).await?;
        *self = ClientStream::Tls(Box::new(tls));
        Ok(())
    }
}

impl<C> AsyncRead for ClientStream<C>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(plain) => Pin::new(plain).poll_read(cx, buf),
            ClientStream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
            ClientStream::Closed => Poll::Ready(Ok(())),
        }
    }
}

impl<C> AsyncWrite for ClientStream<C>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(plain) => Pin::new(plain).poll_write(cx, buf),
            ClientStream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
            ClientStream::Closed => Poll::Ready(Err(closed())),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(plain) => Pin::new(plain).poll_write_vectored(cx, bufs),
            ClientStream::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
            ClientStream::Closed => Poll::Ready(Err(closed())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ClientStream::Plain(plain) => plain.is_write_vectored(),
            ClientStream::Tls(tls) => tls.is_write_vectored(),
            ClientStream::Closed => false,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(plain) => Pin::new(plain).poll_flush(cx),
            ClientStream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
            ClientStream::Closed => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(plain) => Pin::new(plain).poll_shutdown(cx),
            ClientStream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
            ClientStream::Closed => Poll::Ready(Ok(())),
        }
    }
}

fn closed() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "the client connection is closed",
    )
}
