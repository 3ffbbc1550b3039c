//! A real PostgreSQL server for the end-to-end tests: the system's `initdb` and `pg_ctl`, a
//! temporary directory, a free port, `ssl=on` with certificates made by the test, and one
//! role per password method (`scram-sha-256`, `md5`, `password`). TLS is required for every
//! TCP login (`hostssl` only), so a session that works proves the proxy spoke TLS.
//!
//! One server is shared by all tests of a test binary. A watcher process stops it and
//! removes its directory as soon as the test process is gone, however the tests end
//! (pass, fail, panic or kill).

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock, PoisonError};

use super::certs::{TestPki, unrelated_ca_pem};

/// Role logging in with SCRAM-SHA-256 (owner of the `dev` database).
pub const SCRAM_USER: &str = "scram_user";
/// Its password.
pub const SCRAM_PASSWORD: &str = "scram-secret-Ω1";
/// Role whose password is stored as MD5 and logs in with `md5`.
pub const MD5_USER: &str = "md5_user";
/// Its password.
pub const MD5_PASSWORD: &str = "md5-secret-2";
/// Role logging in with `password` (cleartext over TLS).
pub const PLAIN_USER: &str = "plain_user";
/// Its password.
pub const PLAIN_PASSWORD: &str = "plain-secret-3";
/// Superuser, reachable only over the Unix socket (trust), for setup.
const SUPERUSER: &str = "postgres";

