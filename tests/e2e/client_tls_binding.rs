//! SCRAM channel binding and direct TLS end to end: the real binary with `--client-auth scram`
//! and client TLS from files, in front of the real PostgreSQL.
//!
//! - psql (`channel_binding=require`) and tokio-postgres bind SCRAM to the proxy's
//!   certificate; a hand-rolled client proves the binding data is the served certificate's
//!   SHA-256 (computed here), and that another certificate's hash, a `y` flag where -PLUS
//!   was offered, and a `p=` claim on plain text are refused
//! - direct TLS (libpq 17's `sslnegotiation=direct`): a client that opens with a TLS
//!   handshake and ALPN `postgresql` logs in, queries and can bind; without ALPN it is
//!   refused inside TLS; with another ALPN the handshake fails; SSLRequest clients still work
//!   on the same port; without client TLS the handshake byte is an invalid startup packet

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use rustls::pki_types::ServerName;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::NoTls;
use tokio_rustls::client::TlsStream;

use crate::support::certs::TestPki;
use crate::support::client_side::{Files, assert_logged_in, psql, server_cert, start, tokio_pg};
use crate::support::pg::{self, PgServer, current_user};
use crate::support::proxy_process::{ProxyProcess, hash_password};

const PASSWORD: &str = "alice-pw";
const PLUS: &str = "SCRAM-SHA-256-PLUS";
const PLAIN: &str = "SCRAM-SHA-256";
/// Every read here is bounded: a proxy that waits instead of answering fails the test.
const READ_LIMIT: Duration = Duration::from_secs(20);

/// The binary with `--client-auth scram` for alice and client TLS from a test PKI.
fn scram_tls_proxy(server: &PgServer, files: &Files) -> (ProxyProcess, TestPki) {
    let (ok, alice, stderr) = hash_password(Some("alice"), PASSWORD);
    assert!(ok, "{stderr}");
    let users = files.write("users.txt", &alice).display().to_string();
    let (pki, cert, key) = server_cert(files);
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let proxy = start(
        server,
        &[
            "--client-auth",
            "scram",
            "--client-users",
            &users,
            "--client-tls-cert",
            &cert,
            "--client-tls-key",
            &key,
        ],
    );
    (proxy, pki)
}

/// Opens TLS to the proxy, after an SSLRequest or directly, offering `alpn`.
async fn tls(
    port: u16,
    pki: &TestPki,
    ssl_request: bool,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    if ssl_request {
        tcp.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]).await?;
        let mut answer = [0u8; 1];
        tcp.read_exact(&mut answer).await?;
        assert_eq!(answer[0], b'S');
    }
    let mut config = pki.client_config();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from("localhost").expect("name");
    tokio::time::timeout(READ_LIMIT, connector.connect(name, tcp))
        .await
        .expect("handshake within the limit")
}

/// The `tls-server-end-point` data of the certificate the proxy served on `stream`,
/// computed here: the test certificate is signed with ECDSA P-256 and SHA-256.
fn end_point(stream: &TlsStream<TcpStream>) -> Vec<u8> {
    let served = &stream.get_ref().1.peer_certificates().expect("certificate")[0];
    Sha256::digest(served.as_ref()).to_vec()
}

/// One backend message: its type and payload.
async fn read_message<S: AsyncRead + Unpin>(stream: &mut S) -> (u8, Vec<u8>) {
    tokio::time::timeout(READ_LIMIT, async {
        let mut header = [0u8; 5];
        stream
            .read_exact(&mut header)
            .await
            .expect("message header");
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let mut payload = vec![0u8; len - 4];
        stream.read_exact(&mut payload).await.expect("payload");
        (header[0], payload)
    })
    .await
    .expect("an answer within the limit")
}

/// The SQLSTATE and message of an ErrorResponse payload.
fn error_fields(payload: &[u8]) -> (String, String) {
    let (mut code, mut message) = (String::new(), String::new());
    for field in payload.split(|&b| b == 0).filter(|f| !f.is_empty()) {
        let text = String::from_utf8_lossy(&field[1..]).into_owned();
        match field[0] {
            b'C' => code = text,
            b'M' => message = text,
            _ => {}
        }
    }
    (code, message)
}

/// How the hand-rolled client answers the offer.
struct Attempt {
    mechanism: &'static str,
    binding: ChannelBinding,
    /// Sent instead of the client's own client-first-message, when set.
    first: Option<&'static [u8]>,
}

