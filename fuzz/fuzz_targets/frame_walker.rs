//! Fuzzes the relay's `FrameWalker` with arbitrary streams cut at fuzzer-chosen points: the
//! first input byte is the number of cuts (mod 16), the next bytes are chunk lengths, the rest
//! is the stream. The walker must never panic, and the headers it reports, its error and its
//! boundary state must be the same however the stream is cut and the same as a plain
//! sequential reading of the stream. The properties live in
//! `tests/e2e/support/protocol_checks/mod.rs` (this package's library), shared with the
//! proptest mirrors.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    protocol_checks::check_frame_walker_input(data);
});
