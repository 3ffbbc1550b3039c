//! AWS's Python driver, redshift_connector (PyPI `redshift-connector`), run as a child
//! process: `tests/e2e/drivers/redshift_connector_check.py` connects through the proxy, runs
//! its checks and prints JSON.
//!
//! The interpreter is `REDSHIFT_CONNECTOR_PYTHON`, which scripts/test sets after installing
//! the driver (and psycopg 3, for `support/driver_programs.rs`) into a virtualenv under the
//! cache directory (`scripts/redshift-connector-venv`), or that virtualenv when an earlier
//! run made it. When PyPI was unreachable, scripts/test sets `REDSHIFT_CONNECTOR_UNAVAILABLE`
//! instead and the tests skip with its reason printed; in every other case a missing driver
//! fails the test.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// The interpreter with redshift_connector and psycopg, or `None` (after printing why) when
/// the tests are to skip because PyPI was unreachable.
pub fn python() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("REDSHIFT_CONNECTOR_PYTHON") {
        return Some(PathBuf::from(path));
    }
    if let Ok(reason) = std::env::var("REDSHIFT_CONNECTOR_UNAVAILABLE") {
        eprintln!("SKIPPED: redshift_connector and psycopg are not installed: {reason}");
        return None;
    }
    let venv = cache_venv();
    let python = venv.join("bin").join("python");
    if python.exists() && venv.join(".requirements").exists() {
        return Some(python);
    }
    panic!(
        "redshift_connector and psycopg are not installed: run scripts/test, which installs them \
         into {} (scripts/redshift-connector-venv), or set REDSHIFT_CONNECTOR_PYTHON to a Python \
         that has them",
        venv.display()
    );
}

/// Where scripts/redshift-connector-venv puts the virtualenv by default.
fn cache_venv() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    std::env::var_os("REDSHIFT_CONNECTOR_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache.join("redshift-auth-proxy").join("drivers"))
        .join("venv")
}

/// Runs the check script with `python` and `args`, `SSL_CERT_FILE` set to `ca` when given
/// (the driver trusts the OS store, which that variable replaces, plus its own bundle), and
/// otherwise an environment of PATH and an empty HOME. Returns the JSON it printed and
/// whether it exited 0.
pub async fn run(python: &Path, args: &[String], ca: Option<&Path>) -> (bool, serde_json::Value) {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/drivers/redshift_connector_check.py");
    let home = tempfile::tempdir().expect("home");
    let mut command = tokio::process::Command::new(python);
    command
        .arg(&script)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(ca) = ca {
        command.env("SSL_CERT_FILE", ca);
    }
    let output = tokio::time::timeout(Duration::from_secs(180), command.output())
        .await
        .expect("redshift_connector_check.py finishes within 180 s")
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let json = stdout
        .lines()
        .last()
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("no JSON from the check script:\n{stdout}\n{stderr}"));
    (output.status.success(), json)
}
