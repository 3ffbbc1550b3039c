//! What the client-side suites share (`client_security`, `client_tls_binding`): the real binary
//! with a static-password target in front of the shared server, files written for one test,
//! psql and tokio-postgres runs, and the certificate a listener serves.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use redshift_auth_proxy::upstream::tls::{SslMode, UpstreamTrust, upstream_client_config};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::certs::TestPki;
use super::pg::{self, PgServer};
use super::proxy_process::{ProxyCommand, ProxyProcess};

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A static-password target in front of the shared server, as the proxy's first target.
pub fn target(server: &PgServer) -> String {
    format!(
        "localhost:{}/dev?db_user={}&password_env=PW",
        server.port(),
        pg::SCRAM_USER
    )
}

/// Starts the binary on a free port with `extra` flags (after the target and the CA).
pub fn start(server: &PgServer, extra: &[&str]) -> ProxyProcess {
    start_with_targets(server, &[target(server)], extra)
}

pub fn start_with_targets(server: &PgServer, targets: &[String], extra: &[&str]) -> ProxyProcess {
    let port = pg::free_port();
    let ca = server.ca_pem_path().display().to_string();
    let port_text = port.to_string();
    let mut args: Vec<&str> = targets.iter().map(String::as_str).collect();
    args.extend(["--port", &port_text, "--upstream-ca", &ca]);
    args.extend_from_slice(extra);
    ProxyCommand::new(&args)
        .env("PW", Some(pg::SCRAM_PASSWORD))
        .spawn(port)
}

/// Files written for one test, removed with it.
pub struct Files(tempfile::TempDir);

impl Files {
    pub fn new() -> Files {
        Files(tempfile::tempdir().expect("temp dir"))
    }

    /// Writes `name` (mode 0600, as libpq wants for keys) and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.0.path().join(name);
        std::fs::write(&path, text).expect("write file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
        path
    }

    pub fn path(&self, name: &str) -> String {
        self.0.path().join(name).display().to_string()
    }

    pub fn dir(&self) -> &Path {
        self.0.path()
    }
}

/// What a psql run printed.
pub struct Psql {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs psql once with `conninfo` and one command, never prompting (`-w`), with an empty
/// HOME (no ~/.pgpass, no ~/.postgresql certificates) and `PGPASSWORD` when given.
pub async fn psql(
    server: &PgServer,
    conninfo: &str,
    command: &str,
    password: Option<&str>,
) -> Psql {
    let home = tempfile::tempdir().expect("home");
    let mut cmd = tokio::process::Command::new(server.psql_bin());
    cmd.arg(conninfo)
        .args(["-X", "-A", "-t", "-w", "-c", command])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::null());
    if let Some(password) = password {
        cmd.env("PGPASSWORD", password);
    }
    let output = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("psql finishes within 60 s")
        .expect("psql runs");
    Psql {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Asserts psql ran `select current_user` through the proxy (the server sees the target's
/// database user, whatever the client called itself).
pub fn assert_logged_in(run: &Psql) {
    assert!(run.ok, "psql failed: {}\n{}", run.stdout, run.stderr);
    assert_eq!(run.stdout.trim(), pg::SCRAM_USER, "{}", run.stdout);
}

/// psql logs in to the proxy on `port` as `user` with `password` (PGPASSWORD), once in plain
/// text and once over TLS: what every password method must allow.
pub async fn assert_psql_logs_in_plain_and_over_tls(
    server: &PgServer,
    port: u16,
    user: &str,
    password: &str,
) {
    for sslmode in ["disable", "require"] {
        let conninfo =
            format!("host=127.0.0.1 port={port} dbname=dev user={user} sslmode={sslmode}");
        let run = psql(server, &conninfo, "select current_user", Some(password)).await;
        assert_logged_in(&run);
    }
}

/// Connects with tokio-postgres over `tls`, returning the SQLSTATE and message of a refusal.
pub async fn tokio_pg<T>(conninfo: &str, tls: T) -> Result<tokio_postgres::Client, (String, String)>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
    T::Stream: Send + 'static,
{
    match tokio_postgres::connect(conninfo, tls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            Ok(client)
        }
        Err(e) => Err(match e.as_db_error() {
            Some(db) => (db.code().code().to_owned(), db.message().to_owned()),
            None => (String::new(), e.to_string()),
        }),
    }
}

/// `openssl x509 -fingerprint -sha256` format, computed here independently of the proxy.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn pem_der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("certificate PEM")
        .to_vec()
}

/// Sends SSLRequest, expects `S`, completes a TLS handshake and returns the certificate the
/// proxy served (DER).
pub async fn served_certificate(port: u16) -> Vec<u8> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    tcp.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
        .await
        .expect("SSLRequest");
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer).await.expect("answer");
    assert_eq!(
        answer[0], b'S',
        "client TLS is configured: SSLRequest gets S"
    );
    // The proxy's own sslmode=require configuration: any certificate, so the test sees which
    // one is served.
    let config = upstream_client_config(SslMode::Require, &UpstreamTrust::default())
        .expect("require config")
        .expect("TLS on");
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("TLS handshake");
    tls.get_ref().1.peer_certificates().expect("certificates")[0].to_vec()
}

/// Writes a server certificate for `localhost` and its key; returns the PKI and the paths.
pub fn server_cert(files: &Files) -> (TestPki, PathBuf, PathBuf) {
    let pki = TestPki::generate(&["localhost"]);
    let cert = files.write("server.crt", &pki.server_cert_pem);
    let key = files.write("server.key", &pki.server_key_pem);
    (pki, cert, key)
}
