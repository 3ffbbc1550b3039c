//! Property tests of what a client sends for `--client-auth scram`, the `cargo test` mirror
//! of the fuzz targets `scram_client_messages` and `users_file`. Both check the properties
//! written once in `support/protocol_checks/client_auth.rs`:
//!
//! - the SCRAM server (`ScramServer`) on hostile SASLInitialResponse, client-first and
//!   client-final messages: typed failures, an exact server-first message, no login without
//!   the password and none at all for an unknown user;
//! - a real client (postgres-protocol's) with any password, with and without channel
//!   binding: it logs in, and another password or an unknown user does not;
//! - the users file: a file that parses lists exactly its lines with re-encodable verifiers,
//!   one that does not names an existing line and never quotes a verifier.

use crate::support::protocol_checks::{
    check_scram_client_input, check_scram_client_messages, check_scram_round_trip, check_users_file,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use proptest::collection::vec;
use proptest::prelude::*;
use redshift_auth_proxy::client::auth::{MECHANISM, MECHANISM_PLUS, ScramVerifier};

/// A SASLInitialResponse payload: mechanism, NUL, Int32 length, data.
fn initial_response(mechanism: &str, data: &[u8]) -> Vec<u8> {
    let mut out = mechanism.as_bytes().to_vec();
    out.push(0);
    out.extend_from_slice(&(data.len() as i32).to_be_bytes());
    out.extend_from_slice(data);
    out
}

/// Printable nonce text, as clients make it (no comma).
fn nonce() -> impl Strategy<Value = String> {
    "[!-+--~]{1,24}"
}

/// A GS2 header as clients and attackers write it.
fn gs2_header() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "n,,",
        "y,,",
        "p=tls-server-end-point,,",
        "p=tls-unique,,",
        "n,a=admin,",
        "x,,",
    ])
}

/// One users-file line: good verifiers, broken ones, comments, blanks, odd user names.
fn users_line() -> impl Strategy<Value = String> {
    let verifier = ScramVerifier::from_password(b"secret", b"salt-of-16-bytes", 4096);
    let good = format!(
        "SCRAM-SHA-256${}:{}${}:{}",
        verifier.iterations,
        STANDARD.encode(&verifier.salt),
        STANDARD.encode(verifier.stored_key),
        STANDARD.encode(verifier.server_key)
    );
    prop_oneof![
        3 => ("[a-z]{1,8}", Just(good.clone())).prop_map(|(u, v)| format!("{u}:{v}")),
        1 => Just(String::new()),
        1 => "# [ -~]{0,20}",
        1 => ("[a-z:]{0,6}", "[ -~]{0,40}").prop_map(|(u, v)| format!("{u}:{v}")),
        1 => (Just(good), 0usize..90, any::<char>()).prop_map(|(mut v, at, c)| {
            let at = (0..=at.min(v.len())).rev().find(|&i| v.is_char_boundary(i)).unwrap_or(0);
            v.insert(at, c);
            format!("user:{v}")
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn scram_client_input_of_random_bytes(data in vec(any::<u8>(), 0..120)) {
        check_scram_client_input(&data);
    }

    #[test]
    fn scram_client_messages_with_plausible_fields(
        tls in any::<bool>(),
        known in any::<bool>(),
        plus in any::<bool>(),
        header in gs2_header(),
        user in "[a-z=,]{0,8}",
        client_nonce in nonce(),
        extra in prop::option::of("[a-z]=[ -~]{0,8}"),
        echo_nonce in any::<bool>(),
        binding in vec(any::<u8>(), 0..40),
        proof in vec(any::<u8>(), 30..34),
    ) {
        let mechanism = if plus { MECHANISM_PLUS } else { MECHANISM };
        let mut first = format!("{header}n={user},r={client_nonce}");
        if let Some(extra) = extra {
            first.push(',');
            first.push_str(&extra);
        }
        let final_nonce = if echo_nonce {
            format!("{client_nonce}c2VydmVyLW5vbmNl")
        } else {
            client_nonce.clone()
        };
        let client_final = format!(
            "c={},r={final_nonce},p={}",
            STANDARD.encode(&binding),
            STANDARD.encode(&proof)
        );
        check_scram_client_messages(
            tls,
            known,
            &initial_response(mechanism, first.as_bytes()),
            MECHANISM,
            client_final.as_bytes(),
        );
    }

    #[test]
    fn users_files_of_random_text(text in "[ -~\n\t]{0,200}") {
        check_users_file(text.as_bytes());
    }

    #[test]
    fn users_files_of_plausible_lines(lines in vec(users_line(), 0..6)) {
        check_users_file(lines.join("\n").as_bytes());
    }
}

proptest! {
    // Each case runs three exchanges with PBKDF2; fewer cases keep the debug build quick.
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn a_real_client_logs_in_with_any_password(
        password in prop_oneof![vec(any::<u8>(), 0..24), "\\PC{0,12}".prop_map(String::into_bytes)],
        tls in any::<bool>(),
    ) {
        check_scram_round_trip(&password, tls);
    }
}

/// Found by the users_file fuzzer: a user name that repeats the start of its own broken
/// verifier. The message quotes the user name, and with it that text, which is allowed; the
/// property must not take it for a leaked verifier.
#[test]
fn a_message_may_quote_a_user_name_that_repeats_the_verifier() {
    check_users_file(b"B>CC  >CC       CCCC$  $CC+   CCCC,C#:     CCCC$  $CC+   CCCC,C#:");
}
