//! One framed PostgreSQL connection: a byte stream plus the read buffer that turns it into
//! messages. Every exchange before the relay goes through it (the client's first packets
//! and its password messages, the server's login and greeting, `--check`'s query), so a
//! message is framed, bounded and mapped to an error in one place. The relay then takes the
//! stream and whatever is left in the buffer, and moves bytes without framing them again.

use std::io;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::protocol::error_response::ErrorResponse;
use crate::protocol::frame::{BadFrameLength, FrameHeader, HEADER_LEN};
use crate::protocol::startup::{self, StartupError};

/// How long a refusal may take to write: a peer that does not read is not waited for.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// At most this much input is read and dropped while closing after a refusal.
const DISCARD_LIMIT: usize = 64 * 1024;
/// What one read asks the stream for while framing messages; login messages are small.
const READ_CHUNK: usize = 8 * 1024;

/// One tagged message as it arrived: its header and its bytes, header included, so it can be
/// parsed (`payload`) or forwarded untouched (`bytes`).
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// The type byte and length.
    pub header: FrameHeader,
    /// The whole message, header first.
    pub bytes: &'a [u8],
}

impl<'a> Message<'a> {
    /// The bytes after the header.
    pub fn payload(&self) -> &'a [u8] {
        &self.bytes[HEADER_LEN..]
    }
}

