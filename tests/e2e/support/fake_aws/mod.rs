//! A fake of the AWS APIs the proxy and its credential chain call, served over HTTP with
//! wiremock in the real wire formats the AWS Rust SDK parses:
//!
//! - `redshift:GetClusterCredentials` and `redshift:GetClusterCredentialsWithIAM` (awsQuery: a
//!   form-encoded `POST /` with `Action=…&Version=2012-12-01`, answered with XML);
//! - `redshift-serverless:GetCredentials` (awsJson1_1: `POST /` with
//!   `X-Amz-Target: RedshiftServerless.GetCredentials` and a JSON body, answered with JSON);
//! - STS `AssumeRole` and `AssumeRoleWithWebIdentity` (awsQuery, `Version=2011-06-15`), which
//!   hand out AWS keys (`sts.rs`);
//! - the IAM Identity Center portal's `GetRoleCredentials` (restJson:
//!   `GET /federation/credentials`, bearer token in `x-amz-sso_bearer_token`), which hands
//!   out AWS keys for a signed-in SSO session (`sso_portal.rs`).
//!
//! Each set of AWS keys it hands out has its own access key id (`ASIAFAKESTS0001`,
//! `ASIAFAKESSO0002`, …, [`FakeAws::aws_keys`]), and every request records the access key id
//! that signed it, so a test can tell which link of the chain signed which call.
//!
//! Point the SDK at [`FakeAws::uri`]: the proxy's `--aws-endpoint-url` for the Redshift APIs,
//! `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL_SSO`, …) for every service
//! the chain calls. The Redshift APIs' behaviour lives in
//! shared state and may change between requests: fixed or per-user passwords, credential
//! lifetime, a response delay, and errors (once, n times, or always) in each protocol's real
//! error shape. Every request is recorded with its parameters ([`FakeAws::requests`]) and
//! every credential handed out is recorded too ([`FakeAws::issued`]).
//!
//! For end-to-end tests the database role must exist with the password the fake returns before
//! the proxy logs in. Either fix the password up front ([`FakeAws::set_password_for`] or
//! [`FakeAws::set_password`]) and create the role first, or register [`FakeAws::on_issue`]: the
//! hook runs synchronously before the response is sent, so the role can be created there.

mod redshift;
mod sso_portal;
mod sts;
mod wire;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub use sts::StsFailure;
pub use wire::{parse_form, parse_json_object};

/// The awsQuery namespace of the Redshift API.
pub const REDSHIFT_XMLNS: &str = "http://redshift.amazonaws.com/doc/2012-12-01/";
/// The account number used in ARNs of error messages.
pub const FAKE_ACCOUNT: &str = "123456789012";

/// Which API a request called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    /// `redshift:GetClusterCredentials` (awsQuery).
    GetClusterCredentials,
    /// `redshift:GetClusterCredentialsWithIAM` (awsQuery).
    GetClusterCredentialsWithIam,
    /// `redshift-serverless:GetCredentials` (awsJson1_1).
    ServerlessGetCredentials,
    /// `sts:AssumeRole` (awsQuery).
    StsAssumeRole,
    /// `sts:AssumeRoleWithWebIdentity` (awsQuery, unsigned).
    StsAssumeRoleWithWebIdentity,
    /// The SSO portal's `GetRoleCredentials` (restJson, unsigned, bearer token).
    SsoGetRoleCredentials,
    /// Anything else; answered with an error in the request's protocol.
    Unknown,
}

impl Api {
    /// Whether the API speaks awsJson1_1 (serverless) rather than awsQuery.
    pub fn is_json(self) -> bool {
        self == Api::ServerlessGetCredentials
    }

