//! Fuzzes `parse_auth_request` with arbitrary `'R'` payloads, as a hostile or broken upstream
//! could send them: no input may panic, every input is a request or a typed error naming the
//! code, and the decoded fields are the bytes sent. The properties live in
//! `tests/support/protocol_checks.rs`, shared with the proptest mirrors.
#![no_main]

#[path = "../../tests/support/protocol_checks.rs"]
#[allow(dead_code)]
mod protocol_checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    protocol_checks::check_auth_request(data);
});
