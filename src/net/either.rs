//! A stream that is plain or TLS, read and written the same way either way: the client's
//! connection turns into TLS after an SSLRequest, and the server's is TLS unless
//! `sslmode=disable`. Written once for both sides, vectored writes included, so the relay's
//! gathered writes reach the socket as one system call whichever stream it is.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A plain stream `P` or a TLS stream `T` (boxed: a TLS session is large, and an idle plain
/// connection should not pay for it).
#[derive(Debug)]
pub enum MaybeTls<P, T> {
    /// Before (or without) TLS.
    Plain(P),
    /// After a TLS handshake.
    Tls(Box<T>),
    /// A handshake failed or was abandoned: reads see the end, writes fail.
    Closed,
}

impl<P, T> MaybeTls<P, T> {
    /// True once TLS is up.
    pub fn is_tls(&self) -> bool {
        matches!(self, MaybeTls::Tls(_))
    }

    /// The TLS session, when there is one.
    pub fn tls(&self) -> Option<&T> {
        match self {
            MaybeTls::Tls(tls) => Some(tls),
            _ => None,
        }
    }

    /// Takes the plain stream out for a handshake, leaving `Closed` behind until the caller
    /// puts the TLS stream in; `None` when the stream is not plain.
    pub fn take_plain(&mut self) -> Option<P> {
        match std::mem::replace(self, MaybeTls::Closed) {
            MaybeTls::Plain(plain) => Some(plain),
            other => {
                *self = other;
                None
            }
        }
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the connection is closed")
}

impl<P, T> AsyncRead for MaybeTls<P, T>
where
    P: AsyncRead + Unpin,
    T: AsyncRead + Unpin,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(plain) => Pin::new(plain).poll_read(cx, buf),
            MaybeTls::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
            MaybeTls::Closed => Poll::Ready(Ok(())),
        }
    }
}

impl<P, T> AsyncWrite for MaybeTls<P, T>
where
    P: AsyncWrite + Unpin,
    T: AsyncWrite + Unpin,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(plain) => Pin::new(plain).poll_write(cx, buf),
            MaybeTls::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
            MaybeTls::Closed => Poll::Ready(Err(closed())),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(plain) => Pin::new(plain).poll_write_vectored(cx, bufs),
            MaybeTls::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
            MaybeTls::Closed => Poll::Ready(Err(closed())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTls::Plain(plain) => plain.is_write_vectored(),
            MaybeTls::Tls(tls) => tls.is_write_vectored(),
            MaybeTls::Closed => false,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(plain) => Pin::new(plain).poll_flush(cx),
            MaybeTls::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
            MaybeTls::Closed => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(plain) => Pin::new(plain).poll_shutdown(cx),
            MaybeTls::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
            MaybeTls::Closed => Poll::Ready(Ok(())),
        }
    }
}
