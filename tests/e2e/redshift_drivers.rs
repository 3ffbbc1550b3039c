//! AWS's own Redshift drivers end to end: the real proxy binary in front of the
//! Redshift-flavoured upstream (`support::redshift_upstream`: Redshift's digest or MD5 login,
//! Redshift's greeting, then the tests' real PostgreSQL), through a static target and an IAM
//! target (the AWS fake's passwords, registered with the upstream as it issues them).
//!
//! - The StartupMessages the Redshift JDBC and ODBC drivers send, byte for byte as their
//!   sources build them, each on a raw socket: the first byte back is `'R'` (the JDBC
//!   driver's login loop reads only `'R'` and `'E'`), the greeting carries every Redshift
//!   ParameterStatus, a query runs, and a plain-text CancelRequest on a new connection (no
//!   SSLRequest, as the JDBC driver sends it) cancels a running `pg_sleep` with 57014.
//! - A 3.2 StartupMessage still gets NegotiateProtocolVersion (`'v'`) first.
//! - The upstream's own refusals (wrong, expired, unknown password) reach the client as 28P01.
//! - redshift_connector, AWS's Python driver (`support::redshift_connector`), through a
//!   static and an IAM target, with `ssl=False` and with client TLS (`sslmode=verify-ca`, the
//!   proxy's certificate signed by the tests' CA in `SSL_CERT_FILE`), once with
//!   `--client-auth password`: parameters, `executemany`, a 100 000-row result, an error
//!   then rollback, autocommit.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use crate::support::fake_aws::FakeAws;
use crate::support::pg::{self, PgServer};
use crate::support::proxy_process::{ProxyCommand, ProxyProcess, hash_password};
use crate::support::redshift_connector;
use crate::support::redshift_upstream::{
    BACKEND_ROLE, Method, REDSHIFT_ONLY_STARTUP_PARAMETERS, REDSHIFT_PARAMETERS, RedshiftUpstream,
    Transport,
};
use crate::support::scripted::{error_field, message, read_message, send_startup_version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long any one answer may take.
const WAIT: Duration = Duration::from_secs(10);

/// The static target's database user and password.
const STATIC_USER: &str = "rs_static";
const STATIC_PASSWORD: &str = "static-pw-Ω9";
/// The IAM target's `db_user`, and the user AWS returns for it.
const IAM_DB_USER: &str = "rs_alice";
const IAM_USER: &str = "IAM:rs_alice";

/// Which kind of target leads the proxy to the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// `db_user` and `password_env`.
    Static,
    /// `cluster=…&db_user=…`: GetClusterCredentials from the AWS fake.
    Iam,
}

/// A proxy in front of an upstream, and what they were set up with.
struct Setup {
    upstream: RedshiftUpstream,
    proxy: ProxyProcess,
    /// The user the upstream sees (the database user).
    redshift_user: &'static str,
    /// Keeps the AWS fake serving for an IAM target.
    _fake: Option<FakeAws>,
}

/// Starts an upstream with `transport` and `method`, and the proxy binary in front of it
/// (verify-full against the test CA when the upstream speaks TLS, `sslmode=disable` when
/// not), with `extra` flags.
async fn setup(via: Via, transport: Transport, method: Method, extra: &[&str]) -> Setup {
    let server = PgServer::shared();
    let upstream = RedshiftUpstream::start(server, transport, method).await;
    let sslmode = match transport {
        Transport::Tls => "verify-full",
        Transport::Plain => "disable",
    };
    let port = pg::free_port();
    let port_text = port.to_string();
    let ca = server.ca_pem_path().display().to_string();
    let mut args: Vec<String> = Vec::new();
    let (fake, redshift_user) = match via {
        Via::Static => {
            upstream.register(STATIC_USER, STATIC_PASSWORD, None);
            args.push(format!(
                "localhost:{}/dev?db_user={STATIC_USER}&password_env=PW&sslmode={sslmode}",
                upstream.port()
            ));
            (None, STATIC_USER)
        }
        Via::Iam => {
            let fake = FakeAws::start().await;
            let registry = upstream.clone();
            fake.on_issue(move |issued| {
                registry.register(&issued.db_user, &issued.password, Some(issued.expiration));
            });
            args.push(format!(
                "localhost:{}/dev?region=us-east-1&cluster=c1&db_user={IAM_DB_USER}&sslmode={sslmode}",
                upstream.port()
            ));
            args.extend(["--aws-endpoint-url".to_owned(), fake.uri()]);
            (Some(fake), IAM_USER)
        }
    };
    args.extend(["--port", &port_text, "--upstream-ca", &ca].map(str::to_owned));
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let proxy = ProxyCommand::new(&argv)
        .env("PW", Some(STATIC_PASSWORD))
        .spawn(port);
    Setup {
        upstream,
        proxy,
        redshift_user,
        _fake: fake,
    }
}

