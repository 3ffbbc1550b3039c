//! The fake AWS endpoint speaks what the real AWS SDK sends and parses: real SDK clients,
//! pointed at the fake, get the credentials it issued (user, password, expiration as the SDK's
//! `DateTime`) and its errors as the SDK's typed errors. Retries are off so one call is one
//! request.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::support::fake_aws::{
    Api, FakeAws, FakeError, StsFailure, parse_form, parse_json_object,
};
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_credential_types::Credentials;
use aws_sdk_redshift::config::Region;
use aws_sdk_redshift::error::ProvideErrorMetadata;
use aws_sdk_redshift::operation::RequestId;
use aws_sdk_redshift::operation::get_cluster_credentials::GetClusterCredentialsError;
use aws_sdk_redshiftserverless::operation::get_credentials::GetCredentialsError;
use aws_smithy_types::DateTime;

async fn sdk_config(fake: &FakeAws) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(fake.uri())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .retry_config(RetryConfig::disabled())
        .load()
        .await
}

async fn redshift(fake: &FakeAws) -> aws_sdk_redshift::Client {
    aws_sdk_redshift::Client::new(&sdk_config(fake).await)
}

async fn serverless(fake: &FakeAws) -> aws_sdk_redshiftserverless::Client {
    aws_sdk_redshiftserverless::Client::new(&sdk_config(fake).await)
}

/// Seconds from now until `t` (negative if past).
fn secs_from_now(t: &DateTime) -> f64 {
    t.as_secs_f64() - DateTime::from(SystemTime::now()).as_secs_f64()
}

/// The HTTP status of the response an SDK error came from.
macro_rules! status {
    ($err:expr) => {
        $err.raw_response().map(|r| r.status().as_u16())
    };
}