/// Where test ports are drawn from: below the kernel's ephemeral range (32768 and up by
/// default), so no outgoing connection, of this test or another, can take a port between the
/// check that it is free and the listen of the server it was chosen for.
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// Every port handed out in this test run: never the same one twice.
static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A port nobody listens on right now, never handed out before in this run.
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` free ports, all different, none handed out before in this run (one replica once got
/// its client port as its HTTP port, and a port chosen by the kernel was once taken by another
/// test's connection before the server listened on it).
pub fn free_ports(n: usize) -> Vec<u16> {
    let mut given = GIVEN.lock().unwrap_or_else(PoisonError::into_inner);
    let span = u64::from(TEST_PORTS.end - TEST_PORTS.start);
    let seed = u64::from(std::process::id())
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos().into())
            .unwrap_or(0);
    // Walk the range from a per-run start by a stride prime to its length.
    let mut at = seed % span;
    let mut ports = Vec::with_capacity(n);
    for _ in 0..span {
        at = (at + 7_919) % span;
        let port = TEST_PORTS.start + at as u16;
        if given.contains(&port) || TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        given.insert(port);
        ports.push(port);
        if ports.len() == n {
            return ports;
        }
    }
    panic!("no {n} free ports left in {TEST_PORTS:?}");
}

/// The directory holding `initdb`, `pg_ctl`, `postgres`, `psql`.
pub fn pg_bindir() -> PathBuf {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return dir;
        }
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| {
            dirs.filter_map(|d| d.ok())
                .map(|d| d.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    candidates.retain(|dir| dir.join("initdb").exists());
    candidates.sort_by_key(|dir| {
        dir.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    candidates
        .pop()
        .expect("PostgreSQL server binaries (initdb): run scripts/test, which installs them")
}

/// A running server; see the module docs.
pub struct PgServer {
    dir: PathBuf,
    port: u16,
    bindir: PathBuf,
    pki: TestPki,
}

static SHARED: OnceLock<PgServer> = OnceLock::new();

impl PgServer {
    /// The test binary's server, started on first use.
    pub fn shared() -> &'static PgServer {
        SHARED.get_or_init(PgServer::start)
    }

    fn start() -> PgServer {
        let bindir = pg_bindir();
        let dir = tempfile::Builder::new()
            .prefix("redshift-auth-proxy-pg.")
            .tempdir()
            .expect("temp dir")
            .keep();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let run_as_postgres = is_root();
        let port = free_port();
        let pki = TestPki::generate(&["localhost"]);
        let server = PgServer {
            dir,
            port,
            bindir,
            pki,
        };
        server.watch_for_exit(run_as_postgres);
        server.write_files();
        if run_as_postgres {
            chown_postgres(&server.dir);
        }
        server.run(run_as_postgres, "initdb", |c| {
            c.arg("-D").arg(server.data_dir()).args([
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ]);
        });
        server.configure();
        server.run(run_as_postgres, "pg_ctl", |c| {
            c.arg("-D")
                .arg(server.data_dir())
                .arg("-l")
                .arg(server.dir.join("postgres.log"))
                .args(["-w", "-t", "60", "start"]);
        });
        server.create_roles();
        server
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Stops the server and removes its directory once this test process has exited.
    fn watch_for_exit(&self, run_as_postgres: bool) {
        let pg_ctl = self.bindir.join("pg_ctl");
        let stop = format!(
            "{} '{}' -D '{}' -m immediate stop",
            if run_as_postgres {
                "runuser -u postgres --"
            } else {
                ""
            },
            pg_ctl.display(),
            self.data_dir().display()
        );
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.2; done; {stop} >/dev/null 2>&1; rm -rf '{dir}'",
            pid = std::process::id(),
            dir = self.dir.display()
        );
        // `setsid -f` forks the watcher into a session of its own: it outlives this process
        // and a Ctrl-C sent to the test's process group, which is its whole point.
        let status = Command::new("setsid")
            .args(["-f", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("start the server's watcher");
        assert!(status.success(), "setsid -f sh: {status}");
    }

    fn write_files(&self) {
        std::fs::write(self.dir.join("server.pem"), &self.pki.server_cert_pem).expect("cert");
        let key = self.dir.join("server.key");
        std::fs::write(&key, &self.pki.server_key_pem).expect("key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod key");
        std::fs::write(self.ca_pem_path(), &self.pki.ca_pem).expect("ca");
        std::fs::write(self.wrong_ca_pem_path(), unrelated_ca_pem()).expect("wrong ca");
    }

    fn configure(&self) {
        let data = self.data_dir();
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1,127.0.0.2'\n\
             port = {port}\n\
             unix_socket_directories = '{dir}'\n\
             max_connections = 500\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n\
             ssl = on\n\
             ssl_cert_file = '{dir}/server.pem'\n\
             ssl_key_file = '{dir}/server.key'\n\
             password_encryption = 'scram-sha-256'\n",
            port = self.port,
            dir = self.dir.display()
        );
        append(&data.join("postgresql.conf"), &conf);
        let hba = format!(
            "local all {SUPERUSER} trust\n\
             hostssl all {SCRAM_USER} 127.0.0.0/8 scram-sha-256\n\
             hostssl all {MD5_USER} 127.0.0.0/8 md5\n\
             hostssl all {PLAIN_USER} 127.0.0.0/8 password\n\
             hostssl all all 127.0.0.0/8 scram-sha-256\n"
        );
        std::fs::write(data.join("pg_hba.conf"), hba).expect("pg_hba.conf");
    }

    fn create_roles(&self) {
        let md5_role = format!(
            "set password_encryption = 'md5'; create role {MD5_USER} login password '{MD5_PASSWORD}'"
        );
        self.sql(&[
            &format!("create role {SCRAM_USER} login password '{SCRAM_PASSWORD}'"),
            &format!("create role {PLAIN_USER} login password '{PLAIN_PASSWORD}'"),
            &md5_role,
            &format!("create database dev owner {SCRAM_USER}"),
        ]);
    }

    /// Runs SQL statements as the superuser (each in its own transaction), e.g. to create
    /// the role an AWS fake hands out.
    pub fn sql(&self, statements: &[&str]) {
        let mut command = Command::new(self.psql_bin());
        command
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                SUPERUSER,
                "-d",
                "postgres",
            ]);
        for statement in statements {
            command.args(["-c", statement]);
        }
        let output = command.output().expect("psql runs");
        assert!(
            output.status.success(),
            "{statements:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Creates login role `role` if it is missing, and sets its password, valid for ever
    /// (as the temporary passwords the AWS fake hands out are, until a test says otherwise).
    pub fn set_login_password(&self, role: &str, password: &str) {
        let create = format!(
            "do $$ begin create role \"{role}\" login; exception when duplicate_object then null; end $$"
        );
        let alter =
            format!("alter role \"{role}\" login password '{password}' valid until 'infinity'");
        self.sql(&[&create, &alter]);
    }

    /// The server's log so far: what it refused, which a client only sees as an error.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
    }

    /// Runs one of the server's programs, as the `postgres` OS user when we are root (the
    /// server refuses to run as root).
    fn run(&self, as_postgres: bool, program: &str, args: impl FnOnce(&mut Command)) {
        let path = self.bindir.join(program);
        let mut command = if as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        args(&mut command);
        let output = command
            .stdin(Stdio::null())
            .output()
            .expect("server program runs");
        assert!(
            output.status.success(),
            "{program} failed: {}\n{}\nserver log: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
        );
    }

    /// The test PKI whose CA signed the server's `localhost` certificate: other servers of
    /// the tests present that certificate too (the Redshift-flavoured upstream), and their
    /// clients trust the same CA file ([`PgServer::ca_pem_path`]).
    pub fn pki(&self) -> &TestPki {
        &self.pki
    }

    /// The TCP port (TLS required).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The CA that signed the server's certificate (for `localhost` only).
    pub fn ca_pem_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A CA that did not sign the server's certificate.
    pub fn wrong_ca_pem_path(&self) -> PathBuf {
        self.dir.join("wrong-ca.pem")
    }

    /// The `psql` next to the server's programs (the system one as a fallback).
    pub fn psql_bin(&self) -> PathBuf {
        let beside = self.bindir.join("psql");
        if beside.exists() {
            beside
        } else {
            PathBuf::from("psql")
        }
    }

    /// A direct TLS connection (verify-full on `localhost`), bypassing the proxy.
    pub async fn connect_direct(
        &self,
        user: &str,
        password: &str,
        dbname: &str,
    ) -> tokio_postgres::Client {
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(self.pki.client_config());
        let conninfo = format!(
            "host=localhost port={} user={user} password={password} dbname={dbname} sslmode=require",
            self.port
        );
        let (client, connection) = tokio_postgres::connect(&conninfo, tls)
            .await
            .expect("direct TLS connection");
        tokio::spawn(connection);
        client
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn chown_postgres(path: &Path) {
    let status = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(path)
        .status()
        .expect("chown runs");
    assert!(status.success(), "chown -R postgres {}", path.display());
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open for append");
    file.write_all(text.as_bytes()).expect("append");
}

/// The role the session runs as: what the proxy logged in as.
pub async fn current_user(client: &tokio_postgres::Client) -> String {
    client
        .query_one("select current_user::text", &[])
        .await
        .expect("query")
        .get(0)
}

/// The SQLSTATE and message of the ErrorResponse a client got; panics on any other error.
pub fn db_error(error: &tokio_postgres::Error) -> (String, String) {
    let db = error
        .as_db_error()
        .unwrap_or_else(|| panic!("an ErrorResponse, got {error}"));
    (db.code().code().to_owned(), db.message().to_owned())
}
