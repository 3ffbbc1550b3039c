//! What a real PostgreSQL cannot show, against a scripted Redshift-like upstream: the SHA-256
//! digest challenge (code 13) checked with a formula written here from the wire-protocol facts
//! in docs/architecture.md, Redshift's greeting relayed byte for byte but for the proxy's
//! cancel key, refusals (wrong digest,
//! scrypt, IdP token), startup parameter rewriting, an upstream without TLS, a silent
//! upstream, and the cleartext and MD5 answers.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::support::certs::TestPki;
use crate::support::proxy::{ProxyOptions, TestProxy};
use crate::support::scripted::{
    ScriptedUpstream, error_field, message, read_message, send_startup, send_startup_version,
};
use md5::Md5;
use redshift_auth_proxy::protocol::{CancelKey, startup};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Password, salt and server nonce of the digest test vector in docs/architecture.md.
const DIGEST_PASSWORD: &str = "My_sha256_PaSsWoRd";
const DIGEST_SALT: &str = "a1b2c3d4e5f60718";
const DIGEST_SERVER_NONCE: &str = "00112233445566778899aabbccddeeff";
/// That vector's digest request, byte for byte.
const DIGEST_REQUEST: &str = concat!(
    "52",
    "0000002c",
    "0000000d",
    "00000000",
    "00000008",
    "a1b2c3d4e5f60718",
    "00000010",
    "00112233445566778899aabbccddeeff"
);

/// The database user every target here names (a `:` is refused in `db_user`, see
/// `check_db_user` in src/target.rs, so an `IAM:`-style name cannot be configured).
const DB_USER: &str = "alice";

/// How long the client waits for any one answer.
const WAIT: Duration = Duration::from_secs(10);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "even number of hex digits");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

fn now_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis()
}

/// `SHA256(SHA256(password ‖ salt) ‖ server_nonce ‖ client_nonce)`, written from
/// docs/architecture.md without the crate's code.
fn expected_digest(
    password: &[u8],
    salt: &[u8],
    server_nonce: &[u8],
    client_nonce: &[u8],
) -> Vec<u8> {
    let mut inner = Sha256::new();
    inner.update(password);
    inner.update(salt);
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(inner);
    outer.update(server_nonce);
    outer.update(client_nonce);
    outer.finalize().to_vec()
}

/// `"md5" + hex(md5(hex(md5(password ‖ user)) ‖ salt))`, written from docs/architecture.md.
fn expected_md5(user: &str, password: &str, salt: [u8; 4]) -> String {
    let mut first = Md5::new();
    first.update(password.as_bytes());
    first.update(user.as_bytes());
    let first = hex(&first.finalize());
    let mut second = Md5::new();
    second.update(first.as_bytes());
    second.update(salt);
    format!("md5{}", hex(&second.finalize()))
}

/// Reads a `'d'` payload: `Int32 digest length, digest, Int32 nonce length, nonce`.
fn parse_digest_reply(payload: &[u8]) -> Result<(Vec<u8>, Vec<u8>), String> {
    let take_u32 = |buf: &[u8], at: usize| -> Result<usize, String> {
        buf.get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| format!("truncated at byte {at}"))
    };
    let digest_len = take_u32(payload, 0)?;
    if digest_len != 32 {
        return Err(format!("digest length {digest_len}, expected 32"));
    }
    let digest = payload.get(4..36).ok_or("digest truncated")?.to_vec();
    let nonce_len = take_u32(payload, 36)?;
    let nonce = payload
        .get(40..40 + nonce_len)
        .ok_or("client nonce truncated")?
        .to_vec();
    if payload.len() != 40 + nonce_len {
        return Err(format!(
            "{} bytes after the client nonce",
            payload.len() - 40 - nonce_len
        ));
    }
    Ok((digest, nonce))
}

