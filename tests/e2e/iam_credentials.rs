//! IAM database credentials end to end: the real proxy binary, pointed at a fake of the AWS
//! credential APIs (real awsQuery and awsJson1_1 bodies) with `--aws-endpoint-url`, static
//! test keys and no instance metadata, in front of the real PostgreSQL harness, driven by
//! tokio-postgres. The harness creates the `IAM:`/`IAMR:` roles with the passwords the fake
//! hands out, so a working session proves the proxy logged in with what AWS returned.

use std::time::{Duration, Instant};

use crate::support::fake_aws::{Api, FakeAws, FakeError};
use crate::support::pg::{self, PgServer, current_user, db_error};
use crate::support::proxy_process::{ProxyCommand, ProxyProcess, TEST_SECRET_ACCESS_KEY};
use tokio_postgres::NoTls;

/// Arguments for a proxy on a free port in front of the shared server.
fn proxy_args(server: &PgServer, fake: &FakeAws, target_options: &str) -> (u16, Vec<String>) {
    let port = pg::free_port();
    let args = vec![
        format!(
            "localhost:{}/dev?region=us-east-1&{target_options}",
            server.port()
        ),
        "--port".to_owned(),
        port.to_string(),
        "--upstream-ca".to_owned(),
        server.ca_pem_path().display().to_string(),
        "--aws-endpoint-url".to_owned(),
        fake.uri(),
        "--connect-timeout".to_owned(),
        "5s".to_owned(),
    ];
    (port, args)
}

fn start_proxy(server: &PgServer, fake: &FakeAws, target_options: &str) -> ProxyProcess {
    let (port, args) = proxy_args(server, fake, target_options);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ProxyCommand::new(&args).spawn(port)
}