/// One driver's StartupMessage: its parameters in the order the driver sends them.
struct Driver {
    name: &'static str,
    params: Vec<(&'static str, &'static str)>,
}

/// The packets, from the drivers' sources. The Redshift JDBC driver
/// (`com/amazon/redshift/core/v3/ConnectionFactoryImpl.java`, `getParametersForStartup` and
/// `sendStartupPacket`, protocol 3.0): user, database, client_encoding=UTF8, DateStyle=ISO,
/// TimeZone (with `connectionTimezone=LOCAL`), `_pq_.compression` (unless `compression=off`;
/// lz4 by default in 2.1.0.20–2.1.0.24), extra_float_digits (2, or 3 with
/// `assumeMinServerVersion` ≥ 9.0), application_name (by default `[thread]` and the
/// outermost stack frame), driver_version, os_version (`os.name os.version os.arch`),
/// plugin_name (with a credentials provider), client_protocol_version (3) and
/// driver_discovery_version (1). The Redshift ODBC driver (its libpq,
/// `src/pgclient/src/interfaces/libpq/fe-protocol3.c`, `build_startup_packet`): user,
/// database, `_pq_.compression` (when configured), client_protocol_version (1, as the issue
/// records), driver_version, os_version, application_name. The version and OS strings are
/// of the drivers' shape; nothing reads them but the server's logs.
fn drivers() -> Vec<Driver> {
    vec![
        Driver {
            name: "Redshift JDBC 2.1.0.24, defaults (lz4)",
            params: vec![
                ("user", "report_user"),
                ("database", "dev"),
                ("client_encoding", "UTF8"),
                ("DateStyle", "ISO"),
                ("_pq_.compression", "lz4"),
                ("extra_float_digits", "2"),
                (
                    "application_name",
                    "[main]com.example.Report.main(Report.java:12)",
                ),
                ("driver_version", "Redshift JDBC Driver 2.1.0.24"),
                ("os_version", "Linux 6.1.0-18-amd64 amd64"),
                ("client_protocol_version", "3"),
                ("driver_discovery_version", "1"),
            ],
        },
        Driver {
            name: "Redshift JDBC, LOCAL time zone, zstd, 9.0+, a credentials provider",
            params: vec![
                ("user", "report_user"),
                ("database", "dev"),
                ("client_encoding", "UTF8"),
                ("DateStyle", "ISO"),
                ("TimeZone", "Europe/Berlin"),
                ("_pq_.compression", "zstd"),
                ("extra_float_digits", "3"),
                ("application_name", "DBeaver 24.1.0 - Main"),
                ("driver_version", "Redshift JDBC Driver 2.1.0.30"),
                ("os_version", "Mac OS X 14.5 aarch64"),
                (
                    "plugin_name",
                    "com.amazon.redshift.plugin.BrowserSamlCredentialsProvider",
                ),
                ("client_protocol_version", "3"),
                ("driver_discovery_version", "1"),
            ],
        },
        Driver {
            name: "Redshift ODBC 2.x, Compression=lz4",
            params: vec![
                ("user", "report_user"),
                ("database", "dev"),
                ("_pq_.compression", "lz4"),
                ("client_protocol_version", "1"),
                ("driver_version", "Amazon Redshift ODBC Driver 2.1.9.0"),
                ("os_version", "Linux 6.1.0-18-amd64 x86_64"),
                ("application_name", "isql"),
            ],
        },
    ]
}

