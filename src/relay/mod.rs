//! The post-login relay: both directions in one future. Each direction borrows a buffer from
//! the shared pool while bytes are in flight and gives it back when its reader would wait
//! with nothing buffered, so an idle session holds no relay buffer. A `FrameWalker` follows
//! message headers inside each chunk read, to count messages and queries and notice
//! Terminate, and the chunk is then written out whole: no copy or allocation per message,
//! and no lock or task per direction.

pub mod buffer_pool;

use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::protocol::frame::BadFrameLength;
use crate::protocol::{FrameHeader, FrameWalker};
use crate::upstream::compression::{Lz4StreamError, decompress_error};

use buffer_pool::PooledBuffer;

/// Keep reading into a chunk before writing it out while at least this much room is left: a
/// TLS record's plaintext, so a bulk stream is forwarded in a few large writes.
const MIN_READ_ROOM: usize = 16 * 1024;

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
    /// Why the relay stopped.
    pub end: RelayEnd,
    /// The stream toward the client ends on a message boundary with nothing buffered, so a
    /// proxy ErrorResponse can still be appended cleanly (for shutdown and idle ends).
    pub client_at_boundary: bool,
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
    /// The server's compressed stream could not be decoded.
    #[error("{error}")]
    Decompress {
        /// What was wrong with it.
        error: Lz4StreamError,
        /// The stream toward the client was between messages, so an ErrorResponse can
        /// still be sent cleanly.
        client_at_boundary: bool,
    },
}

/// Which way a half carries bytes; decides what its headers mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    ClientToServer,
    ServerToClient,
}

/// The Prometheus counters one direction adds to as it goes, so a long COPY shows up while
/// it runs rather than when the session ends.
#[derive(Debug, Clone, Default)]
pub struct LiveCounters {
    /// Bytes relayed.
    pub bytes: prometheus_client::metrics::counter::Counter,
    /// Messages relayed.
    pub messages: prometheus_client::metrics::counter::Counter,
    /// Queries (client to server only).
    pub queries: prometheus_client::metrics::counter::Counter,
}

/// What the relay is told from outside: where to count, when to stop.
#[derive(Debug, Clone, Default)]
pub struct RelayControl {
    /// Counters for client to server.
    pub up: LiveCounters,
    /// Counters for server to client.
    pub down: LiveCounters,
    /// Fires when the proxy shuts down and open sessions must end.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// End the session after this long without a byte either way (`--idle-timeout`).
    pub idle_timeout: Option<Duration>,
}

/// Why the relay stopped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum RelayEnd {
    /// Both sides closed (or the server closed).
    #[default]
    Closed,
    /// The proxy is shutting down.
    Shutdown,
    /// Nothing moved for `--idle-timeout`.
    Idle,
}

/// Follows one direction's message headers and counts what they are.
struct Counter {
    direction: Direction,
    walker: FrameWalker,
    stats: DirectionStats,
    terminated: bool,
    live: LiveCounters,
    /// A ReadyForQuery (`'Z'`) header went by since the relay last looked.
    saw_ready: bool,
}

impl Counter {
    /// Counts the headers of a chunk about to be forwarded.
    fn count(&mut self, chunk: &[u8]) -> Result<(), BadFrameLength> {
        let Counter {
            direction,
            walker,
            stats,
            terminated,
            live,
            saw_ready,
        } = self;
        let (messages_before, queries_before) = (stats.messages, stats.queries);
        stats.bytes += chunk.len() as u64;
        let walked = walker.walk(chunk, |header: FrameHeader| {
            stats.messages += 1;
            match (*direction, header.tag) {
                (Direction::ClientToServer, b'Q' | b'E') => stats.queries += 1,
                (Direction::ClientToServer, b'X') => *terminated = true,
                (Direction::ServerToClient, b'E') => stats.errors += 1,
                (Direction::ServerToClient, b'Z') => *saw_ready = true,
                _ => {}
            }
        });
        live.bytes.inc_by(chunk.len() as u64);
        live.messages.inc_by(stats.messages - messages_before);
        if stats.queries > queries_before {
            live.queries.inc_by(stats.queries - queries_before);
        }
        walked
    }
}

