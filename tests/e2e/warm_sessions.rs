//! Warm upstream sessions (`--warm-sessions`) against the real PostgreSQL: a hit hands over
//! the spare (the greeting as a login's but for BackendKeyData, `pg_backend_pid()` the
//! spare's), another `application_name` is a miss, a spare the server terminated is stale
//! and the client still logs in, `--warm-max-age` replaces spares, `--warm-idle` lets an
//! unused key's spares go, a spare the server refused (the role at its connection limit) is
//! made by a later attempt, SIGTERM closes spares before the drain (the real binary); and
//! upstream TLS resumption through the shared client configuration.
//!
//! Each test uses its own `application_name`, so the spares it looks for in
//! `pg_stat_activity` are its own even while other suites use the shared server.

use std::time::Duration;

use redshift_auth_proxy::upstream::compression::{Compression, WireCounters};
use redshift_auth_proxy::upstream::tls::{SslMode, UpstreamRoots, UpstreamTrust};
use redshift_auth_proxy::upstream::warm::WarmSettings;
use redshift_auth_proxy::upstream::{self, UpstreamEndpoint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::eventually::eventually;
use crate::support::http_get::{get, sample};
use crate::support::pg::{self, PgServer};
use crate::support::proxy::{ProxyOptions, TestProxy};
use crate::support::proxy_process::ProxyCommand;
use crate::support::scripted::{message, read_message, send_startup};

/// A proxy in front of the shared server keeping `per_key` spares per key.
async fn warm_proxy(
    server: &PgServer,
    per_key: usize,
    idle: Duration,
    max_age: Duration,
) -> TestProxy {
    warm_proxy_as(
        server,
        (pg::SCRAM_USER, pg::SCRAM_PASSWORD),
        per_key,
        idle,
        max_age,
    )
    .await
}

/// [`warm_proxy`] logging in as `(user, password)`.
async fn warm_proxy_as(
    server: &PgServer,
    (user, password): (&str, &str),
    per_key: usize,
    idle: Duration,
    max_age: Duration,
) -> TestProxy {
    let mut options = ProxyOptions::new(
        format!(
            "localhost:{}/dev?db_user={user}&password_env=UNUSED",
            server.port()
        ),
        password,
        server.ca_pem_path(),
    );
    options.warm = Some((
        per_key,
        WarmSettings {
            idle,
            max_age,
            max_total: 8,
        },
    ));
    TestProxy::start(options).await
}

/// A client's login through `port` with `application_name` `app`: the stream and every
/// message up to ReadyForQuery, as (tag, payload).
async fn raw_login(port: u16, app: &str) -> (TcpStream, Vec<(u8, Vec<u8>)>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    send_startup(
        &mut stream,
        &[
            ("user", "anyone"),
            ("database", "dev"),
            ("application_name", app),
        ],
    )
    .await;
    let mut greeting = Vec::new();
    loop {
        let (tag, payload) = read_message(&mut stream).await.expect("a greeting message");
        assert_ne!(
            tag,
            b'E',
            "login refused: {}",
            String::from_utf8_lossy(&payload)
        );
        greeting.push((tag, payload));
        if tag == b'Z' {
            return (stream, greeting);
        }
    }
}

/// `select pg_backend_pid()` over a raw session.
async fn backend_pid(stream: &mut TcpStream) -> i32 {
    stream
        .write_all(&message(b'Q', b"select pg_backend_pid()\0"))
        .await
        .expect("query");
    let mut pid = None;
    loop {
        let (tag, payload) = read_message(stream).await.expect("an answer");
        match tag {
            // DataRow: Int16 columns, Int32 length, the text.
            b'D' => {
                let text = std::str::from_utf8(&payload[6..]).expect("text");
                pid = Some(text.parse().expect("a pid"));
            }
            b'E' => panic!("query failed: {}", String::from_utf8_lossy(&payload)),
            b'Z' => return pid.expect("a row"),
            _ => {}
        }
    }
}

async fn terminate(mut stream: TcpStream) {
    let _ = stream.write_all(&message(b'X', b"")).await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
}

/// Watches `pg_stat_activity` over its own direct connection.
struct Activity(tokio_postgres::Client);

impl Activity {
    async fn open(server: &PgServer) -> Activity {
        Activity(
            server
                .connect_direct(pg::SCRAM_USER, pg::SCRAM_PASSWORD, "dev")
                .await,
        )
    }

    /// The server processes of sessions with `application_name` `app`, sorted.
    async fn pids(&self, app: &str) -> Vec<i32> {
        let rows = self
            .0
            .query(
                "select pid from pg_stat_activity where application_name = $1 order by pid",
                &[&app],
            )
            .await
            .expect("pg_stat_activity");
        rows.iter().map(|row| row.get(0)).collect()
    }
}

fn handoffs(proxy: &TestProxy, outcome: &str) -> f64 {
    let metrics = proxy.metrics.encode();
    sample(
        &metrics,
        &format!(
            "redshift_proxy_warm_handoffs_total{{target=\"localhost\",outcome=\"{outcome}\"}}"
        ),
    )
    .unwrap_or(0.0)
}

fn warm_gauge(metrics: &str) -> f64 {
    sample(
        metrics,
        "redshift_proxy_warm_sessions{target=\"localhost\"}",
    )
    .unwrap_or(-1.0)
}

/// The one spare the proxy keeps for `app`, once it is there, the client's own session
/// (`not`) is gone and the pool holds `in_pool` spares over all keys.
async fn the_spare(
    activity: &Activity,
    proxy: &TestProxy,
    app: &str,
    not: &[i32],
    in_pool: usize,
) -> i32 {
    let mut spare = None;
    let found = eventually(Duration::from_secs(10), async || {
        let pids = activity.pids(app).await;
        let warm = proxy.warm.as_ref().map(|pool| pool.spares()).unwrap_or(0);
        if pids.len() == 1 && warm == in_pool && !not.contains(&pids[0]) {
            spare = Some(pids[0]);
            return true;
        }
        false
    })
    .await;
    assert!(
        found,
        "one spare for {app}, not {not:?}: {:?}, {:?} in the pool",
        activity.pids(app).await,
        proxy.warm.as_ref().map(|pool| pool.spares())
    );
    spare.expect("spare pid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hit_replays_the_greeting_and_hands_over_the_spare_and_another_key_misses() {
    let server = PgServer::shared();
    let activity = Activity::open(server).await;
    let proxy = warm_proxy(server, 1, Duration::from_secs(60), Duration::from_secs(60)).await;
    let app = "warm-hit";

    // The first login with the key is a miss, logged in as usual; a spare follows.
    let (mut first, first_greeting) = raw_login(proxy.port(), app).await;
    let first_pid = backend_pid(&mut first).await;
    terminate(first).await;
    assert_eq!(handoffs(&proxy, "miss"), 1.0);
    let spare = the_spare(&activity, &proxy, app, &[first_pid], 1).await;
    assert_eq!(warm_gauge(&proxy.metrics.encode()), 1.0);

    // Another application_name is another key: a miss, and the spare stays.
    let (mut other, _) = raw_login(proxy.port(), "warm-hit-other").await;
    assert_ne!(backend_pid(&mut other).await, spare);
    terminate(other).await;
    assert_eq!(handoffs(&proxy, "miss"), 2.0);
    assert_eq!(handoffs(&proxy, "hit"), 0.0);
    assert_eq!(activity.pids(app).await, vec![spare]);

    // The same key gets the spare: its recorded greeting, a key issued to this client.
    let (mut second, second_greeting) = raw_login(proxy.port(), app).await;
    assert_eq!(handoffs(&proxy, "hit"), 1.0);
    assert_eq!(
        backend_pid(&mut second).await,
        spare,
        "the session is the spare"
    );
    let without_key = |greeting: &[(u8, Vec<u8>)]| -> Vec<(u8, Vec<u8>)> {
        greeting
            .iter()
            .filter(|(tag, _)| *tag != b'K')
            .cloned()
            .collect()
    };
    let key = |greeting: &[(u8, Vec<u8>)]| -> Vec<u8> {
        greeting
            .iter()
            .find(|(tag, _)| *tag == b'K')
            .map(|(_, payload)| payload.clone())
            .expect("BackendKeyData")
    };
    assert_eq!(
        without_key(&second_greeting),
        without_key(&first_greeting),
        "the greeting is a login's but for BackendKeyData"
    );
    assert!(first_greeting.iter().any(|(tag, _)| *tag == b'S'));
    assert_ne!(key(&second_greeting), key(&first_greeting));
    let issued_pid = i32::from_be_bytes(key(&second_greeting)[..4].try_into().expect("4 bytes"));
    assert_ne!(
        issued_pid, spare,
        "the client holds a proxy-issued key, not the server's"
    );
    assert_eq!(proxy.cancel.len(), 1, "the hit's key is registered");

    // The spare is used once: a new one replaces it, another server process.
    terminate(second).await;
    // (The other key keeps its own spare.)
    let replacement = the_spare(&activity, &proxy, app, &[spare], 2).await;
    assert_ne!(replacement, spare);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spare_the_server_terminated_is_stale_and_the_client_still_logs_in() {
    let server = PgServer::shared();
    let activity = Activity::open(server).await;
    let proxy = warm_proxy(server, 1, Duration::from_secs(60), Duration::from_secs(60)).await;
    let app = "warm-stale";
    let (mut first, _) = raw_login(proxy.port(), app).await;
    let first_pid = backend_pid(&mut first).await;
    terminate(first).await;
    let spare = the_spare(&activity, &proxy, app, &[first_pid], 1).await;

    server.sql(&[&format!("select pg_terminate_backend({spare})")]);
    assert!(
        eventually(Duration::from_secs(10), async || !activity
            .pids(app)
            .await
            .contains(&spare))
        .await,
        "the spare's server process ended"
    );
    let (mut second, _) = raw_login(proxy.port(), app).await;
    let pid = backend_pid(&mut second).await;
    assert_ne!(pid, spare);
    assert_eq!(handoffs(&proxy, "stale"), 1.0);
    assert_eq!(handoffs(&proxy, "hit"), 0.0);
    terminate(second).await;
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spares_past_max_age_are_replaced() {
    let server = PgServer::shared();
    let activity = Activity::open(server).await;
    let proxy = warm_proxy(
        server,
        1,
        Duration::from_secs(60),
        Duration::from_millis(800),
    )
    .await;
    let app = "warm-max-age";
    let (mut first, _) = raw_login(proxy.port(), app).await;
    let first_pid = backend_pid(&mut first).await;
    terminate(first).await;
    let spare = the_spare(&activity, &proxy, app, &[first_pid], 1).await;
    let replaced = eventually(Duration::from_secs(10), async || {
        let pids = activity.pids(app).await;
        !pids.contains(&spare) && pids.len() == 1
    })
    .await;
    assert!(
        replaced,
        "the old spare was closed and a new one made: {:?}",
        activity.pids(app).await
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_idle_lets_the_spares_of_an_unused_key_go() {
    let server = PgServer::shared();
    let activity = Activity::open(server).await;
    let proxy = warm_proxy(
        server,
        2,
        Duration::from_millis(1500),
        Duration::from_secs(60),
    )
    .await;
    let app = "warm-idle";
    let (first, _) = raw_login(proxy.port(), app).await;
    terminate(first).await;
    let warm = proxy.warm.clone().expect("a pool");
    assert!(
        eventually(Duration::from_secs(10), async || warm.spares() == 2).await,
        "two spares"
    );
    let gone = eventually(Duration::from_secs(10), async || {
        warm.spares() == 0 && activity.pids(app).await.is_empty()
    })
    .await;
    assert!(
        gone,
        "spares of an unused key closed: {:?}",
        activity.pids(app).await
    );
    assert_eq!(warm_gauge(&proxy.metrics.encode()), 0.0);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spare_refused_at_the_roles_connection_limit_is_made_once_a_session_ends() {
    const ROLE: &str = "warm_limited";
    const PASSWORD: &str = "warm-limited-pw-1";
    let server = PgServer::shared();
    server.set_login_password(ROLE, PASSWORD);
    server.sql(&[&format!("alter role {ROLE} connection limit 1")]);
    let refusal = format!("too many connections for role \"{ROLE}\"");
    let refused_before = server.log().matches(&refusal).count();
    let activity = Activity::open(server).await;
    let proxy = warm_proxy_as(
        server,
        (ROLE, PASSWORD),
        1,
        Duration::from_secs(60),
        Duration::from_secs(60),
    )
    .await;
    let app = "warm-connection-limit";

    // The client's session is the role's only one: the spare's login is refused (53300).
    let (mut first, _) = raw_login(proxy.port(), app).await;
    let first_pid = backend_pid(&mut first).await;
    let refused = eventually(Duration::from_secs(10), async || {
        server.log().matches(&refusal).count() > refused_before
    })
    .await;
    assert!(refused, "the server refused the spare's login");
    assert_eq!(proxy.warm.as_ref().map(|pool| pool.spares()), Some(0));

    // Once that session ends, a later attempt makes the spare, and the next client gets it.
    terminate(first).await;
    let spare = the_spare(&activity, &proxy, app, &[first_pid], 1).await;
    let (mut second, _) = raw_login(proxy.port(), app).await;
    assert_eq!(handoffs(&proxy, "hit"), 1.0);
    assert_eq!(backend_pid(&mut second).await, spare);
    terminate(second).await;
    proxy.stop().await;
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| dir.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_spares_before_the_drain() {
    let server = PgServer::shared();
    let activity = Activity::open(server).await;
    let app = "warm-sigterm";
    let ports = pg::free_ports(2);
    let (port, http) = (ports[0], ports[1]);
    let mut proxy = ProxyCommand::serving(
        server,
        "&warm_sessions=2",
        (port, http),
        &["--min-sigterm-delay", "3s"],
    )
    .spawn(port);
    // The start: once the connection that found the port open has closed (it counts in the
    // active gauge until then) and the HTTP request has let go of its socket.
    let active = "redshift_proxy_connections_active{target=\"localhost\"}";
    let idle = eventually(Duration::from_secs(5), async || {
        sample(&get(http, "/metrics").await.1, active) == Some(0.0)
    })
    .await;
    assert!(idle, "no client connection at the start");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let files_at_start = open_files(proxy.pid());

    let conninfo = format!("{} application_name={app}", proxy.conninfo("anyone", "dev"));
    let (client, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
        .await
        .expect("login");
    let session = tokio::spawn(connection);
    client.simple_query("select 1").await.expect("query");
    drop(client);
    let _ = session.await;
    assert!(
        eventually(Duration::from_secs(10), async || {
            warm_gauge(&get(http, "/metrics").await.1) == 2.0 && activity.pids(app).await.len() == 2
        })
        .await,
        "two spares: {:?}",
        activity.pids(app).await
    );

    proxy.signal("TERM");
    // Well within --min-sigterm-delay, while the proxy still accepts: the spares are gone,
    // and with them their sockets.
    let closed = eventually(Duration::from_secs(2), async || {
        activity.pids(app).await.is_empty()
    })
    .await;
    assert!(
        closed,
        "spares closed at the stop: {:?}",
        activity.pids(app).await
    );
    assert!(
        eventually(Duration::from_secs(2), async || open_files(proxy.pid())
            <= files_at_start)
        .await,
        "open files back to {files_at_start} (or fewer): {}",
        open_files(proxy.pid())
    );
    let metrics = get(http, "/metrics").await.1;
    assert_eq!(warm_gauge(&metrics), 0.0);
    assert_eq!(
        sample(&metrics, active),
        Some(0.0),
        "the active gauge is back at 0"
    );
    assert_eq!(get(http, "/readiness").await.0, 503, "still draining");
    let status = proxy.wait_exit(Duration::from_secs(10)).expect("exits");
    assert!(status.success(), "exit status {status}");
    let log = proxy.stop();
    assert!(log.contains("warm_sessions_closed=2"), "{log}");
}

/// A TLS server that issues TLS 1.3 tickets (rustls's defaults), answering SSLRequest and
/// then sending one ReadyForQuery per connection, so the client reads past the handshake.
async fn ticket_issuing_server(server: &PgServer) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let acceptor = tokio_rustls::TlsAcceptor::from(server.pki().server_config());
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 8];
                tcp.read_exact(&mut request).await?;
                tcp.write_all(b"S").await?;
                let mut tls = acceptor.accept(tcp).await?;
                tls.write_all(&message(b'Z', b"I")).await?;
                tls.flush().await?;
                let mut rest = Vec::new();
                tls.read_to_end(&mut rest).await?;
                std::io::Result::Ok(())
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_upstream_connection_resumes_the_tls_session() {
    let server = PgServer::shared();
    let port = ticket_issuing_server(server).await;
    let trust = UpstreamTrust {
        roots: UpstreamRoots::Webpki,
        ca_files: vec![server.ca_pem_path()],
    };
    let tls = upstream::tls::upstream_client_config(SslMode::VerifyFull, &trust).expect("config");
    let endpoint = UpstreamEndpoint {
        host: "localhost".to_owned(),
        port,
        sslmode: SslMode::VerifyFull,
        tls,
        connect_timeout: Duration::from_secs(5),
        compression: Compression::Off,
        wire: WireCounters::default(),
    };
    let mut resumed = Vec::new();
    for _ in 0..2 {
        let mut stream = upstream::connect(&endpoint).await.expect("connect");
        resumed.push(upstream::tls_resumed(&stream));
        // Reading the server's first message takes in the tickets sent after the handshake.
        let mut first = [0u8; 6];
        stream.read_exact(&mut first).await.expect("ReadyForQuery");
        assert_eq!(first[0], b'Z');
    }
    assert_eq!(resumed, vec![Some(false), Some(true)]);
}