    /// The IAM action name, as used in access-denied messages.
    pub fn iam_action(self) -> &'static str {
        match self {
            Api::GetClusterCredentials => "redshift:GetClusterCredentials",
            Api::GetClusterCredentialsWithIam => "redshift:GetClusterCredentialsWithIAM",
            Api::ServerlessGetCredentials => "redshift-serverless:GetCredentials",
            Api::StsAssumeRole => "sts:AssumeRole",
            Api::StsAssumeRoleWithWebIdentity => "sts:AssumeRoleWithWebIdentity",
            Api::SsoGetRoleCredentials => "sso:GetRoleCredentials",
            Api::Unknown => "redshift:Unknown",
        }
    }
}

/// An error the fake can answer with, in the shape of the called API's protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeError {
    /// awsQuery HTTP 400 `Throttling` / awsJson HTTP 400 `ThrottlingException`, "Rate exceeded".
    Throttling,
    /// awsQuery HTTP 403 `AccessDenied` / awsJson HTTP 400 `AccessDeniedException`, with an
    /// IAM-style "User: … is not authorized to perform: … on resource: …" message.
    AccessDenied,
    /// awsQuery HTTP 400 `ClusterNotFound` / awsJson HTTP 400 `ResourceNotFoundException`.
    NotFound,
    /// awsQuery HTTP 500 `InternalFailure` / awsJson HTTP 500 `InternalServerException`.
    Internal,
    /// Any other error: HTTP status, error code and message, in the protocol's shape.
    Custom {
        /// HTTP status.
        status: u16,
        /// The error code (`Code` in XML, `__type` and `x-amzn-ErrorType` in JSON).
        code: String,
        /// The message.
        message: String,
    },
}

/// One request the fake received, parsed.
#[derive(Debug, Clone)]
pub struct FakeRequest {
    /// Which API it called.
    pub api: Api,
    /// HTTP method.
    pub method: String,
    /// URL path (the SDK uses `/`).
    pub path: String,
    /// Headers, names lower-cased (values that are not UTF-8 are left out).
    pub headers: BTreeMap<String, String>,
    /// Parameters: for awsQuery every form field (`Action`, `Version`, `DbUser`,
    /// `DbGroups.DbGroup.1`, …), for awsJson every top-level field (`workgroupName`, `dbName`,
    /// `durationSeconds`, …) with strings unquoted and other values as their JSON text; for
    /// the SSO portal the query parameters (`account_id`, `role_name`).
    pub params: BTreeMap<String, String>,
}

impl FakeRequest {
    /// One parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// One header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The awsQuery list `DbGroups` (`DbGroups.DbGroup.1`, `.2`, … in order).
    pub fn db_groups(&self) -> Vec<String> {
        (1..)
            .map_while(|i| self.params.get(&format!("DbGroups.DbGroup.{i}")).cloned())
            .collect()
    }

    /// The region of the SigV4 credential scope in `Authorization`, if signed.
    pub fn signing_region(&self) -> Option<&str> {
        self.credential_scope().and_then(|s| s.split('/').nth(2))
    }

    /// The service of the SigV4 credential scope (`redshift`, `redshift-serverless`).
    pub fn signing_service(&self) -> Option<&str> {
        self.credential_scope().and_then(|s| s.split('/').nth(3))
    }

    /// The SSO portal's bearer token (`x-amz-sso_bearer_token`).
    pub fn sso_bearer_token(&self) -> Option<&str> {
        self.header("x-amz-sso_bearer_token")
    }

    /// The access key id the request was signed with.
    pub fn access_key_id(&self) -> Option<&str> {
        self.credential_scope().and_then(|s| s.split('/').next())
    }

    fn credential_scope(&self) -> Option<&str> {
        let auth = self.header("authorization")?;
        let start = auth.find("Credential=")? + "Credential=".len();
        let rest = &auth[start..];
        Some(rest.split([',', ' ']).next().unwrap_or(rest))
    }
}

/// One set of credentials the fake handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The API that issued it.
    pub api: Api,
    /// The database user as returned (`IAM:alice`, `IAMA:alice`, `IAMR:role`): the role name
    /// to create in the database.
    pub db_user: String,
    /// The password returned.
    pub password: String,
    /// The expiration returned (whole milliseconds for Redshift, whole seconds for serverless).
    pub expiration: SystemTime,
    /// `NextRefreshTime`, for the APIs that return it.
    pub next_refresh_time: Option<SystemTime>,
    /// The database named in the request, if any.
    pub db_name: Option<String>,
}

