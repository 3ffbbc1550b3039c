//! Redshift's compressed server stream, decoded into the plain protocol stream: pure, no IO.
//!
//! A server that was asked for `_pq_.compression=lz4` and compresses answers `'z'`
//! (CompressionAck) and may later send `'k'` (set compression method); both are framed like
//! any message, reset the decompressor, and their bodies mean nothing else here. Then its
//! messages may come as `'m'` blocks: `'m'`, an Int32 length counting itself, and one raw LZ4
//! block that decompresses to at most 16 KiB of the plain stream, referring back into the
//! last 64 KiB of earlier output. A block may end inside a message and hold many; plain
//! messages may come between blocks. Everything that is not `'z'`, `'k'` or `'m'` passes
//! through as it came.
//!
//! [`Lz4Stream::decode`] takes whatever bytes the socket gave, split anywhere, and writes the
//! plain stream into the caller's buffer: a block is decompressed straight into it when it
//! has room for a whole block, and only otherwise into the history first.

use lz4_flex::block::DecompressError;

use super::history::{History, MAX_BLOCK_OUTPUT};
use crate::protocol::frame::HEADER_LEN;

/// `'z'`: the server acknowledged `_pq_.compression` and starts a compressed stream.
pub const COMPRESSION_ACK: u8 = b'z';
/// `'k'`: the server set a compression method; the stream starts afresh.
pub const SET_COMPRESSION: u8 = b'k';
/// `'m'`: one LZ4 block of the plain stream.
pub const COMPRESSED_DATA: u8 = b'm';

/// The longest block body that can decompress to at most 16 KiB: LZ4's worst case for
/// incompressible input (`LZ4_COMPRESSBOUND`). Anything longer is refused before it is
/// buffered.
pub const MAX_BLOCK_INPUT: usize = MAX_BLOCK_OUTPUT + MAX_BLOCK_OUTPUT / 255 + 16;

/// The most a `'z'` or `'k'` body may be; they carry a method name at most.
const MAX_CONTROL_BODY: usize = 1024;

/// Why the server's stream cannot be decoded. Each ends the session: the plain stream after
/// it would be wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Lz4StreamError {
    /// `'m'` came before `'z'` or `'k'`: there is no stream to continue.
    #[error("the server sent a compressed block before acknowledging compression")]
    BlockBeforeAck,
    /// An `'m'` body longer than any 16 KiB block compresses to.
    #[error(
        "the server sent a compressed block of {len} bytes, over the {MAX_BLOCK_INPUT} a 16 KiB block can take"
    )]
    BlockTooLong {
        /// The body length it claimed.
        len: usize,
    },
    /// The block decompresses to more than 16 KiB.
    #[error("a compressed block from the server decompresses to more than 16 KiB")]
    BlockOutputTooLarge,
    /// The block refers to bytes before the 64 KiB history (or before the last reset).
    #[error("a compressed block from the server refers to data outside the 64 KiB history")]
    OutsideHistory,
    /// The block ends in the middle of a literal or match, or holds a zero offset.
    #[error("a compressed block from the server is corrupt or truncated ({0})")]
    Corrupt(String),
    /// A `'z'` or `'k'` body over 1 KiB.
    #[error("the server sent a compression message '{tag}' of {len} bytes", tag = char::from(*tag))]
    ControlTooLong {
        /// `'z'` or `'k'`.
        tag: u8,
        /// The body length it claimed.
        len: usize,
    },
    /// A length field below its own four bytes.
    #[error("message '{}' has length {len}, below the minimum of 4: the stream is corrupt", char::from(*tag).escape_default())]
    BadLength {
        /// The type byte.
        tag: u8,
        /// The length it claimed.
        len: u32,
    },
    /// The server closed in the middle of a compressed block or a compression message.
    #[error("the server closed the connection in the middle of a compressed block")]
    Truncated,
}

impl From<DecompressError> for Lz4StreamError {
    fn from(error: DecompressError) -> Lz4StreamError {
        match error {
            DecompressError::OutputTooSmall { .. } => Lz4StreamError::BlockOutputTooLarge,
            DecompressError::OffsetOutOfBounds => Lz4StreamError::OutsideHistory,
            other => Lz4StreamError::Corrupt(other.to_string()),
        }
    }
}