/// Checks the proxy's answer to the digest request: the message type, the layout, a client
/// nonce that is the decimal clock in milliseconds between `not_before` and now, and the
/// digest recomputed here for `password`.
fn check_digest_reply(
    tag: u8,
    payload: &[u8],
    password: &str,
    not_before: u128,
) -> Result<(), String> {
    if tag != b'd' {
        return Err(format!("message type '{}', expected 'd'", char::from(tag)));
    }
    let (digest, nonce) = parse_digest_reply(payload)?;
    let text = std::str::from_utf8(&nonce).map_err(|_| "client nonce is not ASCII")?;
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("client nonce {text:?} is not decimal"));
    }
    let millis: u128 = text
        .parse()
        .map_err(|e| format!("client nonce {text:?}: {e}"))?;
    let not_after = now_millis();
    if millis < not_before || millis > not_after {
        return Err(format!(
            "client nonce {millis} is not the current time in ms ({not_before}..={not_after})"
        ));
    }
    let want = expected_digest(
        password.as_bytes(),
        &unhex(DIGEST_SALT),
        &unhex(DIGEST_SERVER_NONCE),
        &nonce,
    );
    if digest != want {
        return Err(format!(
            "digest {} differs from the expected {}",
            hex(&digest),
            hex(&want)
        ));
    }
    Ok(())
}

/// A ParameterStatus message.
fn parameter_status(name: &str, value: &str) -> Vec<u8> {
    let mut payload = Vec::new();
    payload.extend_from_slice(name.as_bytes());
    payload.push(0);
    payload.extend_from_slice(value.as_bytes());
    payload.push(0);
    message(b'S', &payload)
}

/// The server's ErrorResponse when `accept` says no, as `ScriptedUpstream` sends it.
fn scripted_refusal() -> Vec<u8> {
    message(
        b'E',
        b"SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed for user\0\0",
    )
}

/// What Redshift sends after a good login: AuthenticationOk, its parameters (including the
/// Redshift-only ones), BackendKeyData, a notice and ReadyForQuery.
fn redshift_greeting() -> Vec<u8> {
    let mut out = message(b'R', &[0, 0, 0, 0]);
    for (name, value) in [
        ("application_name", "scripted"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("integer_datetimes", "on"),
        ("is_superuser", "off"),
        ("server_encoding", "UNICODE"),
        ("server_version", "8.0.2"),
        ("session_authorization", DB_USER),
        ("TimeZone", "UTC"),
        ("padb_revision", "1.0.78412"),
        ("server_protocol_version", "2"),
        ("datashare_enabled", "on"),
    ] {
        out.extend(parameter_status(name, value));
    }
    // pid 1073742123, secret -559038737 (0xdeadbeef as Int32): a negative key must be read.
    let mut key = 1_073_742_123i32.to_be_bytes().to_vec();
    key.extend_from_slice(&0xdead_beef_u32.to_be_bytes());
    out.extend(message(b'K', &key));
    out.extend(message(
        b'N',
        b"SNOTICE\0VNOTICE\0C00000\0MWelcome to the scripted cluster\0\0",
    ));
    out.extend(message(b'Z', b"I"));
    out
}

/// `greeting` as the client should receive it: every byte as the server sent it but the
/// BackendKeyData, which carries the key the proxy issued (read from `received`, what the
/// client got) and never the server's.
fn with_issued_key(greeting: &[u8], received: &[u8]) -> Vec<u8> {
    let placeholder = CancelKey {
        process_id: 0,
        secret_key: 0,
    };
    let issued = startup::replace_backend_key(&mut received.to_vec(), placeholder)
        .expect("the client got complete messages")
        .expect("the client got a BackendKeyData");
    let mut want = greeting.to_vec();
    let server = startup::replace_backend_key(&mut want, issued)
        .expect("the server's greeting is complete messages")
        .expect("the server sent a BackendKeyData");
    assert_ne!(issued, server, "the client never gets the server's key");
    assert!(issued.process_id > 0, "{issued:?}");
    want
}

/// A small greeting for the tests that only care about the login.
fn short_greeting() -> Vec<u8> {
    let mut out = message(b'R', &[0, 0, 0, 0]);
    out.extend(parameter_status("server_version", "8.0.2"));
    out.extend(message(b'K', &[0, 0, 0, 7, 0, 0, 0, 9]));
    out.extend(message(b'Z', b"I"));
    out
}

/// A CA file for the proxy and the matching server config for the scripted upstream.
struct Pki {
    dir: tempfile::TempDir,
    pki: TestPki,
}

impl Pki {
    fn new() -> Pki {
        let pki = TestPki::generate(&["localhost"]);
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("ca.pem"), &pki.ca_pem).expect("write CA");
        Pki { dir, pki }
    }

    fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.pki.server_config()
    }
}

