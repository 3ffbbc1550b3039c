//! Fuzzes the decompressor of Redshift's compressed server stream (`Lz4Stream`): the first
//! input byte is the number of piece lengths (mod 8), then the lengths, then one byte for the
//! output buffer size; the rest is decoded as arbitrary bytes after a CompressionAck, and as
//! the payloads of a valid compressed stream. Garbage must never panic and must give the same
//! outcome however it is cut; a valid stream must decode to its plain bytes however its
//! blocks, input and output are cut. The properties live in
//! `tests/e2e/support/protocol_checks.rs` (this package's library), shared with the proptest
//! mirrors.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    protocol_checks::check_lz4_stream(data);
});