/// One direction: a reused buffer and the counter of what passed through it.
struct Half {
    /// Borrowed from the pool only while bytes are in flight.
    buf: Option<PooledBuffer>,
    /// A read error met while filling a chunk, reported once the chunk is written.
    deferred_error: Option<io::Error>,
    start: usize,
    end: usize,
    counter: Counter,
    read_done: bool,
    unflushed: bool,
    done: bool,
    /// Set whenever bytes move; the idle timer reads and clears it.
    active: bool,
}

enum HalfError {
    Read(io::Error),
    Write(io::Error),
    Corrupt(BadFrameLength),
}

impl Half {
    fn new(direction: Direction, live: LiveCounters) -> Half {
        Half {
            buf: None,
            deferred_error: None,
            start: 0,
            end: 0,
            counter: Counter {
                direction,
                walker: FrameWalker::new(),
                stats: DirectionStats::default(),
                terminated: false,
                live,
                saw_ready: false,
            },
            read_done: false,
            unflushed: false,
            done: false,
            active: false,
        }
    }

    /// Moves bytes from `reader` to `writer` until the reader is exhausted and the writer
    /// shut down (Ready), or nothing can move right now (Pending).
    /// Nothing buffered and the walker between messages.
    fn at_boundary(&self) -> bool {
        self.start == self.end && self.counter.walker.at_boundary()
    }

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
                let chunk = match &self.buf {
                    Some(buf) => &buf[self.start..self.end],
                    None => &[][..],
                };
                let n = ready!(writer.as_mut().poll_write(cx, chunk)).map_err(HalfError::Write)?;
                if n == 0 {
                    return Poll::Ready(Err(HalfError::Write(io::ErrorKind::WriteZero.into())));
                }
                self.start += n;
                self.unflushed = true;
                self.active = true;
            }
            if let Some(e) = self.deferred_error.take() {
                return Poll::Ready(Err(HalfError::Read(e)));
            }
            if self.read_done {
                self.buf = None;
                ready!(writer.as_mut().poll_flush(cx)).map_err(HalfError::Write)?;
                // A peer that already went away cannot be shut down; that is not a failure.
                let _ = ready!(writer.as_mut().poll_shutdown(cx));
                self.done = true;
                return Poll::Ready(Ok(()));
            }
            self.start = 0;
            self.end = 0;
            let buf = self.buf.get_or_insert_with(|| buffer_pool::SHARED.take());
            let mut read_buf = ReadBuf::new(&mut buf[..]);
            match reader.as_mut().poll_read(cx, &mut read_buf) {
                Poll::Pending => {
                    // Nothing buffered: the buffer goes back to the pool while this waits.
                    self.buf = None;
                    // Flush only when the reader has drained: one flush per burst, not per chunk.
                    if self.unflushed {
                        ready!(writer.as_mut().poll_flush(cx)).map_err(HalfError::Write)?;
                        self.unflushed = false;
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) if is_unclean_eof(&e) => self.read_done = true,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(HalfError::Read(e))),
                Poll::Ready(Ok(())) if read_buf.filled().is_empty() => self.read_done = true,
                Poll::Ready(Ok(())) => {
                    // A TLS stream hands out one record per read: gather what is already
                    // there into this chunk so it leaves in one write.
                    while read_buf.remaining() >= MIN_READ_ROOM {
                        let before = read_buf.filled().len();
                        match reader.as_mut().poll_read(cx, &mut read_buf) {
                            Poll::Pending => break,
                            Poll::Ready(Ok(())) if read_buf.filled().len() == before => {
                                self.read_done = true;
                                break;
                            }
                            Poll::Ready(Ok(())) => {}
                            Poll::Ready(Err(e)) if is_unclean_eof(&e) => {
                                self.read_done = true;
                                break;
                            }
                            Poll::Ready(Err(e)) => {
                                self.deferred_error = Some(e);
                                break;
                            }
                        }
                    }
                    let n = read_buf.filled().len();
                    self.end = n;
                    self.counter.count(&buf[..n]).map_err(HalfError::Corrupt)?;
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
/// counted. `pending_to_client` and `pending_to_server` hold bytes each side sent past its
/// last framed message before the relay began (normally none); they are sent first. The session ends when the server closes, when the client closes
/// and the server follows (or `SERVER_CLOSE_GRACE` passes), on the first error, when
/// `control.shutdown` fires, or after `control.idle_timeout` without traffic.
pub async fn relay<C, S>(
    client: &mut C,
    server: &mut S,
    pending_to_client: &[u8],
    pending_to_server: &[u8],
    control: &RelayControl,
) -> Result<RelayStats, RelayError>
where
    C: AsyncRead + AsyncWrite + Unpin + ?Sized,
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let mut up = Half::new(Direction::ClientToServer, control.up.clone());
    let mut down = Half::new(Direction::ServerToClient, control.down.clone());
    if !pending_to_client.is_empty() {
        tokio::io::AsyncWriteExt::write_all(client, pending_to_client)
            .await
            .map_err(RelayError::Client)?;
        down.counter
            .count(pending_to_client)
            .map_err(RelayError::Corrupt)?;
    }
    if !pending_to_server.is_empty() {
        tokio::io::AsyncWriteExt::write_all(server, pending_to_server)
            .await
            .map_err(RelayError::Server)?;
        up.counter
            .count(pending_to_server)
            .map_err(RelayError::Corrupt)?;
    }
    let mut grace: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let mut idle = control
        .idle_timeout
        .map(|limit| (limit, Box::pin(tokio::time::sleep(limit))));
    let shutdown = control.shutdown.cancelled();
    tokio::pin!(shutdown);
    // The server owes an answer: the client spoke after the last ReadyForQuery. Only a
    // session waiting on its client is idle (as PostgreSQL's idle_session_timeout), never one
    // whose long query is still running.
    let mut server_owes_answer = false;
    let mut up_bytes_seen = 0u64;
    let mut last_activity = tokio::time::Instant::now();

    let outcome = poll_fn(|cx| {
        let up_result = up.poll_copy(cx, Pin::new(&mut *client), Pin::new(&mut *server));
        if let Poll::Ready(Err(e)) = up_result {
            return Poll::Ready(Err(into_relay_error_up(e)));
        }
        match down.poll_copy(cx, Pin::new(&mut *server), Pin::new(&mut *client)) {
            Poll::Ready(Ok(())) => return Poll::Ready(Ok(RelayEnd::Closed)),
            Poll::Ready(Err(e)) => {
                return Poll::Ready(Err(into_relay_error_down(e, down.at_boundary())));
            }
            Poll::Pending => {}
        }
        if up.done {
            let sleep =
                grace.get_or_insert_with(|| Box::pin(tokio::time::sleep(SERVER_CLOSE_GRACE)));
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(RelayEnd::Closed));
            }
        }
        if shutdown.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Ok(RelayEnd::Shutdown));
        }
        if up.counter.stats.bytes != up_bytes_seen {
            up_bytes_seen = up.counter.stats.bytes;
            server_owes_answer = true;
        }
        if std::mem::take(&mut down.counter.saw_ready) {
            server_owes_answer = false;
        }
        if let Some((limit, sleep)) = idle.as_mut() {
            // Moving the deadline on every chunk would cost a timer update per read; instead
            // activity is stamped, and when the timer fires it either ends the session or
            // moves to the last activity plus the limit.
            if up.active || down.active || server_owes_answer {
                up.active = false;
                down.active = false;
                last_activity = tokio::time::Instant::now();
            }
            while sleep.as_mut().poll(cx).is_ready() {
                let deadline = last_activity + *limit;
                if tokio::time::Instant::now() >= deadline {
                    return Poll::Ready(Ok(RelayEnd::Idle));
                }
                sleep.as_mut().reset(deadline);
            }
        }
        Poll::Pending
    })
    .await;

    outcome.map(|end| RelayStats {
        client_to_server: up.counter.stats,
        server_to_client: down.counter.stats,
        client_terminated: up.counter.terminated,
        end,
        client_at_boundary: down.at_boundary(),
    })
}

fn into_relay_error_up(e: HalfError) -> RelayError {
    match e {
        HalfError::Read(e) => RelayError::Client(e),
        HalfError::Write(e) => RelayError::Server(e),
        HalfError::Corrupt(e) => RelayError::Corrupt(e),
    }
}

fn into_relay_error_down(e: HalfError, client_at_boundary: bool) -> RelayError {
    match e {
        HalfError::Read(e) => match decompress_error(&e) {
            Some(error) => RelayError::Decompress {
                error: error.clone(),
                client_at_boundary,
            },
            None => RelayError::Server(e),
        },
        HalfError::Write(e) => RelayError::Client(e),
        HalfError::Corrupt(e) => RelayError::Corrupt(e),
    }
}
