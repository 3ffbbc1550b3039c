//! Fuzzes the first packet a client sends (`packet_len`, then `parse_first_packet`), as the
//! session reads it from an untrusted socket: no input may panic, every input is a packet or
//! a typed error with a SQLSTATE, and a packet that parses re-encodes to its own bytes. The
//! input is also tried as the body of a correctly framed packet, so the parameter parser is
//! reached without the fuzzer having to guess a length. The properties live in
//! `tests/e2e/support/protocol_checks/mod.rs` (this package's library), shared with the
//! proptest mirrors.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    protocol_checks::check_startup_packet(data);
});
