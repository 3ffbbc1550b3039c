//! The post-login relay: both directions in one future, each with one buffer reused for the
//! whole session. A `FrameWalker` follows message headers inside each chunk read, to count
//! messages and queries and notice Terminate, and the chunk is then written out whole: no
//! copy or allocation per message, and no lock or task per direction.

use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::protocol::frame::BadFrameLength;
use crate::protocol::{FrameHeader, FrameWalker};

/// Bytes read at most per direction in one go: four full TLS records, so a bulk COPY moves
/// in large chunks while an idle session holds two such buffers.
pub const RELAY_BUFFER_SIZE: usize = 64 * 1024;

/// After the client closes its side, how long the server may take to close its own before
/// the proxy stops waiting; servers close at once on EOF, so this only bounds a stuck one.
const SERVER_CLOSE_GRACE: Duration = Duration::from_secs(5);

/// What one direction carried.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DirectionStats {
    /// Bytes relayed.
    pub bytes: u64,
    /// Whole message headers seen.
    pub messages: u64,
    /// Simple queries (`'Q'`) and Executes (`'E'`); counted client to server only.
    pub queries: u64,
    /// ErrorResponses (`'E'`); counted server to client only.
    pub errors: u64,
}

/// What a session's relay carried both ways, and how it ended.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RelayStats {
    /// From the client toward the server.
    pub client_to_server: DirectionStats,
    /// From the server toward the client.
    pub server_to_client: DirectionStats,
    /// The client said Terminate (`'X'`) before closing: a clean, intended end.
    pub client_terminated: bool,
}

/// Why a relay ended other than by both sides closing.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Reading from or writing to the client failed.
    #[error("client connection failed: {0}")]
    Client(io::Error),
    /// Reading from or writing to the server failed.
    #[error("server connection failed: {0}")]
    Server(io::Error),
    /// A message length that cannot be right: the stream is corrupt.
    #[error("{0}")]
    Corrupt(BadFrameLength),
}

/// Which way a half carries bytes; decides what its headers mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    ClientToServer,
    ServerToClient,
}

/// Follows one direction's message headers and counts what they are.
struct Counter {
    direction: Direction,
    walker: FrameWalker,
    stats: DirectionStats,
    terminated: bool,
}

impl Counter {
    /// Counts the headers of a chunk about to be forwarded.
    fn count(&mut self, chunk: &[u8]) -> Result<(), BadFrameLength> {
        let Counter {
            direction,
            walker,
            stats,
            terminated,
        } = self;
        stats.bytes += chunk.len() as u64;
        walker.walk(chunk, |header: FrameHeader| {
            stats.messages += 1;
            match (*direction, header.tag) {
                (Direction::ClientToServer, b'Q' | b'E') => stats.queries += 1,
                (Direction::ClientToServer, b'X') => *terminated = true,
                (Direction::ServerToClient, b'E') => stats.errors += 1,
                _ => {}
            }
        })
    }
}

/// One direction: a reused buffer and the counter of what passed through it.
struct Half {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    counter: Counter,
    read_done: bool,
    unflushed: bool,
    done: bool,
}

enum HalfError {
    Read(io::Error),
    Write(io::Error),
    Corrupt(BadFrameLength),
}

impl Half {
    fn new(direction: Direction) -> Half {
        Half {
            buf: vec![0u8; RELAY_BUFFER_SIZE].into_boxed_slice(),
            start: 0,
            end: 0,
            counter: Counter {
                direction,
                walker: FrameWalker::new(),
                stats: DirectionStats::default(),
                terminated: false,
            },
            read_done: false,
            unflushed: false,
            done: false,
        }
    }

