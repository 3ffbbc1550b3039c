//! Wire compression on the server's side of a session. With `compression=lz4` the proxy asks
//! the server for `_pq_.compression=lz4`; a Redshift server that compresses answers `'z'` and
//! then sends its results as LZ4 blocks, which [`ServerLink`] decompresses into the plain
//! protocol stream before anything else reads it: the login, the greeting and the relay all
//! see ordinary frames. The client side never sees compression, so every client benefits,
//! not only the drivers that implement Redshift's scheme. Client-to-server traffic is never
//! compressed.
//!
//! A session whose server does not compress (or one with `compression=off`) reads the socket
//! straight into the relay's buffer as before; only a compressed session holds the 64 KiB
//! history ([`history`]) and borrows a pooled buffer for the compressed bytes while they are
//! in flight.

mod history;
pub mod lz4_stream;

use std::fmt;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context, Poll};

use prometheus_client::metrics::counter::Counter;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::relay::buffer_pool::{self, PooledBuffer};
pub use history::{MAX_BLOCK_OUTPUT, WINDOW};
pub use lz4_stream::{Lz4Stream, Lz4StreamError};

/// Whether the proxy asks the server to compress what it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Do not ask: the server sends plain messages (the default until the scheme has been
    /// seen working against a real cluster).
    #[default]
    Off,
    /// Ask for LZ4 (`_pq_.compression=lz4`) and decompress what the server compresses.
    Lz4,
}

impl Compression {
    /// The spelling users write.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Off => "off",
            Compression::Lz4 => "lz4",
        }
    }

    /// The startup parameter that asks the server for this compression, if any.
    pub fn startup_parameter(self) -> Option<(&'static str, &'static str)> {
        match self {
            Compression::Off => None,
            Compression::Lz4 => Some(("_pq_.compression", "lz4")),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `compression` value other than `off` or `lz4`.
#[derive(Debug, thiserror::Error)]
#[error("unknown compression '{0}': write off or lz4")]
pub struct UnknownCompression(pub String);

impl FromStr for Compression {
    type Err = UnknownCompression;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "off" => Ok(Compression::Off),
            "lz4" => Ok(Compression::Lz4),
            _ => Err(UnknownCompression(s.to_owned())),
        }
    }
}

/// Live counts of the bytes that cross the server connection, compressed or not, so the
/// ratio to the client-side byte counts shows what compression saves.
#[derive(Debug, Clone, Default)]
pub struct WireCounters {
    /// Bytes written to the server.
    pub to_server: Counter,
    /// Bytes read from the server.
    pub from_server: Counter,
}

/// The server connection as the rest of the proxy reads it: plain frames, whether or not the
/// server compresses. Writes pass straight through.
#[derive(Debug)]
pub struct ServerLink<S> {
    inner: S,
    inflow: Option<Box<Inflow>>,
    wire: WireCounters,
}

/// A compressed stream's decoder and the compressed bytes read but not yet decoded.
#[derive(Debug)]
struct Inflow {
    decoder: Lz4Stream,
    /// Borrowed from the pool only while compressed bytes are waiting.
    input: Option<PooledBuffer>,
    start: usize,
    end: usize,
}

impl<S> ServerLink<S> {
    /// A link that passes bytes through (`compression=off`).
    pub fn plain(inner: S, wire: WireCounters) -> ServerLink<S> {
        ServerLink {
            inner,
            inflow: None,
            wire,
        }
    }

    /// A link that decodes `'z'`, `'k'` and `'m'` from the first byte on (the proxy asked for
    /// compression in its StartupMessage).
    pub fn decoding(inner: S, wire: WireCounters) -> ServerLink<S> {
        ServerLink {
            inner,
            inflow: Some(Box::new(Inflow {
                decoder: Lz4Stream::new(),
                input: None,
                start: 0,
                end: 0,
            })),
            wire,
        }
    }

    /// The server acknowledged compression (`'z'`).
    pub fn compressed(&self) -> bool {
        self.inflow
            .as_ref()
            .is_some_and(|inflow| inflow.decoder.acknowledged())
    }

    /// The stream under the link.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Called once the login is over: a server that did not acknowledge compression will not
    /// compress, so the link stops decoding and the relay reads the socket directly again.
    /// Bytes already read past the greeting are appended to `pending`, to be sent first.
    pub fn settle(&mut self, pending: &mut impl Extend<u8>) {
        let Some(inflow) = &self.inflow else {
            return;
        };
        if inflow.decoder.acknowledged() || !inflow.decoder.at_boundary() {
            return;
        }
        if let Some(input) = &inflow.input {
            pending.extend(input[inflow.start..inflow.end].iter().copied());
        }
        self.inflow = None;
    }
}

/// A decoding failure as the IO error the readers see; [`decompress_error`] finds it again.
fn invalid(error: Lz4StreamError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

/// The decompression failure inside an error a [`ServerLink`] returned, if it is one.
pub fn decompress_error(error: &io::Error) -> Option<&Lz4StreamError> {
    error.get_ref()?.downcast_ref::<Lz4StreamError>()
}

impl<S: AsyncRead + Unpin> AsyncRead for ServerLink<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(inflow) = this.inflow.as_deref_mut() else {
            let before = out.filled().len();
            let polled = Pin::new(&mut this.inner).poll_read(cx, out);
            this.wire
                .from_server
                .inc_by((out.filled().len() - before) as u64);
            return polled;
        };
        if out.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if inflow.start < inflow.end || inflow.decoder.has_pending() {
                let input = match &inflow.input {
                    Some(buf) => &buf[inflow.start..inflow.end],
                    None => &[][..],
                };
                let progress = inflow
                    .decoder
                    .decode(input, out.initialize_unfilled())
                    .map_err(invalid)?;
                inflow.start += progress.consumed;
                if inflow.start == inflow.end {
                    inflow.input = None;
                }
                if progress.produced > 0 {
                    out.advance(progress.produced);
                    return Poll::Ready(Ok(()));
                }
                if inflow.start < inflow.end {
                    // With room and input the decoder always moves on; input left means it
                    // took some of it (a header, a control message) and goes on with the rest.
                    if progress.consumed == 0 {
                        return Poll::Ready(Err(io::Error::other("the decompressor stalled")));
                    }
                    continue;
                }
            }
            let buf = inflow
                .input
                .get_or_insert_with(|| buffer_pool::SHARED.take());
            let mut raw = ReadBuf::new(&mut buf[..]);
            match Pin::new(&mut this.inner).poll_read(cx, &mut raw) {
                Poll::Pending => {
                    inflow.input = None;
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => {
                    inflow.input = None;
                    return Poll::Ready(Err(e));
                }
                Poll::Ready(Ok(())) => {
                    let n = raw.filled().len();
                    if n == 0 {
                        inflow.input = None;
                        inflow.decoder.finish().map_err(invalid)?;
                        return Poll::Ready(Ok(()));
                    }
                    this.wire.from_server.inc_by(n as u64);
                    inflow.start = 0;
                    inflow.end = n;
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ServerLink<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = std::task::ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        this.wire.to_server.inc_by(written as u64);
        Poll::Ready(Ok(written))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = std::task::ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs))?;
        this.wire.to_server.inc_by(written as u64);
        Poll::Ready(Ok(written))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
