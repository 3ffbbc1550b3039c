//! pgjdbc and psycopg 3 run as child processes that read one result and print its MD5:
//! `tests/e2e/drivers/CompressedLinkCheck.java` (the JDK's source launcher, with Debian's
//! `libpostgresql-jdbc-java` jar) and `tests/e2e/drivers/compressed_link_check.py` (with the
//! interpreter of the virtualenv scripts/redshift-connector-venv makes, which has psycopg).
//! Both take the same arguments and print one JSON line, [`Received`].
//!
//! The jar is `PGJDBC_JAR`, or /usr/share/java/postgresql.jar, which scripts/test installs
//! with apt-get; without it (or without `java`) the tests fail and say how to install it.
//! psycopg follows the redshift_connector policy ([`super::redshift_connector::python`]): its
//! tests skip only when scripts/test found PyPI unreachable.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

const DEFAULT_PGJDBC_JAR: &str = "/usr/share/java/postgresql.jar";
const PGJDBC_HINT: &str = "run scripts/test, which installs libpostgresql-jdbc-java and \
     default-jdk-headless with apt-get, or install them yourself (or set PGJDBC_JAR to a pgjdbc jar)";
const PSYCOPG_HINT: &str = "run scripts/test, which installs psycopg into its virtualenv \
     (scripts/redshift-connector-venv)";

/// How the program reads the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The query is a `copy (...) to stdout`; the hash is of the bytes received.
    Copy,
    /// The query is a plain SELECT read through a portal in batches; each row is hashed as
    /// its COPY text.
    Select,
}

impl Mode {
    fn arg(self) -> &'static str {
        match self {
            Mode::Copy => "copy",
            Mode::Select => "select",
        }
    }
}

/// What one program printed.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// MD5 of the COPY text, hex.
    pub md5: String,
    /// Bytes of COPY text hashed.
    pub bytes: u64,
    /// Rows, from the COPY tag or counted.
    pub rows: u64,
    /// Wall time from connect to the last byte.
    pub seconds: f64,
}

/// The pgjdbc jar: `PGJDBC_JAR`, else Debian's. Panics with how to install it when missing.
pub fn pgjdbc_jar() -> PathBuf {
    let jar = std::env::var_os("PGJDBC_JAR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PGJDBC_JAR));
    assert!(
        jar.is_file(),
        "pgjdbc is not installed ({} is missing): {PGJDBC_HINT}",
        jar.display()
    );
    jar
}

/// The arguments both programs take, for a plaintext login to `port` as `user` on `dbname`.
fn common_args(port: u16, user: &str, dbname: &str, mode: Mode, query: &str) -> Vec<String> {
    [
        "--host",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--user",
        user,
        "--dbname",
        dbname,
        "--sslmode",
        "disable",
        "--mode",
        mode.arg(),
        "--query",
        query,
    ]
    .map(str::to_owned)
    .to_vec()
}

fn program(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/e2e/drivers")
        .join(name)
}

/// Runs `CompressedLinkCheck.java` with pgjdbc against `port`.
pub async fn pgjdbc(port: u16, user: &str, dbname: &str, mode: Mode, query: &str) -> Received {
    let jar = pgjdbc_jar();
    let mut command = tokio::process::Command::new("java");
    command
        .arg("-cp")
        .arg(&jar)
        .arg(program("CompressedLinkCheck.java"))
        .args(common_args(port, user, dbname, mode, query));
    run("CompressedLinkCheck.java", PGJDBC_HINT, command).await
}

/// Runs `compressed_link_check.py` with psycopg under `python` against `port`.
pub async fn psycopg(
    python: &Path,
    port: u16,
    user: &str,
    dbname: &str,
    mode: Mode,
    query: &str,
) -> Received {
    let mut command = tokio::process::Command::new(python);
    command
        .arg(program("compressed_link_check.py"))
        .args(common_args(port, user, dbname, mode, query));
    run("compressed_link_check.py", PSYCOPG_HINT, command).await
}

/// Runs `command` with an environment of PATH and an empty HOME, and parses the JSON line it
/// printed; panics with its output when it fails, and with `hint` when it cannot start.
async fn run(name: &str, hint: &str, mut command: tokio::process::Command) -> Received {
    let home = tempfile::tempdir().expect("home");
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(180), command.output())
        .await
        .unwrap_or_else(|_| panic!("{name} finishes within 180 s"))
        .unwrap_or_else(|error| panic!("{name} does not start ({error}): {hint}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{name} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let json: serde_json::Value = stdout
        .lines()
        .last()
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("no JSON from {name}:\n{stdout}\n{stderr}"));
    let field = |key: &str| {
        json.get(key)
            .cloned()
            .unwrap_or_else(|| panic!("no {key} in {json}"))
    };
    Received {
        md5: field("md5").as_str().expect("md5 is a string").to_owned(),
        bytes: field("bytes").as_u64().expect("bytes is a count"),
        rows: field("rows").as_u64().expect("rows is a count"),
        seconds: field("seconds").as_f64().expect("seconds is a number"),
    }
}