/// One set of AWS keys the fake handed out (STS or the SSO portal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsKeys {
    /// The API that issued them.
    pub api: Api,
    /// The access key id: `ASIAFAKESTS0001`, `ASIAFAKESSO0002`, … (one counter for both).
    pub access_key_id: String,
    /// The secret key.
    pub secret_access_key: String,
    /// The session token.
    pub session_token: String,
    /// When they expire (whole seconds).
    pub expiration: SystemTime,
    /// The role assumed (STS) or the role name asked for (SSO).
    pub role: String,
}

type IssueHook = Arc<dyn Fn(&Issued) + Send + Sync>;

struct State {
    fixed_password: Option<String>,
    passwords: BTreeMap<String, String>,
    lifetime: Option<Duration>,
    delay: Duration,
    fail_queue: VecDeque<FakeError>,
    always: Option<FakeError>,
    iam_identity: String,
    serverless_db_user: String,
    requests: Vec<FakeRequest>,
    issued: Vec<Issued>,
    hook: Option<IssueHook>,
    counter: u64,
    sts_failure: Option<StsFailure>,
    sso_refused: BTreeSet<String>,
    aws_keys: Vec<AwsKeys>,
}

impl Default for State {
    fn default() -> Self {
        State {
            fixed_password: None,
            passwords: BTreeMap::new(),
            lifetime: None,
            delay: Duration::ZERO,
            fail_queue: VecDeque::new(),
            always: None,
            iam_identity: "test".to_owned(),
            serverless_db_user: "IAMR:test-role".to_owned(),
            requests: Vec::new(),
            issued: Vec::new(),
            hook: None,
            counter: 0,
            sts_failure: None,
            sso_refused: BTreeSet::new(),
            aws_keys: Vec::new(),
        }
    }
}

/// The fake AWS endpoint. Dropping it stops the server.
pub struct FakeAws {
    /// Always `Some` until dropped; see the `Drop` impl.
    server: Option<MockServer>,
    uri: String,
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for FakeAws {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeAws")
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}

impl Drop for FakeAws {
    /// wiremock's `MockServer` checks its expectations when dropped, blocking on a tokio
    /// `RwLock` with `futures::executor::block_on`. Inside a tokio task that has used up its
    /// cooperative budget (a test that has just awaited 200 finished tasks) that wait never
    /// ends: each poll of the lock is told to yield, and `block_on` polls again at once, at
    /// 100 % CPU. A thread of its own has no tokio budget, so the server is dropped there.
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            // The fake mounts no expectations, so the check cannot fail.
            let _ = std::thread::spawn(move || drop(server)).join();
        }
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl FakeAws {
    /// Starts the fake on a random local port, answering every request.
    pub async fn start() -> FakeAws {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(State::default()));
        Mock::given(any())
            .respond_with(Responder {
                state: state.clone(),
            })
            .mount(&server)
            .await;
        FakeAws {
            uri: server.uri(),
            server: Some(server),
            state,
        }
    }

    /// The base URL (`http://127.0.0.1:PORT`), for `endpoint_url` / `--aws-endpoint-url`.
    pub fn uri(&self) -> String {
        self.uri.clone()
    }

    /// Every API returns this password (unless a per-user password matches).
    pub fn set_password(&self, password: &str) {
        lock(&self.state).fixed_password = Some(password.to_owned());
    }

    /// Returns `password` whenever the database user is `user`: either the full returned name
    /// (`IAM:alice`, `IAMA:alice`, `IAMR:role`) or the bare name after the prefix (`alice`).
    /// Without a match (and no [`FakeAws::set_password`]) a fresh random password is made per
    /// call.
    pub fn set_password_for(&self, user: &str, password: &str) {
        lock(&self.state)
            .passwords
            .insert(user.to_owned(), password.to_owned());
    }