/// Sends alice's StartupMessage and runs SCRAM as `attempt` says. Returns the mechanisms
/// offered and `Ok` on AuthenticationOk or the refusal's SQLSTATE and message.
async fn login<S>(stream: &mut S, attempt: Attempt) -> (Vec<String>, Result<(), (String, String)>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut out = BytesMut::new();
    frontend::startup_message([("user", "alice"), ("database", "dev")], &mut out).expect("startup");
    stream.write_all(&out).await.expect("send startup");
    let (tag, payload) = read_message(stream).await;
    assert_eq!((tag, &payload[..4]), (b'R', &[0, 0, 0, 10][..]), "SASL");
    let offered: Vec<String> = payload[4..]
        .split(|&b| b == 0)
        .filter(|m| !m.is_empty())
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .collect();
    let mut scram = ScramSha256::new(PASSWORD.as_bytes(), attempt.binding);
    out.clear();
    let first = attempt.first.unwrap_or(scram.message());
    frontend::sasl_initial_response(attempt.mechanism, first, &mut out).expect("initial");
    stream.write_all(&out).await.expect("send initial");
    let result = async {
        let (tag, payload) = read_message(stream).await;
        if tag == b'E' {
            return Err(error_fields(&payload));
        }
        assert_eq!((tag, &payload[..4]), (b'R', &[0, 0, 0, 11][..]), "continue");
        scram.update(&payload[4..]).expect("server-first");
        out.clear();
        frontend::sasl_response(scram.message(), &mut out).expect("response");
        stream.write_all(&out).await.expect("send final");
        let (tag, payload) = read_message(stream).await;
        if tag == b'E' {
            return Err(error_fields(&payload));
        }
        assert_eq!((tag, &payload[..4]), (b'R', &[0, 0, 0, 12][..]), "final");
        scram.finish(&payload[4..]).expect("server signature");
        let (tag, payload) = read_message(stream).await;
        match tag {
            b'R' if payload == [0, 0, 0, 0] => Ok(()),
            b'E' => Err(error_fields(&payload)),
            other => panic!("unexpected message {}", char::from(other)),
        }
    }
    .await;
    (offered, result)
}