/// Where the decoder is in the server's stream.
#[derive(Debug)]
enum State {
    /// Reading a message header; `have` of its five bytes so far.
    Header {
        header: [u8; HEADER_LEN],
        have: usize,
    },
    /// Writing a plain message's header out; `sent` of five so far, `body` bytes to follow.
    PlainHeader {
        header: [u8; HEADER_LEN],
        sent: usize,
        body: usize,
    },
    /// Passing a plain message's body through; bytes left.
    PlainBody { left: usize },
    /// Skipping a `'z'` or `'k'` body; bytes left.
    Control { left: usize },
    /// Gathering an `'m'` body that the input split; `len` bytes in all.
    Block { len: usize, staged: Vec<u8> },
    /// Handing out a block decompressed into the history: `at..end` of the history is left.
    Drain { at: usize, end: usize },
    /// The stream was found broken; every later call gives the same error.
    Failed(Lz4StreamError),
}

const AT_BOUNDARY: State = State::Header {
    header: [0; HEADER_LEN],
    have: 0,
};

/// How much one [`Lz4Stream::decode`] call took and gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Input bytes used; the rest must be offered again.
    pub consumed: usize,
    /// Plain bytes written to the front of the output.
    pub produced: usize,
}

/// The decoder of one server connection's stream. It holds no history until the server
/// acknowledges compression, so a session whose server does not compress pays nothing.
#[derive(Debug)]
pub struct Lz4Stream {
    state: State,
    history: Option<Box<History>>,
    acknowledged: bool,
}

impl Default for Lz4Stream {
    fn default() -> Self {
        Lz4Stream::new()
    }
}

impl Lz4Stream {
    /// A decoder at the start of a server's stream.
    pub fn new() -> Lz4Stream {
        Lz4Stream {
            state: AT_BOUNDARY,
            history: None,
            acknowledged: false,
        }
    }

    /// The server sent `'z'`: it compresses.
    pub fn acknowledged(&self) -> bool {
        self.acknowledged
    }

    /// Between messages with nothing held back: a close here loses nothing.
    pub fn at_boundary(&self) -> bool {
        matches!(self.state, State::Header { have: 0, .. })
    }

    /// Decoded bytes wait for room in an output buffer, or an error waits to be reported:
    /// the next call needs no new input.
    pub fn has_pending(&self) -> bool {
        matches!(
            self.state,
            State::Drain { .. } | State::PlainHeader { .. } | State::Failed(_)
        )
    }

    /// Decodes from `input` into `out` until the input is used up or `out` is full. Call
    /// again with the unconsumed input (or new input) to go on. Plain bytes decoded before a
    /// broken block are still handed out; the error comes with the next call, and every call
    /// after it.
    pub fn decode(&mut self, input: &[u8], out: &mut [u8]) -> Result<Progress, Lz4StreamError> {
        let mut progress = Progress::default();
        match self.decode_into(input, out, &mut progress) {
            Ok(()) => Ok(progress),
            Err(error) => {
                self.state = State::Failed(error.clone());
                if progress.produced > 0 {
                    Ok(progress)
                } else {
                    Err(error)
                }
            }
        }
    }

    /// The server's stream ended; an error if that cut a block or compression message.
    pub fn finish(&self) -> Result<(), Lz4StreamError> {
        match &self.state {
            State::Block { .. } | State::Control { .. } => Err(Lz4StreamError::Truncated),
            State::Header { have, .. } if *have > 0 => Err(Lz4StreamError::Truncated),
            State::Failed(error) => Err(error.clone()),
            _ => Ok(()),
        }
    }

