//! Faults: the server, the client and AWS failing in the ways they do while
//! a session opens or runs. Each fault must end with a clear answer to the client (or, mid
//! stream, a closed connection) and leave nothing behind in the proxy: the
//! `redshift_proxy_connections_active` gauge returns to 0 and the process's open file count
//! (`/proc/PID/fd`) to what it was before the fault. The real binary runs in front of the
//! real PostgreSQL, of a scripted upstream that misbehaves on cue, and of AWS endpoints that
//! hang, fail or answer garbage. Last, credentials that expire between fetch and use: the
//! server's 28P01 for a cached password makes the proxy fetch fresh credentials and log in
//! once more before the client hears of it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::certs::TestPki;
use crate::support::eventually::eventually;
use crate::support::fake_aws::{Api, FakeAws};
use crate::support::http_get::{get, sample};
use crate::support::pg::{self, PgServer, current_user, db_error};
use crate::support::proxy_process::{ProxyCommand, ProxyProcess, TEST_SECRET_ACCESS_KEY};
use crate::support::scripted::{message, read_message};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_postgres::NoTls;

/// How long the proxy may take to let go of a session after a fault.
const SETTLE: Duration = Duration::from_secs(10);
/// `--connect-timeout` where a test waits for it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// What the timing checks allow beyond `CONNECT_TIMEOUT` (a loaded test machine).
const SLACK: Duration = Duration::from_millis(2500);

/// Open files of process `pid`.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| dir.count())
        .unwrap_or(usize::MAX)
}

/// The proxy binary with its HTTP endpoint, and what it held when idle.
struct Watched {
    proxy: ProxyProcess,
    http: u16,
    fds_at_start: usize,
}

impl Watched {
    /// Starts the binary with `args` (the target and its flags; the ports are added here)
    /// and `env`, and records its open files once it is idle.
    async fn start(args: &[&str], env: &[(&str, &str)]) -> Watched {
        let ports = pg::free_ports(2);
        let (port, http) = (ports[0], ports[1]);
        let port_text = port.to_string();
        let http_text = format!("127.0.0.1:{http}");
        let mut all = args.to_vec();
        all.extend(["--port", &port_text, "--http-address", &http_text]);
        let mut command = ProxyCommand::new(&all);
        for (name, value) in env {
            command = command.env(name, Some(value));
        }
        let proxy = command.spawn(port);
        let mut watched = Watched {
            proxy,
            http,
            fds_at_start: usize::MAX,
        };
        // The readiness check's connection is a (startup-less) session too: let it go.
        watched.rebase("start-up").await;
        watched
    }

