//! The first packets a client may send, good and bad: every malformed one gets an
//! ErrorResponse 08P01 (0A000 for a protocol version the proxy does not speak) with a clear
//! message and a clean close, and the proxy keeps serving.

mod support;

use std::time::Duration;

use support::proxy::{ProxyOptions, TestProxy};
use support::scripted::{read_message, send_startup};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A proxy whose upstream is a closed port: sessions that get past negotiation end with 08001.
async fn proxy(startup_timeout: Duration) -> TestProxy {
    let closed_port = support::pg::free_port();
    let mut options = ProxyOptions::new(
        format!("127.0.0.1:{closed_port}/dev?db_user=alice&password_env=UNUSED"),
        "unused",
        std::path::PathBuf::new(),
    );
    options.sslmode = redshift_auth_proxy::upstream::tls::SslMode::Disable;
    options.ca_files.clear();
    options.startup_timeout = startup_timeout;
    TestProxy::start(options).await
}

/// Reads an ErrorResponse and then end of stream; returns (SQLSTATE, message).
async fn expect_error_then_close(stream: &mut TcpStream) -> (String, String) {
    let (tag, payload) = tokio::time::timeout(Duration::from_secs(10), read_message(stream))
        .await
        .expect("answer within 10 s")
        .expect("an ErrorResponse");
    assert_eq!(tag, b'E', "ErrorResponse expected");
    let field = |code: u8| -> String {
        let mut rest = &payload[..];
        while let Some((&t, tail)) = rest.split_first() {
            let nul = tail.iter().position(|&b| b == 0).expect("field terminator");
            if t == code {
                return String::from_utf8_lossy(&tail[..nul]).into_owned();
            }
            rest = &tail[nul + 1..];
        }
        String::new()
    };
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
        .await
        .expect("closed after the error")
        .expect("clean close");
    assert!(rest.is_empty(), "nothing after the error");
    (field(b'C'), field(b'M'))
}

fn packet(code: u32, body: &[u8]) -> Vec<u8> {
    let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(body);
    out
}

const V3: u32 = 196_608;

#[tokio::test]
async fn malformed_first_packets_get_08p01_and_the_proxy_keeps_serving() {
    let proxy = proxy(Duration::from_secs(5)).await;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("length 0", 0u32.to_be_bytes().to_vec(), "at least 8"),
        ("length 3", 3u32.to_be_bytes().to_vec(), "at least 8"),
        ("length 7", vec![0, 0, 0, 7, 0, 3, 0], "at least 8"),
        (
            "length 10 001",
            10_001u32.to_be_bytes().to_vec(),
            "at most 10000",
        ),
        (
            "length 2^31-1",
            0x7fff_ffffu32.to_be_bytes().to_vec(),
            "at most 10000",
        ),
        (
            "protocol 2",
            packet(0x0002_0000, b"user\0a\0\0"),
            "protocol 2.0",
        ),
        ("protocol 4.1", packet(0x0004_0001, b"user\0a\0\0"), "4.1"),
        ("value without NUL", packet(V3, b"user\0alice"), "NUL"),
        (
            "list without final NUL",
            packet(V3, b"user\0alice\0"),
            "NUL",
        ),
        (
            "non-UTF-8 name",
            packet(V3, b"us\xc3\x28r\0a\0\0"),
            "not valid UTF-8",
        ),
        (
            "non-UTF-8 value",
            packet(V3, b"user\0\xff\0\0"),
            "not valid UTF-8",
        ),
        ("long SSLRequest", packet(80_877_103, b"xx"), "SSLRequest"),
    ];
    for (name, bytes, want) in cases {
        let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
        stream.write_all(&bytes).await.expect("send");
        let (code, message) = expect_error_then_close(&mut stream).await;
        // As PostgreSQL: an unsupported protocol version is feature_not_supported.
        let want_code = if name.starts_with("protocol") {
            "0A000"
        } else {
            "08P01"
        };
        assert_eq!(code, want_code, "{name}: {message}");
        assert!(message.contains(want), "{name}: '{message}' lacks '{want}'");
    }

    // Truncated: the client sends half a packet and closes; nothing to answer, no hang.
    let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
    stream
        .write_all(&packet(V3, b"user\0alice\0\0")[..9])
        .await
        .expect("send");
    stream.shutdown().await.expect("half close");
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
        .await
        .expect("closed")
        .expect("read");

    // Still serving: a good startup goes on to the upstream (a closed port here: 08001).
    let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
    send_startup(&mut stream, &[("user", "bob"), ("database", "dev")]).await;
    let (code, message) = expect_error_then_close(&mut stream).await;
    assert_eq!(code, "08001", "{message}");
    proxy.stop().await;
}

#[tokio::test]
async fn encryption_requests_are_refused_with_n_then_startup_goes_on() {
    let proxy = proxy(Duration::from_secs(5)).await;

    // GSSENCRequest then SSLRequest, as libpq with gssencmode=prefer does.
    let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
    stream
        .write_all(&packet(80_877_104, b""))
        .await
        .expect("gss");
    assert_eq!(stream.read_u8().await.expect("answer"), b'N');
    stream
        .write_all(&packet(80_877_103, b""))
        .await
        .expect("ssl");
    assert_eq!(stream.read_u8().await.expect("answer"), b'N');
    send_startup(&mut stream, &[("user", "bob")]).await;
    let (code, _) = expect_error_then_close(&mut stream).await;
    assert_eq!(code, "08001", "went on to the upstream");

    // Two SSLRequests: refused as a protocol violation.
    let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
    stream
        .write_all(&packet(80_877_103, b""))
        .await
        .expect("ssl");
    assert_eq!(stream.read_u8().await.expect("answer"), b'N');
    stream
        .write_all(&packet(80_877_103, b""))
        .await
        .expect("ssl again");
    let (code, message) = expect_error_then_close(&mut stream).await;
    assert_eq!(code, "08P01");
    assert!(message.contains("sent twice"), "{message}");
    proxy.stop().await;
}

#[tokio::test]
async fn a_silent_client_is_closed_after_the_startup_timeout() {
    let proxy = proxy(Duration::from_millis(500)).await;
    let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
    let started = std::time::Instant::now();
    let (code, message) = expect_error_then_close(&mut stream).await;
    assert_eq!(code, "08P01");
    assert!(message.contains("--startup-timeout"), "{message}");
    assert!(started.elapsed() >= Duration::from_millis(450));

    // A client that dribbles its packet slower than the limit is closed too.
    let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
    let bytes = packet(V3, b"user\0alice\0\0");
    for byte in &bytes[..3] {
        if stream.write_all(std::slice::from_ref(byte)).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let (code, _) = expect_error_then_close(&mut stream).await;
    assert_eq!(code, "08P01");
    proxy.stop().await;
}

#[tokio::test]
async fn a_client_that_connects_and_leaves_is_not_an_error() {
    let proxy = proxy(Duration::from_secs(5)).await;
    for _ in 0..20 {
        drop(TcpStream::connect(proxy.addr).await.expect("connect"));
    }
    let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
    send_startup(&mut stream, &[("user", "bob")]).await;
    let (code, _) = expect_error_then_close(&mut stream).await;
    assert_eq!(code, "08001");
    proxy.stop().await;
}
