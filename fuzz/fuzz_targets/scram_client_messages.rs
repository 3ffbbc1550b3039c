//! Fuzzes the server side of `--client-auth scram` with the messages a hostile client could
//! send: the SASLInitialResponse, the SCRAM client-first and client-final messages, and, in
//! one mode, a real client's exchange with an arbitrary password. No input may panic or log
//! anyone in without the password. The properties live in
//! `tests/e2e/support/protocol_checks/client_auth.rs` (this package's library), shared with
//! the proptest mirrors.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    protocol_checks::check_scram_client_input(data);
});
