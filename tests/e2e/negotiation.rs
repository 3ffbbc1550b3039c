//! The first packets a client may send, good, hostile and broken, at the network level: each
//! case is sent over a raw TCP connection to the proxy started in-process, and the exact
//! outcome is checked: an ErrorResponse with the expected SQLSTATE and message followed by a
//! clean close, the documented one-byte reply, or a close without a reply. Every read is
//! under a timeout, so a proxy that hangs fails the test instead of stalling it, and every
//! group of cases ends with a good StartupMessage: the proxy keeps serving.
//!
//! The reference is what PostgreSQL's postmaster (`ProcessStartupPacket`) does with the same
//! bytes, with two deliberate differences: where PostgreSQL only logs a broken packet and
//! closes (bad lengths, truncated packets), the proxy also tells the client why (08P01), and
//! the startup packet cap is 10 000 bytes including the length field (PostgreSQL's excludes
//! it). A protocol version the proxy does not speak is 0A000, as in PostgreSQL.
//!
//! None of these cases get as far as a login, so the upstream is a closed port: a startup
//! that gets through negotiation ends with 08001 naming that port, which is how the cases
//! that must be accepted show it.

use std::time::{Duration, Instant};

use crate::support::pg::free_port;
use crate::support::proxy::{ProxyOptions, TestProxy};
use crate::support::scripted::{error_field, read_message, send_startup};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long any one read may take.
const WAIT: Duration = Duration::from_secs(5);

const V3: u32 = 0x0003_0000;
const SSL: u32 = 80_877_103;
const GSS: u32 = 80_877_104;
const CANCEL: u32 = 80_877_102;

/// A proxy whose upstream is a closed port, and that port.
async fn proxy(startup_timeout: Duration) -> (TestProxy, u16) {
    let closed_port = free_port();
    let mut options = ProxyOptions::new(
        format!("127.0.0.1:{closed_port}/dev?db_user=alice&password_env=UNUSED"),
        "unused",
        std::path::PathBuf::new(),
    );
    options.sslmode = redshift_auth_proxy::upstream::tls::SslMode::Disable;
    options.ca_files.clear();
    options.startup_timeout = startup_timeout;
    (TestProxy::start(options).await, closed_port)
}

