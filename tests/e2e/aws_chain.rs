//! The AWS credential chain, link by link, through the real binary: `HOME` is a temporary
//! directory holding `.aws/config`, `.aws/credentials` and `.aws/sso/cache/*.json` as the AWS
//! CLI writes them, the environment holds no AWS variable the machine has
//! (`support/proxy_process.rs` clears it) and no instance metadata, and every AWS service the
//! chain calls (STS, the SSO portal, Redshift) is the local fake, reached through the SDK's
//! standard `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>` variables. Each link is run
//! with `--check` and with a served tokio-postgres connection to the real PostgreSQL, and
//! each test asserts which access key id signed the Redshift `GetClusterCredentials` call
//! (and what reached STS or the SSO portal), so a test passes only through the link it
//! names. Each failure asserts the message `--check` prints and the client reads.

use std::time::{Duration, SystemTime};

use crate::support::aws_chain_proxy::{
    ChainProxy, chain_proxy, cli_time, prepared, redshift_signers, sso_cache_name,
};
use crate::support::fake_aws::{Api, FakeAws, StsFailure};
use crate::support::pg::PgServer;
use crate::support::proxy_process::TEST_ACCESS_KEY_ID;

const ROLE_DEPLOY: &str = "arn:aws:iam::123456789012:role/deployer";
const ROLE_PROXY: &str = "arn:aws:iam::123456789012:role/redshift-proxy";
const SSO_START_URL: &str = "https://fake-corp.awsapps.com/start";

fn in_an_hour() -> SystemTime {
    SystemTime::now() + Duration::from_secs(3600)
}

#[test]
fn the_cache_file_name_is_the_sha1_of_the_key() {
    // SHA-1("abc"), from FIPS 180's example.
    assert_eq!(
        sso_cache_name("abc"),
        "a9993e364706816aba3e25717850c26c9cd0d89d.json"
    );
}

const LEGACY_SSO_CONFIG: &str = "\
[profile sso-legacy]
sso_start_url = https://fake-corp.awsapps.com/start
sso_region = us-east-1
sso_account_id = 123456789012
sso_role_name = RedshiftAnalyst
region = us-east-1
";

const SESSION_SSO_CONFIG: &str = "\
[profile sso-new]
sso_session = corp
sso_account_id = 123456789012
sso_role_name = RedshiftAnalyst
region = us-east-1

