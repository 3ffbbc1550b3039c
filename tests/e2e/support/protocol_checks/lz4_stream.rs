//! Redshift's compressed server stream and its decompressor (`Lz4Stream`): the server's side
//! written here ([`Lz4Encoder`], as Redshift compresses, also used by the Redshift-flavoured
//! test upstream), and the properties: a valid stream decodes to the plain stream however its
//! blocks, its input and the output buffer are cut; any bytes give the same outcome, plain
//! stream or typed error, however they are cut, and never a panic.

use lz4_flex::block::compress_with_dict;
use redshift_auth_proxy::upstream::compression::lz4_stream::{
    COMPRESSED_DATA, COMPRESSION_ACK, SET_COMPRESSION,
};
use redshift_auth_proxy::upstream::compression::{
    Lz4Stream, Lz4StreamError, MAX_BLOCK_OUTPUT, WINDOW,
};

/// One tagged message.
fn tagged(tag: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&(payload.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The server's side of Redshift's wire compression: `'z'` and `'k'` start a fresh stream,
/// and each `'m'` block is compressed with the stream sent so far as its dictionary (what
/// `LZ4_compress_fast_continue` does over the server's ring buffer).
#[derive(Debug, Default)]
pub struct Lz4Encoder {
    /// Plain bytes sent since the last reset; only the last 64 KiB matter.
    sent: Vec<u8>,
}

impl Lz4Encoder {
    /// A new encoder.
    pub fn new() -> Lz4Encoder {
        Lz4Encoder::default()
    }

    /// CompressionAck (`'z'`), which starts the stream.
    pub fn ack(&mut self) -> Vec<u8> {
        self.sent.clear();
        tagged(COMPRESSION_ACK, b"")
    }

    /// Set compression method (`'k'`), which starts the stream afresh.
    pub fn set_method(&mut self) -> Vec<u8> {
        self.sent.clear();
        tagged(SET_COMPRESSION, b"lz4\0")
    }

    /// One `'m'` block holding `plain` (at most 16 KiB), which may start or end anywhere in
    /// a message.
    pub fn block(&mut self, plain: &[u8]) -> Vec<u8> {
        assert!(
            plain.len() <= MAX_BLOCK_OUTPUT,
            "a block holds at most 16 KiB"
        );
        let dictionary = &self.sent[self.sent.len().saturating_sub(WINDOW)..];
        let block = compress_with_dict(plain, dictionary);
        self.sent.extend_from_slice(plain);
        if self.sent.len() > 4 * WINDOW {
            self.sent.drain(..self.sent.len() - WINDOW);
        }
        tagged(COMPRESSED_DATA, &block)
    }
}

/// Decodes `wire` fed in pieces of the given lengths (in turn, then the rest at once; 0
/// counts as 1) through an output buffer of `out_size` bytes (at least 1), as the proxy's
/// link reads it, and returns the plain stream or the first error.
pub fn decode_lz4(
    wire: &[u8],
    pieces: &[usize],
    out_size: usize,
) -> Result<Vec<u8>, Lz4StreamError> {
    let mut decoder = Lz4Stream::new();
    let mut plain = Vec::new();
    let mut out = vec![0u8; out_size.max(1)];
    let mut lengths = pieces.iter().copied().chain(std::iter::repeat(usize::MAX));
    let mut at = 0;
    while at < wire.len() {
        let len = lengths.next().unwrap_or(usize::MAX).max(1);
        let mut input = &wire[at..wire.len().min(at.saturating_add(len))];
        at += input.len();
        while !input.is_empty() || decoder.has_pending() {
            let progress = decoder.decode(input, &mut out)?;
            assert!(
                progress.consumed > 0 || progress.produced > 0,
                "the decoder stalled with input and room"
            );
            plain.extend_from_slice(&out[..progress.produced]);
            input = &input[progress.consumed..];
        }
    }
    decoder.finish()?;
    Ok(plain)
}

/// Compresses a stream of whole `messages` as the test upstream does: `'z'`; then for each
/// half, its first message plain and the rest as blocks cut at `cuts` (cycled, each 1 to
/// 16 KiB), so blocks end inside messages; a `'k'` reset between the halves. Returns the
/// wire bytes and the plain stream they stand for.
pub fn compress_messages(messages: &[Vec<u8>], cuts: &[usize]) -> (Vec<u8>, Vec<u8>) {
    let mut encoder = Lz4Encoder::new();
    let mut wire = encoder.ack();
    let mut plain = Vec::new();
    let mut cut = cuts.iter().map(|&c| c.clamp(1, MAX_BLOCK_OUTPUT)).cycle();
    let (first, second) = messages.split_at(messages.len() / 2);
    for (half, part) in [first, second].into_iter().enumerate() {
        if half == 1 {
            wire.extend(encoder.set_method());
        }
        let Some((alone, rest)) = part.split_first() else {
            continue;
        };
        wire.extend_from_slice(alone);
        plain.extend_from_slice(alone);
        let joined = rest.concat();
        let mut left = &joined[..];
        while !left.is_empty() {
            let size = cut.next().unwrap_or(MAX_BLOCK_OUTPUT).min(left.len());
            let (block, tail) = left.split_at(size);
            wire.extend(encoder.block(block));
            left = tail;
        }
        plain.extend_from_slice(&joined);
    }
    (wire, plain)
}

/// Messages with `payloads` compress to a stream that decodes back to them whatever the
/// block cuts, input pieces and output buffer size.
pub fn check_lz4_roundtrip(
    payloads: &[Vec<u8>],
    cuts: &[usize],
    pieces: &[usize],
    out_size: usize,
) {
    let messages: Vec<Vec<u8>> = payloads.iter().map(|p| tagged(b'D', p)).collect();
    let (wire, plain) = compress_messages(&messages, cuts);
    let decoded = decode_lz4(&wire, pieces, out_size);
    assert!(
        decoded.as_ref() == Ok(&plain),
        "cuts {cuts:?}, pieces {pieces:?}, out {out_size}: {:?}",
        decoded.err()
    );
}

/// Arbitrary bytes after a `'z'` give the same plain stream or the same error fed whole or
/// in pieces through any output buffer.
pub fn check_lz4_garbage(garbage: &[u8], pieces: &[usize], out_size: usize) {
    let mut wire = tagged(COMPRESSION_ACK, b"");
    wire.extend_from_slice(garbage);
    let whole = decode_lz4(&wire, &[], 64 * 1024);
    let cut = decode_lz4(&wire, pieces, out_size);
    assert_eq!(whole, cut, "pieces {pieces:?}, out {out_size}");
    if let Err(error) = whole {
        // Every error can be printed for the log line and the client's message.
        assert!(!error.to_string().is_empty());
    }
}

/// The fuzzers' encoding: the first byte is the number of piece lengths (mod 8), the next
/// that many bytes are piece lengths (times 37), then one byte for the output size (times
/// 257, plus 1); the rest is checked as garbage after `'z'`, and as the payloads (cut every
/// 61 bytes) of a valid stream whose blocks are cut at the same lengths (times 97, plus 1).
pub fn check_lz4_stream(data: &[u8]) {
    let Some((&count, rest)) = data.split_first() else {
        check_lz4_garbage(&[], &[], 1);
        return;
    };
    let count = usize::from(count % 8).min(rest.len());
    let (lengths, rest) = rest.split_at(count);
    let (out_size, body) = match rest.split_first() {
        Some((&b, body)) => (usize::from(b) * 257 + 1, body),
        None => (1, rest),
    };
    let pieces: Vec<usize> = lengths.iter().map(|&b| usize::from(b) * 37).collect();
    check_lz4_garbage(body, &pieces, out_size);
    let payloads: Vec<Vec<u8>> = body.chunks(61).map(<[u8]>::to_vec).collect();
    let cuts: Vec<usize> = lengths.iter().map(|&b| usize::from(b) * 97 + 1).collect();
    check_lz4_roundtrip(&payloads, &cuts, &pieces, out_size);
}