/// A static-password proxy in front of `localhost:port`, checking the certificate.
async fn proxy_to(pki: &Pki, port: u16, query: &str, password: &str) -> TestProxy {
    let target = format!("localhost:{port}{query}");
    TestProxy::start(ProxyOptions::new(target, password, pki.ca_path())).await
}

fn target_query() -> String {
    format!("/dev?db_user={DB_USER}&password_env=UNUSED")
}

/// Reads exactly `len` bytes from the client side.
async fn read_exactly(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    tokio::time::timeout(WAIT, stream.read_exact(&mut buf))
        .await
        .expect("answer in time")
        .expect("read");
    buf
}

/// Reads everything until the proxy closes.
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut rest))
        .await
        .expect("closed in time")
        .expect("clean close");
    rest
}

/// Reads one ErrorResponse, then end of stream; returns (SQLSTATE, message, raw message).
async fn expect_error_then_close(stream: &mut TcpStream) -> (String, String, Vec<u8>) {
    let (tag, payload) = tokio::time::timeout(WAIT, read_message(stream))
        .await
        .expect("answer in time")
        .expect("a message");
    assert_eq!(
        char::from(tag),
        'E',
        "ErrorResponse expected, got {:?}",
        String::from_utf8_lossy(&payload)
    );
    let rest = read_to_close(stream).await;
    assert!(rest.is_empty(), "nothing after the error: {rest:?}");
    let raw = message(tag, &payload);
    (
        error_field(&payload, b'C').unwrap_or_default(),
        error_field(&payload, b'M').unwrap_or_default(),
        raw,
    )
}

async fn connect_client(proxy: &TestProxy, params: &[(&str, &str)]) -> TcpStream {
    let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
    send_startup(&mut stream, params).await;
    stream
}

/// A simple query round-trips through the relay, then Terminate closes both sides.
async fn query_then_terminate(stream: &mut TcpStream) {
    stream
        .write_all(&message(b'Q', b"select 1\0"))
        .await
        .expect("query");
    let mut want = message(b'I', b"");
    want.extend(message(b'Z', b"I"));
    assert_eq!(read_exactly(stream, want.len()).await, want, "query answer");
    stream
        .write_all(&message(b'X', b""))
        .await
        .expect("terminate");
    assert!(
        read_to_close(stream).await.is_empty(),
        "nothing after Terminate"
    );
}

