//! What the proxy spends answering the server's authentication requests with the temporary
//! password: cleartext, MD5 (the hash alone and through `PasswordAuthenticator::answer`),
//! Redshift's SHA-256 digest (code 13), a SCRAM-SHA-256 exchange at PostgreSQL's default
//! 4096 iterations, and parsing the `'R'` messages themselves with `parse_auth_request`.
//!
//! Every upstream login pays one of these, serially, before the client sees AuthenticationOk;
//! SCRAM's PBKDF2 is the only one expected to cost more than a few microseconds, and it is
//! CPU time a burst of logins competes for. The proxy keeps the keys PBKDF2 derives for a
//! (password, salt, rounds), so SCRAM is measured twice: with a salt never seen before (the
//! first login with a password) and with the same salt again (every later login).

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use redshift_auth_proxy::credentials::Secret;
use redshift_auth_proxy::protocol::{AuthRequest, parse_auth_request};
use redshift_auth_proxy::upstream::auth::{
    AuthStep, PasswordAuthenticator, md5_password, redshift_digest, redshift_digest_with_nonce,
};
use std::hint::black_box;

/// A user name as GetClusterCredentials returns it.
const USER: &str = "IAM:alice";
/// Shaped like an IAM temporary password.
const PASSWORD: &str = "AskH4Z9mQ1xVvK3pY8wLr2TnB6cJfD0gE5uXsW7oPzI+/aRqNm==";
/// The SCRAM salt the bench's server-first message carries, base64 of 16 bytes.
const SCRAM_SALT_B64: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
/// Appended to the client's nonce by the server (any printable characters but ',').
const SERVER_NONCE: &str = "3rfcNHYJY1ZVvWVs7jQSXCR+Q6sek8bf";

fn authenticator() -> PasswordAuthenticator {
    PasswordAuthenticator::new(USER, Secret::new(PASSWORD))
}

/// The nonce in the client-first-message `n,,n=,r=<nonce>` that ends the SASLInitialResponse
/// in `out` (the SCRAM data is the message's last field).
fn client_nonce(out: &[u8]) -> &str {
    let at = out
        .windows(3)
        .rposition(|w| w == b",r=")
        .expect("client-first-message carries a nonce");
    std::str::from_utf8(&out[at + 3..]).expect("nonce is ASCII")
}

/// A server-first-message answering the client's nonce: `r=<client nonce><server nonce>,
/// s=<salt>,i=4096`, as PostgreSQL sends it for a password stored with the default cost.
fn server_first(client_nonce: &str, salt_b64: &str) -> Vec<u8> {
    format!("r={client_nonce}{SERVER_NONCE},s={salt_b64},i=4096").into_bytes()
}

/// A salt no earlier exchange in this process used, so the proxy has no keys for it.
fn fresh_salt() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        [&n.to_be_bytes()[..], b"bench-salt"].concat(),
    )
}

/// One SCRAM-SHA-256 login up to the client-final-message: SASL request → client-first,
/// server-first → client-final (the PBKDF2 step). Returns the client-final bytes' length.
fn scram_exchange(
    auth: &mut PasswordAuthenticator,
    sasl: &AuthRequest,
    out: &mut BytesMut,
    salt_b64: &str,
) -> usize {
    out.clear();
    assert_eq!(
        auth.answer(sasl, out).expect("client-first"),
        AuthStep::Reply
    );
    let data = server_first(client_nonce(out), salt_b64);
    out.clear();
    let step = auth
        .answer(&AuthRequest::SaslContinue { data }, out)
        .expect("client-final");
    assert_eq!(step, AuthStep::Reply);
    out.len()
}

/// An `'R'` payload (after the length field): the code, then `rest`.
fn r_payload(code: u32, rest: &[u8]) -> Vec<u8> {
    let mut out = code.to_be_bytes().to_vec();
    out.extend_from_slice(rest);
    out
}