/// Reads one message within `WAIT`.
async fn next(stream: &mut TcpStream, what: &str) -> (u8, Vec<u8>) {
    tokio::time::timeout(WAIT, read_message(stream))
        .await
        .unwrap_or_else(|_| panic!("{what}: no message within {WAIT:?}"))
        .unwrap_or_else(|| panic!("{what}: the proxy closed the connection"))
}

/// Every message up to and including ReadyForQuery.
async fn until_ready(stream: &mut TcpStream, what: &str) -> Vec<(u8, Vec<u8>)> {
    let mut messages = Vec::new();
    loop {
        let (tag, payload) = next(stream, what).await;
        let done = tag == b'Z';
        messages.push((tag, payload));
        if done {
            return messages;
        }
    }
}

/// The ParameterStatus values among `messages`.
fn parameters(messages: &[(u8, Vec<u8>)]) -> BTreeMap<String, String> {
    messages
        .iter()
        .filter(|(tag, _)| *tag == b'S')
        .map(|(_, payload)| {
            let mut parts = payload.split(|&b| b == 0);
            let mut text =
                || String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
            (text(), text())
        })
        .collect()
}

/// The text columns of each DataRow among `messages` (NULL as `None`).
fn rows(messages: &[(u8, Vec<u8>)]) -> Vec<Vec<Option<String>>> {
    messages
        .iter()
        .filter(|(tag, _)| *tag == b'D')
        .map(|(_, payload)| {
            let columns = u16::from_be_bytes([payload[0], payload[1]]);
            let mut at = 2;
            (0..columns)
                .map(|_| {
                    let len = i32::from_be_bytes(payload[at..at + 4].try_into().expect("4 bytes"));
                    at += 4;
                    (len >= 0).then(|| {
                        let value = &payload[at..at + len as usize];
                        at += len as usize;
                        String::from_utf8_lossy(value).into_owned()
                    })
                })
                .collect()
        })
        .collect()
}

/// A simple Query message.
fn query(sql: &str) -> Vec<u8> {
    let mut text = sql.as_bytes().to_vec();
    text.push(0);
    message(b'Q', &text)
}