#[test]
fn test_formulas_reproduce_the_documented_vectors() {
    // The digest vector: the inner hash, the digest, and the reply layout.
    let salt = unhex(DIGEST_SALT);
    let server_nonce = unhex(DIGEST_SERVER_NONCE);
    let mut inner = Sha256::new();
    inner.update(DIGEST_PASSWORD.as_bytes());
    inner.update(&salt);
    assert_eq!(
        hex(&inner.finalize()),
        "283cef05ba2341e204c98a276c847cace1298538e94ce0a82f6682c3e23895cb"
    );
    let digest = expected_digest(
        DIGEST_PASSWORD.as_bytes(),
        &salt,
        &server_nonce,
        b"1700000000000",
    );
    assert_eq!(
        hex(&digest),
        "ed4b5102701a0b3a754860fba3bbcab498a2b072d4d5975c1973dd55b681161c"
    );
    let reply = unhex(&format!(
        "6400000039{}{}{}{}",
        "00000020",
        hex(&digest),
        "0000000d",
        "31373030303030303030303030"
    ));
    assert_eq!(reply.len(), 1 + 0x39, "reply length field covers the rest");
    let (parsed_digest, nonce) = parse_digest_reply(&reply[5..]).expect("documented reply parses");
    assert_eq!(parsed_digest, digest);
    assert_eq!(nonce, b"1700000000000");
    // A wrong client nonce or password gives another digest.
    assert_ne!(
        expected_digest(
            DIGEST_PASSWORD.as_bytes(),
            &salt,
            &server_nonce,
            b"1700000000001"
        ),
        digest
    );
    assert_ne!(
        expected_digest(
            b"my_sha256_PaSsWoRd",
            &salt,
            &server_nonce,
            b"1700000000000"
        ),
        digest
    );

    // The request is 'R', length 44, code 13, algorithm 0, salt and nonce with lengths.
    let request = unhex(DIGEST_REQUEST);
    let mut built = 13u32.to_be_bytes().to_vec();
    built.extend_from_slice(&0u32.to_be_bytes());
    built.extend_from_slice(&8u32.to_be_bytes());
    built.extend_from_slice(&salt);
    built.extend_from_slice(&16u32.to_be_bytes());
    built.extend_from_slice(&server_nonce);
    assert_eq!(request, message(b'R', &built));

    // The MD5 vector.
    assert_eq!(
        expected_md5("IAM:alice", "TempPass123", [1, 2, 3, 4]),
        "md5bd73dbbdb244bd9c681d20e7371957b2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redshift_digest_login_relays_the_greeting_with_the_proxys_cancel_key() {
    let pki = Pki::new();
    let started = now_millis();
    let greeting = redshift_greeting();
    let upstream = ScriptedUpstream::start(
        pki.server_config(),
        unhex(DIGEST_REQUEST),
        move |tag, payload| check_digest_reply(tag, payload, DIGEST_PASSWORD, started).is_ok(),
        greeting.clone(),
    )
    .await;
    let proxy = proxy_to(&pki, upstream.port, &target_query(), DIGEST_PASSWORD).await;

    let mut client = connect_client(&proxy, &[("user", "someone"), ("database", "dev")]).await;
    let (tag, payload) = tokio::time::timeout(WAIT, read_message(&mut client))
        .await
        .expect("answer in time")
        .expect("a message");
    if tag == b'E' {
        // Refused: say why the digest was wrong rather than only that the login failed.
        let reply = upstream.observed().await.auth_reply;
        let why = match &reply {
            Some((tag, payload)) => check_digest_reply(*tag, payload, DIGEST_PASSWORD, started)
                .err()
                .unwrap_or_default(),
            None => "no answer to the digest request".to_owned(),
        };
        panic!(
            "login refused ({:?}): {why}",
            error_field(&payload, b'M').unwrap_or_default()
        );
    }
    let mut received = message(tag, &payload);
    received.extend(read_exactly(&mut client, greeting.len().saturating_sub(received.len())).await);
    assert_eq!(
        received,
        with_issued_key(&greeting, &received),
        "the greeting reaches the client as the server sent it but for the cancel key"
    );
    assert_eq!(
        proxy.cancel.len(),
        1,
        "the backend key is registered for cancels"
    );
    query_then_terminate(&mut client).await;

    let observed = upstream.observed().await;
    let (tag, payload) = observed
        .auth_reply
        .expect("the proxy answered the digest request");
    if let Err(why) = check_digest_reply(tag, &payload, DIGEST_PASSWORD, started) {
        panic!("digest reply {}: {why}", hex(&payload));
    }
    assert_eq!(observed.startup[0], ("user".to_owned(), DB_USER.to_owned()));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_digest_password_gets_the_servers_error_as_sent() {
    let pki = Pki::new();
    let started = now_millis();
    let upstream = ScriptedUpstream::start(
        pki.server_config(),
        unhex(DIGEST_REQUEST),
        move |tag, payload| check_digest_reply(tag, payload, DIGEST_PASSWORD, started).is_ok(),
        short_greeting(),
    )
    .await;
    let proxy = proxy_to(&pki, upstream.port, &target_query(), "not-the-password").await;

    let mut client = connect_client(&proxy, &[("user", "someone")]).await;
    let (code, text, raw) = expect_error_then_close(&mut client).await;
    assert_eq!(code, "28P01", "{text}");
    assert_eq!(
        raw,
        scripted_refusal(),
        "the server's ErrorResponse, untouched"
    );

    // The proxy did answer, with a well-formed digest of the password it was given.
    let observed = upstream.observed().await;
    let (tag, payload) = observed.auth_reply.expect("a digest reply");
    if let Err(why) = check_digest_reply(tag, &payload, "not-the-password", started) {
        panic!("digest reply: {why}");
    }
    assert_eq!(proxy.cancel.len(), 0, "no session registered");
    proxy.stop().await;
}

/// A digest request for `algorithm` with the documented vector's salt and nonce.
fn digest_request(algorithm: u32) -> Vec<u8> {
    let mut payload = 13u32.to_be_bytes().to_vec();
    payload.extend_from_slice(&algorithm.to_be_bytes());
    payload.extend_from_slice(&8u32.to_be_bytes());
    payload.extend_from_slice(&unhex(DIGEST_SALT));
    payload.extend_from_slice(&16u32.to_be_bytes());
    payload.extend_from_slice(&unhex(DIGEST_SERVER_NONCE));
    message(b'R', &payload)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_algorithm_scrypt_is_refused_by_name() {
    let pki = Pki::new();
    let upstream = ScriptedUpstream::start(
        pki.server_config(),
        digest_request(1),
        |_, _| true,
        short_greeting(),
    )
    .await;
    let proxy = proxy_to(&pki, upstream.port, &target_query(), DIGEST_PASSWORD).await;

    let mut client = connect_client(&proxy, &[("user", "someone")]).await;
    let (code, text, _) = expect_error_then_close(&mut client).await;
    // The proxy owns this failure: src/upstream.rs maps UpstreamError::Auth to 28000.
    assert_eq!(code, "28000", "{text}");
    assert!(text.contains("algorithm 1"), "{text}");
    assert!(text.contains("scrypt"), "{text}");
    assert!(!text.contains(DIGEST_PASSWORD), "no secret in the message");
    let observed = upstream.observed().await;
    assert!(
        observed.auth_reply.is_none(),
        "nothing is sent to the server for an unknown algorithm: {:?}",
        observed.auth_reply
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idp_token_request_is_refused_clearly() {
    let pki = Pki::new();
    let upstream = ScriptedUpstream::start(
        pki.server_config(),
        message(b'R', &14u32.to_be_bytes()),
        |_, _| true,
        short_greeting(),
    )
    .await;
    let proxy = proxy_to(&pki, upstream.port, &target_query(), "pw").await;

    let mut client = connect_client(&proxy, &[("user", "someone")]).await;
    let (code, text, _) = expect_error_then_close(&mut client).await;
    assert_eq!(code, "28000", "{text}");
    assert!(text.contains("code 14"), "{text}");
    assert!(text.contains("identity-provider token"), "{text}");
    let observed = upstream.observed().await;
    assert!(observed.auth_reply.is_none(), "{:?}", observed.auth_reply);
    proxy.stop().await;
}

/// The client's startup parameters for the rewriting test, in the order it sends them.
const CLIENT_PARAMS: &[(&str, &str)] = &[
    ("user", "someone"),
    ("database", "dev"),
    ("application_name", "redshift_connector"),
    ("client_protocol_version", "2"),
    ("_pq_.compression", "on"),
    ("driver_version", "2.1.5"),
    ("extra_float_digits", "3"),
];

/// A NegotiateProtocolVersion message, as PostgreSQL writes it (`SendNegotiateProtocolVersion`
/// in postmaster.c): the whole protocol number it speaks, here 3.0, then the options.
fn negotiate_protocol_version_3_0(options: &[&str]) -> Vec<u8> {
    let mut payload = 196_608u32.to_be_bytes().to_vec();
    payload.extend_from_slice(&(options.len() as u32).to_be_bytes());
    for option in options {
        payload.extend_from_slice(option.as_bytes());
        payload.push(0);
    }
    message(b'v', &payload)
}

/// Logs in with `CLIENT_PARAMS` over cleartext as a protocol 3.`minor` client; returns
/// everything the client got up to the end of the greeting, the greeting the server sent, and
/// what the server saw.
async fn login_with_client_params(
    minor: u16,
) -> (Vec<u8>, Vec<u8>, crate::support::scripted::Observed) {
    let pki = Pki::new();
    let greeting = short_greeting();
    let upstream = ScriptedUpstream::start(
        pki.server_config(),
        message(b'R', &3u32.to_be_bytes()),
        |tag, payload| tag == b'p' && payload == b"pw\0",
        greeting.clone(),
    )
    .await;
    // No database on the target: the client's database goes through.
    let query = format!("?db_user={DB_USER}&password_env=UNUSED");
    let proxy = proxy_to(&pki, upstream.port, &query, "pw").await;

    let mut client = TcpStream::connect(proxy.addr).await.expect("connect");
    send_startup_version(&mut client, minor, CLIENT_PARAMS).await;
    let negotiation = if minor > 0 {
        negotiate_protocol_version_3_0(&["_pq_.compression"]).len()
    } else {
        0
    };
    let received = tokio::time::timeout(
        WAIT,
        read_exactly(&mut client, negotiation + greeting.len()),
    )
    .await
    .expect("answer in time");
    query_then_terminate(&mut client).await;
    let observed = upstream.observed().await;
    proxy.stop().await;
    (received, greeting, observed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_parameters_pass_through_except_user_and_protocol_extensions() {
    let (_, _, observed) = login_with_client_params(0).await;

    let want: Vec<(String, String)> = [
        ("user", DB_USER),
        ("database", "dev"),
        ("application_name", "redshift_connector"),
        ("client_protocol_version", "2"),
        ("driver_version", "2.1.5"),
        ("extra_float_digits", "3"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    assert_eq!(
        observed.startup, want,
        "user replaced, _pq_.compression dropped, the rest in order"
    );
    assert_eq!(
        observed.auth_reply,
        Some((b'p', b"pw\0".to_vec())),
        "cleartext password"
    );
}

/// The Redshift JDBC driver's login loop reads only 'R' and 'E', and redshift_connector has
/// no handler for 'v': a 3.0 client's dropped `_pq_.compression` is dropped silently, as a
/// Redshift server that does not compress ignores it, and the greeting starts with
/// AuthenticationOk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protocol_3_0_client_gets_no_negotiate_protocol_version() {
    let (received, greeting, _) = login_with_client_params(0).await;
    assert_eq!(char::from(received[0]), 'R', "AuthenticationOk first");
    assert_eq!(
        received,
        with_issued_key(&greeting, &received),
        "the greeting untouched but for the cancel key, nothing before it"
    );
}

/// PostgreSQL sends the protocol version it speaks as a whole number (0x00030000 for 3.0),
/// and libpq reads it so: 0 means "pre-3.0" and libpq 18 gives up on the connection. A client
/// that asked for 3.2 learns, before the greeting, that the proxy speaks 3.0 and did not
/// honour its protocol option.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protocol_3_2_client_gets_negotiate_protocol_version_as_postgresql_sends_it() {
    let (received, greeting, _) = login_with_client_params(2).await;
    let negotiation = negotiate_protocol_version_3_0(&["_pq_.compression"]);
    assert_eq!(
        &received[..negotiation.len()],
        &negotiation[..],
        "as PostgreSQL 15 answers the same StartupMessage"
    );
    let rest = &received[negotiation.len()..];
    assert_eq!(rest, &with_issued_key(&greeting, rest)[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_refuses_tls_gets_08001_and_no_plaintext_startup() {
    let pki = Pki::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.expect("accept");
        let mut ssl_request = [0u8; 8];
        tcp.read_exact(&mut ssl_request).await.expect("ssl request");
        tcp.write_all(b"N").await.expect("N");
        // Whatever the proxy sends after 'N' would go out in plain text.
        let mut after = Vec::new();
        let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut after)).await;
        (ssl_request, after)
    });
    let proxy = proxy_to(&pki, port, &target_query(), "pw").await;

    let mut client = connect_client(&proxy, &[("user", "someone")]).await;
    let (code, text, _) = expect_error_then_close(&mut client).await;
    assert_eq!(code, "08001", "{text}");
    assert!(text.contains("refused TLS"), "{text}");
    assert!(text.contains(&format!("localhost:{port}")), "{text}");

    let (ssl_request, after) = server.await.expect("server task");
    assert_eq!(ssl_request, [0, 0, 0, 8, 4, 210, 22, 47], "SSLRequest");
    assert!(
        after.is_empty(),
        "nothing after the refusal, least of all a plaintext StartupMessage: {after:?}"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_upstream_fails_after_the_connect_timeout() {
    let pki = Pki::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    let server = tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.expect("accept");
            keep.lock().expect("lock").push(tcp);
        }
    });
    let mut options = ProxyOptions::new(
        format!("localhost:{port}{}", target_query()),
        "pw",
        pki.ca_path(),
    );
    options.connect_timeout = Duration::from_secs(1);
    let proxy = TestProxy::start(options).await;

    let started = Instant::now();
    let mut client = connect_client(&proxy, &[("user", "someone")]).await;
    let (code, text, _) = expect_error_then_close(&mut client).await;
    let elapsed = started.elapsed();
    assert_eq!(code, "08001", "{text}");
    assert!(text.contains("did not answer within 1s"), "{text}");
    assert!(text.contains("--connect-timeout"), "{text}");
    assert!(
        elapsed >= Duration::from_millis(950) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    assert_eq!(
        held.lock().expect("lock").len(),
        1,
        "the TCP connection was made"
    );
    server.abort();
    proxy.stop().await;
}

/// A BackendKeyData the proxy cannot replace (a protocol 3.2-style 32-byte secret) must not
/// reach the client as the server sent it: the login is refused and nothing is registered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_key_the_proxy_cannot_replace_is_refused_not_relayed() {
    let pki = Pki::new();
    let mut long_key = 4242i32.to_be_bytes().to_vec();
    long_key.extend_from_slice(&[0xab; 32]);
    let mut greeting = message(b'R', &[0, 0, 0, 0]);
    greeting.extend(parameter_status("server_version", "8.0.2"));
    greeting.extend(message(b'K', &long_key));
    greeting.extend(message(b'Z', b"I"));
    let upstream = ScriptedUpstream::start(
        pki.server_config(),
        message(b'R', &3u32.to_be_bytes()),
        |tag, payload| tag == b'p' && payload == b"pw\0",
        greeting,
    )
    .await;
    let proxy = proxy_to(&pki, upstream.port, &target_query(), "pw").await;
    let mut client = connect_client(&proxy, &[("user", "someone")]).await;
    let (code, text, _) = expect_error_then_close(&mut client).await;
    assert_eq!(code, "08006", "{text}");
    assert!(text.contains("BackendKeyData of 36 bytes"), "{text}");
    assert!(proxy.cancel.is_empty(), "no key registered");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleartext_and_md5_requests_get_the_right_bytes() {
    let pki = Pki::new();
    let password = "TempPass123";
    let salt = [1u8, 2, 3, 4];
    let md5_answer = expected_md5(DB_USER, password, salt);
    let mut md5_request = 5u32.to_be_bytes().to_vec();
    md5_request.extend_from_slice(&salt);
    let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        (
            "cleartext",
            message(b'R', &3u32.to_be_bytes()),
            format!("{password}\0").into_bytes(),
        ),
        (
            "md5",
            message(b'R', &md5_request),
            format!("{md5_answer}\0").into_bytes(),
        ),
    ];
    for (name, request, answer) in cases {
        let greeting = short_greeting();
        let want = answer.clone();
        let upstream = ScriptedUpstream::start(
            pki.server_config(),
            request,
            move |tag, payload| tag == b'p' && payload == want,
            greeting.clone(),
        )
        .await;
        let proxy = proxy_to(&pki, upstream.port, &target_query(), password).await;
        let mut client = connect_client(&proxy, &[("user", "someone")]).await;
        let received = read_exactly(&mut client, greeting.len()).await;
        assert_eq!(
            received,
            with_issued_key(&greeting, &received),
            "{name}: greeting"
        );
        query_then_terminate(&mut client).await;
        let observed = upstream.observed().await;
        let (tag, payload) = observed.auth_reply.expect("an answer");
        assert_eq!(char::from(tag), 'p', "{name}");
        assert_eq!(
            String::from_utf8_lossy(&payload),
            String::from_utf8_lossy(&answer),
            "{name}"
        );
        proxy.stop().await;
    }
}
