//! Fuzzes the parser of the `--client-users` file (user:SCRAM verifier lines): any text is a
//! set of users whose verifiers re-encode to themselves, or an error naming a line that exists
//! and never quoting a verifier. The properties live in
//! `tests/e2e/support/protocol_checks/client_auth.rs` (this package's library), shared with
//! the proptest mirrors.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    protocol_checks::check_users_file(data);
});