/// An untagged first packet: length, code, body.
fn packet(code: u32, body: &[u8]) -> Vec<u8> {
    let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// What the client does, in order.
enum Step {
    /// Write these bytes.
    Send(Vec<u8>),
    /// Read exactly these bytes back.
    Expect(&'static [u8]),
    /// Close the client's sending side (EOF for the proxy) and keep reading.
    HalfClose,
}

/// How the connection must end.
enum End {
    /// ErrorResponse with this SQLSTATE whose message contains this text, then a close.
    Error(&'static str, String),
    /// A close with nothing sent.
    Silent,
}

struct Case {
    name: &'static str,
    steps: Vec<Step>,
    end: End,
}

fn error(sqlstate: &'static str, message: impl Into<String>) -> End {
    End::Error(sqlstate, message.into())
}

/// Reads to end of stream within `WAIT`: the proxy must close, not hang.
async fn rest_of_stream(stream: &mut TcpStream, name: &str) -> Vec<u8> {
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut rest))
        .await
        .unwrap_or_else(|_| panic!("{name}: the proxy did not close within {WAIT:?}"))
        .unwrap_or_else(|e| panic!("{name}: not a clean close: {e}"));
    rest
}

/// Reads one ErrorResponse and the close after it; returns (severity, SQLSTATE, message).
async fn error_then_close(stream: &mut TcpStream, name: &str) -> (String, String, String) {
    let (tag, payload) = tokio::time::timeout(WAIT, read_message(stream))
        .await
        .unwrap_or_else(|_| panic!("{name}: no answer within {WAIT:?}"))
        .unwrap_or_else(|| panic!("{name}: closed without an ErrorResponse"));
    assert_eq!(
        tag, b'E',
        "{name}: ErrorResponse expected, got '{}'",
        tag as char
    );
    let rest = rest_of_stream(stream, name).await;
    assert!(rest.is_empty(), "{name}: {rest:?} after the ErrorResponse");
    let get = |code| error_field(&payload, code).unwrap_or_default();
    (get(b'S'), get(b'C'), get(b'M'))
}

async fn run(proxy: &TestProxy, case: Case) {
    let name = case.name;
    let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
    for step in case.steps {
        match step {
            Step::Send(bytes) => stream.write_all(&bytes).await.expect("send"),
            Step::Expect(want) => {
                let mut got = vec![0u8; want.len()];
                tokio::time::timeout(WAIT, stream.read_exact(&mut got))
                    .await
                    .unwrap_or_else(|_| panic!("{name}: no reply within {WAIT:?}"))
                    .unwrap_or_else(|e| panic!("{name}: no reply: {e}"));
                assert_eq!(got, want, "{name}");
            }
            Step::HalfClose => stream.shutdown().await.expect("half close"),
        }
    }
    match case.end {
        End::Error(sqlstate, want) => {
            let (severity, code, message) = error_then_close(&mut stream, name).await;
            assert_eq!(severity, "FATAL", "{name}");
            assert_eq!(code, sqlstate, "{name}: {message}");
            assert!(
                message.contains(&want),
                "{name}: '{message}' lacks '{want}'"
            );
        }
        End::Silent => {
            let rest = rest_of_stream(&mut stream, name).await;
            assert!(rest.is_empty(), "{name}: expected no reply, got {rest:?}");
        }
    }
}

/// A good StartupMessage.
fn startup() -> Vec<u8> {
    packet(V3, b"user\0alice\0database\0dev\0\0")
}

/// Runs the cases `make` builds (given the outcome of an accepted startup) on one proxy,
/// then a good StartupMessage: after all of them the proxy still serves. Returns the proxy
/// for checks of its state; the caller stops it.
async fn run_group(make: impl FnOnce(&dyn Fn() -> End) -> Vec<Case>) -> TestProxy {
    let (proxy, upstream_port) = proxy(Duration::from_secs(10)).await;
    let upstream = format!("127.0.0.1:{upstream_port}");
    let accepted = || error("08001", upstream.clone());
    for case in make(&accepted) {
        run(&proxy, case).await;
    }
    run(
        &proxy,
        Case {
            name: "a good StartupMessage after the others",
            steps: vec![Step::Send(startup())],
            end: accepted(),
        },
    )
    .await;
    proxy
}

use Step::*;

#[tokio::test]
async fn lengths_outside_8_to_10000_bytes_are_refused() {
    // A StartupMessage of exactly 10 000 bytes, the largest accepted.
    let mut biggest = b"user\0alice\0application_name\0".to_vec();
    biggest.resize(10_000 - 8 - 2, b'x');
    biggest.extend_from_slice(b"\0\0");
    let biggest = packet(V3, &biggest);
    assert_eq!(biggest.len(), 10_000);

    // Below the 8 bytes of length and code, over the cap, and absurd.
    let proxy = run_group(|accepted| {
        vec![
            Case {
                name: "length 0",
                steps: vec![Send(0u32.to_be_bytes().to_vec())],
                end: error(
                    "08P01",
                    "invalid length of startup packet: 0 bytes (at least 8)",
                ),
            },
            Case {
                name: "length 3",
                steps: vec![Send(3u32.to_be_bytes().to_vec())],
                end: error(
                    "08P01",
                    "invalid length of startup packet: 3 bytes (at least 8)",
                ),
            },
            Case {
                name: "length 7, with its 3 bytes",
                steps: vec![Send(vec![0, 0, 0, 7, 0, 3, 0])],
                end: error(
                    "08P01",
                    "invalid length of startup packet: 7 bytes (at least 8)",
                ),
            },
            Case {
                name: "length 10 001",
                steps: vec![Send(10_001u32.to_be_bytes().to_vec())],
                end: error(
                    "08P01",
                    "invalid length of startup packet: 10001 bytes (at most 10000)",
                ),
            },
            Case {
                name: "length 2^31-1",
                steps: vec![Send(0x7fff_ffffu32.to_be_bytes().to_vec())],
                end: error(
                    "08P01",
                    "invalid length of startup packet: 2147483647 bytes (at most 10000)",
                ),
            },
            Case {
                name: "length 0xffffffff (-1 as PostgreSQL's Int32)",
                steps: vec![Send(u32::MAX.to_be_bytes().to_vec())],
                end: error("08P01", "4294967295 bytes (at most 10000)"),
            },
            Case {
                name: "length 10 000 (the cap) is accepted",
                steps: vec![Send(biggest)],
                end: accepted(),
            },
        ]
    })
    .await;
    proxy.stop().await;
}

#[tokio::test]
async fn a_client_that_closes_before_its_packet_is_complete_is_told_so() {
    let startup = startup();
    let proxy = run_group(|_| {
        vec![
            Case {
                name: "length says 100, 20 bytes arrive, then EOF",
                steps: vec![Send(packet(V3, &[b'a'; 92])[..20].to_vec()), HalfClose],
                end: error(
                    "08P01",
                    "incomplete startup packet: expected 100 bytes, got 20",
                ),
            },
            Case {
                name: "9 bytes of a 20-byte StartupMessage, then EOF",
                steps: vec![
                    Send(packet(V3, b"user\0alice\0\0")[..9].to_vec()),
                    HalfClose,
                ],
                end: error(
                    "08P01",
                    "incomplete startup packet: expected 20 bytes, got 9",
                ),
            },
            Case {
                name: "half a length field, then EOF",
                steps: vec![Send(vec![0, 0]), HalfClose],
                end: error(
                    "08P01",
                    "incomplete startup packet: expected 8 bytes, got 2",
                ),
            },
            Case {
                name: "SSLRequest, then a truncated StartupMessage",
                steps: vec![
                    Send(packet(SSL, b"")),
                    Expect(b"N"),
                    Send(startup[..9].to_vec()),
                    HalfClose,
                ],
                end: error("08P01", "incomplete startup packet"),
            },
            Case {
                name: "SSLRequest refused, then the client leaves (as libpq with sslmode=require)",
                steps: vec![Send(packet(SSL, b"")), Expect(b"N"), HalfClose],
                end: End::Silent,
            },
        ]
    })
    .await;
    proxy.stop().await;
}

#[tokio::test]
async fn only_protocol_3_starts_a_session() {
    let proxy = run_group(|_| {
        vec![
            Case {
                name: "protocol 2.0",
                steps: vec![Send(packet(0x0002_0000, b"user\0alice\0database\0dev\0\0"))],
                end: error("0A000", "unsupported frontend protocol 2.0"),
            },
            Case {
                name: "protocol 4.0",
                steps: vec![Send(packet(0x0004_0000, b"user\0alice\0\0"))],
                end: error("0A000", "unsupported frontend protocol or request code 4.0"),
            },
            Case {
                name: "protocol 4.1",
                steps: vec![Send(packet(0x0004_0001, b"user\0alice\0\0"))],
                end: error("0A000", "unsupported frontend protocol or request code 4.1"),
            },
            Case {
                name: "protocol 1234.5681 (not a request code)",
                steps: vec![Send(packet(0x04d2_1631, b"user\0alice\0\0"))],
                end: error(
                    "0A000",
                    "unsupported frontend protocol or request code 1234.5681",
                ),
            },
        ]
    })
    .await;
    proxy.stop().await;
}

#[tokio::test]
async fn encryption_requests_are_refused_with_n_once_each_in_either_order() {
    let startup = startup();
    let proxy = run_group(|accepted| {
        vec![
            Case {
                name: "two SSLRequests",
                steps: vec![Send(packet(SSL, b"")), Expect(b"N"), Send(packet(SSL, b""))],
                end: error("08P01", "SSLRequest sent twice"),
            },
            Case {
                name: "two GSSENCRequests",
                steps: vec![Send(packet(GSS, b"")), Expect(b"N"), Send(packet(GSS, b""))],
                end: error("08P01", "GSSENCRequest sent twice"),
            },
            Case {
                name: "GSSENCRequest then SSLRequest (libpq with gssencmode=prefer)",
                steps: vec![
                    Send(packet(GSS, b"")),
                    Expect(b"N"),
                    Send(packet(SSL, b"")),
                    Expect(b"N"),
                    Send(startup.clone()),
                ],
                end: accepted(),
            },
            Case {
                name: "SSLRequest then GSSENCRequest",
                steps: vec![
                    Send(packet(SSL, b"")),
                    Expect(b"N"),
                    Send(packet(GSS, b"")),
                    Expect(b"N"),
                    Send(startup.clone()),
                ],
                end: accepted(),
            },
            Case {
                name: "SSLRequest with a body",
                steps: vec![Send(packet(SSL, b"xx"))],
                end: error("08P01", "invalid length 10 for SSLRequest: expected 8"),
            },
        ]
    })
    .await;
    proxy.stop().await;
}

#[tokio::test]
async fn cancel_requests_for_unknown_keys_are_dropped_without_a_reply() {
    // 1234.5678 is CancelRequest's code: with 8 body bytes it is a cancel for an unknown
    // backend (closed without a reply, as PostgreSQL does), otherwise a CancelRequest of the
    // wrong length.
    let proxy = run_group(|_| {
        vec![
            Case {
                name: "CancelRequest with an unknown key",
                steps: vec![Send(packet(CANCEL, &[0, 0, 0x30, 0x39, 0, 0, 0x02, 0xa6]))],
                end: End::Silent,
            },
            Case {
                name: "CancelRequest without its secret",
                steps: vec![Send(packet(CANCEL, &[0, 0, 0x30, 0x39]))],
                end: error("08P01", "invalid length 12 for CancelRequest: expected 16"),
            },
            Case {
                name: "1234.5678 with 8 body bytes",
                steps: vec![Send(packet(0x04d2_162e, b"user\0a\0\0"))],
                end: End::Silent,
            },
            Case {
                name: "1234.5678 with a StartupMessage body",
                steps: vec![Send(packet(0x04d2_162e, b"user\0alice\0\0"))],
                end: error("08P01", "invalid length 20 for CancelRequest: expected 16"),
            },
        ]
    })
    .await;
    // The two well-formed cancels reached the registry, found nothing, and were dropped.
    assert_eq!(proxy.cancel.counts().unknown, 2);
    proxy.stop().await;
}

#[tokio::test]
async fn startup_parameters_must_be_utf8_and_nul_terminated() {
    let proxy = run_group(|accepted| {
        vec![
            Case {
                name: "non-UTF-8 parameter name",
                steps: vec![Send(packet(V3, b"us\xc3\x28r\0alice\0\0"))],
                end: error("08P01", "parameter name #1 is not valid UTF-8"),
            },
            Case {
                name: "non-UTF-8 second parameter name",
                steps: vec![Send(packet(V3, b"user\0alice\0\xffdb\0dev\0\0"))],
                end: error("08P01", "parameter name #2 is not valid UTF-8"),
            },
            Case {
                name: "non-UTF-8 parameter value",
                steps: vec![Send(packet(
                    V3,
                    b"user\0alice\0application_name\0caf\xe9\0\0",
                ))],
                end: error(
                    "08P01",
                    "parameter 'application_name' value is not valid UTF-8",
                ),
            },
            Case {
                name: "non-UTF-8 user",
                steps: vec![Send(packet(V3, b"user\0\xff\0\0"))],
                end: error("08P01", "parameter 'user' value is not valid UTF-8"),
            },
            Case {
                name: "StartupMessage without its final terminator",
                steps: vec![Send(packet(V3, b"user\0alice\0database\0dev\0"))],
                end: error(
                    "08P01",
                    "invalid startup packet layout: the parameter list does not end with a NUL byte",
                ),
            },
            Case {
                name: "parameter value without its NUL",
                steps: vec![Send(packet(V3, b"user\0alice"))],
                end: error("08P01", "a parameter value does not end with a NUL byte"),
            },
            Case {
                name: "bytes after the final terminator",
                steps: vec![Send(packet(V3, b"user\0alice\0\0junk"))],
                end: error("08P01", "bytes follow the parameter list's final NUL"),
            },
            Case {
                name: "empty StartupMessage (no parameters) is accepted",
                steps: vec![Send(packet(V3, b"\0"))],
                end: accepted(),
            },
        ]
    })
    .await;
    proxy.stop().await;
}

#[tokio::test]
async fn silent_and_dribbling_clients_are_cut_at_the_startup_timeout() {
    let timeout = Duration::from_secs(2);
    let (proxy, _) = proxy(timeout).await;
    let started = Instant::now();

    // The dribbler would need 26 s for its StartupMessage; a silent client next to it.
    let mut dribbler = TcpStream::connect(proxy.addr).await.expect("connect");
    let mut silent = TcpStream::connect(proxy.addr).await.expect("connect");
    let (mut reader, mut writer) = dribbler.split();
    let bytes = startup();
    let dribble = async {
        for byte in &bytes {
            if writer.write_all(std::slice::from_ref(byte)).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    let answer = async {
        let (tag, payload) = tokio::time::timeout(WAIT, read_message(&mut reader))
            .await
            .expect("an answer within 5 s")
            .expect("an ErrorResponse");
        let elapsed = started.elapsed();
        let mut rest = Vec::new();
        tokio::time::timeout(WAIT, reader.read_to_end(&mut rest))
            .await
            .expect("closed after the error")
            .expect("clean close");
        (tag, payload, elapsed, rest)
    };
    let silent_answer = async {
        let answer = error_then_close(&mut silent, "silent client").await;
        (answer, started.elapsed())
    };
    let answers = tokio::select! {
        answers = async { tokio::join!(answer, silent_answer) } => answers,
        () = dribble => panic!("the whole packet went through"),
    };
    let ((tag, payload, elapsed, rest), ((severity, code, message), silent_elapsed)) = answers;
    assert_eq!(tag, b'E');
    assert_eq!(error_field(&payload, b'C').as_deref(), Some("08P01"));
    let dribbler_message = error_field(&payload, b'M').unwrap_or_default();
    assert!(
        dribbler_message.contains("no startup packet received within 2s (--startup-timeout)"),
        "{dribbler_message}"
    );
    assert!(rest.is_empty(), "{rest:?}");
    assert!(
        elapsed >= timeout && elapsed < timeout + Duration::from_secs(2),
        "dribbler cut after {elapsed:?}"
    );

    assert_eq!((severity.as_str(), code.as_str()), ("FATAL", "08P01"));
    assert!(message.contains("--startup-timeout"), "{message}");
    assert!(
        silent_elapsed >= timeout && silent_elapsed < timeout + Duration::from_secs(2),
        "silent client cut after {silent_elapsed:?}"
    );
    // Closed here so the proxy's read-and-discard after its refusal ends now.
    drop((dribbler, silent));
    proxy.stop().await;
}

#[tokio::test]
async fn a_client_that_connects_and_leaves_is_not_an_error() {
    let (proxy, _) = proxy(Duration::from_secs(5)).await;
    for _ in 0..20 {
        drop(TcpStream::connect(proxy.addr).await.expect("connect"));
    }
    let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
    send_startup(&mut stream, &[("user", "bob")]).await;
    let (severity, code, message) = error_then_close(&mut stream, "after 20 who left").await;
    assert_eq!(
        (severity.as_str(), code.as_str()),
        ("FATAL", "08001"),
        "{message}"
    );
    proxy.stop().await;
}
