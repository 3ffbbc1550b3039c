use lz4_flex::block::{compress, compress_with_dict};
use proptest::prelude::*;

use super::*;
use crate::upstream::compression::history::WINDOW;

fn message(tag: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&(payload.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The server's side, as Redshift compresses: each block's dictionary is the stream so far.
#[derive(Default)]
struct Server {
    sent: Vec<u8>,
}

impl Server {
    fn ack(&mut self) -> Vec<u8> {
        self.sent.clear();
        message(COMPRESSION_ACK, b"")
    }

    fn set_method(&mut self) -> Vec<u8> {
        self.sent.clear();
        message(SET_COMPRESSION, b"lz4\0")
    }

    fn block(&mut self, plain: &[u8]) -> Vec<u8> {
        let dictionary = &self.sent[self.sent.len().saturating_sub(WINDOW)..];
        let block = compress_with_dict(plain, dictionary);
        self.sent.extend_from_slice(plain);
        message(COMPRESSED_DATA, &block)
    }
}

/// Feeds `stream` in pieces of the given sizes (cycled) through an output buffer of
/// `out_size` bytes, as a reader would, and collects the plain stream.
fn decode_in_pieces(
    stream: &[u8],
    pieces: &[usize],
    out_size: usize,
) -> Result<Vec<u8>, Lz4StreamError> {
    let mut decoder = Lz4Stream::new();
    let mut plain = Vec::new();
    let mut out = vec![0u8; out_size];
    let mut at = 0;
    let mut piece = pieces.iter().cycle();
    while at < stream.len() {
        let size = (*piece.next().unwrap_or(&1)).max(1);
        let mut input = &stream[at..(at + size).min(stream.len())];
        at += input.len();
        while !input.is_empty() || decoder.has_pending() {
            let progress = decoder.decode(input, &mut out)?;
            plain.extend_from_slice(&out[..progress.produced]);
            input = &input[progress.consumed..];
            assert!(
                progress.consumed > 0 || progress.produced > 0,
                "no progress with input and room"
            );
        }
    }
    decoder.finish()?;
    Ok(plain)
}

/// Plain messages of various sizes.
fn results(rows: usize) -> Vec<u8> {
    let mut plain = Vec::new();
    for i in 0..rows {
        let row = format!(
            "{i}\t2026-12-06 12:{:02}:00\tcustomer-{}\t{}.25",
            i % 60,
            i % 97,
            i * 3
        );
        plain.extend(message(b'D', row.as_bytes()));
    }
    plain
}

/// A compressed stream for `plain` as the test upstream sends it: `'z'`, blocks cut at
/// `cut` bytes (mid-message), one plain message between blocks, a `'k'` reset half way.
fn compressed(plain_messages: &[Vec<u8>], cut: usize) -> (Vec<u8>, Vec<u8>) {
    let mut server = Server::default();
    let mut wire = server.ack();
    let mut plain = Vec::new();
    let half = plain_messages.len() / 2;
    let (first, second) = plain_messages.split_at(half);
    for (i, part) in [first, second].into_iter().enumerate() {
        if i == 1 {
            wire.extend(server.set_method());
        }
        let Some((alone, rest)) = part.split_first() else {
            continue;
        };
        wire.extend_from_slice(alone);
        plain.extend_from_slice(alone);
        let joined: Vec<u8> = rest.concat();
        for chunk in joined.chunks(cut) {
            wire.extend(server.block(chunk));
        }
        plain.extend_from_slice(&joined);
    }
    (wire, plain)
}

fn rows(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| message(b'D', format!("row {i} {}", "x".repeat(i % 300)).as_bytes()))
        .collect()
}

#[test]
fn a_server_that_does_not_compress_passes_through_unchanged() {
    let plain = results(500);
    for out_size in [1, 7, 16 * 1024, 64 * 1024] {
        let decoded = decode_in_pieces(&plain, &[1, 13, 4096], out_size).expect("plain");
        assert_eq!(decoded, plain);
    }
    let mut decoder = Lz4Stream::new();
    let mut out = vec![0u8; plain.len()];
    let progress = decoder.decode(&plain, &mut out).expect("plain");
    assert_eq!(progress.produced, plain.len());
    assert!(!decoder.acknowledged());
    assert!(decoder.history.is_none(), "no history without 'z'");
    assert!(decoder.at_boundary());
}

#[test]
fn blocks_plain_messages_and_resets_decode_to_the_plain_stream() {
    let (wire, plain) = compressed(&rows(2000), MAX_BLOCK_OUTPUT);
    assert!(wire.len() < plain.len() / 2, "the sample compresses");
    for pieces in [&[usize::MAX][..], &[1], &[5, 3, 16_000], &[70_000]] {
        for out_size in [1, 100, MAX_BLOCK_OUTPUT - 1, MAX_BLOCK_OUTPUT, 64 * 1024] {
            let decoded = decode_in_pieces(&wire, pieces, out_size).expect("decodes");
            assert!(decoded == plain, "pieces {pieces:?}, out {out_size}");
        }
    }
}

#[test]
fn the_ack_is_seen_and_starts_a_history() {
    let mut decoder = Lz4Stream::new();
    let mut out = [0u8; 64];
    let ack = message(COMPRESSION_ACK, b"");
    let progress = decoder.decode(&ack, &mut out).expect("ack");
    assert_eq!(
        progress,
        Progress {
            consumed: 5,
            produced: 0
        }
    );
    assert!(decoder.acknowledged());
    assert!(decoder.history.is_some());
}

fn decode_whole(wire: &[u8]) -> Result<Vec<u8>, Lz4StreamError> {
    decode_in_pieces(wire, &[usize::MAX], 64 * 1024)
}

#[test]
fn a_block_before_the_ack_is_refused() {
    let block = message(COMPRESSED_DATA, &compress(b"hello hello hello"));
    assert_eq!(decode_whole(&block), Err(Lz4StreamError::BlockBeforeAck));
}

#[test]
fn a_block_over_the_input_bound_is_refused_from_its_header() {
    let mut wire = message(COMPRESSION_ACK, b"");
    wire.push(COMPRESSED_DATA);
    wire.extend_from_slice(&((MAX_BLOCK_INPUT + 5) as u32).to_be_bytes());
    assert_eq!(
        decode_whole(&wire),
        Err(Lz4StreamError::BlockTooLong {
            len: MAX_BLOCK_INPUT + 1
        })
    );
}

#[test]
fn a_block_that_decompresses_past_16_kib_is_refused() {
    let mut wire = message(COMPRESSION_ACK, b"");
    wire.extend(message(
        COMPRESSED_DATA,
        &compress(&[b'a'; MAX_BLOCK_OUTPUT + 1]),
    ));
    for out_size in [10, 64 * 1024] {
        assert_eq!(
            decode_in_pieces(&wire, &[usize::MAX], out_size),
            Err(Lz4StreamError::BlockOutputTooLarge)
        );
    }
}

#[test]
fn a_reference_past_the_history_is_refused_and_a_reset_empties_it() {
    let mut server = Server::default();
    let mut wire = server.ack();
    let text = b"a sentence that will be repeated in the next block".repeat(3);
    wire.extend(server.block(&text));
    let second = server.block(&text);
    let mut fine = wire.clone();
    fine.extend_from_slice(&second);
    assert_eq!(decode_whole(&fine).expect("continues"), text.repeat(2));
    // After 'k' the same block refers to output the decoder has forgotten.
    wire.extend(message(SET_COMPRESSION, b"lz4\0"));
    wire.extend_from_slice(&second);
    assert_eq!(decode_whole(&wire), Err(Lz4StreamError::OutsideHistory));
}

#[test]
fn a_truncated_or_garbled_block_is_corrupt() {
    let mut wire = message(COMPRESSION_ACK, b"");
    let block = compress(&results(50));
    wire.extend(message(COMPRESSED_DATA, &block[..block.len() - 3]));
    assert!(matches!(
        decode_whole(&wire),
        Err(Lz4StreamError::Corrupt(_))
    ));
    let mut empty = message(COMPRESSION_ACK, b"");
    empty.extend(message(COMPRESSED_DATA, b""));
    assert!(matches!(
        decode_whole(&empty),
        Err(Lz4StreamError::Corrupt(_))
    ));
}

#[test]
fn a_length_below_four_is_refused() {
    let wire = [b'D', 0, 0, 0, 3];
    assert_eq!(
        decode_whole(&wire),
        Err(Lz4StreamError::BadLength { tag: b'D', len: 3 })
    );
}

#[test]
fn a_stream_cut_inside_a_block_is_truncated_but_inside_a_plain_message_is_not() {
    let mut server = Server::default();
    let mut wire = server.ack();
    wire.extend(server.block(&results(10)));
    let cut = &wire[..wire.len() - 2];
    assert_eq!(decode_whole(cut), Err(Lz4StreamError::Truncated));
    let plain = results(3);
    assert_eq!(
        decode_whole(&plain[..plain.len() - 2]).expect("as the plain relay does"),
        plain[..plain.len() - 2]
    );
}

#[test]
fn output_before_a_broken_block_is_delivered_then_the_error() {
    let mut server = Server::default();
    let mut wire = server.ack();
    let good = results(20);
    wire.extend(server.block(&good));
    wire.extend(message(COMPRESSED_DATA, &[0x10, b'x', 0xff, 0xff]));
    let mut decoder = Lz4Stream::new();
    let mut out = vec![0u8; 64 * 1024];
    let progress = decoder
        .decode(&wire, &mut out)
        .expect("the good block first");
    assert_eq!(&out[..progress.produced], &good[..]);
    assert_eq!(
        decoder.decode(&wire[progress.consumed..], &mut out),
        Err(Lz4StreamError::OutsideHistory)
    );
    assert_eq!(
        decoder.decode(b"", &mut out),
        Err(Lz4StreamError::OutsideHistory),
        "the error stays"
    );
}

#[test]
fn a_block_that_stands_for_nothing_is_passed_over_with_any_output_buffer() {
    // 0x00: one token with no literals and no match, an empty LZ4 block. Found by the
    // lz4_stream fuzzer: through an output buffer under 16 KiB the decoder used to wait for
    // room to drain nothing, and a reader reported it stalled.
    let mut server = Server::default();
    let mut wire = server.ack();
    wire.extend(message(COMPRESSED_DATA, &[0x00]));
    let after = results(3);
    wire.extend(server.block(&after));
    for out_size in [1, 100, 16 * 1024 - 1, 16 * 1024, 64 * 1024] {
        assert_eq!(
            decode_in_pieces(&wire, &[wire.len()], out_size),
            Ok(after.clone()),
            "output buffer of {out_size} bytes"
        );
        assert_eq!(
            decode_in_pieces(&wire, &[1], out_size),
            Ok(after.clone()),
            "byte by byte, output buffer of {out_size} bytes"
        );
    }
}

#[test]
fn a_control_message_over_its_limit_is_refused() {
    let wire = message(SET_COMPRESSION, &[0; 2000]);
    assert_eq!(
        decode_whole(&wire),
        Err(Lz4StreamError::ControlTooLong {
            tag: SET_COMPRESSION,
            len: 2000
        })
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any cut of the blocks, any split of the input and any output buffer size give the
    /// same plain stream.
    #[test]
    fn any_split_gives_the_same_plain_stream(
        sizes in prop::collection::vec(0usize..3000, 1..120),
        cut in 1usize..=MAX_BLOCK_OUTPUT,
        pieces in prop::collection::vec(1usize..20_000, 1..8),
        out_size in 1usize..70_000,
    ) {
        let messages: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, n)| message(b'D', &format!("{i:05}|{}", "abc,12.5;".repeat(*n / 9)).into_bytes()))
            .collect();
        let (wire, plain) = compressed(&messages, cut);
        let decoded = decode_in_pieces(&wire, &pieces, out_size);
        prop_assert!(decoded.as_ref() == Ok(&plain), "{:?}", decoded.err());
    }

    /// Garbage after the ack never panics, and how it is cut does not change the outcome.
    #[test]
    fn garbage_gives_the_same_outcome_however_it_is_cut(
        garbage in prop::collection::vec(any::<u8>(), 0..4000),
        pieces in prop::collection::vec(1usize..500, 1..5),
        out_size in 1usize..40_000,
    ) {
        let mut wire = message(COMPRESSION_ACK, b"");
        wire.extend_from_slice(&garbage);
        let whole = decode_in_pieces(&wire, &[usize::MAX], 64 * 1024);
        let split = decode_in_pieces(&wire, &pieces, out_size);
        prop_assert_eq!(whole, split);
    }
}