    /// Expiration = now + `lifetime` for every API (default: the requested `DurationSeconds`,
    /// or 900 s). A short lifetime makes credentials that are near expiry.
    pub fn set_lifetime(&self, lifetime: Duration) {
        lock(&self.state).lifetime = Some(lifetime);
    }

    /// Delays every response (successes and errors) by `delay`.
    pub fn set_delay(&self, delay: Duration) {
        lock(&self.state).delay = delay;
    }

    /// The next `n` requests (any API) fail with `error`, queued after earlier `fail_next` calls.
    pub fn fail_next(&self, n: usize, error: FakeError) {
        let mut state = lock(&self.state);
        state.fail_queue.extend(std::iter::repeat_n(error, n));
    }

    /// Every request fails with `error` (after any queued `fail_next` errors) until
    /// [`FakeAws::clear_failures`].
    pub fn always(&self, error: FakeError) {
        lock(&self.state).always = Some(error);
    }

    /// Forgets queued and permanent failures.
    pub fn clear_failures(&self) {
        let mut state = lock(&self.state);
        state.fail_queue.clear();
        state.always = None;
    }

    /// The IAM identity name `GetClusterCredentialsWithIAM` maps to: it returns
    /// `IAM:<name>` (default `IAM:test`).
    pub fn set_iam_identity(&self, name: &str) {
        lock(&self.state).iam_identity = name.to_owned();
    }

    /// The full database user serverless `GetCredentials` returns (default `IAMR:test-role`).
    pub fn set_serverless_db_user(&self, db_user: &str) {
        lock(&self.state).serverless_db_user = db_user.to_owned();
    }

    /// Runs `hook` for every credential issued, synchronously, before the response is sent
    /// (on wiremock's server thread, inside its Tokio runtime: block with `std` APIs such as
    /// `std::process::Command`, or a thread with its own runtime, never `Handle::block_on`).
    pub fn on_issue(&self, hook: impl Fn(&Issued) + Send + Sync + 'static) {
        lock(&self.state).hook = Some(Arc::new(hook));
    }

    /// Every request received so far, in order (failed ones included).
    pub fn requests(&self) -> Vec<FakeRequest> {
        lock(&self.state).requests.clone()
    }

    /// The requests that called `api`.
    pub fn requests_for(&self, api: Api) -> Vec<FakeRequest> {
        lock(&self.state)
            .requests
            .iter()
            .filter(|r| r.api == api)
            .cloned()
            .collect()
    }

    /// Every credential handed out so far, in order.
    pub fn issued(&self) -> Vec<Issued> {
        lock(&self.state).issued.clone()
    }

    /// The most recent credential handed out.
    pub fn last_issued(&self) -> Option<Issued> {
        lock(&self.state).issued.last().cloned()
    }

    /// Forgets recorded requests and issued credentials (behaviour settings stay).
    pub fn clear_records(&self) {
        let mut state = lock(&self.state);
        state.requests.clear();
        state.issued.clear();
    }

    /// Every STS call from now on fails with `failure` (a later call replaces it). The Redshift
    /// APIs' failures ([`FakeAws::fail_next`], [`FakeAws::always`]) do not touch STS, nor
    /// these the Redshift APIs.
    pub fn sts_fail(&self, failure: StsFailure) {
        lock(&self.state).sts_failure = Some(failure);
    }

    /// The SSO portal refuses `token` with 401 `UnauthorizedException`, as it does once the
    /// session is signed out or expired; any other token is a live session.
    pub fn sso_refuse_token(&self, token: &str) {
        lock(&self.state).sso_refused.insert(token.to_owned());
    }

    /// Every set of AWS keys STS and the SSO portal handed out, in order.
    pub fn aws_keys(&self) -> Vec<AwsKeys> {
        lock(&self.state).aws_keys.clone()
    }
}

