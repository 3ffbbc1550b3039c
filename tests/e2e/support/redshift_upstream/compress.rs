//! Redshift's wire compression on the upstream's side of the client connection, for a client
//! that asked with `_pq_.compression=lz4`: `'z'` (CompressionAck) goes out before anything
//! else, then everything the upstream writes toward the client (the authentication request,
//! the greeting, the relayed results) leaves as `'m'` LZ4 blocks made by the shared
//! [`Lz4Encoder`] (each block's dictionary is the stream so far), cut at pseudo-random sizes
//! of 1 byte to 16 KiB, so blocks end inside messages and hold many. At message boundaries,
//! every third write sends its first message plain between blocks, and every fifth sends
//! `'k'` (set compression method), which restarts the stream.
//!
//! A client query that contains [`CORRUPT_BLOCK_MARKER`] makes the next write, at a message
//! boundary, send a block that refers past the (just reset) history, as a broken server
//! would.

use std::io::Result;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use redshift_auth_proxy::protocol::frame::FrameWalker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::wire::{self, Io};
use crate::support::protocol_checks::Lz4Encoder;

/// Text a test puts in a query to have the upstream send a broken block.
pub const CORRUPT_BLOCK_MARKER: &[u8] = b"lz4-corrupt-block";

/// The client connection with compression on its way out.
pub struct Compressing {
    inner: Io,
    encoder: Lz4Encoder,
    /// Encoded bytes not yet written, from `written` on.
    out: Vec<u8>,
    written: usize,
    /// Follows the plain stream's messages, to know where boundaries are.
    walker: FrameWalker,
    writes: u64,
    /// xorshift state for block sizes.
    seed: u64,
    corrupt_next: bool,
}

impl Compressing {
    /// Wraps the client connection; `'z'` is the first thing written.
    pub fn new(inner: Io, seed: u64) -> Compressing {
        let mut encoder = Lz4Encoder::new();
        let out = encoder.ack();
        Compressing {
            inner,
            encoder,
            out,
            written: 0,
            walker: FrameWalker::new(),
            writes: 0,
            seed: seed | 1,
            corrupt_next: false,
        }
    }

    /// A block size from 1 byte to 16 KiB, half the time a whole block.
    fn next_cut(&mut self) -> usize {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        if self.seed.is_multiple_of(2) {
            16 * 1024
        } else {
            (self.seed >> 8) as usize % (16 * 1024) + 1
        }
    }

    /// Encodes one write of the plain stream.
    fn encode(&mut self, plain: &[u8]) {
        self.writes += 1;
        let mut rest = plain;
        if self.walker.at_boundary() {
            if self.corrupt_next {
                self.corrupt_next = false;
                self.out.extend(self.encoder.set_method());
                self.out
                    .extend(wire::message(b'm', &[0x10, b'x', 0xff, 0xff]));
            }
            if self.writes.is_multiple_of(5) {
                self.out.extend(self.encoder.set_method());
            }
            let first = rest
                .get(1..5)
                .map(|len| 1 + u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize);
            if let Some(first) = first
                && self.writes.is_multiple_of(3)
                && first <= rest.len()
            {
                self.out.extend_from_slice(&rest[..first]);
                rest = &rest[first..];
            }
        }
        while !rest.is_empty() {
            let cut = self.next_cut().min(rest.len());
            let (block, tail) = rest.split_at(cut);
            self.out.extend(self.encoder.block(block));
            rest = tail;
        }
        // The plain stream from PostgreSQL is well framed; a bad length would only stop the
        // plain messages between blocks.
        let _ = self.walker.walk(plain, |_| {});
    }

    /// Writes out what is encoded.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        while self.written < self.out.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.out.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Compressing {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let read = &buf.filled()[before..];
        if read
            .windows(CORRUPT_BLOCK_MARKER.len())
            .any(|w| w == CORRUPT_BLOCK_MARKER)
        {
            this.corrupt_next = true;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Compressing {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        this.encode(buf);
        // Accepted whatever happens now: the next call (or a flush) writes the rest.
        let _ = this.poll_drain(cx)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}
