//! The real `redshift-auth-proxy` binary as a child process, with a clean environment: no
//! AWS profile, files or instance metadata of the machine running the tests can leak in, and
//! the AWS variables a test wants are set on the child only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::pg::{self, PgServer};

/// The AWS secret key the tests hand the proxy; it must never appear in its output.
pub const TEST_SECRET_ACCESS_KEY: &str = "wJalrXUtnFEMI-test-secret-key-EXAMPLEKEY";
/// The matching access key id.
pub const TEST_ACCESS_KEY_ID: &str = "AKIDTESTPROXY";

/// How to start the binary.
pub struct ProxyCommand {
    args: Vec<String>,
    env: BTreeMap<String, String>,
    home: tempfile::TempDir,
}

impl ProxyCommand {
    /// The binary with `args`, static test AWS keys, no metadata service, an empty HOME.
    pub fn new(args: &[&str]) -> ProxyCommand {
        let home = tempfile::tempdir().expect("home dir");
        let mut env = BTreeMap::new();
        env.insert(
            "AWS_ACCESS_KEY_ID".to_owned(),
            TEST_ACCESS_KEY_ID.to_owned(),
        );
        env.insert(
            "AWS_SECRET_ACCESS_KEY".to_owned(),
            TEST_SECRET_ACCESS_KEY.to_owned(),
        );
        env.insert("AWS_EC2_METADATA_DISABLED".to_owned(), "true".to_owned());
        // Tests run side by side: no shared default HTTP port unless a test asks for one.
        env.insert(
            "REDSHIFT_AUTH_PROXY_HTTP_ADDRESS".to_owned(),
            "off".to_owned(),
        );
        ProxyCommand {
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env,
            home,
        }
    }

    /// The binary serving `server`'s `dev` database as its SCRAM role (static password in
    /// `PW`), listening on `port` with its HTTP endpoints on `http`: the start the served
    /// tests share. `target_options` go on the target's query (e.g. `&warm_sessions=2`);
    /// `extra` flags follow the others.
    pub fn serving(
        server: &PgServer,
        target_options: &str,
        (port, http): (u16, u16),
        extra: &[&str],
    ) -> ProxyCommand {
        let target = format!(
            "localhost:{}/dev?db_user={}&password_env=PW{target_options}",
            server.port(),
            pg::SCRAM_USER
        );
        let ca = server.ca_pem_path().display().to_string();
        let (port, http) = (port.to_string(), format!("127.0.0.1:{http}"));
        let mut args = vec![
            target.as_str(),
            "--port",
            &port,
            "--upstream-ca",
            &ca,
            "--http-address",
            &http,
        ];
        args.extend_from_slice(extra);
        ProxyCommand::new(&args).env("PW", Some(pg::SCRAM_PASSWORD))
    }

    /// Sets (or with `None` removes) a variable for the child.
    pub fn env(mut self, name: &str, value: Option<&str>) -> ProxyCommand {
        match value {
            Some(value) => self.env.insert(name.to_owned(), value.to_owned()),
            None => self.env.remove(name),
        };
        self
    }

    /// The child's HOME, a temporary directory: a test writes `.aws/config`,
    /// `.aws/credentials` and `.aws/sso/cache/` there as the AWS CLI would.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_redshift-auth-proxy"));
        command
            .args(&self.args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("USER", "tester")
            .envs(&self.env)
            .stdin(Stdio::null());
        command
    }

    /// Runs to completion (for `--check`): exit status, stdout, stderr.
    pub fn output(&self) -> (ExitStatus, String, String) {
        self.output_with(&[])
    }

    /// Runs to completion with `extra` arguments after the others (e.g. `--check` on a
    /// command that will serve next): exit status, stdout, stderr.
    pub fn output_with(&self, extra: &[&str]) -> (ExitStatus, String, String) {
        let output = self.command().args(extra).output().expect("proxy runs");
        (
            output.status,
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// Starts serving and waits until `port` accepts connections.
    pub fn spawn(self, port: u16) -> ProxyProcess {
        let log = self.home.path().join("proxy.log");
        let file = std::fs::File::create(&log).expect("log file");
        let child = self
            .command()
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("proxy starts");
        let mut process = ProxyProcess {
            child,
            log,
            port,
            _home: self.home,
        };
        process.wait_listening();
        process
    }
}

/// A running proxy; killed (SIGTERM, then SIGKILL) when dropped.
pub struct ProxyProcess {
    child: Child,
    log: PathBuf,
    /// The first listen port.
    pub port: u16,
    _home: tempfile::TempDir,
}

impl ProxyProcess {
    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("proxy exited with {status}: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "proxy did not listen on {} within 30 s: {}",
            self.port,
            self.log()
        );
    }

    /// The proxy's process id, e.g. to count its open files in `/proc/PID/fd`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the proxy logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A libpq connection string for the proxy (no password: the proxy supplies it).
    pub fn conninfo(&self, user: &str, dbname: &str) -> String {
        format!(
            "host=127.0.0.1 port={} dbname={dbname} user={user} sslmode=disable connect_timeout=30",
            self.port
        )
    }

    /// Sends `signal` (e.g. "TERM", "INT") to the proxy.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal}");
    }

    /// Waits up to `limit` for the proxy to exit on its own.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Stops the proxy with SIGTERM and waits for it; returns the whole log.
    pub fn stop(mut self) -> String {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
        self.log()
    }

    fn terminate(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill")
            .args(["-TERM", &pid])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
    }
}

/// Runs `redshift-auth-proxy hash-password [user]` with `password` on stdin: (success,
/// stdout, stderr). Its stdout is a `--client-users` line.
pub fn hash_password(user: Option<&str>, password: &str) -> (bool, String, String) {
    use std::io::Write;
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_redshift-auth-proxy"));
    command.arg("hash-password");
    command.args(user);
    let mut child = command
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hash-password runs");
    // A refused user name ends the command before it reads: the pipe may be closed.
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes());
    let output = child.wait_with_output().expect("hash-password ends");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