#[tokio::test]
async fn get_cluster_credentials_with_groups_and_auto_create() {
    let fake = FakeAws::start().await;
    let client = redshift(&fake).await;
    let out = client
        .get_cluster_credentials()
        .cluster_identifier("c1")
        .db_user("alice")
        .db_name("dev")
        .duration_seconds(1800)
        .auto_create(true)
        .db_groups("analysts")
        .db_groups("loaders")
        .send()
        .await
        .expect("GetClusterCredentials");

    let requests = fake.requests();
    eprintln!(
        "GetClusterCredentials request as sent by the SDK: {:#?}",
        requests[0]
    );
    assert_eq!(requests.len(), 1, "exactly one call");
    let req = &requests[0];
    assert_eq!(req.api, Api::GetClusterCredentials);
    assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/"));
    assert_eq!(
        req.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(req.param("Action"), Some("GetClusterCredentials"));
    assert_eq!(req.param("Version"), Some("2012-12-01"));
    assert_eq!(req.param("DbUser"), Some("alice"));
    assert_eq!(req.param("DbName"), Some("dev"));
    assert_eq!(req.param("ClusterIdentifier"), Some("c1"));
    assert_eq!(req.param("DurationSeconds"), Some("1800"));
    assert_eq!(req.param("AutoCreate"), Some("true"));
    assert_eq!(req.param("DbGroups.DbGroup.1"), Some("analysts"));
    assert_eq!(req.param("DbGroups.DbGroup.2"), Some("loaders"));
    assert_eq!(req.db_groups(), vec!["analysts", "loaders"]);
    assert_eq!(req.signing_region(), Some("us-east-1"));
    assert_eq!(req.signing_service(), Some("redshift"));
    assert_eq!(req.access_key_id(), Some("AKIDTEST"));

    let issued = fake.issued();
    assert_eq!(issued.len(), 1);
    let issued = &issued[0];
    assert_eq!(issued.db_user, "IAMA:alice");
    assert_eq!(issued.db_name.as_deref(), Some("dev"));
    assert!(issued.next_refresh_time.is_none());
    assert_eq!(out.db_user(), Some("IAMA:alice"));
    assert_eq!(out.db_password(), Some(issued.password.as_str()));
    assert!(issued.password.len() >= 32, "{}", issued.password);
    let expiration = out.expiration().expect("expiration");
    assert_eq!(*expiration, DateTime::from(issued.expiration));
    let left = secs_from_now(expiration);
    assert!((1790.0..=1800.0).contains(&left), "{left}");
}

#[tokio::test]
async fn get_cluster_credentials_uses_the_password_set_for_the_user() {
    let fake = FakeAws::start().await;
    fake.set_password_for("alice", "pw-for-alice");
    fake.set_password_for("IAM:bob", "pw-for-bob");
    let client = redshift(&fake).await;
    let alice = client
        .get_cluster_credentials()
        .cluster_identifier("c1")
        .db_user("alice")
        .send()
        .await
        .expect("alice");
    assert_eq!(alice.db_user(), Some("IAM:alice"));
    assert_eq!(alice.db_password(), Some("pw-for-alice"));
    let left = secs_from_now(alice.expiration().expect("expiration"));
    assert!((890.0..=900.0).contains(&left), "default 900 s: {left}");
    let bob = client
        .get_cluster_credentials()
        .cluster_identifier("c1")
        .db_user("bob")
        .send()
        .await
        .expect("bob");
    assert_eq!(bob.db_password(), Some("pw-for-bob"));
    let carol = client
        .get_cluster_credentials()
        .cluster_identifier("c1")
        .db_user("carol")
        .send()
        .await
        .expect("carol");
    let random = carol.db_password().expect("password");
    assert_ne!(random, "pw-for-alice");
    assert_eq!(fake.last_issued().expect("issued").password, random);
    // Unset parameters are not sent at all.
    let req = &fake.requests()[0];
    assert_eq!(req.param("AutoCreate"), None);
    assert_eq!(req.param("DurationSeconds"), None);
    assert!(req.db_groups().is_empty());

    fake.set_password("same-for-all");
    let dave = client
        .get_cluster_credentials()
        .cluster_identifier("c1")
        .db_user("dave")
        .send()
        .await
        .expect("dave");
    assert_eq!(dave.db_password(), Some("same-for-all"));
}

#[tokio::test]
async fn get_cluster_credentials_with_iam() {
    let fake = FakeAws::start().await;
    fake.set_iam_identity("bob");
    fake.set_lifetime(Duration::from_secs(20));
    let client = redshift(&fake).await;
    let out = client
        .get_cluster_credentials_with_iam()
        .cluster_identifier("c1")
        .db_name("dev")
        .duration_seconds(3600)
        .custom_domain_name("db.example.com")
        .send()
        .await
        .expect("GetClusterCredentialsWithIAM");

    let requests = fake.requests();
    eprintln!(
        "GetClusterCredentialsWithIAM request as sent by the SDK: {:#?}",
        requests[0]
    );
    assert_eq!(requests.len(), 1);
    let req = &requests[0];
    assert_eq!(req.api, Api::GetClusterCredentialsWithIam);
    assert_eq!(req.param("Action"), Some("GetClusterCredentialsWithIAM"));
    assert_eq!(req.param("Version"), Some("2012-12-01"));
    assert_eq!(req.param("ClusterIdentifier"), Some("c1"));
    assert_eq!(req.param("DbName"), Some("dev"));
    assert_eq!(req.param("DurationSeconds"), Some("3600"));
    assert_eq!(req.param("CustomDomainName"), Some("db.example.com"));
    assert_eq!(req.param("DbUser"), None);

    let issued = fake.last_issued().expect("issued");
    assert_eq!(out.db_user(), Some("IAM:bob"));
    assert_eq!(out.db_password(), Some(issued.password.as_str()));
    let expiration = out.expiration().expect("expiration");
    assert_eq!(*expiration, DateTime::from(issued.expiration));
    let left = secs_from_now(expiration);
    assert!((10.0..=20.0).contains(&left), "lifetime overrides: {left}");
    let next = out.next_refresh_time().expect("next refresh time");
    assert_eq!(
        *next,
        DateTime::from(issued.next_refresh_time.expect("issued next"))
    );
}

#[tokio::test]
async fn serverless_get_credentials() {
    let fake = FakeAws::start().await;
    fake.set_serverless_db_user("IAMR:analytics");
    let client = serverless(&fake).await;
    let out = client
        .get_credentials()
        .workgroup_name("wg1")
        .db_name("dev")
        .duration_seconds(1200)
        .send()
        .await
        .expect("GetCredentials");

    let requests = fake.requests();
    eprintln!(
        "GetCredentials request as sent by the SDK: {:#?}",
        requests[0]
    );
    assert_eq!(requests.len(), 1);
    let req = &requests[0];
    assert_eq!(req.api, Api::ServerlessGetCredentials);
    assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/"));
    assert_eq!(
        req.header("x-amz-target"),
        Some("RedshiftServerless.GetCredentials")
    );
    assert_eq!(
        req.header("content-type"),
        Some("application/x-amz-json-1.1")
    );
    assert_eq!(req.param("workgroupName"), Some("wg1"));
    assert_eq!(req.param("dbName"), Some("dev"));
    assert_eq!(req.param("durationSeconds"), Some("1200"));
    assert_eq!(req.param("customDomainName"), None);
    assert_eq!(req.signing_region(), Some("us-east-1"));
    assert_eq!(req.signing_service(), Some("redshift-serverless"));

    let issued = fake.last_issued().expect("issued");
    assert_eq!(issued.api, Api::ServerlessGetCredentials);
    assert_eq!(out.db_user(), Some("IAMR:analytics"));
    assert_eq!(out.db_password(), Some(issued.password.as_str()));
    let expiration = out.expiration().expect("expiration");
    assert_eq!(*expiration, DateTime::from(issued.expiration));
    let left = secs_from_now(expiration);
    assert!((1190.0..=1200.0).contains(&left), "{left}");
    assert_eq!(
        *out.next_refresh_time().expect("next refresh"),
        DateTime::from(issued.next_refresh_time.expect("issued next"))
    );

    // A custom domain instead of a workgroup.
    fake.set_password_for("analytics", "fixed");
    let out = client
        .get_credentials()
        .custom_domain_name("wh.example.com")
        .send()
        .await
        .expect("custom domain");
    assert_eq!(out.db_password(), Some("fixed"));
    let req = fake.requests().pop().expect("request");
    assert_eq!(req.param("customDomainName"), Some("wh.example.com"));
    assert_eq!(req.param("workgroupName"), None);
}

#[tokio::test]
async fn redshift_errors_are_the_sdks_typed_errors() {
    let fake = FakeAws::start().await;
    let client = redshift(&fake).await;
    let call = || {
        client
            .get_cluster_credentials()
            .cluster_identifier("c1")
            .db_user("alice")
            .db_name("dev")
            .send()
    };

    fake.fail_next(1, FakeError::Throttling);
    let err = call().await.expect_err("throttled");
    assert_eq!(status!(err), Some(400));
    assert_eq!(err.code(), Some("Throttling"));
    assert_eq!(err.message(), Some("Rate exceeded"));
    // The request id comes from the x-amzn-RequestId header.
    assert_eq!(
        err.as_service_error().and_then(RequestId::request_id),
        Some("fa4e0000-0000-4000-8000-000000000001")
    );
    // fail_next(1) is used up: the next call succeeds.
    call().await.expect("after one throttle");

    fake.fail_next(1, FakeError::NotFound);
    let err = call().await.expect_err("not found");
    assert_eq!(status!(err), Some(400));
    let service = err.into_service_error();
    assert!(
        matches!(service, GetClusterCredentialsError::ClusterNotFoundFault(_)),
        "{service:?}"
    );
    assert_eq!(service.code(), Some("ClusterNotFound"));
    assert_eq!(service.message(), Some("Cluster c1 not found."));

    fake.fail_next(1, FakeError::AccessDenied);
    let err = call().await.expect_err("denied");
    assert_eq!(status!(err), Some(403));
    assert_eq!(err.code(), Some("AccessDenied"));
    assert_eq!(
        err.message(),
        Some(
            "User: arn:aws:iam::123456789012:user/test is not authorized to perform: \
             redshift:GetClusterCredentials on resource: \
             arn:aws:redshift:us-east-1:123456789012:dbuser:c1/alice"
        )
    );
    assert!(
        err.as_service_error()
            .is_some_and(|e| !e.is_cluster_not_found_fault())
    );

    fake.fail_next(1, FakeError::Internal);
    let err = call().await.expect_err("internal");
    assert_eq!(status!(err), Some(500));
    assert_eq!(err.code(), Some("InternalFailure"));

    fake.fail_next(
        1,
        FakeError::Custom {
            status: 400,
            code: "UnsupportedOperation".into(),
            message: "not <here> & now".into(),
        },
    );
    let err = call().await.expect_err("custom");
    assert!(
        err.as_service_error()
            .is_some_and(GetClusterCredentialsError::is_unsupported_operation_fault)
    );
    assert_eq!(err.message(), Some("not <here> & now"));

    // WithIAM gets the same error shapes, naming its own action and resource.
    fake.fail_next(1, FakeError::AccessDenied);
    let err = client
        .get_cluster_credentials_with_iam()
        .cluster_identifier("c1")
        .db_name("dev")
        .send()
        .await
        .expect_err("denied");
    assert_eq!(err.code(), Some("AccessDenied"));
    let message = err.message().expect("message");
    assert!(
        message.contains("redshift:GetClusterCredentialsWithIAM on resource: arn:aws:redshift:us-east-1:123456789012:dbname:c1/dev"),
        "{message}"
    );
    assert_eq!(fake.requests().len(), 7, "one request per call");
    assert_eq!(fake.issued().len(), 1, "only the one success issued");
}

#[tokio::test]
async fn serverless_errors_are_the_sdks_typed_errors() {
    let fake = FakeAws::start().await;
    let client = serverless(&fake).await;
    let call = || client.get_credentials().workgroup_name("wg1").send();

    fake.fail_next(1, FakeError::NotFound);
    fake.fail_next(1, FakeError::Throttling);
    fake.fail_next(1, FakeError::AccessDenied);
    fake.fail_next(1, FakeError::Internal);

    let err = call().await.expect_err("not found");
    assert_eq!(status!(err), Some(400));
    let service = err.into_service_error();
    assert!(
        matches!(service, GetCredentialsError::ResourceNotFoundException(_)),
        "{service:?}"
    );
    assert_eq!(service.message(), Some("Workgroup wg1 not found."));

    let err = call().await.expect_err("throttled");
    assert_eq!(err.code(), Some("ThrottlingException"));
    assert_eq!(err.message(), Some("Rate exceeded"));

    let err = call().await.expect_err("denied");
    assert_eq!(err.code(), Some("AccessDeniedException"));
    let message = err.message().expect("message");
    assert!(
        message.contains(
            "redshift-serverless:GetCredentials on resource: arn:aws:redshift-serverless:us-east-1:123456789012:workgroup/wg1"
        ),
        "{message}"
    );

    let err = call().await.expect_err("internal");
    assert_eq!(status!(err), Some(500));
    assert!(
        err.as_service_error()
            .is_some_and(GetCredentialsError::is_internal_server_exception)
    );

    call().await.expect("queue drained");
    assert_eq!(fake.requests_for(Api::ServerlessGetCredentials).len(), 5);
}

#[tokio::test]
async fn always_fails_until_cleared() {
    let fake = FakeAws::start().await;
    let client = redshift(&fake).await;
    let call = || {
        client
            .get_cluster_credentials()
            .cluster_identifier("c1")
            .db_user("alice")
            .send()
    };
    fake.always(FakeError::AccessDenied);
    for _ in 0..3 {
        let err = call().await.expect_err("denied");
        assert_eq!(err.code(), Some("AccessDenied"));
    }
    fake.clear_failures();
    call().await.expect("cleared");
    assert_eq!(fake.requests().len(), 4);
    fake.clear_records();
    assert!(fake.requests().is_empty() && fake.issued().is_empty());
}

#[tokio::test]
async fn delay_holds_the_response() {
    let fake = FakeAws::start().await;
    fake.set_delay(Duration::from_millis(400));
    let client = serverless(&fake).await;
    let started = Instant::now();
    client
        .get_credentials()
        .workgroup_name("wg1")
        .send()
        .await
        .expect("delayed");
    assert!(started.elapsed() >= Duration::from_millis(400));
    fake.set_delay(Duration::ZERO);
    let started = Instant::now();
    client
        .get_credentials()
        .workgroup_name("wg1")
        .send()
        .await
        .expect("prompt");
    assert!(started.elapsed() < Duration::from_millis(400));
}

#[tokio::test]
async fn on_issue_runs_before_the_response_is_sent() {
    let fake = FakeAws::start().await;
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let hook_seen = seen.clone();
    fake.on_issue(move |issued| {
        // Something slow and blocking, like creating the role with psql.
        std::thread::sleep(Duration::from_millis(100));
        hook_seen
            .lock()
            .unwrap()
            .push((issued.db_user.clone(), issued.password.clone()));
    });
    let out = redshift(&fake)
        .await
        .get_cluster_credentials()
        .cluster_identifier("c1")
        .db_user("alice")
        .send()
        .await
        .expect("credentials");
    // The hook has already run by the time the SDK has the answer.
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![(
            "IAM:alice".to_owned(),
            out.db_password().expect("password").to_owned()
        )]
    );
}