/// New AWS keys from `api`, recorded: the access key id says who issued them (`STS` or `SSO`)
/// and counts up across both.
fn new_aws_keys(state: &mut State, api: Api, role: &str, now: SystemTime) -> AwsKeys {
    let n = state.aws_keys.len() + 1;
    let issuer = if api == Api::SsoGetRoleCredentials {
        "SSO"
    } else {
        "STS"
    };
    let keys = AwsKeys {
        api,
        access_key_id: format!("ASIAFAKE{issuer}{n:04}"),
        secret_access_key: format!("fake-secret-{issuer}-{n:04}-wJalrXUtnFEMI"),
        session_token: format!("FwoGZXIvYXdzEFAKE{issuer}{n:04}session"),
        expiration: wire::whole_secs(now + Duration::from_secs(3600)),
        role: role.to_owned(),
    };
    state.aws_keys.push(keys.clone());
    keys
}

struct Responder {
    state: Arc<Mutex<State>>,
}

impl Respond for Responder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let parsed = parse_request(request);
        let now = SystemTime::now();
        let (outcome, delay, hook, request_id) = {
            let mut state = lock(&self.state);
            state.counter += 1;
            let request_id = request_id(state.counter);
            state.requests.push(parsed.clone());
            match parsed.api {
                Api::StsAssumeRole | Api::StsAssumeRoleWithWebIdentity => {
                    return sts::answer(&mut state, &parsed, now, &request_id);
                }
                Api::SsoGetRoleCredentials => {
                    return sso_portal::answer(&mut state, &parsed, now, &request_id);
                }
                _ => {}
            }
            let failure = state
                .fail_queue
                .pop_front()
                .or_else(|| state.always.clone());
            let outcome = match (parsed.api, failure) {
                (Api::Unknown, _) => Err(redshift::unknown_operation(&parsed)),
                (_, Some(error)) => Err(error),
                (_, None) => {
                    let issued = redshift::issue(&mut state, &parsed, now);
                    state.issued.push(issued.clone());
                    Ok(issued)
                }
            };
            (outcome, state.delay, state.hook.clone(), request_id)
        };
        let template = match outcome {
            Ok(issued) => {
                if let Some(hook) = hook {
                    hook(&issued);
                }
                redshift::success(&parsed, &issued, &request_id)
            }
            Err(error) => redshift::failure(&parsed, &error, &request_id),
        };
        if delay.is_zero() {
            template
        } else {
            template.set_delay(delay)
        }
    }
}

fn request_id(n: u64) -> String {
    format!("fa4e0000-0000-4000-8000-{n:012x}")
}

fn parse_request(request: &Request) -> FakeRequest {
    let headers: BTreeMap<String, String> = request
        .headers
        .iter()
        .filter_map(|(name, value)| {
            Some((
                name.as_str().to_ascii_lowercase(),
                value.to_str().ok()?.to_owned(),
            ))
        })
        .collect();
    let body = String::from_utf8_lossy(&request.body);
    if request.url.path() == "/federation/credentials" {
        return FakeRequest {
            api: Api::SsoGetRoleCredentials,
            method: request.method.to_string(),
            path: request.url.path().to_owned(),
            headers,
            params: request.url.query_pairs().into_owned().collect(),
        };
    }
    let (api, params) = match headers.get("x-amz-target") {
        Some(target) => {
            let api = if target == "RedshiftServerless.GetCredentials" {
                Api::ServerlessGetCredentials
            } else {
                Api::Unknown
            };
            (api, parse_json_object(&body))
        }
        None => {
            let params = parse_form(&body);
            let api = match params.get("Action").map(String::as_str) {
                Some("GetClusterCredentials") => Api::GetClusterCredentials,
                Some("GetClusterCredentialsWithIAM") => Api::GetClusterCredentialsWithIam,
                Some("AssumeRole") => Api::StsAssumeRole,
                Some("AssumeRoleWithWebIdentity") => Api::StsAssumeRoleWithWebIdentity,
                _ => Api::Unknown,
            };
            (api, params)
        }
    };
    FakeRequest {
        api,
        method: request.method.to_string(),
        path: request.url.path().to_owned(),
        headers,
        params,
    }
}
