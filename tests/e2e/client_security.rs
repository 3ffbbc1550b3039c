//! Client TLS and client authentication end to end: the real binary
//! in front of the real PostgreSQL (static password targets), with real clients — psql and
//! tokio-postgres — and certificates made at test time.
//!
//! - TLS from PEM files: psql with sslmode=require and verify-full; a wrong CA refused
//! - `--client-sslmode require`: a plain-text psql refused with 08P01 and the advice
//! - `--client-tls self-signed`: the logged fingerprint is the certificate served
//! - replaced certificate files are served without a restart; a broken file keeps the old one
//! - `--client-auth scram` and `password` with users made by `hash-password`: right, wrong and unknown
//!   (psql with PGPASSWORD, tokio-postgres plain and over TLS), checked before the server
//!   is contacted
//! - `--client-auth cert`: the CN is the user; another user, no certificate refused
//! - `trust` on 0.0.0.0 refused at start-up (exit 2, no port bound); allowed with
//!   `--allow-unauthenticated-remote`
//! - `--unix-socket`: psql -h DIR, a stale socket file replaced, the socket removed at exit

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::certs::{ClientCa, TestPki, unrelated_ca_pem};
use crate::support::client_side::{
    Files, assert_logged_in, assert_psql_logs_in_plain_and_over_tls, fingerprint, pem_der,
    provider, psql, served_certificate, server_cert, start, start_with_targets, target, tokio_pg,
};
use crate::support::eventually::eventually;
use crate::support::pg::{self, PgServer, current_user};
use crate::support::proxy_process::{ProxyCommand, hash_password};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_postgres::NoTls;

