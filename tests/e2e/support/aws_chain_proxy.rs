//! The real binary run through one link of the AWS credential chain: an IAM target in front of
//! the shared PostgreSQL, a temporary `HOME` where a test writes `.aws/config`,
//! `.aws/credentials` and `.aws/sso/cache/*.json` as the AWS CLI does, every AWS service at the
//! fake through `AWS_ENDPOINT_URL`, and the checks a link or a failure needs: `--check` and a
//! served tokio-postgres login, or the message both give when the chain fails.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use tokio_postgres::NoTls;

use super::fake_aws::{Api, FakeAws, FakeRequest};
use super::pg::{self, PgServer, current_user, db_error};
use super::proxy_process::{ProxyCommand, ProxyProcess};

/// A proxy command for one IAM target in front of the shared server, whose database user
/// `user` logs in with the password the fake hands out; the port it will serve on.
pub struct ChainProxy {
    /// The binary, ready to run `--check` or serve.
    pub command: ProxyCommand,
    port: u16,
    user: &'static str,
}

/// The shared server with `IAM:user` and the fake handing out its password.
pub async fn prepared(user: &'static str) -> (&'static PgServer, FakeAws) {
    let server = PgServer::shared();
    let password = format!("pw-chain-{user}");
    server.set_login_password(&format!("IAM:{user}"), &password);
    let fake = FakeAws::start().await;
    fake.set_password_for(user, &password);
    (server, fake)
}

/// A proxy for `user` with `args` after the target's, every AWS service at the fake through
/// `AWS_ENDPOINT_URL`, and no AWS keys in the environment unless `env_keys`.
pub fn chain_proxy(
    server: &PgServer,
    fake: &FakeAws,
    user: &'static str,
    env_keys: bool,
    args: &[&str],
) -> ChainProxy {
    let port = pg::free_port();
    let target = format!(
        "localhost:{}/dev?cluster=chain&region=us-east-1&db_user={user}",
        server.port()
    );
    let port_text = port.to_string();
    let ca = server.ca_pem_path().display().to_string();
    let mut all = vec![
        target.as_str(),
        "--port",
        &port_text,
        "--upstream-ca",
        &ca,
        "--connect-timeout",
        "10s",
    ];
    all.extend_from_slice(args);
    let mut command = ProxyCommand::new(&all).env("AWS_ENDPOINT_URL", Some(&fake.uri()));
    if !env_keys {
        command = command
            .env("AWS_ACCESS_KEY_ID", None)
            .env("AWS_SECRET_ACCESS_KEY", None);
    }
    ChainProxy {
        command,
        port,
        user,
    }
}

impl ChainProxy {
    /// Sets (or with `None` removes) a variable for the proxy.
    pub fn env(mut self, name: &str, value: Option<&str>) -> ChainProxy {
        self.command = self.command.env(name, value);
        self
    }

    /// The proxy's HOME, where `.aws/` goes.
    pub fn home(&self) -> &Path {
        self.command.home()
    }

    /// Writes `~/.aws/NAME`.
    pub fn aws_file(&self, name: &str, text: &str) {
        let path = self.home().join(".aws").join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect(".aws");
        std::fs::write(path, text).expect("aws file");
    }

    /// The legacy cache file the AWS CLI writes after `aws sso login` for a profile whose
    /// `sso_start_url` is `start_url`.
    pub fn legacy_sso_cache(&self, start_url: &str, token: &str, expires_at: SystemTime) {
        self.aws_file(
            &format!("sso/cache/{}", sso_cache_name(start_url)),
            &format!(
                "{{\"startUrl\": \"{start_url}\", \"region\": \"us-east-1\", \"accessToken\": \"{token}\", \"expiresAt\": \"{}\"}}",
                cli_time(expires_at)
            ),
        );
    }

    /// The cache file the AWS CLI writes for `[sso-session SESSION]`, with the client
    /// registration the SDK would refresh the token with (valid until `registered_until`).
    pub fn session_sso_cache(
        &self,
        session: &str,
        start_url: &str,
        token: &str,
        expires_at: SystemTime,
        registered_until: SystemTime,
    ) {
        self.aws_file(
            &format!("sso/cache/{}", sso_cache_name(session)),
            &format!(
                "{{\"startUrl\": \"{start_url}\", \"region\": \"us-east-1\", \"accessToken\": \"{token}\", \"expiresAt\": \"{}\", \"clientId\": \"fake-client-id\", \"clientSecret\": \"fake-client-secret\", \"registrationExpiresAt\": \"{}\", \"refreshToken\": \"fake-refresh-token\"}}",
                cli_time(expires_at),
                cli_time(registered_until)
            ),
        );
    }