[sso-session corp]
sso_start_url = https://fake-corp.awsapps.com/start
sso_region = us-east-1
sso_registration_scopes = sso:account:access
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_keys_sign_the_redshift_call() {
    let (server, fake) = prepared("chain_env").await;
    let link = chain_proxy(server, &fake, "chain_env", true, &[]);
    // A profile with other keys is there too: the environment comes first.
    link.aws_file(
        "credentials",
        "[default]\naws_access_key_id = AKIDPROFILEDEFAULT\naws_secret_access_key = s\n",
    );
    let requests = link.check_and_serve(&fake).await;
    assert_eq!(
        redshift_signers(&requests),
        [TEST_ACCESS_KEY_ID, TEST_ACCESS_KEY_ID]
    );
    assert!(fake.aws_keys().is_empty(), "no STS or SSO call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profiles_static_keys_sign_the_redshift_call() {
    let (server, fake) = prepared("chain_profile").await;
    let link = chain_proxy(
        server,
        &fake,
        "chain_profile",
        false,
        &["--aws-profile", "analytics"],
    );
    link.aws_file(
        "credentials",
        "[default]\naws_access_key_id = AKIDPROFILEDEFAULT\naws_secret_access_key = s\n\n[analytics]\naws_access_key_id = AKIDPROFILEANALYTICS\naws_secret_access_key = s2\n",
    );
    let requests = link.check_and_serve(&fake).await;
    assert_eq!(
        redshift_signers(&requests),
        ["AKIDPROFILEANALYTICS", "AKIDPROFILEANALYTICS"]
    );
}

const ROLE_PROFILE_CONFIG: &str = "\
[profile deploy]
role_arn = arn:aws:iam::123456789012:role/deployer
source_profile = base
role_session_name = chain-deploy
region = us-east-1
";

const BASE_CREDENTIALS: &str = "\
[base]
aws_access_key_id = AKIDBASEPROFILE
aws_secret_access_key = base-secret
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_profile_assumes_its_role_with_the_source_profiles_keys() {
    let (server, fake) = prepared("chain_role_profile").await;
    // The per-service variables instead of AWS_ENDPOINT_URL: STS and Redshift each named.
    let link = chain_proxy(
        server,
        &fake,
        "chain_role_profile",
        false,
        &["--aws-profile", "deploy"],
    )
    .env("AWS_ENDPOINT_URL", None)
    .env("AWS_ENDPOINT_URL_STS", Some(&fake.uri()))
    .env("AWS_ENDPOINT_URL_REDSHIFT", Some(&fake.uri()));
    link.aws_file("config", ROLE_PROFILE_CONFIG);
    link.aws_file("credentials", BASE_CREDENTIALS);
    let requests = link.check_and_serve(&fake).await;

    let assumed: Vec<_> = requests
        .iter()
        .filter(|r| r.api == Api::StsAssumeRole)
        .collect();
    assert_eq!(
        assumed.len(),
        2,
        "one AssumeRole per process: {requests:#?}"
    );
    for call in &assumed {
        assert_eq!(call.access_key_id(), Some("AKIDBASEPROFILE"));
        assert_eq!(call.param("RoleArn"), Some(ROLE_DEPLOY));
        assert_eq!(call.param("RoleSessionName"), Some("chain-deploy"));
    }
    let keys: Vec<String> = fake
        .aws_keys()
        .into_iter()
        .map(|k| k.access_key_id)
        .collect();
    assert_eq!(keys, ["ASIAFAKESTS0001", "ASIAFAKESTS0002"]);
    assert_eq!(redshift_signers(&requests), keys);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_arn_is_assumed_over_environment_keys_and_over_a_role_profile() {
    let (server, fake) = prepared("chain_role_arn").await;
    let flags = [
        "--role-arn",
        ROLE_PROXY,
        "--role-session-name",
        "proxy-chain-test",
        "--role-external-id",
        "ext-1234",
    ];
    // Over the environment's keys.
    let requests = chain_proxy(server, &fake, "chain_role_arn", true, &flags)
        .check_and_serve(&fake)
        .await;
    let assumed: Vec<_> = requests
        .iter()
        .filter(|r| r.api == Api::StsAssumeRole)
        .collect();
    assert_eq!(assumed.len(), 2, "{requests:#?}");
    for call in &assumed {
        assert_eq!(call.access_key_id(), Some(TEST_ACCESS_KEY_ID));
        assert_eq!(call.param("RoleArn"), Some(ROLE_PROXY));
        assert_eq!(call.param("RoleSessionName"), Some("proxy-chain-test"));
        assert_eq!(call.param("ExternalId"), Some("ext-1234"));
    }
    assert_eq!(
        redshift_signers(&requests),
        ["ASIAFAKESTS0001", "ASIAFAKESTS0002"]
    );

    // Over a role profile: the profile's role first (signed by its source profile), then
    // --role-arn with the keys that gave, and Redshift with the last keys.
    fake.clear_records();
    let mut profile_flags = flags.to_vec();
    profile_flags.extend(["--aws-profile", "deploy"]);
    let link = chain_proxy(server, &fake, "chain_role_arn", false, &profile_flags);
    link.aws_file("config", ROLE_PROFILE_CONFIG);
    link.aws_file("credentials", BASE_CREDENTIALS);
    let requests = link.check_and_serve(&fake).await;
    let calls: Vec<(Option<&str>, Option<&str>)> = requests
        .iter()
        .filter(|r| r.api == Api::StsAssumeRole)
        .map(|r| (r.access_key_id(), r.param("RoleArn")))
        .collect();
    assert_eq!(
        calls,
        [
            (Some("AKIDBASEPROFILE"), Some(ROLE_DEPLOY)),
            (Some("ASIAFAKESTS0003"), Some(ROLE_PROXY)),
            (Some("AKIDBASEPROFILE"), Some(ROLE_DEPLOY)),
            (Some("ASIAFAKESTS0005"), Some(ROLE_PROXY)),
        ]
    );
    assert_eq!(
        redshift_signers(&requests),
        ["ASIAFAKESTS0004", "ASIAFAKESTS0006"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_identity_assumes_the_role_with_the_token_files_content() {
    let (server, fake) = prepared("chain_web_identity").await;
    let link = chain_proxy(server, &fake, "chain_web_identity", false, &[]);
    let token_file = link.home().join("eks-token");
    std::fs::write(
        &token_file,
        "eyJhbGciOiJSUzI1NiJ9.fake-web-identity-token.sig",
    )
    .expect("token");
    let token_path = token_file.display().to_string();
    let link = link
        .env("AWS_WEB_IDENTITY_TOKEN_FILE", Some(&token_path))
        .env("AWS_ROLE_ARN", Some(ROLE_PROXY))
        .env("AWS_ROLE_SESSION_NAME", Some("irsa-session"));
    let requests = link.check_and_serve(&fake).await;
    let assumed: Vec<_> = requests
        .iter()
        .filter(|r| r.api == Api::StsAssumeRoleWithWebIdentity)
        .collect();
    assert_eq!(assumed.len(), 2, "{requests:#?}");
    for call in &assumed {
        assert_eq!(
            call.param("WebIdentityToken"),
            Some("eyJhbGciOiJSUzI1NiJ9.fake-web-identity-token.sig")
        );
        assert_eq!(call.param("RoleArn"), Some(ROLE_PROXY));
        assert_eq!(call.param("RoleSessionName"), Some("irsa-session"));
        assert_eq!(call.access_key_id(), None, "the call is not signed");
    }
    assert_eq!(
        redshift_signers(&requests),
        ["ASIAFAKESTS0001", "ASIAFAKESTS0002"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_sso_profile_uses_the_cached_token() {
    let (server, fake) = prepared("chain_sso_legacy").await;
    let link = chain_proxy(
        server,
        &fake,
        "chain_sso_legacy",
        false,
        &["--aws-profile", "sso-legacy"],
    )
    .env("AWS_ENDPOINT_URL", None)
    .env("AWS_ENDPOINT_URL_SSO", Some(&fake.uri()))
    .env("AWS_ENDPOINT_URL_REDSHIFT", Some(&fake.uri()));
    link.aws_file("config", LEGACY_SSO_CONFIG);
    link.legacy_sso_cache(SSO_START_URL, "legacy-access-token", in_an_hour());
    let requests = link.check_and_serve(&fake).await;
    let portal: Vec<_> = requests
        .iter()
        .filter(|r| r.api == Api::SsoGetRoleCredentials)
        .collect();
    assert_eq!(portal.len(), 2, "{requests:#?}");
    for call in &portal {
        assert_eq!(call.method, "GET");
        assert_eq!(call.sso_bearer_token(), Some("legacy-access-token"));
        assert_eq!(call.param("account_id"), Some("123456789012"));
        assert_eq!(call.param("role_name"), Some("RedshiftAnalyst"));
    }
    assert_eq!(
        redshift_signers(&requests),
        ["ASIAFAKESSO0001", "ASIAFAKESSO0002"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sso_session_profile_uses_the_cached_token() {
    let (server, fake) = prepared("chain_sso_session").await;
    let link = chain_proxy(
        server,
        &fake,
        "chain_sso_session",
        false,
        &["--aws-profile", "sso-new"],
    );
    link.aws_file("config", SESSION_SSO_CONFIG);
    link.session_sso_cache(
        "corp",
        SSO_START_URL,
        "session-access-token",
        in_an_hour(),
        SystemTime::now() + Duration::from_secs(90 * 86400),
    );
    let requests = link.check_and_serve(&fake).await;
    let tokens: Vec<Option<&str>> = requests
        .iter()
        .filter(|r| r.api == Api::SsoGetRoleCredentials)
        .map(|r| r.sso_bearer_token())
        .collect();
    assert_eq!(
        tokens,
        [Some("session-access-token"), Some("session-access-token")]
    );
    assert_eq!(
        redshift_signers(&requests),
        ["ASIAFAKESSO0001", "ASIAFAKESSO0002"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_process_output_signs_the_redshift_call() {
    let (server, fake) = prepared("chain_process").await;
    let link = chain_proxy(
        server,
        &fake,
        "chain_process",
        false,
        &["--aws-profile", "proc"],
    );
    let script = link.home().join("print-credentials.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncat <<'JSON'\n{{\"Version\": 1, \"AccessKeyId\": \"AKIDFROMPROCESS\", \"SecretAccessKey\": \"process-secret\", \"SessionToken\": \"process-session\", \"Expiration\": \"{}\"}}\nJSON\n",
            cli_time(in_an_hour())
        ),
    )
    .expect("script");
    let status = std::process::Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .expect("chmod");
    assert!(status.success());
    link.aws_file(
        "config",
        &format!(
            "[profile proc]\ncredential_process = {}\nregion = us-east-1\n",
            script.display()
        ),
    );
    let requests = link.check_and_serve(&fake).await;
    assert_eq!(
        redshift_signers(&requests),
        ["AKIDFROMPROCESS", "AKIDFROMPROCESS"]
    );
}

const SSO_EXPIRED_FIX: [&str; 2] = [
    "run `aws sso login --profile sso-",
    "(or `redshift-auth-proxy sso-login --profile sso-",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sso_token_the_portal_refuses_says_to_sign_in_again() {
    let (server, fake) = prepared("chain_sso_refused").await;
    fake.sso_refuse_token("revoked-access-token");
    let link = chain_proxy(
        server,
        &fake,
        "chain_sso_refused",
        false,
        &["--aws-profile", "sso-legacy"],
    );
    link.aws_file("config", LEGACY_SSO_CONFIG);
    link.legacy_sso_cache(SSO_START_URL, "revoked-access-token", in_an_hour());
    let mut expected = vec![
        "the AWS SSO session of profile `sso-legacy` has expired (the SSO portal refused its access token)",
        "aws sso login --profile sso-legacy",
        "redshift-auth-proxy sso-login --profile sso-legacy",
    ];
    expected.extend(SSO_EXPIRED_FIX);
    link.refused(&expected).await;
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.sso_bearer_token() == Some("revoked-access-token")),
        "the portal was asked"
    );
    assert!(fake.requests_for(Api::GetClusterCredentials).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sso_token_expired_in_the_cache_says_to_sign_in_again() {
    let (server, fake) = prepared("chain_sso_expired").await;
    let link = chain_proxy(
        server,
        &fake,
        "chain_sso_expired",
        false,
        &["--aws-profile", "sso-new"],
    );
    link.aws_file("config", SESSION_SSO_CONFIG);
    // Expired an hour ago, and the client registration too: the SDK cannot refresh it.
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    link.session_sso_cache(
        "corp",
        SSO_START_URL,
        "stale-access-token",
        hour_ago,
        hour_ago,
    );
    let mut expected = vec![
        "the AWS SSO session of profile `sso-new` has expired (its cached token has expired",
        "aws sso login --profile sso-new",
    ];
    expected.extend(SSO_EXPIRED_FIX);
    link.refused(&expected).await;
    assert!(
        fake.requests().is_empty(),
        "nothing was sent with an expired token: {:#?}",
        fake.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_that_does_not_exist_is_named_with_the_profiles_found() {
    let (server, fake) = prepared("chain_no_profile").await;
    let link = chain_proxy(
        server,
        &fake,
        "chain_no_profile",
        false,
        &["--aws-profile", "analytcs"],
    );
    link.aws_file("config", ROLE_PROFILE_CONFIG);
    link.aws_file("credentials", BASE_CREDENTIALS);
    link.refused(&[
        "AWS profile `analytcs` does not exist",
        "the profiles in ~/.aws/config and ~/.aws/credentials are: base, deploy",
        "--aws-profile or AWS_PROFILE",
    ])
    .await;
    assert!(fake.requests().is_empty(), "{:#?}", fake.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_profile_that_does_not_exist_is_named() {
    let (server, fake) = prepared("chain_no_source").await;
    let link = chain_proxy(
        server,
        &fake,
        "chain_no_source",
        false,
        &["--aws-profile", "deploy"],
    );
    // `base` is missing: the role profile's keys come from nowhere.
    link.aws_file("config", ROLE_PROFILE_CONFIG);
    link.aws_file(
        "credentials",
        "[other]\naws_access_key_id = AKIDOTHER\naws_secret_access_key = s\n",
    );
    link.refused(&[
        "AWS profile `deploy` takes its keys from source_profile `base`, which does not exist",
        "are: deploy, other",
    ])
    .await;
    assert!(fake.requests().is_empty(), "{:#?}", fake.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_web_identity_token_file_is_named_with_the_os_error() {
    let (server, fake) = prepared("chain_no_token").await;
    let link = chain_proxy(server, &fake, "chain_no_token", false, &[]);
    let missing = link.home().join("no-such-token").display().to_string();
    let link = link
        .env("AWS_WEB_IDENTITY_TOKEN_FILE", Some(&missing))
        .env("AWS_ROLE_ARN", Some(ROLE_PROXY));
    let expected_start = format!(
        "the web identity token file {missing} (AWS_WEB_IDENTITY_TOKEN_FILE) cannot be read: No such file or directory (os error 2)"
    );
    link.refused(&[&expected_start, "eks.amazonaws.com/role-arn"])
        .await;
    assert!(fake.requests().is_empty(), "{:#?}", fake.requests());
}

/// A proxy whose chain reaches web identity with the token in `path`.
fn link_for(server: &PgServer, fake: &FakeAws, user: &'static str, path: &str) -> ChainProxy {
    chain_proxy(server, fake, user, false, &[])
        .env("AWS_WEB_IDENTITY_TOKEN_FILE", Some(path))
        .env("AWS_ROLE_ARN", Some(ROLE_PROXY))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_identity_token_sts_refuses_gives_stss_reason() {
    let (server, fake) = prepared("chain_token_refused").await;
    fake.sts_fail(StsFailure::ExpiredWebIdentityToken);
    let tokens = tempfile::tempdir().expect("token dir");
    let token_file = tokens.path().join("token");
    std::fs::write(&token_file, "expired-token").expect("token");
    let path = token_file.display().to_string();
    let link = link_for(server, &fake, "chain_token_refused", &path);
    let expected = format!(
        "AWS STS refused the web identity token in {path} (ExpiredTokenException: Token expired"
    );
    link.refused(&[&expected]).await;

    // A token whose issuer the account does not trust.
    fake.sts_fail(StsFailure::InvalidIdentityToken);
    let link = link_for(server, &fake, "chain_token_refused", &path);
    let (status, stdout, _) = link.command.output_with(&["--check"]);
    assert_eq!(status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "AWS STS refused the web identity token in {path} (InvalidIdentityToken: No OpenIDConnect provider"
        )),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_access_denied_names_the_role_the_caller_and_the_trust_policy() {
    let (server, fake) = prepared("chain_denied").await;
    fake.sts_fail(StsFailure::AccessDenied);
    let link = chain_proxy(
        server,
        &fake,
        "chain_denied",
        true,
        &["--role-arn", ROLE_PROXY],
    );
    let expected = format!(
        "AWS STS denied sts:AssumeRole on role {ROLE_PROXY} to arn:aws:iam::123456789012:user/owner-of-{TEST_ACCESS_KEY_ID}"
    );
    link.refused(&[
        &expected,
        "the role's trust policy must allow arn:aws:iam::123456789012:user/owner-of-AKIDTESTPROXY to assume it",
    ])
    .await;
    assert!(fake.requests_for(Api::GetClusterCredentials).is_empty());
}
