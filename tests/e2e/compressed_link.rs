//! Wire compression between the proxy and the server (`compression=lz4`), end to end: the
//! in-process proxy in front of the Redshift-flavoured upstream, which compresses as Redshift
//! does when asked (`'z'` before the authentication request, then LZ4 blocks cut anywhere
//! with a continuing 64 KiB dictionary, plain messages between blocks, `'k'` resets), and in
//! front of the tests' plain PostgreSQL, which does not compress.
//!
//! - psql (COPY to stdout), tokio-postgres (`copy_out`), pgjdbc (`CopyManager.copyOut`, and a
//!   SELECT read through a portal 10 000 rows at a time) and psycopg 3 (`Cursor.copy()`, and a
//!   SELECT streamed in single-row mode) get a 50 MB result through the compressed link byte for
//!   byte: the MD5 of what each client received (of each SELECT row as COPY text) equals the
//!   MD5 the server computes of the same text; the upstream was asked with
//!   `_pq_.compression=lz4` (and a client's own `_pq_.compression` never reaches it); the
//!   proxy's `upstream_wire_bytes` against its client-side `bytes` shows the ratio. pgjdbc and
//!   psycopg are child processes (`support/driver_programs.rs`).
//! - A broken block from the upstream ends the session with 08P01 to the client.
//! - Against plain PostgreSQL (which answers the unknown option with NegotiateProtocolVersion
//!   and never compresses) nothing changes for the client.
//! - `--check` says whether the server acknowledged compression.

use std::time::Duration;

use futures_util::StreamExt;
use md5::{Digest, Md5};

use crate::support::client_side::psql;
use crate::support::driver_programs::{self, Mode, Received};
use crate::support::pg::{self, PgServer, db_error};
use crate::support::proxy::{ProxyOptions, TestProxy};
use crate::support::proxy_process::ProxyCommand;
use crate::support::redshift_connector;
use crate::support::redshift_upstream::{
    CORRUPT_BLOCK_MARKER, Method, RedshiftUpstream, Transport,
};
use crate::support::scripted::{read_message, send_startup};

const USER: &str = "lz4_user";
const PASSWORD: &str = "lz4-pw-Ω1";

/// Rows of mixed text, numbers and dates, as a results table would hold: about 50 MB as
/// COPY text.
const ROWS: u32 = 850_000;

/// The sample: mixed text, numbers and dates, none with a tab, newline, backslash or NULL,
/// so a row's columns as text joined by tabs are its COPY text.
fn select_query(rows: u32) -> String {
    format!(
        "select i, 'customer-' || (i % 5000), date '2026-01-01' + i % 1000, \
         (i % 1000) * 1.25, repeat('x', i % 40) from generate_series(1, {rows}) i"
    )
}

/// The COPY text of the sample, one line per row.
fn copy_query(rows: u32) -> String {
    format!("copy ({}) to stdout", select_query(rows))
}