    /// Moves bytes from `reader` to `writer` until the reader is exhausted and the writer
    /// shut down (Ready), or nothing can move right now (Pending).
    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut reader: Pin<&mut R>,
        mut writer: Pin<&mut W>,
    ) -> Poll<Result<(), HalfError>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        if self.done {
            return Poll::Ready(Ok(()));
        }
        loop {
            while self.start < self.end {
                let n = ready!(
                    writer
                        .as_mut()
                        .poll_write(cx, &self.buf[self.start..self.end])
                )
                .map_err(HalfError::Write)?;
                if n == 0 {
                    return Poll::Ready(Err(HalfError::Write(io::ErrorKind::WriteZero.into())));
                }
                self.start += n;
                self.unflushed = true;
            }
            if self.read_done {
                ready!(writer.as_mut().poll_flush(cx)).map_err(HalfError::Write)?;
                // A peer that already went away cannot be shut down; that is not a failure.
                let _ = ready!(writer.as_mut().poll_shutdown(cx));
                self.done = true;
                return Poll::Ready(Ok(()));
            }
            self.start = 0;
            self.end = 0;
            let mut read_buf = ReadBuf::new(&mut self.buf);
            match reader.as_mut().poll_read(cx, &mut read_buf) {
                Poll::Pending => {
                    // Flush only when the reader has drained: one flush per burst, not per chunk.
                    if self.unflushed {
                        ready!(writer.as_mut().poll_flush(cx)).map_err(HalfError::Write)?;
                        self.unflushed = false;
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) if is_unclean_eof(&e) => self.read_done = true,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(HalfError::Read(e))),
                Poll::Ready(Ok(())) => {
                    let n = read_buf.filled().len();
                    if n == 0 {
                        self.read_done = true;
                    } else {
                        self.end = n;
                        self.counter
                            .count(&self.buf[..n])
                            .map_err(HalfError::Corrupt)?;
                    }
                }
            }
        }
    }
}

/// A peer that closes TCP without TLS close_notify: treated as an ordinary end of stream,
/// as libpq and PostgreSQL do.
fn is_unclean_eof(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::UnexpectedEof
}

/// Relays between `client` and `server` until the session ends, then returns what it
/// counted. `pending_to_client` holds server bytes already read during login (normally
/// empty) and is sent first. The session ends when the server closes, when the client closes
/// and the server follows (or `SERVER_CLOSE_GRACE` passes), or on the first error.
pub async fn relay<C, S>(
    client: &mut C,
    server: &mut S,
    pending_to_client: &[u8],
) -> Result<RelayStats, RelayError>
where
    C: AsyncRead + AsyncWrite + Unpin + ?Sized,
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let mut up = Half::new(Direction::ClientToServer);
    let mut down = Half::new(Direction::ServerToClient);
    if !pending_to_client.is_empty() {
        tokio::io::AsyncWriteExt::write_all(client, pending_to_client)
            .await
            .map_err(RelayError::Client)?;
        down.counter
            .count(pending_to_client)
            .map_err(RelayError::Corrupt)?;
    }
    let mut grace: Option<Pin<Box<tokio::time::Sleep>>> = None;

    let outcome = poll_fn(|cx| {
        let up_result = up.poll_copy(cx, Pin::new(&mut *client), Pin::new(&mut *server));
        if let Poll::Ready(Err(e)) = up_result {
            return Poll::Ready(Err(into_relay_error_up(e)));
        }
        match down.poll_copy(cx, Pin::new(&mut *server), Pin::new(&mut *client)) {
            Poll::Ready(Ok(())) => return Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => return Poll::Ready(Err(into_relay_error_down(e))),
            Poll::Pending => {}
        }
        if up.done {
            let sleep =
                grace.get_or_insert_with(|| Box::pin(tokio::time::sleep(SERVER_CLOSE_GRACE)));
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(()));
            }
        }
        Poll::Pending
    })
    .await;

    outcome.map(|()| RelayStats {
        client_to_server: up.counter.stats,
        server_to_client: down.counter.stats,
        client_terminated: up.counter.terminated,
    })
}

fn into_relay_error_up(e: HalfError) -> RelayError {
    match e {
        HalfError::Read(e) => RelayError::Client(e),
        HalfError::Write(e) => RelayError::Server(e),
        HalfError::Corrupt(e) => RelayError::Corrupt(e),
    }
}

fn into_relay_error_down(e: HalfError) -> RelayError {
    match e {
        HalfError::Read(e) => RelayError::Server(e),
        HalfError::Write(e) => RelayError::Client(e),
        HalfError::Corrupt(e) => RelayError::Corrupt(e),
    }
}
