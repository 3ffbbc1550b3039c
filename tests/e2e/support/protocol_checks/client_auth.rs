//! Properties of the parsers that read what a client sends for `--client-auth scram`: the
//! SASLInitialResponse, the SCRAM client-first and client-final messages (`ScramServer`), and
//! the users file (`ScramUsers::parse`, `ScramVerifier::parse`). Hostile input must get a
//! typed failure, never a panic and never a login; a real client with the right password
//! must always get in; nothing secret may reach an error message or a `Debug` print.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use redshift_auth_proxy::client::auth::{
    MECHANISM, MECHANISM_PLUS, ScramFailure, ScramServer, ScramUsers, ScramVerifier,
};
use redshift_auth_proxy::protocol::parse_sasl_initial_response;

/// The server nonce every checked exchange uses, so the server-first message is predictable.
const SERVER_NONCE: &str = "c2VydmVyLW5vbmNl";
/// The `tls-server-end-point` data of the checked connections that run over TLS.
const END_POINT: [u8; 32] = [0x5a; 32];
/// The separator between the client-first and client-final parts of a fuzz input.
const SEPARATOR: u8 = 0xff;

/// The verifier an unknown user's exchange runs on; it can never verify a proof.
fn mock_verifier() -> ScramVerifier {
    ScramVerifier {
        iterations: 1,
        salt: vec![7; 16],
        stored_key: [0; 32],
        server_key: [0; 32],
    }
}

/// The fuzzers' encoding of a client's SCRAM messages. The first byte holds flags: bit 0
/// serves the connection over TLS (offering -PLUS), bit 1 makes the user known, bit 2 picks
/// -PLUS when the rest is not a SASLInitialResponse, bit 3 runs a real client's exchange with
/// the rest as its password instead. Otherwise the rest is the SASLInitialResponse payload
/// (or, when it does not parse as one, the client-first-message itself), then a 0xff byte,
/// then the client-final-message.
pub fn check_scram_client_input(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let tls = flags & 1 != 0;
    if flags & 8 != 0 {
        check_scram_round_trip(rest, tls);
        return;
    }
    let (initial, client_final) = match rest.iter().position(|&b| b == SEPARATOR) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &[][..]),
    };
    let fallback = if flags & 4 != 0 {
        MECHANISM_PLUS
    } else {
        MECHANISM
    };
    check_scram_client_messages(tls, flags & 2 != 0, initial, fallback, client_final);
}

/// One exchange on hostile messages: every failure is typed and printable, the server-first
/// message is exactly the client's nonce, the server's, the salt and the iteration count,
/// and no proof the fuzzer makes up logs anyone in (an unknown user never gets in at all).
pub fn check_scram_client_messages(
    tls: bool,
    known: bool,
    initial: &[u8],
    fallback_mechanism: &str,
    client_final: &[u8],
) {
    let verifier = ScramVerifier::from_password(b"pencil", b"fuzz-salt", 1);
    let mut server = ScramServer::new(
        known.then_some(&verifier),
        mock_verifier(),
        SERVER_NONCE.to_owned(),
    );
    if tls {
        server = server.with_tls_server_end_point(END_POINT.to_vec());
    }
    let (mechanism, client_first) = match parse_sasl_initial_response(initial) {
        Ok(pair) => pair,
        Err(error) => {
            assert!(!error.to_string().is_empty());
            (fallback_mechanism, initial)
        }
    };
    let offered = server.mechanisms().contains(&mechanism);
    assert_eq!(server.select_mechanism(mechanism), offered, "{mechanism:?}");
    if !offered {
        return;
    }

    let server_first = match server.client_first(client_first) {
        Ok(server_first) => server_first,
        Err(failure) => {
            assert_typed(&failure);
            assert_ne!(failure, ScramFailure::WrongProof, "no proof was sent yet");
            return;
        }
    };
    // Read independently of the parser: GS2 flag, authzid, n=user, r=nonce.
    let text = std::str::from_utf8(client_first).expect("a client-first that parsed is UTF-8");
    let client_nonce = text
        .split(',')
        .nth(3)
        .and_then(|attribute| attribute.strip_prefix("r="))
        .expect("a client-first that parsed has its nonce fourth");
    let salt = if known {
        &verifier.salt
    } else {
        &mock_verifier().salt
    };
    let iterations = if known { verifier.iterations } else { 1 };
    assert_eq!(
        server_first,
        format!(
            "r={client_nonce}{SERVER_NONCE},s={},i={iterations}",
            STANDARD.encode(salt)
        )
    );

    match server.client_final(client_final) {
        Ok(server_final) => {
            assert!(known, "an unknown user logged in with {client_final:?}");
            assert!(server_final.starts_with("v="), "{server_final}");
        }
        Err(failure) => assert_typed(&failure),
    }
    // The exchange is over whatever happened: a second final message is refused.
    assert!(server.client_final(client_final).is_err());
}