/// The psql refusal for `--client-sslmode require`.
const TLS_REQUIRED: &str = "connect with sslmode=require";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_from_files_serves_psql_with_require_and_verify_full() {
    let server = PgServer::shared();
    let files = Files::new();
    let (pki, cert, key) = server_cert(&files);
    let ca = files.write("ca.pem", &pki.ca_pem);
    let wrong_ca = files.write("wrong-ca.pem", &unrelated_ca_pem());
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let proxy = start(
        server,
        &["--client-tls-cert", &cert, "--client-tls-key", &key],
    );
    let port = proxy.port;

    let require = format!("host=127.0.0.1 port={port} dbname=dev user=app sslmode=require");
    assert_logged_in(&psql(server, &require, "select current_user", None).await);
    let info = psql(server, &require, "\\conninfo", None).await;
    assert!(info.stdout.contains("SSL connection"), "{}", info.stdout);

    let verify_full = format!(
        "host=localhost port={port} dbname=dev user=app sslmode=verify-full sslrootcert={}",
        ca.display()
    );
    assert_logged_in(&psql(server, &verify_full, "select current_user", None).await);

    let wrong = format!(
        "host=localhost port={port} dbname=dev user=app sslmode=verify-full sslrootcert={}",
        wrong_ca.display()
    );
    let refused = psql(server, &wrong, "select 1", None).await;
    assert!(
        !refused.ok,
        "a certificate from another CA must fail verify-full"
    );
    assert!(refused.stderr.contains("certificate"), "{}", refused.stderr);

    // Without --client-sslmode require, plain text still works.
    let plain = format!("host=127.0.0.1 port={port} dbname=dev user=app sslmode=disable");
    assert_logged_in(&psql(server, &plain, "select current_user", None).await);
    let info = psql(server, &plain, "\\conninfo", None).await;
    assert!(!info.stdout.contains("SSL connection"), "{}", info.stdout);

    // tokio-postgres over rustls, verifying the name.
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(pki.client_config());
    let client = tokio_pg(
        &format!("host=localhost port={port} dbname=dev user=app sslmode=require"),
        tls,
    )
    .await
    .expect("tokio-postgres over TLS");
    assert_eq!(current_user(&client).await, pg::SCRAM_USER);
    drop(client);
    proxy.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_require_refuses_plain_text_clients() {
    let server = PgServer::shared();
    let files = Files::new();
    let (_pki, cert, key) = server_cert(&files);
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let proxy = start(
        server,
        &[
            "--client-tls-cert",
            &cert,
            "--client-tls-key",
            &key,
            "--client-sslmode",
            "require",
        ],
    );
    let port = proxy.port;

    let plain = format!("host=127.0.0.1 port={port} dbname=dev user=app sslmode=disable");
    let refused = psql(server, &plain, "select 1", None).await;
    assert!(!refused.ok);
    assert!(refused.stderr.contains(TLS_REQUIRED), "{}", refused.stderr);

    let (code, message) = tokio_pg(&plain, NoTls).await.expect_err("refused");
    assert_eq!(code, "08P01");
    assert!(message.contains(TLS_REQUIRED), "{message}");

    let require = format!("host=127.0.0.1 port={port} dbname=dev user=app sslmode=require");
    assert_logged_in(&psql(server, &require, "select current_user", None).await);
    let log = proxy.stop();
    assert!(log.contains("outcome=\"client_auth_failed\""), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_certificate_fingerprint_is_logged_and_served() {
    let server = PgServer::shared();
    let proxy = start(server, &["--client-tls", "self-signed"]);
    let log = proxy.log();
    let logged = log
        .split("fingerprint_sha256=")
        .nth(1)
        .map(|rest| rest.chars().take(95).collect::<String>())
        .unwrap_or_else(|| panic!("no fingerprint in the log: {log}"));
    let served = served_certificate(proxy.port).await;
    assert_eq!(logged, fingerprint(&served), "{log}");

    let require = format!(
        "host=127.0.0.1 port={} dbname=dev user=app sslmode=require",
        proxy.port
    );
    assert_logged_in(&psql(server, &require, "select current_user", None).await);
    proxy.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_certificate_files_are_served_without_a_restart() {
    let server = PgServer::shared();
    let files = Files::new();
    let (first, cert, key) = server_cert(&files);
    let (cert_arg, key_arg) = (cert.display().to_string(), key.display().to_string());
    let proxy = start(
        server,
        &["--client-tls-cert", &cert_arg, "--client-tls-key", &key_arg],
    );
    let port = proxy.port;
    assert_eq!(
        served_certificate(port).await,
        pem_der(&first.server_cert_pem)
    );

    // A broken certificate file: the reload fails and the first certificate stays.
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nbroken\n").expect("break cert");
    let failed = eventually(Duration::from_secs(15), async || {
        proxy.log().contains("client TLS reload failed")
    })
    .await;
    assert!(failed, "no failed reload logged: {}", proxy.log());
    assert_eq!(
        served_certificate(port).await,
        pem_der(&first.server_cert_pem)
    );

    // A new pair: served by new connections, no restart.
    let second = TestPki::generate(&["localhost"]);
    files.write("server.key", &second.server_key_pem);
    files.write("server.crt", &second.server_cert_pem);
    let new_der = pem_der(&second.server_cert_pem);
    let switched = eventually(Duration::from_secs(15), async || {
        served_certificate(port).await == new_der
    })
    .await;
    assert!(
        switched,
        "the new certificate was not served: {}",
        proxy.log()
    );
    assert!(proxy.log().contains("client TLS certificate reloaded"));

    let ca = files.write("second-ca.pem", &second.ca_pem);
    let verify_full = format!(
        "host=localhost port={port} dbname=dev user=app sslmode=verify-full sslrootcert={}",
        ca.display()
    );
    assert_logged_in(&psql(server, &verify_full, "select current_user", None).await);

    // SIGHUP reloads at once (here: the same files again).
    proxy.signal("HUP");
    let hup = eventually(Duration::from_secs(10), async || {
        proxy.log().contains("trigger=\"SIGHUP\"") || proxy.log().contains("trigger=SIGHUP")
    })
    .await;
    assert!(hup, "no SIGHUP reload logged: {}", proxy.log());
    assert_eq!(served_certificate(port).await, new_der);
    proxy.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_lets_the_right_password_in_and_refuses_wrong_and_unknown_alike() {
    let server = PgServer::shared();
    let files = Files::new();

    let (ok, alice, stderr) = hash_password(Some("alice"), "alice-pw Ω");
    assert!(ok, "{stderr}");
    assert!(alice.starts_with("alice:SCRAM-SHA-256$4096:"), "{alice}");
    let (ok, bob, _) = hash_password(Some("bob"), "bob-pw");
    assert!(ok);
    let (ok, _, stderr) = hash_password(Some("a:b"), "x");
    assert!(!ok && stderr.contains("user name"), "{stderr}");
    let (ok, _, stderr) = hash_password(Some("carol"), "");
    assert!(!ok && stderr.contains("empty"), "{stderr}");
    let users = files.write("users.txt", &format!("# clients\n{alice}{bob}"));
    assert!(!alice.contains("alice-pw"), "the password is not printed");

    // A second target whose server is down: a client that fails authentication must hear
    // 28P01 from the proxy, not 08001 from a connection attempt.
    let dead_port = pg::free_port();
    let dead_listen = pg::free_port();
    let dead =
        format!("localhost:{dead_port}/dev?db_user=nobody&password_env=PW&port={dead_listen}");
    let (pki, cert, key) = server_cert(&files);
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let users_arg = users.display().to_string();
    let proxy = start_with_targets(
        server,
        &[target(server), dead],
        &[
            "--client-auth",
            "scram",
            "--client-users",
            &users_arg,
            "--client-tls-cert",
            &cert,
            "--client-tls-key",
            &key,
        ],
    );
    let port = proxy.port;
    let conninfo = |user: &str, sslmode: &str| {
        format!("host=127.0.0.1 port={port} dbname=dev user={user} sslmode={sslmode}")
    };

    // psql with PGPASSWORD, plain and over TLS (where libpq's default channel_binding=prefer
    // binds with SCRAM-SHA-256-PLUS).
    assert_psql_logs_in_plain_and_over_tls(server, port, "alice", "alice-pw Ω").await;
    let wrong = psql(
        server,
        &conninfo("alice", "disable"),
        "select 1",
        Some("nope"),
    )
    .await;
    assert!(!wrong.ok);
    assert!(
        wrong
            .stderr
            .contains("password authentication failed for user \"alice\""),
        "{}",
        wrong.stderr
    );
    let unknown = psql(
        server,
        &conninfo("mallory", "disable"),
        "select 1",
        Some("x"),
    )
    .await;
    assert!(
        unknown
            .stderr
            .contains("password authentication failed for user \"mallory\""),
        "{}",
        unknown.stderr
    );
    let none = psql(server, &conninfo("alice", "disable"), "select 1", None).await;
    assert!(!none.ok, "no password, no login");

    // tokio-postgres: plain, and over TLS.
    let with_password = |user: &str, password: &str, sslmode: &str| {
        format!("{} password='{password}'", conninfo(user, sslmode))
    };
    let client = tokio_pg(&with_password("bob", "bob-pw", "disable"), NoTls)
        .await
        .expect("bob logs in");
    assert_eq!(current_user(&client).await, pg::SCRAM_USER);
    drop(client);
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(pki.client_config());
    let client = tokio_pg(
        &format!("host=localhost port={port} dbname=dev user=bob password=bob-pw sslmode=require"),
        tls,
    )
    .await
    .expect("bob logs in over TLS");
    assert_eq!(current_user(&client).await, pg::SCRAM_USER);
    drop(client);
    for (user, password) in [("bob", "alice-pw Ω"), ("nobody", "bob-pw")] {
        let (code, message) = tokio_pg(&with_password(user, password, "disable"), NoTls)
            .await
            .expect_err("refused");
        assert_eq!(code, "28P01", "{message}");
        assert_eq!(
            message,
            format!("password authentication failed for user \"{user}\"")
        );
    }

    // The target whose server is down: authentication comes first.
    let dead_conninfo = |password: &str| {
        format!(
            "host=127.0.0.1 port={dead_listen} dbname=dev user=bob password={password} sslmode=disable"
        )
    };
    let (code, _) = tokio_pg(&dead_conninfo("wrong"), NoTls)
        .await
        .expect_err("refused");
    assert_eq!(code, "28P01", "refused before the server is dialled");
    let (code, message) = tokio_pg(&dead_conninfo("bob-pw"), NoTls)
        .await
        .expect_err("server down");
    assert_eq!(
        code, "08001",
        "authenticated, then the server is dialled: {message}"
    );

    let log = proxy.stop();
    assert!(log.contains("client authentication failed"), "{log}");
    assert!(!log.contains("alice-pw"), "no password in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cert_auth_takes_the_user_from_the_certificate_cn() {
    let server = PgServer::shared();
    let files = Files::new();
    let (pki, cert, key) = server_cert(&files);
    let server_ca = files.write("server-ca.pem", &pki.ca_pem);
    let client_ca = ClientCa::new("test client CA");
    let client_ca_path = files.write("client-ca.pem", &client_ca.ca_pem);
    let (alice_cert, alice_key) = client_ca.issue("alice");
    files.write("alice.crt", &alice_cert);
    files.write("alice.key", &alice_key);
    let stranger = ClientCa::new("stranger CA");
    let (eve_cert, eve_key) = stranger.issue("alice");

    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let ca_arg = client_ca_path.display().to_string();
    let proxy = start(
        server,
        &[
            "--client-tls-cert",
            &cert,
            "--client-tls-key",
            &key,
            "--client-auth",
            "cert",
            "--client-ca",
            &ca_arg,
        ],
    );
    let port = proxy.port;

    // psql with sslcert/sslkey.
    let psql_conninfo = |user: &str| {
        format!(
            "host=localhost port={port} dbname=dev user={user} sslmode=verify-full sslrootcert={} sslcert={} sslkey={}",
            server_ca.display(),
            files.path("alice.crt"),
            files.path("alice.key")
        )
    };
    assert_logged_in(&psql(server, &psql_conninfo("alice"), "select current_user", None).await);
    let mismatch = psql(server, &psql_conninfo("bob"), "select 1", None).await;
    assert!(!mismatch.ok);
    assert!(
        mismatch
            .stderr
            .contains("certificate authentication failed for user \"bob\""),
        "{}",
        mismatch.stderr
    );

    // tokio-postgres with rustls client authentication.
    let with_cert = |cert_pem: &str, key_pem: &str| {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).expect("CA"))
            .expect("root");
        let chain = vec![CertificateDer::from_pem_slice(cert_pem.as_bytes()).expect("cert")];
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key");
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .expect("client cert");
        tokio_postgres_rustls::MakeRustlsConnect::new(config)
    };
    let conninfo =
        |user: &str| format!("host=localhost port={port} dbname=dev user={user} sslmode=require");
    let client = tokio_pg(&conninfo("alice"), with_cert(&alice_cert, &alice_key))
        .await
        .expect("alice's certificate logs in as alice");
    assert_eq!(current_user(&client).await, pg::SCRAM_USER);
    drop(client);

    let (code, message) = tokio_pg(&conninfo("bob"), with_cert(&alice_cert, &alice_key))
        .await
        .expect_err("alice's certificate is not bob's");
    assert_eq!(code, "28000");
    assert!(message.contains("is for \"alice\""), "{message}");

    let (code, message) = tokio_pg(
        &conninfo("alice"),
        tokio_postgres_rustls::MakeRustlsConnect::new(pki.client_config()),
    )
    .await
    .expect_err("no certificate");
    assert_eq!(code, "28000");
    assert!(
        message.contains("requires a valid client certificate"),
        "{message}"
    );

    let (code, _) = tokio_pg(&conninfo("alice"), with_cert(&eve_cert, &eve_key))
        .await
        .expect_err("a certificate from another CA fails the handshake");
    assert_eq!(code, "", "refused by TLS, not by a PostgreSQL error");

    let plain = format!("host=127.0.0.1 port={port} dbname=dev user=alice sslmode=disable");
    let (code, _) = tokio_pg(&plain, NoTls).await.expect_err("plain text");
    assert_eq!(code, "28000");
    proxy.stop();
}

/// Starts the real binary with `args` on a free port, expects it to refuse to start (exit 2)
/// without binding the port, and returns what it printed.
fn refused_at_start_up(args: &[&str]) -> String {
    let port = pg::free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_redshift-auth-proxy"))
        .args(args)
        .args(["--port", &port.to_string(), "--http-address", "off"])
        .env_clear()
        .env("PW", "unused")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("proxy starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the proxy kept running with {args:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("stderr read");
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "no port may be bound"
    );
    stderr
}

#[test]
fn trust_on_a_non_loopback_address_is_refused_at_start_up() {
    let stderr = refused_at_start_up(&[
        "localhost:5432/dev?db_user=app&password_env=PW",
        "--address",
        "0.0.0.0",
    ]);
    for needle in [
        "refusing to listen on 0.0.0.0 with --client-auth trust",
        "IAM identity",
        "--client-auth scram",
        "--allow-unauthenticated-remote",
    ] {
        assert!(stderr.contains(needle), "{needle}: {stderr}");
    }
}

/// `--client-auth password` (cleartext, code 3), the method the Redshift JDBC and ODBC drivers
/// can answer: checked against the same verifiers as `scram`, over plain text on loopback and
/// over TLS; a wrong password and an unknown user get the same 28P01; and the proxy refuses to
/// start with it on a non-loopback address unless TLS is required.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleartext_password_auth_checks_the_verifiers_and_needs_tls_off_loopback() {
    let server = PgServer::shared();
    let files = Files::new();
    let (ok, alice, stderr) = hash_password(Some("alice"), "alice-pw Ω");
    assert!(ok, "{stderr}");
    let users = files.write("users.txt", &alice);
    let users_arg = users.display().to_string();
    let (_pki, cert, key) = server_cert(&files);
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let proxy = start(
        server,
        &[
            "--client-auth",
            "password",
            "--client-users",
            &users_arg,
            "--client-tls-cert",
            &cert,
            "--client-tls-key",
            &key,
        ],
    );
    let port = proxy.port;
    // What the proxy asks for: AuthenticationCleartextPassword, not SASL.
    let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    crate::support::scripted::send_startup(&mut raw, &[("user", "alice"), ("database", "dev")])
        .await;
    let mut request = [0u8; 9];
    tokio::io::AsyncReadExt::read_exact(&mut raw, &mut request)
        .await
        .expect("auth request");
    assert_eq!(
        request,
        [b'R', 0, 0, 0, 8, 0, 0, 0, 3],
        "cleartext password asked"
    );
    drop(raw);
    let conninfo = |user: &str, sslmode: &str| {
        format!("host=127.0.0.1 port={port} dbname=dev user={user} sslmode={sslmode}")
    };
    assert_psql_logs_in_plain_and_over_tls(server, port, "alice", "alice-pw Ω").await;
    for (user, password) in [("alice", "nope"), ("mallory", "alice-pw Ω")] {
        let (code, message) = tokio_pg(
            &format!("{} password='{password}'", conninfo(user, "disable")),
            NoTls,
        )
        .await
        .expect_err("refused");
        assert_eq!(code, "28P01", "{message}");
        assert_eq!(
            message,
            format!("password authentication failed for user \"{user}\"")
        );
    }
    let log = proxy.stop();
    assert!(log.contains("client authentication failed"), "{log}");
    assert!(!log.contains("alice-pw"), "no password in the log");

    let stderr = refused_at_start_up(&[
        "localhost:5432/dev?db_user=app&password_env=PW",
        "--address",
        "0.0.0.0",
        "--client-auth",
        "password",
        "--client-users",
        &users_arg,
        "--client-tls",
        "self-signed",
    ]);
    assert!(
        stderr.contains(
            "refusing --client-auth password on 0.0.0.0 without --client-sslmode require"
        ),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_unauthenticated_remote_starts_with_a_warning() {
    let server = PgServer::shared();
    let proxy = start(
        server,
        &["--address", "0.0.0.0", "--allow-unauthenticated-remote"],
    );
    let conninfo = format!(
        "host=127.0.0.1 port={} dbname=dev user=app sslmode=disable",
        proxy.port
    );
    assert_logged_in(&psql(server, &conninfo, "select current_user", None).await);
    let log = proxy.stop();
    assert!(
        log.contains("WARN") && log.contains("without client authentication"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_serves_psql_and_is_removed_at_exit() {
    let server = PgServer::shared();
    let files = Files::new();
    let dir = files.dir().to_owned();
    // The proxy's port is chosen by `start`; a stale socket can only be planted once it is
    // known, so this test picks the port itself.
    let port = pg::free_port();
    let socket = dir.join(format!(".s.PGSQL.{port}"));
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("stale socket"));
    assert!(socket.exists());

    let ca = server.ca_pem_path().display().to_string();
    let port_text = port.to_string();
    let dir_text = dir.display().to_string();
    let target = target(server);
    let proxy = ProxyCommand::new(&[
        &target,
        "--port",
        &port_text,
        "--upstream-ca",
        &ca,
        "--unix-socket",
        &dir_text,
    ])
    .env("PW", Some(pg::SCRAM_PASSWORD))
    .spawn(port);
    assert!(socket.exists());

    let run = psql(
        server,
        &format!("host={dir_text} port={port} dbname=dev user=app"),
        "select current_user",
        None,
    )
    .await;
    assert_logged_in(&run);
    let log = proxy.stop();
    assert!(log.contains("removing a stale socket file"), "{log}");
    assert!(log.contains("client=[local]"), "{log}");
    assert!(!socket.exists(), "the socket file is removed at exit");
}