    /// Takes the idle baseline of open files now, once no session is open: the smallest
    /// of a few counts, so a socket still closing is not counted. Besides start-up, after
    /// a first AWS call: the SDK keeps that HTTP connection for the next call.
    async fn rebase(&mut self, after: &str) {
        self.fds_at_start = usize::MAX;
        self.settled(after).await;
        for _ in 0..5 {
            self.fds_at_start = self.fds_at_start.min(open_fds(self.proxy.pid()));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn conninfo(&self, application_name: &str) -> String {
        format!(
            "{} application_name={application_name}",
            self.proxy.conninfo("anyone", "dev")
        )
    }

    async fn connect(
        &self,
        application_name: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, connection) =
            tokio_postgres::connect(&self.conninfo(application_name), NoTls).await?;
        tokio::spawn(connection);
        Ok(client)
    }

    async fn metrics(&self) -> String {
        get(self.http, "/metrics").await.1
    }

    async fn active(&self) -> Option<f64> {
        sample(&self.metrics().await, "redshift_proxy_connections_active{")
    }

    /// Waits until no session is open and the proxy holds no more open files than when it
    /// was idle at start; panics with the counts and the log otherwise.
    async fn settled(&self, after: &str) {
        let deadline = Instant::now() + SETTLE;
        loop {
            let active = self.active().await;
            let fds = open_fds(self.proxy.pid());
            if active == Some(0.0) && fds <= self.fds_at_start {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "after {after}: connections_active={active:?}, {fds} open files (idle at start: {}); log:\n{}",
                    self.fds_at_start,
                    self.proxy.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Connects and expects a refusal: its SQLSTATE, message and how long it took.
async fn refused(watched: &Watched, application_name: &str) -> (String, String, Duration) {
    let started = Instant::now();
    let result = tokio::time::timeout(
        CONNECT_TIMEOUT + SLACK + SLACK,
        watched.connect(application_name),
    )
    .await
    .expect("an answer, not a hang");
    let error = result.expect_err("the login is refused");
    let (code, message) = db_error(&error);
    assert!(
        !message.contains(TEST_SECRET_ACCESS_KEY),
        "AWS secret key in an error message: {message}"
    );
    (code, message, started.elapsed())
}

// ---------------------------------------------------------------------------------------
// A scripted upstream that misbehaves on cue.

/// What the scripted upstream does to each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Misbehaviour {
    /// Logs in (cleartext password), then answers the first query with a row description
    /// and half a data row, and drops the connection: with a TCP reset when `reset`, else
    /// with a FIN.
    DropMidQuery { reset: bool },
    /// Answers the SSLRequest with `S`, reads the start of the ClientHello and drops the
    /// connection (reset or FIN).
    DropInHandshake { reset: bool },
    /// Accepts TCP and never sends a byte.
    Silent,
    /// Answers the SSLRequest with `S`, then never sends another byte.
    SilentAfterSslAnswer,
    /// Completes the TLS handshake, then never answers the StartupMessage (a stuck server,
    /// or a TLS-terminating load balancer with nothing behind it).
    SilentAfterHandshake,
}

/// A TLS upstream on 127.0.0.1 whose behaviour the test switches between sessions.
struct BadUpstream {
    port: u16,
    mode: Arc<Mutex<Misbehaviour>>,
    ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl BadUpstream {
    async fn start(mode: Misbehaviour) -> BadUpstream {
        let pki = TestPki::generate(&["localhost"]);
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, &pki.ca_pem).expect("CA file");
        let tls = pki.server_config();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let mode = Arc::new(Mutex::new(mode));
        let current = mode.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let mode = *current.lock().unwrap_or_else(|e| e.into_inner());
                tokio::spawn(misbehave(tcp, tls.clone(), mode));
            }
        });
        BadUpstream {
            port,
            mode,
            ca_file,
            _dir: dir,
        }
    }

    fn set(&self, mode: Misbehaviour) {
        *self.mode.lock().unwrap_or_else(|e| e.into_inner()) = mode;
    }

    /// A static-password proxy in front of it.
    async fn proxy(&self) -> Watched {
        let target = format!("localhost:{}/dev?db_user=alice&password_env=PW", self.port);
        let ca = self.ca_file.display().to_string();
        let timeout = format!("{}ms", CONNECT_TIMEOUT.as_millis());
        Watched::start(
            &[&target, "--upstream-ca", &ca, "--connect-timeout", &timeout],
            &[("PW", "scripted-pw")],
        )
        .await
    }
}

/// Closes `tcp` with a reset (SO_LINGER 0) when `reset`, else normally.
fn close(tcp: &TcpStream, reset: bool) {
    if reset {
        socket2::SockRef::from(tcp)
            .set_linger(Some(Duration::ZERO))
            .expect("SO_LINGER");
    }
}

async fn read_packet<S: AsyncRead + Unpin>(stream: &mut S) -> Option<Vec<u8>> {
    let len = stream.read_u32().await.ok()? as usize;
    let mut body = vec![0u8; len.checked_sub(4)?];
    stream.read_exact(&mut body).await.ok()?;
    Some(body)
}

async fn misbehave(mut tcp: TcpStream, tls: Arc<rustls::ServerConfig>, mode: Misbehaviour) {
    if mode == Misbehaviour::Silent {
        std::future::pending::<()>().await;
    }
    let mut ssl_request = [0u8; 8];
    if tcp.read_exact(&mut ssl_request).await.is_err() {
        return;
    }
    if tcp.write_all(b"S").await.is_err() {
        return;
    }
    match mode {
        Misbehaviour::SilentAfterSslAnswer => std::future::pending::<()>().await,
        Misbehaviour::DropInHandshake { reset } => {
            let mut hello = [0u8; 64];
            let _ = tcp.read(&mut hello).await;
            close(&tcp, reset);
            return;
        }
        _ => {}
    }
    let Ok(mut stream) = tokio_rustls::TlsAcceptor::from(tls).accept(tcp).await else {
        return;
    };
    if mode == Misbehaviour::SilentAfterHandshake {
        let _ = read_packet(&mut stream).await;
        std::future::pending::<()>().await;
    }
    if read_packet(&mut stream).await.is_none() {
        return;
    }
    // AuthenticationCleartextPassword, then anything as the password.
    let _ = stream.write_all(&message(b'R', &3u32.to_be_bytes())).await;
    if read_message(&mut stream).await.is_none() {
        return;
    }
    let mut greeting = message(b'R', &0u32.to_be_bytes());
    greeting.extend(message(b'S', b"server_version\x0015.0\x00"));
    greeting.extend(message(b'K', &[0, 0, 0, 42, 0, 0, 0, 7]));
    greeting.extend(message(b'Z', b"I"));
    let _ = stream.write_all(&greeting).await;
    let Misbehaviour::DropMidQuery { reset } = mode else {
        return;
    };
    if read_message(&mut stream).await.is_none() {
        return;
    }
    // RowDescription: one int4 column "x"; then the first bytes of a DataRow.
    let mut field = b"x\0".to_vec();
    field.extend(0u32.to_be_bytes()); // table oid
    field.extend(0u16.to_be_bytes()); // column number
    field.extend(23u32.to_be_bytes()); // int4
    field.extend(4i16.to_be_bytes()); // size
    field.extend((-1i32).to_be_bytes()); // modifier
    field.extend(0u16.to_be_bytes()); // text format
    let mut description = 1u16.to_be_bytes().to_vec();
    description.extend(field);
    let mut answer = message(b'T', &description);
    let row = message(b'D', b"\x00\x01\x00\x00\x00\x011");
    answer.extend_from_slice(&row[..row.len() / 2]);
    let _ = stream.write_all(&answer).await;
    let _ = stream.flush().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    close(stream.get_ref().0, reset);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_drops_the_connection_mid_query_ends_the_session_cleanly() {
    let upstream = BadUpstream::start(Misbehaviour::DropMidQuery { reset: false }).await;
    let watched = upstream.proxy().await;
    for reset in [false, true] {
        upstream.set(Misbehaviour::DropMidQuery { reset });
        let client = watched
            .connect("mid_query")
            .await
            .expect("the scripted server logs in");
        let result = tokio::time::timeout(Duration::from_secs(10), client.simple_query("select 1"))
            .await
            .expect("the query ends, it does not hang");
        assert!(result.is_err(), "reset={reset}: {result:?}");
        drop(client);
        watched
            .settled(&format!("the upstream dropped mid-query (reset={reset})"))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_drops_the_tls_handshake_gets_08001() {
    let upstream = BadUpstream::start(Misbehaviour::DropInHandshake { reset: true }).await;
    let watched = upstream.proxy().await;
    for reset in [true, false] {
        upstream.set(Misbehaviour::DropInHandshake { reset });
        let (code, message, took) = refused(&watched, "handshake").await;
        assert_eq!(code, "08001", "reset={reset}: {message}");
        assert!(message.contains("TLS"), "reset={reset}: {message}");
        assert!(took < CONNECT_TIMEOUT, "reset={reset}: took {took:?}");
        watched
            .settled(&format!("a TLS handshake cut (reset={reset})"))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_never_answers_gets_08001_at_the_connect_timeout() {
    let upstream = BadUpstream::start(Misbehaviour::Silent).await;
    let watched = upstream.proxy().await;
    for mode in [
        Misbehaviour::Silent,
        Misbehaviour::SilentAfterSslAnswer,
        Misbehaviour::SilentAfterHandshake,
    ] {
        upstream.set(mode);
        let (code, message, took) = refused(&watched, "silent").await;
        assert_eq!(code, "08001", "{mode:?}: {message}");
        assert!(message.contains("--connect-timeout"), "{mode:?}: {message}");
        assert!(
            took >= CONNECT_TIMEOUT - Duration::from_millis(100) && took < CONNECT_TIMEOUT + SLACK,
            "{mode:?}: took {took:?}"
        );
        watched
            .settled(&format!("a silent upstream ({mode:?})"))
            .await;
    }
}

// ---------------------------------------------------------------------------------------
// The real PostgreSQL.

/// A static-password proxy in front of the shared PostgreSQL server.
async fn proxy_to_postgres(server: &PgServer) -> Watched {
    let target = format!(
        "localhost:{}/dev?db_user={}&password_env=PW",
        server.port(),
        pg::SCRAM_USER
    );
    let ca = server.ca_pem_path().display().to_string();
    Watched::start(
        &[&target, "--upstream-ca", &ca],
        &[("PW", pg::SCRAM_PASSWORD)],
    )
    .await
}

/// A direct connection to the server as the owner of `dev`, to watch and end backends.
async fn observer(server: &PgServer) -> tokio_postgres::Client {
    server
        .connect_direct(pg::SCRAM_USER, pg::SCRAM_PASSWORD, "dev")
        .await
}

/// The server's backends for `application_name` (in `state`, when given).
async fn backends(
    observer: &tokio_postgres::Client,
    application_name: &str,
    state: Option<&str>,
) -> i64 {
    observer
        .query_one(
            "select count(*) from pg_stat_activity where application_name = $1 and ($2::text is null or state = $2)",
            &[&application_name, &state],
        )
        .await
        .expect("pg_stat_activity")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_terminated_mid_query_reaches_the_client_as_57p01() {
    let server = PgServer::shared();
    let watched = proxy_to_postgres(server).await;
    let observer = observer(server).await;
    let client = watched.connect("fault_terminate").await.expect("session");
    let query = tokio::spawn(async move { client.simple_query("select pg_sleep(60)").await });
    let reached = eventually(SETTLE, async || {
        backends(&observer, "fault_terminate", Some("active")).await == 1
    })
    .await;
    assert!(reached, "timed out waiting for the query to run");
    observer
        .execute(
            "select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'fault_terminate'",
            &[],
        )
        .await
        .expect("terminate");
    let result = tokio::time::timeout(Duration::from_secs(10), query)
        .await
        .expect("the query ends at once")
        .expect("task");
    let error = result.expect_err("the backend was terminated");
    assert_eq!(db_error(&error).0, "57P01", "{error}");
    watched.settled("pg_terminate_backend").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_vanishes_mid_copy_in_leaves_nothing_behind() {
    let server = PgServer::shared();
    let watched = proxy_to_postgres(server).await;
    let observer = observer(server).await;
    let (client, connection) = tokio_postgres::connect(&watched.conninfo("fault_copy_in"), NoTls)
        .await
        .expect("session");
    let connection = tokio::spawn(connection);
    client
        .batch_execute("create temp table sink (line text)")
        .await
        .expect("table");
    let mut sink = Box::pin(
        client
            .copy_in::<_, Bytes>("copy sink from stdin")
            .await
            .expect("COPY IN starts"),
    );
    let chunk = Bytes::from("a line of COPY data that will never be finished\n".repeat(2000));
    for _ in 0..20 {
        sink.send(chunk.clone()).await.expect("COPY data sent");
    }
    let reached = eventually(SETTLE, async || {
        backends(&observer, "fault_copy_in", Some("active")).await == 1
    })
    .await;
    assert!(reached, "timed out waiting for the COPY to run");
    // The client's process dies: its socket closes with the COPY open.
    connection.abort();
    let _ = connection.await;
    drop(sink);
    drop(client);
    watched.settled("a client gone mid COPY IN").await;
    let reached = eventually(SETTLE, async || {
        backends(&observer, "fault_copy_in", None).await == 0
    })
    .await;
    assert!(reached, "timed out waiting for the server's backend to end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_vanishes_mid_copy_out_leaves_nothing_behind() {
    let server = PgServer::shared();
    let watched = proxy_to_postgres(server).await;
    let observer = observer(server).await;
    let (client, connection) = tokio_postgres::connect(&watched.conninfo("fault_copy_out"), NoTls)
        .await
        .expect("session");
    let connection = tokio::spawn(connection);
    // About 1 GB: far more than any socket buffer, so the server is still sending.
    let mut stream = Box::pin(
        client
            .copy_out("copy (select repeat('x', 100) from generate_series(1, 10000000)) to stdout")
            .await
            .expect("COPY OUT starts"),
    );
    let mut received = 0usize;
    while received < 1 << 20 {
        received += stream.next().await.expect("data").expect("COPY data").len();
    }
    // Gone, with the rest unread: the kernel answers the proxy's next bytes with a reset.
    connection.abort();
    let _ = connection.await;
    drop(stream);
    drop(client);
    watched.settled("a client gone mid COPY OUT").await;
    let reached = eventually(SETTLE, async || {
        backends(&observer, "fault_copy_out", None).await == 0
    })
    .await;
    assert!(reached, "timed out waiting for the server's backend to end");
}

// ---------------------------------------------------------------------------------------
// AWS failing.

/// How the AWS stand-in answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AwsFault {
    /// Reads the request and never answers.
    Hang,
    /// HTTP 500 `InternalFailure`, the awsQuery error document, every time.
    InternalError,
    /// HTTP 200 with a body that is not XML.
    GarbageBody,
    /// Bytes that are not HTTP at all.
    NotHttp,
}

/// An HTTP endpoint for the credential APIs that fails as told; one request per
/// connection (`Connection: close`), so no pooled connection outlives a call.
async fn bad_aws(fault: Arc<Mutex<AwsFault>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let fault = *fault.lock().unwrap_or_else(|e| e.into_inner());
            tokio::spawn(answer_badly(tcp, fault));
        }
    });
    format!("http://127.0.0.1:{port}")
}

/// Reads one HTTP request (head and `Content-Length` body).
async fn read_request(tcp: &mut TcpStream) -> Option<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tcp.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if buf.len() >= end + 4 + length {
            return Some(());
        }
    }
}

async fn answer_badly(mut tcp: TcpStream, fault: AwsFault) {
    if read_request(&mut tcp).await.is_none() {
        return;
    }
    let response = match fault {
        AwsFault::Hang => {
            // Holds the connection until the proxy gives up on it.
            let mut rest = Vec::new();
            let _ = tcp.read_to_end(&mut rest).await;
            return;
        }
        AwsFault::InternalError => {
            let body = "<ErrorResponse xmlns=\"http://redshift.amazonaws.com/doc/2012-12-01/\"><Error><Type>Receiver</Type><Code>InternalFailure</Code><Message>We encountered an internal error. Please try again.</Message></Error><RequestId>fa4e0000-0000-4000-8000-000000000500</RequestId></ErrorResponse>";
            format!(
                "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/xml\r\nx-amzn-RequestId: fa4e0000-0000-4000-8000-000000000500\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        }
        AwsFault::GarbageBody => {
            let body = "}}{{ this is not an answer <GetClusterCredentialsResult";
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        }
        AwsFault::NotHttp => "\u{16}\u{3}\u{1} SSH-2.0-not-http-at-all\r\n\r\n".to_owned(),
    };
    let _ = tcp.write_all(response.as_bytes()).await;
    let _ = tcp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_hanging_failing_or_answering_garbage_gets_a_clear_error_in_time() {
    let server = PgServer::shared();
    let fault = Arc::new(Mutex::new(AwsFault::Hang));
    let endpoint = bad_aws(fault.clone()).await;
    let target = format!(
        "localhost:{}/dev?cluster=c1&region=us-east-1&db_user=alice",
        server.port()
    );
    let ca = server.ca_pem_path().display().to_string();
    let timeout = format!("{}ms", CONNECT_TIMEOUT.as_millis());
    let watched = Watched::start(
        &[
            &target,
            "--upstream-ca",
            &ca,
            "--aws-endpoint-url",
            &endpoint,
            "--connect-timeout",
            &timeout,
        ],
        &[],
    )
    .await;
    for (case, expected) in [
        (AwsFault::Hang, "no answer within --connect-timeout"),
        (AwsFault::InternalError, "GetClusterCredentials"),
        (
            AwsFault::GarbageBody,
            "neither credentials nor an AWS error",
        ),
        (AwsFault::NotHttp, "GetClusterCredentials"),
    ] {
        *fault.lock().unwrap_or_else(|e| e.into_inner()) = case;
        let (code, message, took) = refused(&watched, "aws_fault").await;
        assert_eq!(code, "08001", "{case:?}: {message}");
        assert!(message.contains(expected), "{case:?}: {message}");
        assert!(took < CONNECT_TIMEOUT + SLACK, "{case:?}: took {took:?}");
        eprintln!("{case:?}: 08001 after {took:?}: {message}");
        watched.settled(&format!("AWS fault {case:?}")).await;
    }
}

// ---------------------------------------------------------------------------------------
// Credentials that expire between fetch and use.

/// An IAM proxy (the AWS fake) in front of the shared server.
async fn iam_proxy(server: &PgServer, fake: &FakeAws, db_user: &str) -> Watched {
    let target = format!(
        "localhost:{}/dev?cluster=c1&region=us-east-1&db_user={db_user}",
        server.port()
    );
    let ca = server.ca_pem_path().display().to_string();
    let uri = fake.uri();
    Watched::start(
        &[
            &target,
            "--upstream-ca",
            &ca,
            "--aws-endpoint-url",
            &uri,
            "--connect-timeout",
            "5s",
        ],
        &[],
    )
    .await
}

const RETRY_LINE: &str = "fetching fresh credentials and logging in once more";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_password_that_expired_is_replaced_and_the_login_retried_once() {
    let server = PgServer::shared();
    let fake = FakeAws::start().await;
    fake.set_password_for("expiring", "pw-expiring-A");
    server.set_login_password("IAM:expiring", "pw-expiring-A");
    // Like Redshift, each password the fake hands out works from then on.
    fake.on_issue(move |issued| {
        server.set_login_password(&issued.db_user, &issued.password);
    });
    let mut watched = iam_proxy(server, &fake, "expiring").await;
    let client = watched.connect("expiring").await.expect("first login");
    assert_eq!(current_user(&client).await, "IAM:expiring");
    drop(client);
    watched.rebase("the first login").await;
    assert_eq!(fake.requests_for(Api::GetClusterCredentials).len(), 1);

    // The cached password expires while the proxy still holds it.
    server.sql(&["alter role \"IAM:expiring\" valid until '2000-01-01'"]);
    fake.set_password_for("expiring", "pw-expiring-B");
    let client = watched
        .connect("expiring")
        .await
        .expect("the refusal of the cached password never reaches the client");
    assert_eq!(current_user(&client).await, "IAM:expiring");
    drop(client);
    assert_eq!(
        fake.requests_for(Api::GetClusterCredentials).len(),
        2,
        "one fresh fetch"
    );
    // The fresh password is cached for the next client.
    drop(watched.connect("expiring").await.expect("third login"));
    assert_eq!(fake.requests_for(Api::GetClusterCredentials).len(), 2);
    watched.settled("a retried login").await;
    let metrics = watched.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("redshift_proxy_auth_failures_total")
                && l.contains("reason=\"server_rejected\"")
                && l.ends_with(" 1")),
        "{metrics}"
    );
    let log = watched.proxy.stop();
    assert_eq!(log.matches(RETRY_LINE).count(), 1, "{log}");
    assert!(
        !log.contains("pw-expiring-"),
        "a password in the log: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_refusal_reaches_the_client_and_a_fresh_password_is_not_retried() {
    let server = PgServer::shared();
    let fake = FakeAws::start().await;
    fake.set_password_for("refused_twice", "pw-twice-A");
    server.set_login_password("IAM:refused_twice", "pw-twice-A");
    let mut watched = iam_proxy(server, &fake, "refused_twice").await;
    drop(watched.connect("twice").await.expect("first login"));
    watched.rebase("the first login").await;
    let calls = || fake.requests_for(Api::GetClusterCredentials).len();
    assert_eq!(calls(), 1);

    // The role's password changes to one AWS never hands out: the cached password and the
    // fresh one are both refused; the client gets the server's second 28P01.
    server.set_login_password("IAM:refused_twice", "pw-twice-C");
    fake.set_password_for("refused_twice", "pw-twice-B");
    let (code, _, _) = refused(&watched, "twice").await;
    assert_eq!(code, "28P01", "the server's own refusal");
    assert_eq!(calls(), 2, "one fresh fetch, one retry");

    // Now the cache is empty: the next client's password is fetched for it, and its
    // refusal goes straight to the client.
    let (code, _, _) = refused(&watched, "twice").await;
    assert_eq!(code, "28P01");
    assert_eq!(
        calls(),
        3,
        "a fresh password that is refused is not retried"
    );
    watched.settled("refused logins").await;
    let log = watched.proxy.stop();
    assert_eq!(log.matches(RETRY_LINE).count(), 1, "{log}");
}
