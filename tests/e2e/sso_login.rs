//! `redshift-auth-proxy sso-login`, the real binary against the fake SSO OIDC service
//! (support/fake_sso_oidc.rs, reached through `AWS_ENDPOINT_URL_SSO_OIDC`) with HOME in a
//! temporary directory: both profile forms write the token and client registration files
//! with the AWS CLI's names and fields, the poll answers (pending, slow_down, denied,
//! expired) end as they should, a profile that cannot be signed in to says why, botocore
//! reads what was written, and the proxy itself signs in with it: the SSO portal (the AWS
//! fake) receives the token sso-login obtained and its keys sign the Redshift call, for
//! `--check`, a served login and a proxy already serving when the session ended.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use serde_json::Value;

use crate::support::aws_chain_proxy::{chain_proxy, prepared, redshift_signers};
use crate::support::eventually::eventually;
use crate::support::fake_aws::{Api, FakeAws};
use crate::support::fake_sso_oidc::{
    DEVICE_CODE_GRANT, FakeSsoOidc, Outcome, TOKEN_LIFETIME_SECS, USER_CODE, VERIFICATION_URI,
};
use crate::support::pg::{current_user, db_error};
use crate::support::proxy_process::{ProxyCommand, ProxyProcess};
use crate::support::redshift_connector;

const SESSION_CONFIG: &str = "\
[profile analytics]
sso_session = corp
sso_account_id = 123456789012
sso_role_name = RedshiftAnalyst
region = us-east-1

[sso-session corp]
sso_start_url = https://example.awsapps.com/start
sso_region = us-east-1
sso_registration_scopes = sso:account:access
";

const LEGACY_CONFIG: &str = "\
[profile legacy]
sso_start_url = https://legacy.awsapps.com/start
sso_region = us-east-1
sso_account_id = 123456789012
sso_role_name = RedshiftAnalyst

[profile keys]
aws_access_key_id = AKIDEXAMPLE
aws_secret_access_key = not-a-real-secret
";

// The cache file names, computed outside the proxy's code:
//   printf %s corp | sha1sum
//   printf %s https://legacy.awsapps.com/start | sha1sum
// and for the registrations, with CPython 3 as the AWS CLI computes them:
//   hashlib.sha1(json.dumps({'tool': 'botocore', 'startUrl': URL, 'region': 'us-east-1',
//       'scopes': SCOPES, 'session_name': NAME}, sort_keys=True).encode()).hexdigest()
// with SCOPES, NAME = ['sso:account:access'], 'corp' and None, None.
const SESSION_TOKEN_FILE: &str = "ee0bfd2552fbd840c02cc48b6e823320543c450f.json";
const SESSION_REGISTRATION_FILE: &str = "593e7fe8be40a34ec2525a8025abd929e22037d9.json";
const LEGACY_TOKEN_FILE: &str = "79e435d7a515078e81c9dffc35f38d5687ebd3a7.json";
const LEGACY_REGISTRATION_FILE: &str = "e20952a21ad8c4e9f17c0a6776c9c4cbbded53d0.json";

/// A HOME with `config` as its ~/.aws/config.
fn home_with(config: &str) -> tempfile::TempDir {
    let home = tempfile::tempdir().expect("home");
    std::fs::create_dir(home.path().join(".aws")).expect(".aws");
    std::fs::write(home.path().join(".aws/config"), config).expect("config");
    home
}

fn cache_dir(home: &Path) -> PathBuf {
    home.join(".aws/sso/cache")
}

/// Runs `sso-login ARGS` with `home` and the fake as the SSO OIDC endpoint: exit status,
/// stdout, stderr.
async fn sso_login(home: &Path, fake: &FakeSsoOidc, args: &[&str]) -> (ExitStatus, String, String) {
    let mut argv = vec!["sso-login"];
    argv.extend_from_slice(args);
    let command = ProxyCommand::new(&argv)
        .env("HOME", Some(&home.to_string_lossy()))
        .env("AWS_ENDPOINT_URL_SSO_OIDC", Some(&fake.uri()));
    tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("sso-login runs")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{} is readable: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is JSON: {e}: {text}", path.display()))
}

fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .expect("a JSON object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("exists")
        .permissions()
        .mode()
        & 0o777
}

