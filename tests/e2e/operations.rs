//! Operating the proxy: exact metrics after a known session, the health endpoints through
//! start, drain and stop, SIGTERM with live sessions, `--max-connections`,
//! `--idle-timeout`, `POST /quitquitquit`, and a trace-level log free of secrets. The real
//! binary runs in front of the real PostgreSQL (static password targets, so AWS stays out
//! except in the log test, which uses the AWS fake).

use std::time::{Duration, Instant};

use crate::support::eventually::eventually;
use crate::support::fake_aws::FakeAws;
use crate::support::http_get::{get, request, sample};
use crate::support::pg::{self, PgServer};
use crate::support::proxy_process::{ProxyCommand, ProxyProcess, TEST_SECRET_ACCESS_KEY};
use crate::support::scripted::{read_message, send_startup};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::NoTls;

/// A static-password proxy in front of the shared server, with its HTTP endpoint on a free
/// port and `extra` flags.
fn start(server: &PgServer, extra: &[&str]) -> (ProxyProcess, u16) {
    let ports = pg::free_ports(2);
    let (port, http) = (ports[0], ports[1]);
    let proxy = ProxyCommand::serving(server, "", (port, http), extra).spawn(port);
    (proxy, http)
}

async fn connect(proxy: &ProxyProcess) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) =
        tokio_postgres::connect(&proxy.conninfo("anyone", "dev"), NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// Reads tagged messages until ReadyForQuery; returns the bytes they took on the wire.
async fn read_until_ready(stream: &mut TcpStream) -> u64 {
    let mut bytes = 0u64;
    loop {
        let (tag, payload) = read_message(stream).await.expect("a message");
        bytes += 5 + payload.len() as u64;
        assert_ne!(
            tag,
            b'E',
            "unexpected error: {}",
            String::from_utf8_lossy(&payload)
        );
        if tag == b'Z' {
            return bytes;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_exactly_what_a_session_relayed() {
    let server = PgServer::shared();
    let (proxy, http) = start(server, &[]);
    let label = "target=\"localhost\"";

    // A raw client, so every byte after the greeting is known.
    let mut stream = TcpStream::connect(("127.0.0.1", proxy.port))
        .await
        .expect("connect");
    send_startup(&mut stream, &[("user", "x"), ("database", "dev")]).await;
    read_until_ready(&mut stream).await;
    let mut sent = 0u64;
    let mut received = 0u64;
    for sql in [
        "select 1",
        "select repeat('x', 100000)",
        "select * from generate_series(1, 500)",
    ] {
        let mut query = vec![b'Q'];
        query.extend_from_slice(&(sql.len() as u32 + 5).to_be_bytes());
        query.extend_from_slice(sql.as_bytes());
        query.push(0);
        stream.write_all(&query).await.expect("query");
        sent += query.len() as u64;
        received += read_until_ready(&mut stream).await;
    }
    stream
        .write_all(&[b'X', 0, 0, 0, 4])
        .await
        .expect("terminate");
    sent += 5;
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.expect("closed");
    received += rest.len() as u64;

    let closed = format!("redshift_proxy_connections_total{{{label},outcome=\"closed\"}}");
    assert!(
        eventually(Duration::from_secs(5), async || {
            sample(&get(http, "/metrics").await.1, &closed) == Some(1.0)
        })
        .await,
        "the session's close is counted"
    );
    let (status, metrics) = get(http, "/metrics").await;
    assert_eq!(status, 200);
    let value =
        |name: &str| sample(&metrics, name).unwrap_or_else(|| panic!("{name} in\n{metrics}"));
    assert_eq!(
        value(&format!(
            "redshift_proxy_bytes_total{{{label},direction=\"server_to_client\"}}"
        )),
        received as f64
    );
    assert_eq!(
        value(&format!(
            "redshift_proxy_bytes_total{{{label},direction=\"client_to_server\"}}"
        )),
        sent as f64
    );
    assert_eq!(
        value(&format!("redshift_proxy_queries_total{{{label}}}")),
        3.0
    );
    assert_eq!(
        value(&format!(
            "redshift_proxy_messages_total{{{label},direction=\"client_to_server\"}}"
        )),
        4.0
    );
    assert_eq!(
        value(&format!("redshift_proxy_connections_active{{{label}}}")),
        0.0
    );
    assert_eq!(
        value(&format!(
            "redshift_proxy_connection_setup_seconds_count{{{label}}}"
        )),
        1.0
    );
    assert!(value("process_resident_memory_bytes") > 1e6);
    assert!(value("process_open_fds") >= 3.0);
    assert!(
        metrics.contains("redshift_proxy_build_info{version=\""),
        "{metrics}"
    );

    let log = proxy.stop();
    let close_line = log
        .lines()
        .find(|l| l.contains("connection closed"))
        .unwrap_or_else(|| panic!("a close line in {log}"));
    for field in [
        format!("bytes_server_to_client={received}"),
        format!("bytes_client_to_server={sent}"),
        "queries=3".to_owned(),
        "outcome=\"closed\"".to_owned(),
    ] {
        assert!(
            close_line.contains(&field),
            "{field} missing in {close_line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_as_configured_and_cuts_sessions_beyond_max_delay() {
    let server = PgServer::shared();
    let (mut proxy, http) = start(
        server,
        &["--min-sigterm-delay", "1500ms", "--max-sigterm-delay", "2s"],
    );
    for probe in ["/startup", "/liveness", "/readiness"] {
        assert_eq!(get(http, probe).await.0, 200, "{probe} after start");
    }
    let long_lived = connect(&proxy).await.expect("session");
    long_lived.simple_query("select 1").await.expect("query");

    let signalled = Instant::now();
    proxy.signal("TERM");
    assert!(
        eventually(Duration::from_millis(500), async || get(http, "/readiness")
            .await
            .0
            == 503)
        .await,
        "readiness fails at once"
    );
    assert_eq!(
        get(http, "/liveness").await.0,
        200,
        "still alive while draining"
    );
    // Within --min-sigterm-delay a new connection is still accepted.
    let late = connect(&proxy)
        .await
        .expect("accepted during --min-sigterm-delay");
    late.simple_query("select 1").await.expect("and works");
    drop(late);
    // After it, the listener is closed.
    tokio::time::sleep(
        Duration::from_millis(1500).saturating_sub(signalled.elapsed())
            + Duration::from_millis(300),
    )
    .await;
    assert!(
        connect(&proxy).await.is_err(),
        "listener closed after the min delay"
    );
    // The open session goes on within --max-sigterm-delay…
    long_lived
        .simple_query("select 2")
        .await
        .expect("still served while draining");
    // …and is ended with 57P01 after it.
    let ended = eventually(Duration::from_secs(6), async || long_lived.is_closed()).await;
    assert!(ended, "session ended after --max-sigterm-delay");
    let status = proxy
        .wait_exit(Duration::from_secs(10))
        .expect("the proxy exits");
    assert!(status.success(), "exit status {status}");
    assert!(
        signalled.elapsed() >= Duration::from_millis(3400),
        "{:?}",
        signalled.elapsed()
    );
    let log = proxy.stop();
    assert!(log.contains("sessions_cut=1"), "{log}");
    assert!(
        log.contains("outcome=\"shutdown\"") && log.contains("sqlstate=\"57P01\""),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_ended_by_shutdown_get_57p01() {
    let server = PgServer::shared();
    let (mut proxy, _) = start(server, &["--max-sigterm-delay", "500ms"]);
    let mut stream = TcpStream::connect(("127.0.0.1", proxy.port))
        .await
        .expect("connect");
    send_startup(&mut stream, &[("user", "x"), ("database", "dev")]).await;
    read_until_ready(&mut stream).await;
    proxy.signal("TERM");
    let (tag, payload) = tokio::time::timeout(Duration::from_secs(5), read_message(&mut stream))
        .await
        .expect("answer within 5 s")
        .expect("an ErrorResponse");
    assert_eq!(tag, b'E');
    let text = String::from_utf8_lossy(&payload);
    assert!(
        text.contains("C57P01") && text.contains("shutting down"),
        "{text}"
    );
    let status = proxy.wait_exit(Duration::from_secs(5)).expect("exits");
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_finishes_in_time_is_not_cut_and_the_proxy_exits_early() {
    let server = PgServer::shared();
    let (mut proxy, _) = start(server, &["--max-sigterm-delay", "20s"]);
    let client = connect(&proxy).await.expect("session");
    proxy.signal("TERM");
    let started = Instant::now();
    client
        .simple_query("select pg_sleep(1)")
        .await
        .expect("a running query finishes during the drain");
    drop(client);
    let status = proxy
        .wait_exit(Duration::from_secs(10))
        .expect("exits once the session ends");
    assert!(status.success());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "did not wait the full 20 s"
    );
    assert!(proxy.stop().contains("sessions_cut=0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
    let server = PgServer::shared();
    let (mut proxy, _) = start(server, &["--max-sigterm-delay", "60s"]);
    let _client = connect(&proxy).await.expect("session");
    proxy.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.signal("INT");
    let status = proxy
        .wait_exit(Duration::from_secs(5))
        .expect("exits at once");
    assert!(!status.success(), "an abrupt exit is not success: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_refuses_with_53300_and_readiness_follows() {
    let server = PgServer::shared();
    let (proxy, http) = start(server, &["--max-connections", "2"]);
    let first = connect(&proxy).await.expect("first");
    let second = connect(&proxy).await.expect("second");
    assert_eq!(get(http, "/readiness").await.0, 503, "full: not ready");
    let error = connect(&proxy).await.expect_err("third is refused");
    let db_error = error.as_db_error().expect("an ErrorResponse");
    assert_eq!(db_error.code().code(), "53300");
    assert!(
        db_error.message().contains("--max-connections"),
        "{}",
        db_error.message()
    );
    drop(first);
    assert!(
        eventually(Duration::from_secs(5), async || get(http, "/readiness")
            .await
            .0
            == 200)
        .await,
        "room again: ready"
    );
    let third = connect(&proxy).await.expect("room again");
    third.simple_query("select 1").await.expect("works");
    second.simple_query("select 1").await.expect("untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_ends_idle_sessions_with_57p05_but_not_running_queries() {
    let server = PgServer::shared();
    let (proxy, _) = start(server, &["--idle-timeout", "1s"]);
    let busy = connect(&proxy).await.expect("busy session");
    busy.simple_query("select pg_sleep(2.5)")
        .await
        .expect("a query running longer than the idle timeout is not cut");

    let mut stream = TcpStream::connect(("127.0.0.1", proxy.port))
        .await
        .expect("connect");
    send_startup(&mut stream, &[("user", "x"), ("database", "dev")]).await;
    read_until_ready(&mut stream).await;
    let started = Instant::now();
    let (tag, payload) = tokio::time::timeout(Duration::from_secs(5), read_message(&mut stream))
        .await
        .expect("ended within 5 s")
        .expect("an ErrorResponse");
    assert_eq!(tag, b'E');
    let text = String::from_utf8_lossy(&payload);
    assert!(text.contains("SFATAL") && text.contains("C57P05"), "{text}");
    assert!(text.contains("--idle-timeout"), "{text}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_millis(3500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quitquitquit_stops_like_sigterm_only_when_enabled() {
    let server = PgServer::shared();
    let (proxy, http) = start(server, &["--log-format", "json"]);
    assert_eq!(
        request(http, "POST", "/quitquitquit").await.map(|r| r.0),
        Some(404)
    );
    assert_eq!(get(http, "/readiness").await.0, 200, "still serving");
    // Log collectors get one JSON object per line.
    let log = proxy.stop();
    assert!(log.lines().count() >= 2, "{log}");
    for line in log.lines() {
        let value: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        assert!(
            value.get("message").is_some() && value.get("level").is_some(),
            "{line}"
        );
    }

    let (mut enabled, http) = start(server, &["--quitquitquit"]);
    assert_eq!(
        get(http, "/quitquitquit").await.0,
        405,
        "GET does not stop it"
    );
    assert_eq!(
        request(http, "POST", "/quitquitquit").await.map(|r| r.0),
        Some(200)
    );
    let status = enabled.wait_exit(Duration::from_secs(5)).expect("stops");
    assert!(status.success());
    assert!(enabled.stop().contains("stopped"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_level_log_of_a_full_session_holds_no_secret() {
    /// An AWS session token (as temporary AWS credentials carry): signed into every call.
    const SESSION_TOKEN: &str = "IQoJb3JpZ2luX2VjEXAMPLE-test-session-token-Zq9";
    let server = PgServer::shared();
    let fake = FakeAws::start().await;
    let password = "trace-secret-pw-4242";
    fake.set_password_for("tracer", password);
    server.sql(&[&format!(
        "create role \"IAM:tracer\" login password '{password}'"
    )]);
    let ports = pg::free_ports(2);
    let (port, http) = (ports[0], ports[1]);
    // No db_user: the client's user is the database user, so one proxy shows a session, an
    // AWS refusal and a server refusal.
    let target = format!(
        "localhost:{}/dev?cluster=c1&region=us-east-1",
        server.port()
    );
    let ca = server.ca_pem_path().display().to_string();
    let port_text = port.to_string();
    let http_text = format!("127.0.0.1:{http}");
    let uri = fake.uri();
    let proxy = ProxyCommand::new(&[
        &target,
        "--port",
        &port_text,
        "--upstream-ca",
        &ca,
        "--aws-endpoint-url",
        &uri,
        "--http-address",
        &http_text,
    ])
    .env("RUST_LOG", Some("trace"))
    .env("AWS_SESSION_TOKEN", Some(SESSION_TOKEN))
    .spawn(port);
    let connect_as = async |user: &str| {
        let (client, connection) =
            tokio_postgres::connect(&proxy.conninfo(user, "dev"), NoTls).await?;
        tokio::spawn(connection);
        Ok::<_, tokio_postgres::Error>(client)
    };
    let client = connect_as("tracer").await.expect("session");
    let mut copy = Vec::new();
    {
        use futures_util::StreamExt;
        let stream = client
            .copy_out("copy (select i from generate_series(1, 1000) i) to stdout")
            .await
            .expect("copy");
        futures_util::pin_mut!(stream);
        while let Some(chunk) = stream.next().await {
            copy.extend_from_slice(&chunk.expect("data"));
        }
    }
    assert!(copy.len() > 1000);
    drop(client);
    // The token really went to AWS: the fake saw it in the signed request.
    assert_eq!(
        fake.requests()[0].header("x-amz-security-token"),
        Some(SESSION_TOKEN)
    );

    // Errors the client reads: AWS refusing the call, the server refusing the password.
    fake.fail_next(1, crate::support::fake_aws::FakeError::AccessDenied);
    let denied = connect_as("denied").await.expect_err("AWS denies");
    let ghost = connect_as("ghost").await.expect_err("no such role");
    let mut client_errors = String::new();
    for error in [&denied, &ghost] {
        let db = error.as_db_error().expect("an ErrorResponse");
        client_errors.push_str(&format!(
            "{} {} {:?}\n",
            db.code().code(),
            db.message(),
            db.detail()
        ));
    }
    assert!(client_errors.starts_with("28000"), "{client_errors}");
    assert!(client_errors.contains("28P01"), "{client_errors}");
    let ghost_password = fake
        .issued()
        .into_iter()
        .find(|issued| issued.db_user == "IAM:ghost")
        .expect("a password for ghost")
        .password;

    let (_, metrics) = get(http, "/metrics").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = proxy.stop();
    assert!(
        log.lines().count() > 50,
        "a trace-level log: {} lines",
        log.lines().count()
    );
    assert!(log.contains("connection opened"));
    for (place, text) in [
        ("the trace log", &log),
        ("/metrics", &metrics),
        ("an error sent to a client", &client_errors),
    ] {
        for (secret, name) in [
            (password, "database password"),
            (ghost_password.as_str(), "refused database password"),
            (TEST_SECRET_ACCESS_KEY, "AWS secret key"),
            (SESSION_TOKEN, "AWS session token"),
        ] {
            assert!(!text.contains(secret), "{name} in {place}");
        }
    }
}