/// Runs one driver's login, greeting, query and cancel through `setup`'s proxy.
async fn check_driver(setup: &Setup, driver: &Driver) {
    let name = driver.name;
    let mut stream = TcpStream::connect(("127.0.0.1", setup.proxy.port))
        .await
        .expect("connect to the proxy");
    send_startup_version(&mut stream, 0, &driver.params).await;

    // The first byte is AuthenticationOk's 'R': no NegotiateProtocolVersion for 3.0.
    let mut first = [0u8; 1];
    tokio::time::timeout(WAIT, stream.read_exact(&mut first))
        .await
        .unwrap_or_else(|_| panic!("{name}: no answer within {WAIT:?}"))
        .unwrap_or_else(|e| panic!("{name}: closed before answering: {e}"));
    assert_eq!(char::from(first[0]), 'R', "{name}: first byte");
    let mut rest = [0u8; 8];
    stream
        .read_exact(&mut rest)
        .await
        .expect("AuthenticationOk");
    assert_eq!(rest, [0, 0, 0, 8, 0, 0, 0, 0], "{name}: AuthenticationOk");

    // The greeting: every Redshift ParameterStatus, PostgreSQL's BackendKeyData.
    let greeting = until_ready(&mut stream, name).await;
    let reported = parameters(&greeting);
    for (parameter, value) in REDSHIFT_PARAMETERS {
        assert_eq!(
            reported.get(parameter).map(String::as_str),
            Some(value),
            "{name}: {parameter} in {reported:?}"
        );
    }
    assert_eq!(
        reported.get("session_authorization").map(String::as_str),
        Some(setup.redshift_user),
        "{name}"
    );
    assert!(
        !reported.contains_key("server_protocol_version"),
        "{name}: no server_protocol_version, so drivers keep to the base protocol"
    );
    let key = greeting
        .iter()
        .find(|(tag, _)| *tag == b'K')
        .map(|(_, payload)| payload.clone())
        .unwrap_or_else(|| panic!("{name}: no BackendKeyData"));
    assert_eq!(key.len(), 8, "{name}: BackendKeyData");

    // What reached the upstream: the driver's parameters in order, `user` the database user,
    // `_pq_.*` dropped by the proxy; what went on to PostgreSQL: without the Redshift-only ones.
    let startup = setup
        .upstream
        .startups()
        .pop()
        .unwrap_or_else(|| panic!("{name}: the upstream saw no StartupMessage"));
    let mut want: Vec<(String, String)> = vec![
        ("user".to_owned(), setup.redshift_user.to_owned()),
        ("database".to_owned(), "dev".to_owned()),
    ];
    want.extend(
        driver
            .params
            .iter()
            .filter(|(n, _)| !["user", "database"].contains(n) && !n.starts_with("_pq_."))
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned())),
    );
    assert_eq!(startup.version, 0x0003_0000, "{name}");
    assert_eq!(startup.received, want, "{name}: what the upstream received");
    assert!(
        startup
            .forwarded
            .iter()
            .all(|(n, _)| !REDSHIFT_ONLY_STARTUP_PARAMETERS.contains(&n.as_str())),
        "{name}: {:?}",
        startup.forwarded
    );

    // A query, run by PostgreSQL as the mapped role.
    stream
        .write_all(&query("select current_user::text, 41 + 1"))
        .await
        .expect("query");
    let answer = until_ready(&mut stream, name).await;
    assert_eq!(
        rows(&answer),
        vec![vec![Some(BACKEND_ROLE.to_owned()), Some("42".to_owned())]],
        "{name}"
    );

    // The key the driver was given is the proxy's, not PostgreSQL's.
    stream
        .write_all(&query("select pg_backend_pid()"))
        .await
        .expect("query");
    let answer = until_ready(&mut stream, name).await;
    let backend_pid = rows(&answer)
        .first()
        .and_then(|row| row.first().cloned().flatten())
        .unwrap_or_else(|| panic!("{name}: no pg_backend_pid() row"));
    let issued_pid = i32::from_be_bytes([key[0], key[1], key[2], key[3]]);
    assert_ne!(
        backend_pid,
        issued_pid.to_string(),
        "{name}: the BackendKeyData is the proxy's"
    );

    check_cancel(setup, &mut stream, &key, name).await;
}