/// A date as the CLI writes it (`YYYY-MM-DDTHH:MM:SSZ`), as seconds since the epoch.
fn cli_date(value: &Value) -> u64 {
    let text = value.as_str().expect("a date string");
    assert_eq!(text.len(), 20, "{text}");
    assert!(text.ends_with('Z') && text.as_bytes()[10] == b'T', "{text}");
    let date = DateTime::from_str(text, Format::DateTime).expect("RFC 3339");
    u64::try_from(date.secs()).expect("after 1970")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sso_session_form_signs_in_after_pending_polls_and_writes_the_clis_files() {
    let fake = FakeSsoOidc::start().await;
    fake.pending_polls(2);
    let home = home_with(SESSION_CONFIG);
    let (status, stdout, stderr) = sso_login(home.path(), &fake, &["--profile", "analytics"]).await;
    assert!(status.success(), "{stdout}\n{stderr}");

    // The user is told where to go and which code to expect.
    assert!(
        stderr.contains(&format!("{VERIFICATION_URI}?user_code={USER_CODE}")),
        "{stderr}"
    );
    assert!(stderr.contains(USER_CODE), "{stderr}");
    let dir = cache_dir(home.path());
    let token_path = dir.join(SESSION_TOKEN_FILE);
    assert!(
        stdout.contains(&token_path.display().to_string()),
        "{stdout}"
    );

    // The calls, as the CLI makes them.
    let registers = fake.requests_to("/client/register");
    assert_eq!(registers.len(), 1);
    assert_eq!(registers[0].member("clientType"), Some("public"));
    assert_eq!(
        registers[0].member("clientName"),
        Some("redshift-auth-proxy-corp")
    );
    assert_eq!(
        registers[0].body["scopes"],
        serde_json::json!(["sso:account:access"])
    );
    let starts = fake.requests_to("/device_authorization");
    assert_eq!(starts.len(), 1);
    assert_eq!(
        starts[0].member("startUrl"),
        Some("https://example.awsapps.com/start")
    );
    let polls = fake.requests_to("/token");
    assert_eq!(polls.len(), 3, "two pending answers, then the token");
    assert!(
        polls
            .iter()
            .all(|p| p.member("grantType") == Some(DEVICE_CODE_GRANT))
    );
    assert!(
        polls
            .iter()
            .all(|p| !p.headers.contains_key("authorization")),
        "SSO OIDC calls are unsigned"
    );
    // The service asked for a 1 s interval.
    for pair in polls.windows(2) {
        assert!(pair[1].at - pair[0].at >= Duration::from_millis(950));
    }

    // The token file: the CLI's name and fields, the token the service issued.
    let issued = fake.issued();
    assert_eq!(issued.len(), 1);
    let token = read_json(&token_path);
    assert_eq!(
        keys(&token),
        [
            "accessToken",
            "clientId",
            "clientSecret",
            "expiresAt",
            "refreshToken",
            "region",
            "registrationExpiresAt",
            "startUrl"
        ]
    );
    assert_eq!(token["startUrl"], "https://example.awsapps.com/start");
    assert_eq!(token["region"], "us-east-1");
    assert_eq!(token["accessToken"], issued[0].access_token.as_str());
    assert_eq!(token["refreshToken"], issued[0].refresh_token.as_str());
    assert_eq!(token["clientId"], issued[0].client_id.as_str());
    let expires_at = cli_date(&token["expiresAt"]);
    let expected = unix_now() + TOKEN_LIFETIME_SECS;
    assert!(
        expires_at.abs_diff(expected) < 60,
        "{expires_at} vs {expected}"
    );
    let registration_expires_at = cli_date(&token["registrationExpiresAt"]);
    assert!(registration_expires_at > unix_now() + 80 * 86_400);

    // The client registration file, as the CLI caches it.
    let registration = read_json(&dir.join(SESSION_REGISTRATION_FILE));
    assert_eq!(
        keys(&registration),
        ["clientId", "clientSecret", "expiresAt", "scopes"]
    );
    assert_eq!(registration["clientId"], token["clientId"]);
    assert_eq!(registration["clientSecret"], token["clientSecret"]);
    assert_eq!(
        cli_date(&registration["expiresAt"]),
        registration_expires_at
    );
    assert_eq!(
        registration["scopes"],
        serde_json::json!(["sso:account:access"])
    );

    // Private files, a private directory, nothing else left behind.
    assert_eq!(mode(&token_path), 0o600);
    assert_eq!(mode(&dir.join(SESSION_REGISTRATION_FILE)), 0o600);
    assert_eq!(mode(&dir), 0o700);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("cache dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, [SESSION_REGISTRATION_FILE, SESSION_TOKEN_FILE]);

    // No secret reaches the terminal.
    for secret in [
        issued[0].access_token.as_str(),
        issued[0].refresh_token.as_str(),
        token["clientSecret"].as_str().expect("secret"),
    ] {
        assert!(!stdout.contains(secret) && !stderr.contains(secret));
    }

    // Signing in again reuses the cached registration, as the CLI does, and replaces the token.
    let (status, stdout, stderr) = sso_login(home.path(), &fake, &["--profile", "analytics"]).await;
    assert!(status.success(), "{stdout}\n{stderr}");
    assert_eq!(fake.requests_to("/client/register").len(), 1);
    let issued = fake.issued();
    assert_eq!(issued.len(), 2);
    assert_eq!(issued[1].client_id, issued[0].client_id);
    assert_eq!(
        read_json(&token_path)["accessToken"],
        issued[1].access_token.as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_legacy_form_is_named_after_the_start_url_and_aws_profile_picks_it() {
    let fake = FakeSsoOidc::start().await;
    // One pending answer: the user is told (and the browser tried) only when one comes.
    fake.pending_polls(1);
    let home = home_with(LEGACY_CONFIG);
    let command = ProxyCommand::new(&["sso-login"])
        .env("HOME", Some(&home.path().to_string_lossy()))
        // A desktop to open the page on, as far as the command can tell.
        .env("DISPLAY", Some(":0"))
        .env("AWS_ENDPOINT_URL_SSO_OIDC", Some(&fake.uri()))
        .env("AWS_PROFILE", Some("legacy"))
        // No opener on PATH: the page is printed and the sign-in goes on.
        .env("PATH", Some("/nonexistent"));
    let (status, stdout, stderr) = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("sso-login runs");
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("Could not open a browser"), "{stderr}");
    assert!(stdout.contains("profile `legacy`"), "{stdout}");

    let registers = fake.requests_to("/client/register");
    assert_eq!(registers.len(), 1);
    assert!(
        registers[0].body.get("scopes").is_none(),
        "no scopes for the legacy form"
    );
    let dir = cache_dir(home.path());
    let token = read_json(&dir.join(LEGACY_TOKEN_FILE));
    assert_eq!(token["startUrl"], "https://legacy.awsapps.com/start");
    assert_eq!(token["region"], "us-east-1");
    assert_eq!(token["accessToken"], fake.issued()[0].access_token.as_str());
    cli_date(&token["expiresAt"]);
    let registration = read_json(&dir.join(LEGACY_REGISTRATION_FILE));
    assert_eq!(
        keys(&registration),
        ["clientId", "clientSecret", "expiresAt"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_down_adds_five_seconds_to_the_interval() {
    let fake = FakeSsoOidc::start().await;
    fake.slow_down_first();
    let home = home_with(SESSION_CONFIG);
    let (status, stdout, stderr) = sso_login(home.path(), &fake, &["--profile", "analytics"]).await;
    assert!(status.success(), "{stdout}\n{stderr}");
    let polls = fake.requests_to("/token");
    assert_eq!(polls.len(), 2, "slow_down, then the token");
    let gap = polls[1].at - polls[0].at;
    assert!(
        gap >= Duration::from_secs(6),
        "1 s interval + 5 s: waited {gap:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_sign_in_says_so_and_writes_no_token() {
    let fake = FakeSsoOidc::start().await;
    fake.pending_polls(1);
    fake.set_outcome(Outcome::Deny);
    let home = home_with(SESSION_CONFIG);
    let (status, stdout, stderr) = sso_login(home.path(), &fake, &["--profile", "analytics"]).await;
    assert_eq!(status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("the sign-in was denied (User denied the authorization request)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("run `redshift-auth-proxy sso-login --profile analytics` again"),
        "{stderr}"
    );
    assert!(!cache_dir(home.path()).join(SESSION_TOKEN_FILE).exists());
    assert_eq!(fake.requests_to("/token").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_code_says_so_and_writes_no_token() {
    let fake = FakeSsoOidc::start().await;
    fake.pending_polls(1);
    fake.set_outcome(Outcome::Expire);
    let home = home_with(LEGACY_CONFIG);
    let (status, stdout, stderr) = sso_login(home.path(), &fake, &["--profile", "legacy"]).await;
    assert_eq!(status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!(
            "the sign-in code {USER_CODE} expired before it was approved"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("run `redshift-auth-proxy sso-login --profile legacy` again and approve the code within 10 minutes"),
        "{stderr}"
    );
    assert!(!cache_dir(home.path()).join(LEGACY_TOKEN_FILE).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_past_its_lifetime_ends_the_wait_even_if_the_service_never_says() {
    let fake = FakeSsoOidc::start().await;
    fake.pending_polls(usize::MAX);
    fake.set_code_lifetime(2);
    let home = home_with(SESSION_CONFIG);
    let started = std::time::Instant::now();
    let (status, stdout, stderr) = sso_login(home.path(), &fake, &["--profile", "analytics"]).await;
    assert_eq!(status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!(
            "the sign-in code {USER_CODE} expired before it was approved"
        )),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(fake.requests_to("/token").len() >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_cached_registration_is_replaced() {
    let fake = FakeSsoOidc::start().await;
    let home = home_with(SESSION_CONFIG);
    let (status, _, stderr) = sso_login(home.path(), &fake, &["--profile", "analytics"]).await;
    assert!(status.success(), "{stderr}");
    fake.forget_clients();
    let (status, _, stderr) = sso_login(home.path(), &fake, &["--profile", "analytics"]).await;
    assert!(status.success(), "{stderr}");
    assert_eq!(fake.requests_to("/client/register").len(), 2);
    let issued = fake.issued();
    let registration = read_json(&cache_dir(home.path()).join(SESSION_REGISTRATION_FILE));
    assert_eq!(registration["clientId"], issued[1].client_id.as_str());
    assert_ne!(issued[1].client_id, issued[0].client_id);

    // A registration the service refuses right after registering is reported, not retried.
    fake.forget_clients();
    fake.forget_new_clients();
    let (status, _, stderr) = sso_login(home.path(), &fake, &["--profile", "analytics"]).await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("StartDeviceAuthorization failed: InvalidClientException: Invalid client"),
        "{stderr}"
    );
    assert_eq!(
        fake.requests_to("/client/register").len(),
        3,
        "one new registration, once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_that_cannot_sign_in_say_why() {
    let fake = FakeSsoOidc::start().await;
    let home = home_with(LEGACY_CONFIG);
    let (status, _, stderr) = sso_login(home.path(), &fake, &["--profile", "nope"]).await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("there is no profile `nope`")
            && stderr.contains("profiles found: keys, legacy"),
        "{stderr}"
    );
    let (status, _, stderr) = sso_login(home.path(), &fake, &["--profile", "keys"]).await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("profile `keys` is not an SSO profile"),
        "{stderr}"
    );
    assert!(
        fake.requests().is_empty(),
        "nothing was asked of the service"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_service_names_the_endpoint_variable() {
    let home = home_with(SESSION_CONFIG);
    let closed = crate::support::pg::free_port();
    let command = ProxyCommand::new(&["sso-login", "--no-browser", "--profile", "analytics"])
        .env("HOME", Some(&home.path().to_string_lossy()))
        .env(
            "AWS_ENDPOINT_URL_SSO_OIDC",
            Some(&format!("http://127.0.0.1:{closed}")),
        );
    let (status, _, stderr) = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("sso-login runs");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("IAM Identity Center (SSO OIDC, region us-east-1): RegisterClient failed: cannot reach the SSO OIDC endpoint (set AWS_ENDPOINT_URL_SSO_OIDC"),
        "{stderr}"
    );
}

/// botocore's own SSO token code (what the AWS CLI and boto3 run) reads `path`'s sign-in for
/// `profile`: the JSON the check script printed.
async fn botocore_reads(python: &Path, home: &Path, profile: &str) -> Value {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/drivers/botocore_sso_cache_check.py");
    let output = tokio::process::Command::new(python)
        .arg(&script)
        .arg(profile)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        // Any SSO OIDC call would fail here: the token must be used as written.
        .env("AWS_ENDPOINT_URL_SSO_OIDC", "http://127.0.0.1:1")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn botocore_reads_what_sso_login_wrote_in_both_forms() {
    let Some(python) = redshift_connector::python() else {
        return;
    };
    let fake = FakeSsoOidc::start().await;
    let home = home_with(&format!("{SESSION_CONFIG}\n{LEGACY_CONFIG}"));
    for (profile, form) in [("analytics", "sso-session"), ("legacy", "legacy")] {
        let (status, stdout, stderr) = sso_login(home.path(), &fake, &["--profile", profile]).await;
        assert!(status.success(), "{stdout}\n{stderr}");
        let issued = fake.issued().pop().expect("a token");
        let read = botocore_reads(&python, home.path(), profile).await;
        assert_eq!(read["form"], form);
        assert_eq!(read["accessToken"], issued.access_token.as_str(), "{read}");
        let expires_at = issued
            .expires_at
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        let read_expiry = read["expiresAt"].as_u64().expect("seconds");
        assert!(
            read_expiry.abs_diff(expires_at) < 60,
            "{read} vs {expires_at}"
        );
    }
}

/// The bearer tokens the SSO portal received.
fn portal_tokens(fake: &FakeAws) -> Vec<String> {
    fake.requests()
        .iter()
        .filter(|r| r.api == Api::SsoGetRoleCredentials)
        .map(|r| r.sso_bearer_token().unwrap_or("(none)").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_signs_in_with_what_sso_login_wrote() {
    for (user, profile, config) in [
        ("sso_login_session", "analytics", SESSION_CONFIG),
        ("sso_login_legacy", "legacy", LEGACY_CONFIG),
    ] {
        let (server, fake) = prepared(user).await;
        let oidc = FakeSsoOidc::start().await;
        oidc.pending_polls(1);
        let link = chain_proxy(server, &fake, user, false, &["--aws-profile", profile]);
        link.aws_file("config", config);
        let (status, stdout, stderr) = sso_login(link.home(), &oidc, &["--profile", profile]).await;
        assert!(status.success(), "{stdout}\n{stderr}");
        let token = oidc.issued().pop().expect("a token").access_token;

        // --check, then a served login: each exchanged sso-login's token at the portal, and
        // the keys the portal issued signed GetClusterCredentials.
        let requests = link.check_and_serve(&fake).await;
        assert_eq!(portal_tokens(&fake), [token.clone(), token], "{profile}");
        assert_eq!(
            redshift_signers(&requests),
            ["ASIAFAKESSO0001", "ASIAFAKESSO0002"],
            "{profile}"
        );
    }
}

/// Logs in through `proxy` as the target's user, or the SQLSTATE and message it was refused with.
async fn login(proxy: &ProxyProcess) -> Result<String, (String, String)> {
    match tokio_postgres::connect(&proxy.conninfo("someone", "dev"), tokio_postgres::NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            Ok(current_user(&client).await)
        }
        Err(e) => Err(db_error(&e)),
    }
}

/// How a test ends the SSO session before a serving proxy meets it.
#[derive(Debug, Clone, Copy)]
enum SessionEnd {
    /// The portal refuses the cached token, which has not reached its `expiresAt`: signed
    /// out, revoked or past the session duration.
    SignedOut,
    /// The cached token is past its `expiresAt` (and has no registration to refresh it).
    Expired,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serving_proxy_says_to_run_sso_login_and_then_uses_it() {
    for (user, profile, config, end) in [
        (
            "sso_login_relegacy",
            "legacy",
            LEGACY_CONFIG,
            SessionEnd::SignedOut,
        ),
        (
            "sso_login_resession",
            "analytics",
            SESSION_CONFIG,
            SessionEnd::SignedOut,
        ),
        (
            "sso_login_reexpired",
            "analytics",
            SESSION_CONFIG,
            SessionEnd::Expired,
        ),
    ] {
        let (server, fake) = prepared(user).await;
        let oidc = FakeSsoOidc::start().await;
        let link = chain_proxy(server, &fake, user, false, &["--aws-profile", profile]);
        link.aws_file("config", config);
        let home = link.home().to_owned();
        let (file, start_url) = if profile == "legacy" {
            (LEGACY_TOKEN_FILE, "https://legacy.awsapps.com/start")
        } else {
            (SESSION_TOKEN_FILE, "https://example.awsapps.com/start")
        };
        let expires_at = match end {
            SessionEnd::SignedOut => "2099-01-01T00:00:00Z",
            SessionEnd::Expired => "2020-01-01T00:00:00Z",
        };
        link.aws_file(
            &format!("sso/cache/{file}"),
            &format!(
                r#"{{"startUrl": "{start_url}", "region": "us-east-1", "accessToken": "old-token", "expiresAt": "{expires_at}"}}"#
            ),
        );
        fake.sso_refuse_token("old-token");
        let proxy = link.serve();
        let (code, message) = login(&proxy).await.expect_err("the session has ended");
        assert_eq!(code, "28000", "{message}");
        assert!(
            message.contains(&format!(
                "redshift-auth-proxy sso-login --profile {profile}"
            )),
            "{profile} {end:?}: {message}"
        );

        let (status, stdout, stderr) = sso_login(&home, &oidc, &["--profile", profile]).await;
        assert!(status.success(), "{stdout}\n{stderr}");
        let token = oidc.issued().pop().expect("a token").access_token;

        // No restart: once the refusal is no longer remembered, the next client logs in.
        let mut last = None;
        let logged_in = eventually(Duration::from_secs(20), async || {
            let outcome = login(&proxy).await;
            let ok = outcome.as_deref() == Ok(&*format!("IAM:{user}"));
            last = Some(outcome);
            ok
        })
        .await;
        assert!(logged_in, "{profile} {end:?}: {last:?}\n{}", proxy.log());
        assert_eq!(
            portal_tokens(&fake).last(),
            Some(&token),
            "{profile} {end:?}"
        );
    }
}