async fn connect(
    proxy: &ProxyProcess,
    user: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(&proxy.conninfo(user, "dev"), NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioned_target_logs_in_as_the_iam_user_aws_returned() {
    let server = PgServer::shared();
    let fake = FakeAws::start().await;
    fake.set_password_for("alice", "pw-from-aws-1");
    server.set_login_password("IAM:alice", "pw-from-aws-1");
    let proxy = start_proxy(
        server,
        &fake,
        "cluster=c1&db_user=alice&db_groups=analysts,loaders",
    );

    let client = connect(&proxy, "anyone")
        .await
        .expect("connect through the proxy");
    assert_eq!(current_user(&client).await, "IAM:alice");
    drop(client);

    let calls = fake.requests_for(Api::GetClusterCredentials);
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.param("ClusterIdentifier"), Some("c1"));
    assert_eq!(call.param("DbUser"), Some("alice"));
    assert_eq!(call.param("DbName"), Some("dev"));
    assert_eq!(call.param("DurationSeconds"), Some("900"));
    assert_eq!(call.db_groups(), vec!["analysts", "loaders"]);
    assert_eq!(call.signing_region(), Some("us-east-1"));

    // Nothing secret in the log: neither the database password nor the AWS secret key.
    let log = proxy.stop();
    assert!(log.contains("connection opened"), "{log}");
    assert!(!log.contains("pw-from-aws-1"), "password in the log: {log}");
    assert!(
        !log.contains(TEST_SECRET_ACCESS_KEY),
        "AWS secret in the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_user_is_the_database_user_when_the_target_names_none() {
    let server = PgServer::shared();
    let fake = FakeAws::start().await;
    fake.set_password_for("bob", "pw-bob");
    server.set_login_password("IAM:bob", "pw-bob");
    let proxy = start_proxy(server, &fake, "cluster=c1&allowed_users=bob,carol,9lives");
    let client = connect(&proxy, "bob").await.expect("bob is allowed");
    assert_eq!(current_user(&client).await, "IAM:bob");

    let (code, message) = db_error(
        &connect(&proxy, "mallory")
            .await
            .expect_err("not on the list"),
    );
    assert_eq!(code, "28000");
    assert!(
        message.contains("\"mallory\"") && message.contains("bob, carol"),
        "{message}"
    );
    // A name AWS would refuse is refused before any call.
    let (code, message) = db_error(&connect(&proxy, "9lives").await.expect_err("bad name"));
    assert_eq!(code, "28000");
    assert!(message.contains("start with a letter"), "{message}");
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serverless_and_with_iam_targets_take_the_user_from_the_identity() {
    let server = PgServer::shared();
    let fake = FakeAws::start().await;
    fake.set_serverless_db_user("IAMR:analytics-role");
    fake.set_iam_identity("svc-etl");
    fake.set_password("pw-identity");
    server.set_login_password("IAMR:analytics-role", "pw-identity");
    server.set_login_password("IAM:svc-etl", "pw-identity");

    let proxy = start_proxy(server, &fake, "workgroup=wg1&duration_seconds=1200");
    let client = connect(&proxy, "whoever").await.expect("serverless");
    assert_eq!(current_user(&client).await, "IAMR:analytics-role");
    let call = &fake.requests_for(Api::ServerlessGetCredentials)[0];
    assert_eq!(call.param("workgroupName"), Some("wg1"));
    assert_eq!(call.param("dbName"), Some("dev"));
    assert_eq!(call.param("durationSeconds"), Some("1200"));
    drop(client);
    drop(proxy);

    let proxy = start_proxy(server, &fake, "cluster=c1&iam_identity=true");
    let client = connect(&proxy, "whoever").await.expect("with IAM");
    assert_eq!(current_user(&client).await, "IAM:svc-etl");
    let call = &fake.requests_for(Api::GetClusterCredentialsWithIam)[0];
    assert_eq!(call.param("ClusterIdentifier"), Some("c1"));
    assert_eq!(call.param("DbUser"), None, "WithIAM sends no user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_on_a_cold_cache_make_one_call() {
    let server = PgServer::shared();
    let fake = FakeAws::start().await;
    fake.set_password_for("crowd", "pw-crowd");
    fake.set_delay(Duration::from_millis(500));
    server.set_login_password("IAM:crowd", "pw-crowd");
    let proxy = start_proxy(server, &fake, "cluster=c1&db_user=crowd");
    let conninfo = proxy.conninfo("x", "dev");
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let conninfo = conninfo.clone();
        tasks.push(tokio::spawn(async move {
            let (client, connection) = tokio_postgres::connect(&conninfo, NoTls).await?;
            tokio::spawn(connection);
            let row = client.query_one("select 1", &[]).await?;
            Ok::<i32, tokio_postgres::Error>(row.get(0))
        }));
    }
    for task in tasks {
        assert_eq!(task.await.expect("task").expect("session"), 1);
    }
    assert_eq!(fake.requests().len(), 1, "one API call for 200 clients");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_near_expiry_are_refreshed_before_a_client_waits() {
    let server = PgServer::shared();
    let fake = FakeAws::start().await;
    fake.set_password_for("fresh", "pw-fresh");
    // 20 s lifetime: refreshed once less than 4 s (a fifth) remain.
    fake.set_lifetime(Duration::from_secs(20));
    server.set_login_password("IAM:fresh", "pw-fresh");
    let proxy = start_proxy(server, &fake, "cluster=c1&db_user=fresh");
    drop(connect(&proxy, "x").await.expect("first"));
    assert_eq!(fake.requests().len(), 1);

    tokio::time::sleep(Duration::from_millis(16_800)).await;
    // AWS is slow now; the client must not notice.
    fake.set_delay(Duration::from_secs(2));
    let started = Instant::now();
    drop(connect(&proxy, "x").await.expect("in the refresh margin"));
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_millis(1500),
        "client waited {waited:?} on AWS"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(fake.requests().len(), 2, "refreshed in the background");
    // The old password would now be expired; the new one is used without another call.
    drop(connect(&proxy, "x").await.expect("after the refresh"));
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_and_failures_are_explained() {
    let server = PgServer::shared();
    let fake = FakeAws::start().await;
    fake.set_password_for("tom", "pw-tom");
    server.set_login_password("IAM:tom", "pw-tom");

    // Throttled once, then success.
    fake.fail_next(1, FakeError::Throttling);
    let proxy = start_proxy(server, &fake, "cluster=c1&db_user=tom");
    let client = connect(&proxy, "x").await.expect("retried past throttling");
    assert_eq!(current_user(&client).await, "IAM:tom");
    assert_eq!(fake.requests().len(), 2);
    drop(client);
    drop(proxy);

    // Access denied: 28000 naming the action and resource; remembered, so one call.
    fake.clear_records();
    fake.always(FakeError::AccessDenied);
    let proxy = start_proxy(server, &fake, "cluster=c1&db_user=tom");
    for _ in 0..5 {
        let (code, message) = db_error(&connect(&proxy, "x").await.expect_err("denied"));
        assert_eq!(code, "28000");
        assert!(
            message.contains("redshift:GetClusterCredentials on arn:aws:redshift:"),
            "{message}"
        );
        assert!(!message.contains(TEST_SECRET_ACCESS_KEY));
    }
    assert_eq!(fake.requests().len(), 1, "denial remembered");
    drop(proxy);

    // Not found: 08001 naming the cluster and region.
    fake.clear_records();
    fake.always(FakeError::NotFound);
    let proxy = start_proxy(server, &fake, "cluster=c1&db_user=tom");
    let (code, message) = db_error(&connect(&proxy, "x").await.expect_err("not found"));
    assert_eq!(code, "08001");
    assert!(
        message.contains("cluster \"c1\"") && message.contains("us-east-1"),
        "{message}"
    );
    drop(proxy);

    // Still throttled after every retry: 08001.
    fake.clear_records();
    fake.always(FakeError::Throttling);
    let proxy = start_proxy(server, &fake, "cluster=c1&db_user=tom");
    let (code, message) = db_error(&connect(&proxy, "x").await.expect_err("throttled"));
    assert_eq!(code, "08001");
    assert!(message.contains("throttling"), "{message}");
    assert!(fake.requests().len() > 1, "retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_down_and_no_aws_credentials_are_explained() {
    let server = PgServer::shared();
    let closed = pg::free_port();
    let port = pg::free_port();
    let target = format!(
        "localhost:{}/dev?cluster=c1&region=us-east-1&db_user=alice",
        server.port()
    );
    let endpoint = format!("http://127.0.0.1:{closed}");
    let port_text = port.to_string();
    let proxy = ProxyCommand::new(&[
        &target,
        "--port",
        &port_text,
        "--aws-endpoint-url",
        &endpoint,
        "--connect-timeout",
        "2s",
    ])
    .spawn(port);
    let (code, message) = db_error(&connect(&proxy, "x").await.expect_err("AWS down"));
    assert_eq!(code, "08001");
    assert!(message.contains("cannot reach the AWS API"), "{message}");
    drop(proxy);

    let proxy = ProxyCommand::new(&[
        &target,
        "--port",
        &port_text,
        "--aws-endpoint-url",
        &endpoint,
    ])
    .env("AWS_ACCESS_KEY_ID", None)
    .env("AWS_SECRET_ACCESS_KEY", None)
    .spawn(port);
    let (code, message) = db_error(&connect(&proxy, "x").await.expect_err("no AWS credentials"));
    assert_eq!(code, "28000");
    assert!(message.contains("no AWS credentials found"), "{message}");
    assert!(message.contains("~/.aws/credentials"), "{message}");
    assert!(
        message.contains("AWS_EC2_METADATA_DISABLED=true"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_logs_in_and_reports_one_line_per_target() {
    let server = PgServer::shared();
    let fake = FakeAws::start().await;
    fake.set_password_for("checker", "pw-check");
    server.set_login_password("IAM:checker", "pw-check");
    let (_, mut args) = proxy_args(server, &fake, "cluster=c1&db_user=checker");
    args.push("--check".to_owned());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let (status, stdout, stderr) = ProxyCommand::new(&argv).output();
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(stdout.starts_with("ok"), "{stdout}");
    assert!(stdout.contains("db_user=IAM:checker"), "{stdout}");
    assert!(stdout.contains("api=GetClusterCredentials"), "{stdout}");
    assert!(stdout.contains("server_version=15"), "{stdout}");

    fake.always(FakeError::AccessDenied);
    let (status, stdout, _) = ProxyCommand::new(&argv).output();
    assert_eq!(status.code(), Some(1), "{stdout}");
    assert!(
        stdout.starts_with("FAILED") && stdout.contains("redshift:GetClusterCredentials"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_the_server_refuses_is_fetched_anew() {
    let server = PgServer::shared();
    let fake = FakeAws::start().await;
    fake.set_password_for("rotated", "pw-old");
    server.set_login_password("IAM:rotated", "pw-old");
    let proxy = start_proxy(server, &fake, "cluster=c1&db_user=rotated");
    drop(connect(&proxy, "x").await.expect("first login"));

    // The user is re-created behind the proxy's back: the cached password is now wrong.
    // The server refuses it, the proxy fetches a fresh one and logs in again: the client
    // never sees the refusal (the faults suite covers the retry's limits).
    fake.set_password_for("rotated", "pw-new");
    server.set_login_password("IAM:rotated", "pw-new");
    let client = connect(&proxy, "x")
        .await
        .expect("cached password refused, fresh one fetched, login retried");
    assert_eq!(current_user(&client).await, "IAM:rotated");
    assert_eq!(fake.requests().len(), 2);
    drop(client);
    drop(
        connect(&proxy, "x")
            .await
            .expect("the fresh password is cached"),
    );
    assert_eq!(fake.requests().len(), 2);
}

/// A stand-in for the instance metadata service that refuses every request with 403, as
/// IMDS does when it is disabled; counts the requests, so the test knows the proxy asked it
/// (and not the real 169.254.169.254, which these tests never reach).
async fn refusing_metadata() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                let _ = stream.read(&mut buffer).await;
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    )
                    .await;
            });
        }
    });
    (format!("http://{address}"), asked)
}

/// The laptop case: no AWS keys, an empty HOME (no ~/.aws), and instance metadata that
/// refuses. The chain ends at metadata, and the SDK calls that "failed to load IMDS session
/// token"; the client and `--check` read instead that no AWS credentials were found, where
/// the proxy looked and how to provide some, and the default log holds the proxy's own line
/// and no multi-line or kilobyte-long line from the SDK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_aws_configuration_on_a_laptop_says_so() {
    use std::sync::atomic::Ordering;
    let server = PgServer::shared();
    let (metadata, asked) = refusing_metadata().await;
    // Never reached: the chain fails before any Redshift call.
    let unused_api = format!("http://127.0.0.1:{}", pg::free_port());
    let port = pg::free_port();
    let port_text = port.to_string();
    let target = format!(
        "localhost:{}/dev?cluster=c1&region=us-east-1&db_user=alice",
        server.port()
    );
    let laptop = |args: &[&str]| {
        ProxyCommand::new(args)
            .env("AWS_ACCESS_KEY_ID", None)
            .env("AWS_SECRET_ACCESS_KEY", None)
            .env("AWS_EC2_METADATA_DISABLED", None)
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", Some(&metadata))
    };
    let assert_explained = |message: &str| {
        assert!(message.contains("no AWS credentials found"), "{message}");
        for source in [
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
            "profile `default` in ~/.aws/config and ~/.aws/credentials",
            "SSO",
            "AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN",
            "instance metadata endpoint refused",
            "aws configure",
            "aws sso login --profile default",
        ] {
            assert!(message.contains(source), "{source} missing: {message}");
        }
        assert!(!message.contains("IMDS session token"), "{message}");
        assert!(!message.contains("credential chain failed"), "{message}");
    };

    let proxy = laptop(&[
        &target,
        "--port",
        &port_text,
        "--aws-endpoint-url",
        &unused_api,
    ])
    .spawn(port);
    let (code, message) = db_error(&connect(&proxy, "x").await.expect_err("no credentials"));
    assert_eq!(code, "28000");
    assert_explained(&message);
    assert!(
        asked.load(Ordering::SeqCst) > 0,
        "the metadata stand-in was asked"
    );

    // The default (info) log: the proxy's own line says it, and whatever the SDK's crates
    // log at that level is one short line.
    let log = proxy.stop();
    assert!(
        log.lines()
            .any(|line| line.contains("redshift_auth_proxy::session")
                && line.contains("no AWS credentials found")),
        "{log}"
    );
    for line in log.lines().filter(|line| !line.is_empty()) {
        // Each event is one line starting with its timestamp: a Debug dump spilling over
        // several lines would not.
        assert!(
            line.starts_with(|c: char| c.is_ascii_digit()),
            "a continuation line: {line}\n{log}"
        );
        // A line whose target is one of the SDK's crates (aws_config, aws_smithy_*, …).
        let from_sdk = line.contains(" aws_") || line.contains(": aws_");
        assert!(!from_sdk || line.len() <= 300, "long SDK line: {line}");
    }
    assert!(!log.contains("IMDS session token"), "{log}");
    assert!(!log.contains("HttpResponse"), "SDK Debug output: {log}");

    // --check prints the same explanation on the target's line.
    let (status, stdout, _) =
        laptop(&[&target, "--aws-endpoint-url", &unused_api, "--check"]).output();
    assert_eq!(status.code(), Some(1), "{stdout}");
    assert!(stdout.starts_with("FAILED"), "{stdout}");
    assert_explained(&stdout);
}