    fn decode_into(
        &mut self,
        input: &[u8],
        out: &mut [u8],
        progress: &mut Progress,
    ) -> Result<(), Lz4StreamError> {
        loop {
            let rest = &input[progress.consumed..];
            let room = out.len() - progress.produced;
            match &mut self.state {
                State::Failed(error) => return Err(error.clone()),
                State::Header { header, have } => {
                    // A full output stops the decoder between messages, so a link whose
                    // server never compressed can hand the rest over as it came.
                    if rest.is_empty() || (room == 0 && *have == 0) {
                        return Ok(());
                    }
                    let take = (HEADER_LEN - *have).min(rest.len());
                    header[*have..*have + take].copy_from_slice(&rest[..take]);
                    *have += take;
                    progress.consumed += take;
                    if *have == HEADER_LEN {
                        let header = *header;
                        self.state = self.after_header(header)?;
                    }
                }
                State::PlainHeader { header, sent, body } => {
                    if room == 0 {
                        return Ok(());
                    }
                    let n = (HEADER_LEN - *sent).min(room);
                    out[progress.produced..progress.produced + n]
                        .copy_from_slice(&header[*sent..*sent + n]);
                    progress.produced += n;
                    *sent += n;
                    if *sent == HEADER_LEN {
                        self.state = match *body {
                            0 => AT_BOUNDARY,
                            left => State::PlainBody { left },
                        };
                    }
                }
                State::PlainBody { left } => {
                    let n = (*left).min(rest.len()).min(room);
                    if n == 0 {
                        return Ok(());
                    }
                    out[progress.produced..progress.produced + n].copy_from_slice(&rest[..n]);
                    progress.produced += n;
                    progress.consumed += n;
                    *left -= n;
                    if *left == 0 {
                        self.state = AT_BOUNDARY;
                    }
                }
                State::Control { left } => {
                    if rest.is_empty() {
                        return Ok(());
                    }
                    let n = (*left).min(rest.len());
                    progress.consumed += n;
                    *left -= n;
                    if *left == 0 {
                        self.state = AT_BOUNDARY;
                    }
                }
                State::Block { len, staged } => {
                    if staged.is_empty() && rest.len() >= *len {
                        // The whole body is in the input: decompress it from there.
                        let len = *len;
                        progress.consumed += len;
                        let block = &rest[..len];
                        self.inflate(block, &mut out[progress.produced..], progress)?;
                        continue;
                    }
                    if rest.is_empty() {
                        return Ok(());
                    }
                    let n = (*len - staged.len()).min(rest.len());
                    // Split by the input: gathered in a buffer of the block's exact length,
                    // which the header bounded.
                    staged.reserve_exact(*len - staged.len());
                    staged.extend_from_slice(&rest[..n]);
                    progress.consumed += n;
                    if staged.len() == *len {
                        let block = std::mem::take(staged);
                        self.inflate(&block, &mut out[progress.produced..], progress)?;
                    }
                }
                State::Drain { at, end } => {
                    let n = (*end - *at).min(room);
                    if n == 0 {
                        return Ok(());
                    }
                    let range = *at..*at + n;
                    *at += n;
                    let done = *at == *end;
                    if let Some(history) = &self.history {
                        out[progress.produced..progress.produced + n]
                            .copy_from_slice(history.bytes(range));
                    }
                    progress.produced += n;
                    if done {
                        self.state = AT_BOUNDARY;
                    }
                }
            }
        }
    }

    /// The state a complete header leads to.
    fn after_header(&mut self, header: [u8; HEADER_LEN]) -> Result<State, Lz4StreamError> {
        let tag = header[0];
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        if len < 4 {
            return Err(Lz4StreamError::BadLength { tag, len });
        }
        let body = len as usize - 4;
        match tag {
            COMPRESSION_ACK | SET_COMPRESSION => {
                if body > MAX_CONTROL_BODY {
                    return Err(Lz4StreamError::ControlTooLong { tag, len: body });
                }
                if tag == COMPRESSION_ACK {
                    self.acknowledged = true;
                }
                self.history.get_or_insert_with(Box::default).reset();
                Ok(match body {
                    0 => AT_BOUNDARY,
                    left => State::Control { left },
                })
            }
            COMPRESSED_DATA => {
                if self.history.is_none() {
                    return Err(Lz4StreamError::BlockBeforeAck);
                }
                if body > MAX_BLOCK_INPUT {
                    return Err(Lz4StreamError::BlockTooLong { len: body });
                }
                Ok(State::Block {
                    len: body,
                    staged: Vec::new(),
                })
            }
            _ => Ok(State::PlainHeader {
                header,
                sent: 0,
                body,
            }),
        }
    }

    /// Decompresses one whole block into `out` when it has room for any block, else into the
    /// history to be drained from there.
    fn inflate(
        &mut self,
        block: &[u8],
        out: &mut [u8],
        progress: &mut Progress,
    ) -> Result<(), Lz4StreamError> {
        let history = self
            .history
            .as_mut()
            .ok_or(Lz4StreamError::BlockBeforeAck)?;
        if out.len() >= MAX_BLOCK_OUTPUT {
            progress.produced += history.decompress_into(block, out)?;
            self.state = AT_BOUNDARY;
        } else {
            let range = history.decompress_in_place(block)?;
            // A block may stand for no bytes at all (a lone token); with nothing to drain the
            // decoder is at a boundary, not waiting for room it will never use.
            self.state = if range.is_empty() {
                AT_BOUNDARY
            } else {
                State::Drain {
                    at: range.start,
                    end: range.end,
                }
            };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