/// The MD5 the server computes of the same text, as a hex string.
fn server_md5_query(rows: u32) -> String {
    format!(
        "select md5(string_agg(i || E'\\t' || 'customer-' || (i % 5000) || E'\\t' || \
         (date '2026-01-01' + i % 1000) || E'\\t' || ((i % 1000) * 1.25) || E'\\t' || \
         repeat('x', i % 40) || E'\\n', '' order by i)) from generate_series(1, {rows}) i"
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An upstream that compresses when asked, and the in-process proxy in front of it with
/// `compression=lz4`.
async fn compressed_setup() -> (RedshiftUpstream, TestProxy) {
    let server = PgServer::shared();
    let upstream = RedshiftUpstream::start(server, Transport::Tls, Method::Md5).await;
    upstream.register(USER, PASSWORD, None);
    let target = format!(
        "localhost:{}/dev?db_user={USER}&password_env=UNUSED&compression=lz4",
        upstream.port()
    );
    let proxy = TestProxy::start(ProxyOptions::new(target, PASSWORD, server.ca_pem_path())).await;
    (upstream, proxy)
}

/// A counter's value on `/metrics` for the proxy's only target and `direction`.
fn counter(proxy: &TestProxy, family: &str, direction: &str) -> f64 {
    let text = proxy.metrics.encode();
    text.lines()
        .find(|line| line.starts_with(family) && line.contains(direction))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("{family} {direction} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_megabytes_arrive_byte_for_byte_through_the_compressed_link() {
    let server = PgServer::shared();
    let (upstream, proxy) = compressed_setup().await;
    let expected = expected_md5(&proxy).await;

    // psql's COPY to stdout, hashed on arrival.
    let run = psql(server, &proxy.conninfo("dev"), &copy_query(ROWS), None).await;
    assert!(run.ok, "psql: {}", run.stderr);
    assert!(run.stdout.len() > 50_000_000, "{} bytes", run.stdout.len());
    assert_eq!(hex(&Md5::digest(run.stdout.as_bytes())), expected, "psql");

    // tokio-postgres's COPY OUT stream, hashed as it comes.
    let (client, connection) =
        tokio_postgres::connect(&proxy.conninfo("dev"), tokio_postgres::NoTls)
            .await
            .expect("tokio-postgres logs in through the compressed link");
    tokio::spawn(connection);
    let stream = client
        .copy_out(&copy_query(ROWS))
        .await
        .expect("copy out starts");
    let mut stream = std::pin::pin!(stream);
    let mut md5 = Md5::new();
    let mut received = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("copy data");
        received += chunk.len();
        md5.update(&chunk);
    }
    assert_eq!(received, run.stdout.len());
    assert_eq!(hex(&md5.finalize()), expected, "tokio-postgres");

    assert_compressed(&upstream, &proxy, 3);
    drop(client);
    proxy.stop().await;
}

/// Every login the upstream saw (at least `sessions`) asked for LZ4, and the proxy's wire
/// bytes from the server against the plain bytes it relayed show a ratio above 3.
fn assert_compressed(upstream: &RedshiftUpstream, proxy: &TestProxy, sessions: usize) {
    let asked: Vec<_> = upstream
        .startups()
        .iter()
        .map(|s| s.param("_pq_.compression").map(str::to_owned))
        .collect();
    assert!(asked.len() >= sessions, "{asked:?}");
    assert!(
        asked.iter().all(|a| a.as_deref() == Some("lz4")),
        "{asked:?}"
    );

    let wire = counter(
        proxy,
        "redshift_proxy_upstream_wire_bytes_total",
        "server_to_client",
    );
    let plain = counter(proxy, "redshift_proxy_bytes_total", "server_to_client");
    let ratio = plain / wire;
    eprintln!("compressed link: {plain} plain bytes over {wire} wire bytes, ratio {ratio:.2}");
    assert!(ratio > 3.0, "plain {plain} wire {wire}");
}

/// The MD5 the server computes of the sample's COPY text, asked through the proxy.
async fn expected_md5(proxy: &TestProxy) -> String {
    let (client, connection) =
        tokio_postgres::connect(&proxy.conninfo("dev"), tokio_postgres::NoTls)
            .await
            .expect("tokio-postgres logs in through the compressed link");
    tokio::spawn(connection);
    client
        .query_one(&server_md5_query(ROWS), &[])
        .await
        .expect("server-side md5")
        .get(0)
}

/// One driver's run of the sample: all of it, byte for byte.
fn assert_received(driver: &str, mode: Mode, received: &Received, expected: &str) {
    eprintln!("{driver} {mode:?}: {received:?}");
    assert_eq!(received.md5, expected, "{driver} {mode:?}: {received:?}");
    assert_eq!(received.rows, u64::from(ROWS), "{driver} {mode:?}");
    assert!(
        received.bytes > 50_000_000,
        "{driver} {mode:?}: {received:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgjdbc_gets_fifty_megabytes_byte_for_byte_through_the_compressed_link() {
    let (upstream, proxy) = compressed_setup().await;
    let expected = expected_md5(&proxy).await;
    for (mode, query) in [
        (Mode::Copy, copy_query(ROWS)),
        (Mode::Select, select_query(ROWS)),
    ] {
        let received = driver_programs::pgjdbc(proxy.port(), "anything", "dev", mode, &query).await;
        assert_received("pgjdbc", mode, &received, &expected);
    }
    assert_compressed(&upstream, &proxy, 3);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_gets_fifty_megabytes_byte_for_byte_through_the_compressed_link() {
    let Some(python) = redshift_connector::python() else {
        return;
    };
    let (upstream, proxy) = compressed_setup().await;
    let expected = expected_md5(&proxy).await;
    for (mode, query) in [
        (Mode::Copy, copy_query(ROWS)),
        (Mode::Select, select_query(ROWS)),
    ] {
        let received =
            driver_programs::psycopg(&python, proxy.port(), "anything", "dev", mode, &query).await;
        assert_received("psycopg", mode, &received, &expected);
    }
    assert_compressed(&upstream, &proxy, 3);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_own_compression_request_never_reaches_the_server() {
    let (upstream, proxy) = compressed_setup().await;
    let mut socket = tokio::net::TcpStream::connect(proxy.addr)
        .await
        .expect("connect");
    send_startup(
        &mut socket,
        &[
            ("user", "x"),
            ("database", "dev"),
            ("_pq_.compression", "zstd"),
        ],
    )
    .await;
    let (first, _) = read_message(&mut socket).await.expect("an answer");
    assert_eq!(first, b'R', "a 3.0 client hears nothing of the option");
    loop {
        let (tag, _) = read_message(&mut socket).await.expect("greeting");
        if tag == b'Z' {
            break;
        }
    }
    let startup = upstream.startups().pop().expect("the proxy logged in");
    let sent: Vec<_> = startup
        .received
        .iter()
        .filter(|(name, _)| name.starts_with("_pq_."))
        .collect();
    assert_eq!(
        sent,
        vec![&("_pq_.compression".to_owned(), "lz4".to_owned())]
    );
    drop(socket);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_block_ends_the_session_with_08p01() {
    let (_upstream, proxy) = compressed_setup().await;
    let (client, connection) =
        tokio_postgres::connect(&proxy.conninfo("dev"), tokio_postgres::NoTls)
            .await
            .expect("logs in");
    let connection = tokio::spawn(connection);
    client
        .simple_query("select 1")
        .await
        .expect("a first query");
    let marker = String::from_utf8_lossy(CORRUPT_BLOCK_MARKER);
    let error = client
        .simple_query(&format!("select '{marker}'"))
        .await
        .expect_err("the broken block ends the session");
    let (code, message) = db_error(&error);
    assert_eq!(code, "08P01", "{message}");
    assert!(message.contains("compressed block"), "{message}");
    assert!(message.contains("compression=off"), "{message}");
    // The connection ends: with the error already given, or with nothing more.
    let ended = tokio::time::timeout(Duration::from_secs(10), connection)
        .await
        .expect("the proxy closes the connection")
        .expect("connection task");
    drop(ended);
    assert!(client.is_closed());
    let text = proxy.metrics.encode();
    assert!(
        text.contains("outcome=\"relay_error\""),
        "the session ended with a relay error:\n{text}"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_plain_postgresql_nothing_changes() {
    let server = PgServer::shared();
    let target = format!(
        "localhost:{}/postgres?db_user={}&password_env=UNUSED&compression=lz4",
        server.port(),
        pg::SCRAM_USER
    );
    let proxy = TestProxy::start(ProxyOptions::new(
        target,
        pg::SCRAM_PASSWORD,
        server.ca_pem_path(),
    ))
    .await;
    // A raw client: the first byte back is 'R', not PostgreSQL's NegotiateProtocolVersion
    // about the proxy's own `_pq_.compression`.
    let mut socket = tokio::net::TcpStream::connect(proxy.addr)
        .await
        .expect("connect");
    send_startup(&mut socket, &[("user", "x"), ("database", "postgres")]).await;
    let (first, _) = read_message(&mut socket).await.expect("an answer");
    assert_eq!(first, b'R');
    drop(socket);

    let (client, connection) =
        tokio_postgres::connect(&proxy.conninfo("postgres"), tokio_postgres::NoTls)
            .await
            .expect("logs in");
    tokio::spawn(connection);
    let rows = client
        .query("select i from generate_series(1, 20000) i", &[])
        .await
        .expect("a result");
    assert_eq!(rows.len(), 20_000);
    let wire = counter(
        &proxy,
        "redshift_proxy_upstream_wire_bytes_total",
        "server_to_client",
    );
    let plain = counter(&proxy, "redshift_proxy_bytes_total", "server_to_client");
    assert!(
        wire >= plain && wire < plain + 4096.0,
        "uncompressed: the wire carries the relayed bytes and the logins ({wire} against {plain})"
    );
    drop(client);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_says_whether_the_server_compresses() {
    let server = PgServer::shared();
    let upstream = RedshiftUpstream::start(server, Transport::Tls, Method::Digest).await;
    upstream.register(USER, PASSWORD, None);
    let ca = server.ca_pem_path().display().to_string();
    let compressing = format!(
        "localhost:{}/dev?db_user={USER}&password_env=PW&compression=lz4",
        upstream.port()
    );
    let plain = format!(
        "localhost:{}/postgres?db_user={}&password_env=PG_PW&compression=lz4",
        server.port(),
        pg::SCRAM_USER
    );
    let (status, stdout, stderr) =
        ProxyCommand::new(&[&compressing, &plain, "--upstream-ca", &ca, "--check"])
            .env("PW", Some(PASSWORD))
            .env("PG_PW", Some(pg::SCRAM_PASSWORD))
            .output();
    assert!(status.success(), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].contains("compression=acknowledged"), "{stdout}");
    assert!(
        lines[1].contains("compression=not-acknowledged"),
        "{stdout}"
    );
}

/// The proxy process's resident memory in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .expect("VmRSS")
}

/// Opens `SESSIONS` sessions through a proxy binary with `compression`, each receiving a
/// result larger than the decompressor's history before it goes idle, one at a time so the
/// buffer pool stays small; returns the proxy's RSS growth per idle session in KiB, from
/// after the first session to after the last.
async fn rss_per_idle_session(upstream: &RedshiftUpstream, compression: &str) -> f64 {
    const SESSIONS: usize = 100;
    let server = PgServer::shared();
    let port = pg::free_port();
    let target = format!(
        "localhost:{}/dev?db_user={USER}&password_env=PW&compression={compression}",
        upstream.port()
    );
    let ca = server.ca_pem_path().display().to_string();
    let port_text = port.to_string();
    let proxy = ProxyCommand::new(&[&target, "--port", &port_text, "--upstream-ca", &ca])
        .env("PW", Some(PASSWORD))
        .spawn(port);
    let conninfo = format!("host=127.0.0.1 port={port} dbname=dev user=x sslmode=disable");
    let query = "select string_agg(i::text || ',customer-' || (i % 500), ';') \
                 from generate_series(1, 20000) i";
    // One session first, so what every process allocates once is there before the baseline.
    let mut clients = Vec::with_capacity(SESSIONS + 1);
    let mut baseline = 0;
    for i in 0..=SESSIONS {
        let (client, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
            .await
            .expect("logs in");
        tokio::spawn(connection);
        let row = client.query_one(query, &[]).await.expect("a 300 KB result");
        assert!(row.get::<_, String>(0).len() > 300_000);
        clients.push(client);
        if i == 0 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            baseline = rss_kib(proxy.pid());
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = rss_kib(proxy.pid());
    drop(clients);
    (after as f64 - baseline as f64) / SESSIONS as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_compressed_session_holds_at_most_100_kib_more_than_a_plain_one() {
    let server = PgServer::shared();
    let upstream = RedshiftUpstream::start(server, Transport::Tls, Method::Md5).await;
    upstream.register(USER, PASSWORD, None);
    let plain = rss_per_idle_session(&upstream, "off").await;
    let compressed = rss_per_idle_session(&upstream, "lz4").await;
    let extra = compressed - plain;
    eprintln!(
        "RSS per idle session over 100: plain {plain:.1} KiB, compressed {compressed:.1} KiB: {extra:.1} KiB more per compressed session"
    );
    assert!(extra <= 100.0, "{extra:.1} KiB per idle compressed session");
    assert!(extra > 50.0, "the history is held: {extra:.1} KiB");
}
