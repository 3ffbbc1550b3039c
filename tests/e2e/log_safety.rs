//! Strings that clients, the server and AWS choose cannot forge log lines: the real binary,
//! an IAM target through the fake AWS APIs, and the real PostgreSQL, with hostile text
//! (newlines, carriage returns, ESC sequences, other control bytes, quotes, kilobytes of them)
//! in the client's `user`, `database` and `application_name`, in the server's error message
//! (an unknown database named by the client) and in AWS's error message. The text log must
//! keep one line per event, none starting with anything but the proxy's own timestamp and
//! level and none with a raw ESC byte; the JSON log must parse line by line and carry the
//! strings exactly.

use tokio_postgres::{Config, NoTls};

use crate::support::fake_aws::{FakeAws, FakeError};
use crate::support::pg::{self, PgServer};
use crate::support::proxy_process::{ProxyCommand, ProxyProcess};

/// A forged log line, an ANSI sequence that would clear the screen, other control bytes and
/// quotes that would end a quoted field early.
const HOSTILE: &str = "eve\n2026-12-02T00:00:00.000000Z ERROR forged line\r\u{1b}[2J\u{1b}]0;title\u{7}\u{0}x\u{7f}\" injected=\"yes\u{2028}";

/// `HOSTILE` repeated to `len` bytes or so, without the NUL a startup packet cannot carry.
fn hostile(len: usize) -> String {
    let one = HOSTILE.replace('\u{0}', "");
    one.repeat(len / one.len() + 1)
}

/// A proxy logging in `format` whose target lets only `user` in.
fn start(server: &PgServer, fake: &FakeAws, format: &str, user: &str) -> ProxyProcess {
    let port = pg::free_port();
    let target = format!(
        "localhost:{}?cluster=logs&region=us-east-1&allowed_users={user}",
        server.port()
    );
    let ca = server.ca_pem_path().display().to_string();
    let endpoint = fake.uri();
    let port_arg = port.to_string();
    let args = [
        target.as_str(),
        "--port",
        &port_arg,
        "--upstream-ca",
        &ca,
        "--aws-endpoint-url",
        &endpoint,
        "--log-format",
        format,
    ];
    ProxyCommand::new(&args).spawn(port)
}

/// One connection attempt with `user`, `database` and `application_name`; every one of them
/// is refused somewhere, which is what logs the strings.
async fn attempt(proxy: &ProxyProcess, user: &str, database: &str, application_name: &str) {
    let mut config = Config::new();
    config
        .host("127.0.0.1")
        .port(proxy.port)
        .user(user)
        .dbname(database)
        .application_name(application_name)
        .connect_timeout(std::time::Duration::from_secs(30));
    let refused = config.connect(NoTls).await;
    assert!(refused.is_err(), "each attempt is refused");
}

/// The hostile attempts: a user the target does not allow, an allowed user with a database
/// the server does not have, and an allowed user while AWS answers with a hostile error.
async fn hostile_attempts(fake: &FakeAws, proxy: &ProxyProcess, user: &str) {
    let long = hostile(3000);
    attempt(proxy, &long, "dev", &hostile(200)).await;
    attempt(proxy, user, &long, &hostile(200)).await;
    fake.fail_next(
        1,
        FakeError::Custom {
            status: 400,
            code: "InvalidParameterValue".to_owned(),
            message: hostile(500),
        },
    );
    // A fresh database name, so the password cached by the attempt before is not reused.
    attempt(proxy, user, "other", "app").await;
}

/// The shared server with the role AWS's answers name for `user` (each test its own, as tests
/// run side by side), and a fake AWS that hands out its password.
async fn prepared(user: &str) -> (&'static PgServer, FakeAws) {
    let server = PgServer::shared();
    server.set_login_password(&format!("IAM:{user}"), "log-safety-pw");
    let fake = FakeAws::start().await;
    fake.set_password_for(user, "log-safety-pw");
    (server, fake)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_text_log_keeps_one_line_per_event() {
    let (server, fake) = prepared("logtext").await;
    let proxy = start(server, &fake, "text", "logtext");
    hostile_attempts(&fake, &proxy, "logtext").await;
    let log = proxy.stop();

    let levels = [" TRACE ", " DEBUG ", "  INFO ", "  WARN ", " ERROR "];
    for line in log.lines() {
        let stamp = line.get(..27).unwrap_or("");
        assert!(
            stamp.len() == 27 && stamp.starts_with("20") && stamp.ends_with('Z'),
            "a line that does not start with the proxy's timestamp: {line:?}"
        );
        assert!(
            levels.iter().any(|level| line[27..].starts_with(level)),
            "a line without the proxy's level after the timestamp: {line:?}"
        );
        assert!(
            !line.starts_with("2026-12-02T00:00:00.000000Z"),
            "a forged line: {line:?}"
        );
    }
    assert!(!log.contains('\u{1b}'), "a raw ESC byte in the log");
    assert!(!log.contains('\r'), "a raw carriage return in the log");
    assert!(!log.contains('\u{7}'), "a raw BEL byte in the log");
    // Each hostile string is there, escaped: the refused user (span field and message), the
    // server's message naming the database, and AWS's message.
    let escaped = "\\n2026-12-02T00:00:00.000000Z ERROR forged line\\r\\u{1b}[2J";
    for event in [
        "no credentials",
        "server refused the login",
        "connection closed",
    ] {
        assert!(
            log.lines()
                .any(|line| line.contains(event) && line.contains(escaped)),
            "{event} with the escaped string in\n{log}"
        );
    }
    assert!(
        !log.contains(" injected=\"yes"),
        "a quote in a value ended the field early:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_log_parses_line_by_line_and_keeps_the_strings_exactly() {
    let (server, fake) = prepared("logjson").await;
    let proxy = start(server, &fake, "json", "logjson");
    hostile_attempts(&fake, &proxy, "logjson").await;
    let log = proxy.stop();

    let mut users = Vec::new();
    for line in log.lines() {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line:?}"));
        if let Some(user) = value.pointer("/span/user").and_then(|u| u.as_str()) {
            users.push(user.to_owned());
        }
    }
    let long = hostile(3000);
    assert!(
        users.contains(&long),
        "the refused user name, exactly, in a span: {users:?}"
    );
}