/// Why no message could be read. Each side maps these to its own error: a client that
/// leaves is not a server that broke the protocol.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The peer closed between messages.
    #[error("the connection was closed")]
    Closed,
    /// The peer closed part way through a message.
    #[error("the connection was closed in the middle of a message")]
    Truncated,
    /// The length field is below its own size.
    #[error(transparent)]
    BadLength(#[from] BadFrameLength),
    /// The message is longer than this exchange allows.
    #[error("message '{}' of {len} bytes is over the limit of {max} bytes", char::from(*tag).escape_default())]
    TooLong {
        /// The type byte.
        tag: u8,
        /// The length it claimed.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Why no first packet could be read from a client.
#[derive(Debug, thiserror::Error)]
pub enum StartupReadError {
    /// The packet is malformed, cut short or over the size limit.
    #[error(transparent)]
    Packet(#[from] StartupError),
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A byte stream framed as PostgreSQL messages. Bytes read past the current message stay in
/// the buffer for the next read, and `into_parts` hands them on.
#[derive(Debug)]
pub struct PgStream<S> {
    io: S,
    buf: BytesMut,
    /// Bytes at the front of `buf` that belong to the message last returned.
    consumed: usize,
}

impl<S> PgStream<S> {
    /// Frames `io`; nothing is allocated until the first read.
    pub fn new(io: S) -> PgStream<S> {
        PgStream {
            io,
            buf: BytesMut::new(),
            consumed: 0,
        }
    }

    /// The stream under the framing.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// The stream under the framing, for a switch such as a TLS handshake (see `buffered`).
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.io
    }

    /// Bytes read from the stream but not yet returned as a message. Must be zero before
    /// the stream is switched to TLS: bytes that came before the handshake were not
    /// encrypted and must not be taken as if they were.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.consumed
    }

    /// Takes the bytes read but not yet returned as a message: the first byte of a direct
    /// TLS handshake, which belongs to the TLS session and not to the framing.
    pub fn take_read_ahead(&mut self) -> BytesMut {
        self.buf.advance(self.consumed);
        self.consumed = 0;
        self.buf.split()
    }

    /// The stream and the bytes read past the last message, for the relay to send on first.
    pub fn into_parts(mut self) -> (S, BytesMut) {
        self.buf.advance(self.consumed);
        (self.io, self.buf)
    }
}

impl<S: AsyncRead + Unpin> PgStream<S> {
    /// True when nothing waits to be read: no byte is buffered and a read now would have to
    /// wait, so the peer has neither spoken nor closed. A warm upstream session must be
    /// silent when it is handed over, or the client would get a server's farewell (or a
    /// closed socket) instead of its session. Polls once without waiting; whatever the poll
    /// reads is lost, which is fine since a stream that is not quiet is discarded.
    pub fn is_quiet(&mut self) -> bool {
        if self.buffered() > 0 {
            return false;
        }
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut byte = [0u8; 1];
        let mut buf = tokio::io::ReadBuf::new(&mut byte);
        std::pin::Pin::new(&mut self.io)
            .poll_read(&mut cx, &mut buf)
            .is_pending()
    }
}

impl<S> PgStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Reads one untagged first packet (StartupMessage, SSLRequest, GSSENCRequest or
    /// CancelRequest) with the server's size limits. `None` when the peer closed before
    /// sending a byte (health checks, port scans). Reads exactly the packet and nothing past
    /// it, so a TLS handshake that follows an SSLRequest finds its first bytes on the socket.
    /// A byte left by `peek_first_byte` is the packet's first.
    pub async fn read_startup(&mut self) -> Result<Option<Vec<u8>>, StartupReadError> {
        debug_assert!(self.buffered() <= 1, "startup packets come first");
        let mut length = [0u8; 4];
        if self.buffered() == 1 {
            length[0] = self.buf[self.consumed];
            self.buf.clear();
            self.consumed = 0;
        } else if self.io.read(&mut length[..1]).await? == 0 {
            return Ok(None);
        }
        self.fill_exact(&mut length, 1, startup::MIN_STARTUP_PACKET_LEN)
            .await?;
        let len = startup::packet_len(length)?;
        let mut packet = vec![0u8; len];
        packet[..4].copy_from_slice(&length);
        self.fill_exact(&mut packet, 4, len).await?;
        Ok(Some(packet))
    }

    /// The connection's first byte, read but left in the buffer for `read_startup` (or for
    /// `take_read_ahead` when it opens a direct TLS handshake); `None` when the peer closed
    /// without sending one. Reads one byte only, so nothing else needs handing over.
    pub async fn peek_first_byte(&mut self) -> io::Result<Option<u8>> {
        debug_assert_eq!(self.consumed, 0, "only before the first packet");
        if let Some(&first) = self.buf.first() {
            return Ok(Some(first));
        }
        let mut first = [0u8; 1];
        if self.io.read(&mut first).await? == 0 {
            return Ok(None);
        }
        self.buf.extend_from_slice(&first);
        Ok(Some(first[0]))
    }

    /// Reads into `buf` after its first `filled` bytes until it is full. An end of stream
    /// part way through is an incomplete packet, unlike a client that leaves between packets.
    async fn fill_exact(
        &mut self,
        buf: &mut [u8],
        mut filled: usize,
        expected: usize,
    ) -> Result<(), StartupReadError> {
        while filled < buf.len() {
            match self.io.read(&mut buf[filled..]).await? {
                0 => {
                    let got = filled;
                    return Err(StartupError::Truncated { expected, got }.into());
                }
                n => filled += n,
            }
        }
        Ok(())
    }

    /// Reads the next tagged message, refusing one whose length is over `max_len` before
    /// reading its payload. The message stays valid until the next read.
    pub async fn read_message(&mut self, max_len: usize) -> Result<Message<'_>, ReadError> {
        self.buf.advance(self.consumed);
        self.consumed = 0;
        let header = loop {
            if let Some(header) = FrameHeader::parse(&self.buf) {
                break header?;
            }
            self.fill_more().await?;
        };
        let total = 1 + header.len as usize;
        if total > max_len {
            return Err(ReadError::TooLong {
                tag: header.tag,
                len: total,
                max: max_len,
            });
        }
        while self.buf.len() < total {
            self.fill_more().await?;
        }
        self.consumed = total;
        Ok(Message {
            header,
            bytes: &self.buf[..total],
        })
    }

    /// One read into the buffer; an end of stream is `Closed` between messages and
    /// `Truncated` inside one.
    async fn fill_more(&mut self) -> Result<(), ReadError> {
        self.buf.reserve(READ_CHUNK);
        if self.io.read_buf(&mut self.buf).await? == 0 {
            return Err(if self.buf.is_empty() {
                ReadError::Closed
            } else {
                ReadError::Truncated
            });
        }
        Ok(())
    }

    /// Writes encoded messages (not flushed: see `flush`).
    pub async fn write_message(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.io.write_all(bytes).await
    }

    /// Sends what was written.
    pub async fn flush(&mut self) -> io::Result<()> {
        self.io.flush().await
    }

    /// Sends `error` and closes: the one way the proxy refuses a peer.
    pub async fn refuse(&mut self, error: &ErrorResponse) {
        let mut out = BytesMut::new();
        error.encode(&mut out);
        self.send_and_close(&out).await;
    }

    /// Writes `bytes` (best effort, bounded in time) and shuts the connection down.
    /// Whatever the peer still sends is read and discarded until it closes (briefly):
    /// closing a socket with unread input makes the kernel send a reset, which can destroy
    /// the error message before the peer reads it.
    pub async fn send_and_close(&mut self, bytes: &[u8]) {
        let io = &mut self.io;
        let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, async {
            io.write_all(bytes).await?;
            io.shutdown().await?;
            let mut scratch = [0u8; 1024];
            let mut discarded = 0usize;
            while discarded < DISCARD_LIMIT {
                match io.read(&mut scratch).await? {
                    0 => break,
                    n => discarded += n,
                }
            }
            Ok::<_, io::Error>(())
        })
        .await;
    }

    /// Shuts the connection down without a message (after a cancel request, say).
    pub async fn close(&mut self) {
        self.close_with(None).await;
    }

    /// Sends `error`, if any, and shuts the connection down without waiting for the peer:
    /// for a session the proxy ends itself (a stop, an idle timeout), where the client owes
    /// nothing and a stop should not wait on it. Each write is bounded in time.
    pub async fn close_with(&mut self, error: Option<&ErrorResponse>) {
        if let Some(error) = error {
            let mut out = BytesMut::new();
            error.encode(&mut out);
            let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, self.io.write_all(&out)).await;
        }
        let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, self.io.shutdown()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(tag: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        out.extend_from_slice(&(payload.len() as u32 + 4).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    #[tokio::test]
    async fn messages_split_and_joined_across_reads_come_out_whole() {
        let (mut far, near) = tokio::io::duplex(64);
        let mut wire = message(b'p', b"first");
        wire.extend(message(b'p', &[7u8; 100]));
        wire.extend(b"left");
        let writer = tokio::spawn(async move {
            for piece in wire.chunks(3) {
                far.write_all(piece).await.expect("write");
            }
            far
        });
        let mut stream = PgStream::new(near);
        let first = stream.read_message(1024).await.expect("first");
        assert_eq!(first.header.tag, b'p');
        assert_eq!(first.payload(), b"first");
        let second = stream.read_message(1024).await.expect("second");
        assert_eq!(second.payload(), &[7u8; 100][..]);
        let far = writer.await.expect("writer");
        drop(far);
        let err = stream.read_message(1024).await.expect_err("cut short");
        assert!(matches!(err, ReadError::Truncated), "{err:?}");
        let (_, left) = stream.into_parts();
        assert_eq!(&left[..], b"left");
    }

    #[tokio::test]
    async fn an_end_between_messages_is_closed_and_a_long_one_is_refused_unread() {
        let (mut far, near) = tokio::io::duplex(1024);
        far.write_all(&message(b'D', &[0u8; 200]))
            .await
            .expect("write");
        drop(far);
        let mut stream = PgStream::new(near);
        let err = stream.read_message(100).await.expect_err("too long");
        assert!(
            matches!(
                err,
                ReadError::TooLong {
                    tag: b'D',
                    len: 205,
                    max: 100
                }
            ),
            "{err:?}"
        );
        let (mut far, near) = tokio::io::duplex(1024);
        far.write_all(&message(b'Z', b"I")).await.expect("write");
        drop(far);
        let mut stream = PgStream::new(near);
        assert_eq!(stream.read_message(100).await.expect("Z").payload(), b"I");
        assert!(matches!(
            stream.read_message(100).await,
            Err(ReadError::Closed)
        ));
    }

    #[tokio::test]
    async fn a_bad_length_is_reported() {
        let (mut far, near) = tokio::io::duplex(1024);
        far.write_all(&[b'Q', 0, 0, 0, 3]).await.expect("write");
        let mut stream = PgStream::new(near);
        let err = stream.read_message(100).await.expect_err("bad length");
        assert!(matches!(err, ReadError::BadLength(_)), "{err:?}");
    }

    #[tokio::test]
    async fn a_startup_packet_is_read_exactly_and_nothing_past_it() {
        let (mut far, near) = tokio::io::duplex(1024);
        let ssl_request = [0, 0, 0, 8, 4, 210, 22, 47];
        far.write_all(&ssl_request).await.expect("write");
        far.write_all(b"\x16\x03").await.expect("write");
        let mut stream = PgStream::new(near);
        let packet = stream.read_startup().await.expect("read").expect("packet");
        assert_eq!(packet, ssl_request);
        assert_eq!(stream.buffered(), 0);
        let mut next = [0u8; 2];
        stream.get_mut().read_exact(&mut next).await.expect("rest");
        assert_eq!(&next, b"\x16\x03");
    }

    #[tokio::test]
    async fn a_peeked_first_byte_stays_for_the_startup_packet_or_is_handed_out() {
        let (mut far, near) = tokio::io::duplex(1024);
        let ssl_request = [0, 0, 0, 8, 4, 210, 22, 47];
        far.write_all(&ssl_request).await.expect("write");
        let mut stream = PgStream::new(near);
        assert_eq!(stream.peek_first_byte().await.expect("peek"), Some(0));
        assert_eq!(stream.peek_first_byte().await.expect("again"), Some(0));
        assert_eq!(stream.buffered(), 1);
        let packet = stream.read_startup().await.expect("read").expect("packet");
        assert_eq!(packet, ssl_request);
        assert_eq!(stream.buffered(), 0);

        let (mut far, near) = tokio::io::duplex(1024);
        far.write_all(b"\x16\x03\x01").await.expect("write");
        let mut stream = PgStream::new(near);
        assert_eq!(stream.peek_first_byte().await.expect("peek"), Some(0x16));
        assert_eq!(&stream.take_read_ahead()[..], b"\x16");
        assert_eq!(stream.buffered(), 0);
        let mut next = [0u8; 2];
        stream.get_mut().read_exact(&mut next).await.expect("rest");
        assert_eq!(&next, b"\x03\x01", "only one byte was read");

        let (far, near) = tokio::io::duplex(1024);
        drop(far);
        let mut stream = PgStream::new(near);
        assert_eq!(stream.peek_first_byte().await.expect("peek"), None);
    }

    #[tokio::test]
    async fn startup_packets_cut_short_or_absent() {
        let (far, near) = tokio::io::duplex(1024);
        drop(far);
        let mut stream = PgStream::new(near);
        assert!(stream.read_startup().await.expect("read").is_none());
        let (mut far, near) = tokio::io::duplex(1024);
        far.write_all(&[0, 0, 0, 40, 0]).await.expect("write");
        drop(far);
        let mut stream = PgStream::new(near);
        let err = stream.read_startup().await.expect_err("truncated");
        assert!(
            matches!(
                err,
                StartupReadError::Packet(StartupError::Truncated {
                    expected: 40,
                    got: 5
                })
            ),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn refuse_sends_the_error_and_closes() {
        let (mut far, near) = tokio::io::duplex(1024);
        let mut stream = PgStream::new(near);
        stream.refuse(&ErrorResponse::fatal("08P01", "bad")).await;
        let mut got = Vec::new();
        far.read_to_end(&mut got).await.expect("read");
        assert_eq!(got[0], b'E');
        assert!(got.windows(5).any(|w| w == b"08P01"));
    }
}