/// Starts `select pg_sleep(30)` on `stream` and cancels it from a new plain-text connection
/// to the proxy, with no SSLRequest, as the JDBC driver does: the query fails with 57014
/// within a few seconds. Nothing shows when the query has started (PostgreSQL holds the
/// RowDescription back until the sleep ends), and a cancel for a backend that is not yet
/// running the query is ignored, so the cancel goes out after 300 ms and again each second.
async fn check_cancel(setup: &Setup, stream: &mut TcpStream, key: &[u8], name: &str) {
    let cancels_before = setup.upstream.cancels();
    stream
        .write_all(&query("select pg_sleep(30)"))
        .await
        .expect("query");
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut request = 16u32.to_be_bytes().to_vec();
    request.extend_from_slice(&80_877_102u32.to_be_bytes());
    request.extend_from_slice(key);
    let error = loop {
        assert!(
            started.elapsed() < WAIT,
            "{name}: pg_sleep(30) not cancelled within {WAIT:?}"
        );
        let mut cancel = TcpStream::connect(("127.0.0.1", setup.proxy.port))
            .await
            .expect("connect for the cancel");
        cancel.write_all(&request).await.expect("CancelRequest");
        let mut nothing = Vec::new();
        tokio::time::timeout(WAIT, cancel.read_to_end(&mut nothing))
            .await
            .unwrap_or_else(|_| panic!("{name}: the proxy kept the cancel connection open"))
            .expect("clean close after the CancelRequest");
        assert!(
            nothing.is_empty(),
            "{name}: the proxy answered a CancelRequest"
        );
        let answer = tokio::time::timeout(Duration::from_secs(1), async {
            loop {
                match read_message(stream).await {
                    Some((b'T', _)) => continue,
                    other => return other,
                }
            }
        });
        match answer.await {
            Ok(Some((b'E', payload))) => break payload,
            Ok(Some((tag, _))) => panic!("{name}: '{}' instead of the cancel", char::from(tag)),
            Ok(None) => panic!("{name}: the session ended instead of the query"),
            Err(_) => continue,
        }
    };
    assert_eq!(
        error_field(&error, b'C').as_deref(),
        Some("57014"),
        "{name}: {:?}",
        error_field(&error, b'M')
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{name}: cancelled after {:?}",
        started.elapsed()
    );
    assert!(
        setup.upstream.cancels() > cancels_before,
        "{name}: the upstream forwarded no CancelRequest"
    );
    let (tag, _) = next(stream, name).await;
    assert_eq!(tag, b'Z', "{name}: ReadyForQuery after the error");
    stream
        .write_all(&message(b'X', &[]))
        .await
        .expect("Terminate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jdbc_and_odbc_packets_through_a_static_target_to_an_md5_upstream_without_tls() {
    let setup = setup(Via::Static, Transport::Plain, Method::Md5, &[]).await;
    for driver in drivers() {
        check_driver(&setup, &driver).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jdbc_and_odbc_packets_through_an_iam_target_to_a_digest_upstream_over_tls() {
    let setup = setup(Via::Iam, Transport::Tls, Method::Digest, &[]).await;
    for driver in drivers() {
        check_driver(&setup, &driver).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_3_2_startup_still_gets_negotiate_protocol_version_first() {
    let setup = setup(Via::Static, Transport::Tls, Method::Digest, &[]).await;
    let mut stream = TcpStream::connect(("127.0.0.1", setup.proxy.port))
        .await
        .expect("connect");
    let params = [
        ("user", "report_user"),
        ("database", "dev"),
        ("_pq_.compression", "lz4"),
    ];
    send_startup_version(&mut stream, 2, &params).await;
    let (tag, payload) = next(&mut stream, "3.2").await;
    assert_eq!(char::from(tag), 'v', "NegotiateProtocolVersion first");
    // Newest minor version 3.0, one option not recognised: _pq_.compression.
    assert_eq!(&payload[..8], &[0, 3, 0, 0, 0, 0, 0, 1]);
    assert_eq!(&payload[8..], b"_pq_.compression\0");
    let greeting = until_ready(&mut stream, "3.2").await;
    assert_eq!(
        greeting[0],
        (b'R', vec![0, 0, 0, 0]),
        "then AuthenticationOk"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_and_expired_passwords_are_refused_by_the_upstream() {
    for method in [Method::Md5, Method::Digest] {
        let setup = setup(Via::Static, Transport::Tls, method, &[]).await;
        let conninfo = format!(
            "host=127.0.0.1 port={} dbname=dev user=x sslmode=disable",
            setup.proxy.port
        );
        let connect = || async {
            match tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await {
                Ok((client, connection)) => {
                    tokio::spawn(connection);
                    Ok(client)
                }
                Err(e) => Err(pg::db_error(&e)),
            }
        };
        let client = connect().await.expect("the registered password");
        assert_eq!(pg::current_user(&client).await, BACKEND_ROLE);
        drop(client);

        let refused = (
            "28P01".to_owned(),
            format!("password authentication failed for user \"{STATIC_USER}\""),
        );
        setup
            .upstream
            .register(STATIC_USER, "another-password", None);
        assert_eq!(
            connect().await.err(),
            Some(refused.clone()),
            "{method:?}: wrong"
        );
        let expired = SystemTime::now() - Duration::from_secs(1);
        setup
            .upstream
            .register(STATIC_USER, STATIC_PASSWORD, Some(expired));
        assert_eq!(
            connect().await.err(),
            Some(refused.clone()),
            "{method:?}: expired"
        );
        let later = SystemTime::now() + Duration::from_secs(600);
        setup
            .upstream
            .register(STATIC_USER, STATIC_PASSWORD, Some(later));
        connect().await.expect("valid until later");
    }
}

/// Straight to the upstream, plain: an unknown user is asked for a password all the same and
/// refused with the message a wrong password gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_user_is_asked_and_refused_like_a_wrong_password() {
    let server = PgServer::shared();
    for (method, code) in [(Method::Md5, 5u32), (Method::Digest, 13)] {
        let upstream = RedshiftUpstream::start(server, Transport::Tls, method).await;
        let mut stream = TcpStream::connect(("127.0.0.1", upstream.port()))
            .await
            .expect("connect");
        send_startup_version(&mut stream, 0, &[("user", "nobody"), ("database", "dev")]).await;
        let (tag, request) = next(&mut stream, "challenge").await;
        assert_eq!(
            (tag, &request[..4]),
            (b'R', &code.to_be_bytes()[..]),
            "{method:?}"
        );
        stream
            .write_all(&message(b'p', b"md5guess\0"))
            .await
            .expect("answer");
        let (tag, error) = next(&mut stream, "refusal").await;
        assert_eq!(tag, b'E', "{method:?}");
        assert_eq!(error_field(&error, b'C').as_deref(), Some("28P01"));
        assert_eq!(
            error_field(&error, b'M').as_deref(),
            Some("password authentication failed for user \"nobody\"")
        );
        let startups = upstream.startups();
        assert_eq!(startups.len(), 1);
        assert_eq!(startups[0].param("user"), Some("nobody"));
    }
}

/// How redshift_connector connects to the proxy.
struct ConnectorRun<'a> {
    /// `off`, or `verify-ca` with the tests' CA as `SSL_CERT_FILE`.
    ssl: &'a str,
    /// The client's user name and password (the proxy ignores both under `trust`).
    user: &'a str,
    password: &'a str,
    /// A password to try first, which the proxy must refuse with 28P01.
    wrong_password: Option<&'a str>,
}

/// Runs redshift_connector's checks through `setup`'s proxy and checks what it printed and
/// what reached the upstream. Skips (returns) only when scripts/test found PyPI unreachable.
async fn check_redshift_connector(setup: &Setup, run: ConnectorRun<'_>) {
    let Some(python) = redshift_connector::python() else {
        return;
    };
    let mut args: Vec<String> = [
        "--host",
        "127.0.0.1",
        "--database",
        "dev",
        "--user",
        run.user,
        "--password",
        run.password,
        "--ssl",
        run.ssl,
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend(["--port".to_owned(), setup.proxy.port.to_string()]);
    if let Some(wrong) = run.wrong_password {
        args.extend(["--wrong-password".to_owned(), wrong.to_owned()]);
    }
    let ca = PgServer::shared().ca_pem_path();
    let ca = (run.ssl != "off").then_some(ca.as_path());
    let (ok, out) = redshift_connector::run(&python, &args, ca).await;
    assert!(ok, "redshift_connector_check.py failed: {out}");

    let reported = &out["parameters"];
    for (name, value) in REDSHIFT_PARAMETERS {
        assert_eq!(reported[name], value, "{name} in {reported}");
    }
    assert_eq!(reported["session_authorization"], setup.redshift_user);
    assert!(
        reported.get("server_protocol_version").is_none(),
        "{reported}"
    );
    assert_eq!(out["current_user"], BACKEND_ROLE, "{out}");
    assert_eq!(out["parameters_ok"], true, "{out}");
    assert_eq!(out["executemany_rows"], 3, "{out}");
    assert_eq!(out["large_result_rows"], 100_000, "{out}");
    assert_eq!(out["error"]["code"], "22012", "division by zero: {out}");
    assert_eq!(out["rollback_ok"], true, "{out}");
    assert_eq!(out["autocommit_ok"], true, "{out}");
    if run.wrong_password.is_some() {
        assert_eq!(out["wrong_password"]["code"], "28P01", "{out}");
        assert_eq!(
            out["wrong_password"]["message"],
            format!("password authentication failed for user \"{}\"", run.user),
            "{out}"
        );
    }

    // What the driver sent, as the upstream received it from the proxy.
    let version = format!(
        "Redshift Python Driver {}",
        out["driver_version"].as_str().unwrap_or("?")
    );
    let startups = setup.upstream.startups();
    let startup = startups
        .iter()
        .find(|s| s.param("driver_version") == Some(version.as_str()))
        .unwrap_or_else(|| panic!("no StartupMessage from {version}: {startups:?}"));
    assert_eq!(startup.param("user"), Some(setup.redshift_user));
    assert_eq!(startup.param("database"), Some("dev"));
    assert_eq!(startup.param("client_protocol_version"), Some("2"));
    assert_eq!(startup.param("driver_discovery_version"), Some("1"));
    assert!(startup.param("os_version").is_some_and(|v| !v.is_empty()));
}

/// The flags for client TLS with the tests' `localhost` certificate (signed by the CA the
/// driver is given), required of every client; the files live as long as `dir`.
fn client_tls_flags(dir: &tempfile::TempDir) -> Vec<String> {
    let pki = PgServer::shared().pki();
    let cert = dir.path().join("proxy.pem");
    let key = dir.path().join("proxy.key");
    std::fs::write(&cert, &pki.server_cert_pem).expect("write the certificate");
    std::fs::write(&key, &pki.server_key_pem).expect("write the key");
    vec![
        "--client-tls-cert".to_owned(),
        cert.display().to_string(),
        "--client-tls-key".to_owned(),
        key.display().to_string(),
        "--client-sslmode".to_owned(),
        "require".to_owned(),
    ]
}

fn strs(flags: &[String]) -> Vec<&str> {
    flags.iter().map(String::as_str).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redshift_connector_without_tls_through_a_static_target() {
    let setup = setup(Via::Static, Transport::Tls, Method::Md5, &[]).await;
    let run = ConnectorRun {
        ssl: "off",
        user: "anything",
        password: "unused",
        wrong_password: None,
    };
    check_redshift_connector(&setup, run).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redshift_connector_without_tls_through_an_iam_target() {
    let setup = setup(Via::Iam, Transport::Tls, Method::Digest, &[]).await;
    let run = ConnectorRun {
        ssl: "off",
        user: "anything",
        password: "unused",
        wrong_password: None,
    };
    check_redshift_connector(&setup, run).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redshift_connector_verify_ca_through_a_static_target() {
    let files = tempfile::tempdir().expect("temp dir");
    let flags = client_tls_flags(&files);
    let setup = setup(Via::Static, Transport::Tls, Method::Digest, &strs(&flags)).await;
    let run = ConnectorRun {
        ssl: "verify-ca",
        user: "anything",
        password: "unused",
        wrong_password: None,
    };
    check_redshift_connector(&setup, run).await;
}

/// The Redshift JDBC driver's only client authentication besides trust, which
/// redshift_connector answers too: the password in cleartext, inside TLS here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redshift_connector_verify_ca_with_client_auth_password_through_an_iam_target() {
    let files = tempfile::tempdir().expect("temp dir");
    let (ok, line, stderr) = hash_password(Some("analyst"), "analyst-pw ✓");
    assert!(ok, "{stderr}");
    let users = files.path().join("users.txt");
    std::fs::write(&users, line).expect("write the users file");
    let mut flags = client_tls_flags(&files);
    flags.extend([
        "--client-auth".to_owned(),
        "password".to_owned(),
        "--client-users".to_owned(),
        users.display().to_string(),
    ]);
    let setup = setup(Via::Iam, Transport::Tls, Method::Digest, &strs(&flags)).await;
    let run = ConnectorRun {
        ssl: "verify-ca",
        user: "analyst",
        password: "analyst-pw ✓",
        wrong_password: Some("analyst-pw ✗"),
    };
    check_redshift_connector(&setup, run).await;
}