#[tokio::test]
async fn unknown_operations_are_refused_in_their_protocol() {
    let fake = FakeAws::start().await;
    let err = redshift(&fake)
        .await
        .describe_clusters()
        .send()
        .await
        .expect_err("not faked");
    assert_eq!(err.code(), Some("InvalidAction"));
    let err = serverless(&fake)
        .await
        .list_workgroups()
        .send()
        .await
        .expect_err("not faked");
    assert_eq!(err.code(), Some("UnknownOperationException"));
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    assert!(requests.iter().all(|r| r.api == Api::Unknown));
    assert!(fake.issued().is_empty());
}

#[test]
fn body_parsers() {
    let form =
        parse_form("Action=GetClusterCredentials&DbUser=a%2Bb+c&DbGroups.DbGroup.1=x%3Dy&Flag");
    assert_eq!(form["Action"], "GetClusterCredentials");
    assert_eq!(form["DbUser"], "a+b c");
    assert_eq!(form["DbGroups.DbGroup.1"], "x=y");
    assert_eq!(form["Flag"], "");
    let json = parse_json_object(
        r#" {"workgroupName":"wg\"1\u00e9","durationSeconds": 900 ,"x":{"a":[1,2]},"b":true} "#,
    );
    assert_eq!(json["workgroupName"], "wg\"1é");
    assert_eq!(json["durationSeconds"], "900");
    assert_eq!(json["x"], r#"{"a":[1,2]}"#);
    assert_eq!(json["b"], "true");
}

async fn sts(fake: &FakeAws) -> aws_sdk_sts::Client {
    aws_sdk_sts::Client::new(&sdk_config(fake).await)
}

async fn sso_portal(fake: &FakeAws) -> aws_sdk_sso::Client {
    aws_sdk_sso::Client::new(&sdk_config(fake).await)
}

#[tokio::test]
async fn assume_role_hands_out_recognisable_keys_and_denies_in_stss_shape() {
    use aws_sdk_sts::error::ProvideErrorMetadata as _;
    let fake = FakeAws::start().await;
    let client = sts(&fake).await;
    let out = client
        .assume_role()
        .role_arn("arn:aws:iam::123456789012:role/reader")
        .role_session_name("wire-test")
        .external_id("ext-9")
        .send()
        .await
        .expect("AssumeRole");
    let credentials = out.credentials().expect("credentials");
    assert_eq!(credentials.access_key_id(), "ASIAFAKESTS0001");
    assert_eq!(
        credentials.session_token(),
        fake.aws_keys()[0].session_token
    );
    let lifetime = secs_from_now(credentials.expiration());
    assert!((3500.0..=3600.0).contains(&lifetime), "{lifetime}");
    assert_eq!(
        out.assumed_role_user().map(|u| u.arn()),
        Some("arn:aws:sts::123456789012:assumed-role/reader/wire-test")
    );
    let request = &fake.requests_for(Api::StsAssumeRole)[0];
    assert_eq!(request.param("Version"), Some("2011-06-15"));
    assert_eq!(request.param("ExternalId"), Some("ext-9"));
    assert_eq!(request.access_key_id(), Some("AKIDTEST"));
    assert_eq!(request.signing_service(), Some("sts"));

    fake.sts_fail(StsFailure::AccessDenied);
    let err = client
        .assume_role()
        .role_arn("arn:aws:iam::123456789012:role/reader")
        .role_session_name("wire-test")
        .send()
        .await
        .expect_err("denied");
    assert_eq!(status!(err), Some(403));
    let service = err.into_service_error();
    assert_eq!(service.code(), Some("AccessDenied"));
    assert_eq!(
        service.message(),
        Some(
            "User: arn:aws:iam::123456789012:user/owner-of-AKIDTEST is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::123456789012:role/reader"
        )
    );
}

#[tokio::test]
async fn web_identity_refusals_are_stss_typed_errors() {
    use aws_sdk_sts::operation::assume_role_with_web_identity::AssumeRoleWithWebIdentityError;
    let fake = FakeAws::start().await;
    let client = sts(&fake).await;
    let call = || {
        client
            .assume_role_with_web_identity()
            .role_arn("arn:aws:iam::123456789012:role/irsa")
            .role_session_name("pod")
            .web_identity_token("eyJ.token.sig")
            .send()
    };
    let out = call().await.expect("AssumeRoleWithWebIdentity");
    assert_eq!(
        out.credentials().map(|c| c.access_key_id()),
        Some("ASIAFAKESTS0001")
    );
    assert_eq!(
        fake.requests_for(Api::StsAssumeRoleWithWebIdentity)[0].param("WebIdentityToken"),
        Some("eyJ.token.sig")
    );
    fake.sts_fail(StsFailure::InvalidIdentityToken);
    let err = call().await.expect_err("invalid").into_service_error();
    assert!(
        matches!(
            err,
            AssumeRoleWithWebIdentityError::InvalidIdentityTokenException(_)
        ),
        "{err:?}"
    );
    fake.sts_fail(StsFailure::ExpiredWebIdentityToken);
    let err = call().await.expect_err("expired").into_service_error();
    assert!(
        matches!(
            err,
            AssumeRoleWithWebIdentityError::ExpiredTokenException(_)
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_sso_portal_hands_out_keys_for_a_live_token_and_refuses_a_dead_one() {
    use aws_sdk_sso::error::ProvideErrorMetadata as _;
    use aws_sdk_sso::operation::get_role_credentials::GetRoleCredentialsError;
    let fake = FakeAws::start().await;
    fake.sso_refuse_token("dead-token");
    let client = sso_portal(&fake).await;
    let call = |token: &'static str| {
        client
            .get_role_credentials()
            .account_id("123456789012")
            .role_name("Analyst")
            .access_token(token)
            .send()
    };
    let out = call("live-token").await.expect("GetRoleCredentials");
    let credentials = out.role_credentials().expect("roleCredentials");
    assert_eq!(credentials.access_key_id(), Some("ASIAFAKESSO0001"));
    let millis = credentials.expiration();
    let lifetime = secs_from_now(&DateTime::from_millis(millis));
    assert!((3500.0..=3600.0).contains(&lifetime), "{lifetime}");
    let request = &fake.requests_for(Api::SsoGetRoleCredentials)[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("GET", "/federation/credentials")
    );
    assert_eq!(request.sso_bearer_token(), Some("live-token"));
    assert_eq!(request.param("account_id"), Some("123456789012"));
    assert_eq!(request.param("role_name"), Some("Analyst"));
    assert_eq!(
        request.access_key_id(),
        None,
        "the portal call is not signed"
    );

    let err = call("dead-token").await.expect_err("refused");
    assert_eq!(status!(err), Some(401));
    let service = err.into_service_error();
    assert!(
        matches!(service, GetRoleCredentialsError::UnauthorizedException(_)),
        "{service:?}"
    );
    assert_eq!(
        service.message(),
        Some("Session token not found or invalid")
    );
}