/// A real client (postgres-protocol's, as tokio-postgres uses it) with `password` logs in,
/// with channel binding over TLS; with another password it gets `WrongProof`, as does an
/// unknown user with the right one.
pub fn check_scram_round_trip(password: &[u8], tls: bool) {
    let iterations = 1 + u32::from(password.first().copied().unwrap_or(0) % 4);
    let verifier = ScramVerifier::from_password(password, b"round-trip-salt", iterations);
    assert_eq!(run_client(password, &verifier, true, tls), Ok(()));
    let mut wrong = password.to_vec();
    wrong.push(b'!');
    // SASLprep may map the two passwords to the same string (e.g. a trailing character it
    // deletes); only then may the wrong one pass.
    if ScramVerifier::from_password(&wrong, b"round-trip-salt", iterations) != verifier {
        assert_eq!(
            run_client(&wrong, &verifier, true, tls),
            Err(ScramFailure::WrongProof)
        );
    }
    assert_eq!(
        run_client(password, &verifier, false, tls),
        Err(ScramFailure::WrongProof)
    );
}

fn run_client(
    password: &[u8],
    verifier: &ScramVerifier,
    known: bool,
    tls: bool,
) -> Result<(), ScramFailure> {
    let mut server = ScramServer::new(
        known.then_some(verifier),
        mock_verifier(),
        SERVER_NONCE.to_owned(),
    );
    let binding = if tls {
        server = server.with_tls_server_end_point(END_POINT.to_vec());
        ChannelBinding::tls_server_end_point(END_POINT.to_vec())
    } else {
        ChannelBinding::unsupported()
    };
    let mechanism = if tls { MECHANISM_PLUS } else { MECHANISM };
    assert!(server.select_mechanism(mechanism));
    let mut client = ScramSha256::new(password, binding);
    let server_first = server.client_first(client.message())?;
    client
        .update(server_first.as_bytes())
        .expect("the client accepts the server-first message");
    let server_final = server.client_final(client.message())?;
    client
        .finish(server_final.as_bytes())
        .expect("the client verifies the server's signature");
    Ok(())
}

/// A failure is typed and carries a message a client can be sent.
fn assert_typed(failure: &ScramFailure) {
    assert!(!failure.to_string().is_empty());
}

/// `data` as a users file: a file that parses lists exactly its content lines, each verifier
/// as `ScramVerifier::parse` reads it and re-encodable to an equal one; a file that does not
/// parse names a line that exists and never quotes a verifier; `Debug` shows no key.
pub fn check_users_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let content: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect();
    match ScramUsers::parse(text) {
        Ok(users) => {
            assert_eq!(users.len(), content.len());
            let debug = format!("{users:?}");
            for line in content {
                let (user, verifier_text) = line.split_once(':').expect("a parsed line has ':'");
                let verifier = users.get(user).expect("every listed user is found");
                assert_eq!(ScramVerifier::parse(verifier_text).as_ref(), Ok(verifier));
                check_verifier_round_trip(verifier);
                assert!(!debug.contains(&STANDARD.encode(verifier.stored_key)));
                assert!(!debug.contains(&STANDARD.encode(verifier.server_key)));
            }
        }
        Err((line, why)) => {
            assert!(line >= 1 && line <= text.lines().count(), "line {line}");
            assert!(!why.is_empty());
            // No salt or key of the line reaches the message. The messages' own words hold no
            // run of 12 base64 characters, so such a field found in `why` came from the line;
            // only the user name may be quoted.
            let raw = text.lines().nth(line - 1).unwrap_or_default().trim();
            if let Some((user, verifier_text)) = raw.split_once(':') {
                for field in verifier_text.split(['$', ':']) {
                    if field.len() >= 12 && field.bytes().all(is_base64) && !user.contains(field) {
                        assert!(!why.contains(field), "{why}");
                    }
                }
            }
        }
    }
}

/// A byte of standard base64 text.
fn is_base64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')
}

/// A verifier printed in PostgreSQL's text form parses back to itself.
fn check_verifier_round_trip(verifier: &ScramVerifier) {
    let text = format!(
        "SCRAM-SHA-256${}:{}${}:{}",
        verifier.iterations,
        STANDARD.encode(&verifier.salt),
        STANDARD.encode(verifier.stored_key),
        STANDARD.encode(verifier.server_key)
    );
    assert_eq!(ScramVerifier::parse(&text).as_ref(), Ok(verifier));
}