fn bound(data: Vec<u8>) -> Attempt {
    Attempt {
        mechanism: PLUS,
        binding: ChannelBinding::tls_server_end_point(data),
        first: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_binds_to_the_certificate_this_connection_was_served() {
    let server = PgServer::shared();
    let files = Files::new();
    let (proxy, pki) = scram_tls_proxy(server, &files);
    let port = proxy.port;

    // libpq (psql 15) insisting on binding, and preferring it (its default).
    for binding in ["require", "prefer"] {
        let conninfo = format!(
            "host=localhost port={port} dbname=dev user=alice sslmode=require channel_binding={binding}"
        );
        let run = psql(server, &conninfo, "select current_user", Some(PASSWORD)).await;
        assert_logged_in(&run);
    }
    // libpq will not bind on plain text: its own refusal, not the proxy's.
    let plain = format!(
        "host=127.0.0.1 port={port} dbname=dev user=alice sslmode=disable channel_binding=require"
    );
    assert!(!psql(server, &plain, "select 1", Some(PASSWORD)).await.ok);

    // tokio-postgres over rustls requiring binding (its own end-point hash).
    let client = tokio_pg(
        &format!(
            "host=localhost port={port} dbname=dev user=alice password={PASSWORD} sslmode=require channel_binding=require"
        ),
        tokio_postgres_rustls::MakeRustlsConnect::new(pki.client_config()),
    )
    .await
    .expect("tokio-postgres binds");
    assert_eq!(current_user(&client).await, pg::SCRAM_USER);
    drop(client);

    // The binding data is the SHA-256 of the certificate served, computed by the test.
    let mut stream = tls(port, &pki, true, &[]).await.expect("TLS");
    let data = end_point(&stream);
    let (offered, result) = login(&mut stream, bound(data.clone())).await;
    assert_eq!(offered, [PLUS, PLAIN], "-PLUS first over TLS");
    assert_eq!(result, Ok(()));

    // Tampered binding data (as a man in the middle's certificate would give): 28000.
    let mut tampered = data;
    tampered[0] ^= 0xff;
    let mut stream = tls(port, &pki, true, &[]).await.expect("TLS");
    let (_, result) = login(&mut stream, bound(tampered)).await;
    assert_eq!(
        result,
        Err((
            "28000".to_owned(),
            "SCRAM channel binding check failed".to_owned()
        ))
    );

    // `y` over TLS where -PLUS was offered: the offer was stripped on the way.
    let mut stream = tls(port, &pki, true, &[]).await.expect("TLS");
    let downgrade = Attempt {
        mechanism: PLAIN,
        binding: ChannelBinding::unrequested(),
        first: None,
    };
    let (_, result) = login(&mut stream, downgrade).await;
    let (code, message) = result.expect_err("downgrade refused");
    assert_eq!(code, "28000");
    assert!(
        message.contains("channel binding negotiation error"),
        "{message}"
    );

    // Plain text: only SCRAM-SHA-256 is offered; a `p=` claim is refused, under either name.
    for mechanism in [PLAIN, PLUS] {
        let mut tcp = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let claim = Attempt {
            mechanism,
            binding: ChannelBinding::unsupported(),
            first: Some(b"p=tls-server-end-point,,n=,r=abcdefgh"),
        };
        let (offered, result) = login(&mut tcp, claim).await;
        assert_eq!(offered, [PLAIN]);
        let (code, message) = result.expect_err("p= on plain text refused");
        assert_eq!(code, "08P01", "{mechanism}: {message}");
    }
    // And plain SCRAM still works there.
    let mut tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let plain = Attempt {
        mechanism: PLAIN,
        binding: ChannelBinding::unsupported(),
        first: None,
    };
    assert_eq!(login(&mut tcp, plain).await.1, Ok(()));

    let log = proxy.stop();
    assert!(log.contains("SCRAM channel binding check failed"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_tls_needs_alpn_postgresql_and_sslrequest_still_works() {
    let server = PgServer::shared();
    let files = Files::new();
    let (proxy, pki) = scram_tls_proxy(server, &files);
    let port = proxy.port;

    // Direct TLS with ALPN postgresql, then tokio-postgres's StartupMessage inside it.
    let stream = tls(port, &pki, false, &[b"postgresql"])
        .await
        .expect("direct handshake");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"postgresql"[..]));
    let mut config = tokio_postgres::Config::new();
    config.user("alice").password(PASSWORD).dbname("dev");
    let (client, connection) = config
        .connect_raw(stream, NoTls)
        .await
        .expect("log in over direct TLS");
    tokio::spawn(connection);
    assert_eq!(current_user(&client).await, pg::SCRAM_USER);
    let rows = client
        .simple_query("select 40 + 2")
        .await
        .expect("a query over direct TLS");
    assert!(
        rows.iter().any(|m| matches!(m,
            tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("42"))),
        "the query ran"
    );
    drop(client);

    // Direct TLS binds SCRAM to its certificate too.
    let mut stream = tls(port, &pki, false, &[b"postgresql"])
        .await
        .expect("direct handshake");
    let data = end_point(&stream);
    let (offered, result) = login(&mut stream, bound(data)).await;
    assert_eq!(offered, [PLUS, PLAIN]);
    assert_eq!(result, Ok(()));

    // Without ALPN: the handshake completes, then an 08P01 inside TLS and the close.
    let mut stream = tls(port, &pki, false, &[])
        .await
        .expect("handshake without ALPN");
    let (tag, payload) = read_message(&mut stream).await;
    assert_eq!(tag, b'E');
    let (code, message) = error_fields(&payload);
    assert_eq!(code, "08P01");
    assert!(message.contains("ALPN"), "{message}");
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(READ_LIMIT, stream.read_to_end(&mut rest)).await;
    assert!(rest.is_empty(), "nothing after the refusal");

    // With only another protocol: rustls refuses the handshake itself.
    assert!(tls(port, &pki, false, &[b"http/1.1"]).await.is_err());

    // SSLRequest clients on the same port: psql 15 (no ALPN) and tokio-postgres.
    let conninfo = format!("host=localhost port={port} dbname=dev user=alice sslmode=require");
    let run = psql(server, &conninfo, "select current_user", Some(PASSWORD)).await;
    assert_logged_in(&run);
    let client = tokio_pg(
        &format!("{conninfo} password={PASSWORD}"),
        tokio_postgres_rustls::MakeRustlsConnect::new(pki.client_config()),
    )
    .await
    .expect("SSLRequest client");
    assert_eq!(current_user(&client).await, pg::SCRAM_USER);
    drop(client);
    // An SSLRequest client offering ALPN postgresql (libpq 17's default) works as well.
    let mut stream = tls(port, &pki, true, &[b"postgresql"])
        .await
        .expect("SSLRequest with ALPN");
    let data = end_point(&stream);
    assert_eq!(login(&mut stream, bound(data)).await.1, Ok(()));
    let log = proxy.stop();
    assert!(log.contains("without ALPN"), "{log}");

    // Without client TLS, a handshake byte first is what it was before: a bad packet.
    let proxy = start(server, &[]);
    let mut tcp = TcpStream::connect(("127.0.0.1", proxy.port))
        .await
        .expect("connect");
    tcp.write_all(&[0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00])
        .await
        .expect("ClientHello start");
    let (tag, payload) = read_message(&mut tcp).await;
    assert_eq!(tag, b'E');
    assert_eq!(error_fields(&payload).0, "08P01");
    proxy.stop();
}
