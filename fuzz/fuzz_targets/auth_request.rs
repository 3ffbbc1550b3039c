//! Fuzzes `parse_auth_request` with arbitrary `'R'` payloads, as a hostile or broken upstream
//! could send them: no input may panic, every input is a request or a typed error naming the
//! code, and the decoded fields are the bytes sent. The properties live in
//! `tests/e2e/support/protocol_checks/mod.rs` (this package's library), shared with the
//! proptest mirrors.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    protocol_checks::check_auth_request(data);
});
