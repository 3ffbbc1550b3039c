//! The TCP stream under the server's TLS session, read ahead in large chunks. rustls asks
//! its transport for about 4 KiB at a time; straight on a socket that is four or five system
//! calls per 16 KiB record, which caps a bulk COPY well below what AES-GCM allows. Here one
//! system call fills a 64 KiB pooled buffer and rustls's small reads are served from memory.
//! The buffer goes back to the pool as soon as it is drained, so an idle session holds none.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::relay::buffer_pool::{self, BUFFER_SIZE, PooledBuffer};

/// A stream whose reads go through a pooled read-ahead buffer; writes pass straight through.
#[derive(Debug)]
pub struct ReadAhead<S> {
    inner: S,
    buf: Option<PooledBuffer>,
    start: usize,
    end: usize,
}

impl<S> ReadAhead<S> {
    /// Wraps `inner`; nothing is allocated until the first read.
    pub fn new(inner: S) -> ReadAhead<S> {
        ReadAhead {
            inner,
            buf: None,
            start: 0,
            end: 0,
        }
    }

    /// Bytes read from the stream and not yet handed out.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// The stream underneath, to look at its socket.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.start == this.end {
            if out.remaining() >= BUFFER_SIZE {
                // The caller's buffer is as large as ours: no point in a detour.
                return Pin::new(&mut this.inner).poll_read(cx, out);
            }
            let buf = this.buf.get_or_insert_with(|| buffer_pool::SHARED.take());
            let mut ahead = ReadBuf::new(&mut buf[..]);
            match Pin::new(&mut this.inner).poll_read(cx, &mut ahead) {
                Poll::Ready(Ok(())) if !ahead.filled().is_empty() => {
                    this.start = 0;
                    this.end = ahead.filled().len();
                }
                other => {
                    // Waiting, end of stream or an error: nothing is buffered, so nothing
                    // needs the buffer.
                    this.buf = None;
                    return other;
                }
            }
        }
        let Some(buf) = this.buf.as_ref() else {
            return Poll::Ready(Ok(()));
        };
        let n = out.remaining().min(this.end - this.start);
        out.put_slice(&buf[this.start..this.start + n]);
        this.start += n;
        if this.start == this.end {
            this.buf = None;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
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
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn small_reads_come_from_one_large_read() {
        let (mut far, near) = tokio::io::duplex(256 * 1024);
        let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        far.write_all(&payload).await.expect("write");
        drop(far);
        let mut reader = ReadAhead::new(near);
        let mut got = Vec::new();
        let mut small = [0u8; 4096];
        loop {
            let n = reader.read(&mut small).await.expect("read");
            if n == 0 {
                break;
            }
            got.extend_from_slice(&small[..n]);
            // Whatever is left of the read-ahead chunk stays buffered until asked for.
            assert!(reader.buffered() < BUFFER_SIZE);
        }
        assert_eq!(got, payload);
        assert!(reader.buf.is_none(), "a drained reader holds no buffer");
    }

    #[tokio::test]
    async fn a_waiting_reader_holds_no_buffer() {
        let (mut far, near) = tokio::io::duplex(1024);
        let mut reader = ReadAhead::new(near);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut small = [0u8; 16];
        let mut out = ReadBuf::new(&mut small);
        assert!(
            Pin::new(&mut reader)
                .poll_read(&mut cx, &mut out)
                .is_pending()
        );
        assert!(reader.buf.is_none());
        far.write_all(b"hello").await.expect("write");
        reader.read_exact(&mut small[..5]).await.expect("read");
        assert_eq!(&small[..5], b"hello");
        assert!(reader.buf.is_none());
    }
}