fn bench_answers(c: &mut Criterion) {
    let md5_salt = [0x93, 0x1f, 0x5c, 0x07];
    let digest_salt = [0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6, 0x07, 0x18];
    let digest_nonce: Vec<u8> = (0..16u8).map(|i| i.wrapping_mul(0x11)).collect();
    let cleartext = AuthRequest::Cleartext;
    let md5 = AuthRequest::Md5 { salt: md5_salt };
    let digest = AuthRequest::RedshiftDigest {
        algorithm: 0,
        salt: digest_salt.to_vec(),
        server_nonce: digest_nonce.clone(),
    };
    let sasl = AuthRequest::Sasl {
        mechanisms: vec!["SCRAM-SHA-256-PLUS".into(), "SCRAM-SHA-256".into()],
    };

    // Check every answer is what the server expects before timing it.
    let mut out = BytesMut::with_capacity(256);
    let mut auth = authenticator();
    assert_eq!(auth.answer(&cleartext, &mut out).unwrap(), AuthStep::Reply);
    assert_eq!(&out[5..], format!("{PASSWORD}\0").as_bytes());
    out.clear();
    auth.answer(&md5, &mut out).unwrap();
    let hashed = md5_password(USER.as_bytes(), PASSWORD.as_bytes(), md5_salt);
    assert_eq!(&out[5..], format!("{hashed}\0").as_bytes());
    out.clear();
    auth.answer(&digest, &mut out).unwrap();
    assert_eq!(out[0], b'd');
    let client_final_len = scram_exchange(&mut auth, &sasl, &mut out, SCRAM_SALT_B64);
    let client_final = std::str::from_utf8(&out[5..]).unwrap();
    assert!(client_final.starts_with("c=biws,r=") && client_final.contains(",p="));
    assert!(client_final.contains(SERVER_NONCE), "{client_final}");
    assert_eq!(client_final_len, out.len());

    let mut group = c.benchmark_group("auth_answer");
    group.throughput(Throughput::Elements(1));
    group.bench_function("cleartext", |b| {
        let mut auth = authenticator();
        b.iter(|| {
            out.clear();
            auth.answer(black_box(&cleartext), &mut out).unwrap()
        })
    });
    group.bench_function("md5_password", |b| {
        b.iter(|| {
            md5_password(
                black_box(USER.as_bytes()),
                black_box(PASSWORD.as_bytes()),
                black_box(md5_salt),
            )
        })
    });
    group.bench_function("md5_answer", |b| {
        let mut auth = authenticator();
        b.iter(|| {
            out.clear();
            auth.answer(black_box(&md5), &mut out).unwrap()
        })
    });
    group.bench_function("redshift_digest_fixed_nonce", |b| {
        b.iter(|| {
            redshift_digest_with_nonce(
                black_box(PASSWORD.as_bytes()),
                black_box(&digest_salt),
                black_box(&digest_nonce),
                black_box(b"1700000000000"),
            )
        })
    });
    group.bench_function("redshift_digest", |b| {
        b.iter(|| {
            redshift_digest(
                black_box(PASSWORD.as_bytes()),
                black_box(&digest_salt),
                black_box(&digest_nonce),
            )
        })
    });
    group.bench_function("redshift_digest_answer", |b| {
        let mut auth = authenticator();
        b.iter(|| {
            out.clear();
            auth.answer(black_box(&digest), &mut out).unwrap()
        })
    });
    group.bench_function("scram_client_first", |b| {
        let mut auth = authenticator();
        b.iter(|| {
            out.clear();
            auth.answer(black_box(&sasl), &mut out).unwrap()
        })
    });
    group.bench_function("scram_sha256_4096_exchange_new_salt", |b| {
        let mut auth = authenticator();
        b.iter_batched(
            fresh_salt,
            |salt| scram_exchange(&mut auth, black_box(&sasl), &mut out, &salt),
            criterion::BatchSize::SmallInput,
        )
    });
    group.bench_function("scram_sha256_4096_exchange_same_salt", |b| {
        let mut auth = authenticator();
        b.iter(|| scram_exchange(&mut auth, black_box(&sasl), &mut out, SCRAM_SALT_B64))
    });
    group.finish();
}

fn bench_parse(c: &mut Criterion) {
    let server_first_payload = server_first("fyko+d2lbbFgONRv9qkxdawL", SCRAM_SALT_B64);
    let mut digest = 0u32.to_be_bytes().to_vec();
    digest.extend_from_slice(&8u32.to_be_bytes());
    digest.extend_from_slice(&[0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6, 0x07, 0x18]);
    digest.extend_from_slice(&16u32.to_be_bytes());
    digest.extend((0..16u8).map(|i| i.wrapping_mul(0x11)));
    let cases = [
        ("ok", r_payload(0, b"")),
        ("cleartext", r_payload(3, b"")),
        ("md5", r_payload(5, &[0x93, 0x1f, 0x5c, 0x07])),
        (
            "sasl",
            r_payload(10, b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0"),
        ),
        ("sasl_continue", r_payload(11, &server_first_payload)),
        (
            "sasl_final",
            r_payload(12, b"v=U+ppxD5XUKtradnv8e2MkeupiA8FU87Sg8CXzXHDAzw="),
        ),
        ("redshift_digest", r_payload(13, &digest)),
    ];
    // Check each payload parses to its own kind before timing it.
    for (name, payload) in &cases {
        let parsed = parse_auth_request(payload).unwrap_or_else(|e| panic!("{name}: {e}"));
        let code = match parsed {
            AuthRequest::Ok => 0,
            AuthRequest::Cleartext => 3,
            AuthRequest::Md5 { .. } => 5,
            AuthRequest::Sasl { ref mechanisms } => {
                assert_eq!(mechanisms.len(), 2);
                10
            }
            AuthRequest::SaslContinue { .. } => 11,
            AuthRequest::SaslFinal { .. } => 12,
            AuthRequest::RedshiftDigest {
                ref server_nonce, ..
            } => {
                assert_eq!(server_nonce.len(), 16);
                13
            }
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(payload[..4], u32::to_be_bytes(code), "{name}");
    }

    let mut group = c.benchmark_group("parse_auth_request");
    for (name, payload) in &cases {
        group.throughput(Throughput::Bytes(payload.len() as u64));
        group.bench_function(*name, |b| b.iter(|| parse_auth_request(black_box(payload))));
    }
    group.finish();
}

criterion_group!(benches, bench_answers, bench_parse);
criterion_main!(benches);