    /// Starts serving and waits until the port accepts connections.
    pub fn serve(self) -> ProxyProcess {
        self.command.spawn(self.port)
    }

    /// `--check` succeeds, then a served connection logs in as `IAM:user`. Returns the
    /// fake's requests of both runs.
    pub async fn check_and_serve(self, fake: &FakeAws) -> Vec<FakeRequest> {
        let (status, stdout, stderr) = self.command.output_with(&["--check"]);
        assert!(status.success(), "--check failed:\n{stdout}\n{stderr}");
        assert!(stdout.starts_with("ok"), "{stdout}");
        assert!(
            stdout.contains(&format!("db_user=IAM:{}", self.user)),
            "{stdout}"
        );
        let proxy = self.command.spawn(self.port);
        let (client, connection) =
            tokio_postgres::connect(&proxy.conninfo("someone", "dev"), NoTls)
                .await
                .unwrap_or_else(|e| panic!("served login failed: {e}\n{}", proxy.log()));
        tokio::spawn(connection);
        assert_eq!(current_user(&client).await, format!("IAM:{}", self.user));
        fake.requests()
    }

    /// `--check` fails and a client is refused with 28000, both with a message holding each
    /// of `expected`, which the served proxy's log line holds too (the first of them).
    pub async fn refused(self, expected: &[&str]) {
        let (status, stdout, stderr) = self.command.output_with(&["--check"]);
        assert_eq!(status.code(), Some(1), "{stdout}\n{stderr}");
        assert!(stdout.starts_with("FAILED"), "{stdout}");
        for part in expected {
            assert!(stdout.contains(part), "--check lacks {part:?}:\n{stdout}");
        }
        let proxy = self.command.spawn(self.port);
        let error = tokio_postgres::connect(&proxy.conninfo("someone", "dev"), NoTls)
            .await
            .err()
            .unwrap_or_else(|| panic!("the login succeeded\n{}", proxy.log()));
        let (code, message) = db_error(&error);
        assert_eq!(code, "28000", "{message}");
        for part in expected {
            assert!(
                message.contains(part),
                "the client lacks {part:?}: {message}"
            );
        }
        // The default log: the proxy's own line says it, and the SDK's crates add at most a
        // short line of their own (their detail is at debug).
        let log = proxy.stop();
        assert!(
            log.lines()
                .any(|line| line.contains("redshift_auth_proxy::session")
                    && line.contains(expected[0])),
            "{log}"
        );
        for line in log.lines() {
            let from_sdk = line.contains(" aws_") || line.contains(": aws_");
            assert!(!from_sdk || line.len() <= 300, "long SDK line: {line}");
        }
        assert!(!log.contains("HttpResponse"), "SDK Debug output: {log}");
    }
}

/// The access key ids that signed the `GetClusterCredentials` calls among `requests`.
pub fn redshift_signers(requests: &[FakeRequest]) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.api == Api::GetClusterCredentials)
        .map(|r| r.access_key_id().unwrap_or("(unsigned)").to_owned())
        .collect()
}

/// `t` as the AWS CLI writes `expiresAt` (`2026-01-02T03:04:05Z`).
pub fn cli_time(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).expect("after 1970").as_secs() as i64;
    DateTime::from_secs(secs)
        .fmt(Format::DateTime)
        .expect("format")
}

/// The SSO cache file name: the SHA-1 of `key` (the start URL for a legacy profile, the
/// session name for an `sso-session`), in lower-case hex, as the AWS CLI names it.
pub fn sso_cache_name(key: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("sha1sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha1sum runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(key.as_bytes())
        .expect("write");
    let output = child.wait_with_output().expect("sha1sum ends");
    let text = String::from_utf8(output.stdout).expect("hex");
    format!("{}.json", text.split_whitespace().next().expect("digest"))
}
