//! A fake of the three AWS credential APIs the proxy calls, served over HTTP with wiremock in
//! the real wire formats the AWS Rust SDK parses:
//!
//! - `redshift:GetClusterCredentials` and `redshift:GetClusterCredentialsWithIAM` (awsQuery: a
//!   form-encoded `POST /` with `Action=…&Version=2012-12-01`, answered with XML);
//! - `redshift-serverless:GetCredentials` (awsJson1_1: `POST /` with
//!   `X-Amz-Target: RedshiftServerless.GetCredentials` and a JSON body, answered with JSON).
//!
//! Point the SDK (or the proxy's `--aws-endpoint-url`) at [`FakeAws::uri`]. Behaviour lives in
//! shared state and may change between requests: fixed or per-user passwords, credential
//! lifetime, a response delay, and errors (once, n times, or always) in each protocol's real
//! error shape. Every request is recorded with its parameters ([`FakeAws::requests`]) and
//! every credential handed out is recorded too ([`FakeAws::issued`]).
//!
//! For end-to-end tests the database role must exist with the password the fake returns before
//! the proxy logs in. Either fix the password up front ([`FakeAws::set_password_for`] or
//! [`FakeAws::set_password`]) and create the role first, or register [`FakeAws::on_issue`]: the
//! hook runs synchronously before the response is sent, so the role can be created there.

use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

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
    /// `durationSeconds`, …) with strings unquoted and other values as their JSON text.
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
            let failure = state
                .fail_queue
                .pop_front()
                .or_else(|| state.always.clone());
            let outcome = match (parsed.api, failure) {
                (Api::Unknown, _) => Err(unknown_operation(&parsed)),
                (_, Some(error)) => Err(error),
                (_, None) => {
                    let issued = issue(&mut state, &parsed, now);
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
                success(&parsed, &issued, &request_id)
            }
            Err(error) => failure(&parsed, &error, &request_id),
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

fn issue(state: &mut State, request: &FakeRequest, now: SystemTime) -> Issued {
    let db_user = match request.api {
        Api::GetClusterCredentials => {
            let auto = request
                .param("AutoCreate")
                .is_some_and(|v| v.eq_ignore_ascii_case("true"));
            let prefix = if auto { "IAMA" } else { "IAM" };
            format!("{prefix}:{}", request.param("DbUser").unwrap_or_default())
        }
        Api::GetClusterCredentialsWithIam => format!("IAM:{}", state.iam_identity),
        Api::ServerlessGetCredentials | Api::Unknown => state.serverless_db_user.clone(),
    };
    let bare = db_user.split_once(':').map_or(db_user.as_str(), |(_, b)| b);
    let password = state
        .passwords
        .get(&db_user)
        .or_else(|| state.passwords.get(bare))
        .or(state.fixed_password.as_ref())
        .cloned()
        .unwrap_or_else(|| random_password(state.counter));
    let duration_param = if request.api.is_json() {
        "durationSeconds"
    } else {
        "DurationSeconds"
    };
    let lifetime = state.lifetime.unwrap_or_else(|| {
        let secs = request
            .param(duration_param)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(900);
        Duration::from_secs(secs)
    });
    // Redshift writes milliseconds; serverless gets whole seconds (see `epoch_seconds`).
    let expiration = if request.api.is_json() {
        whole_secs(now + lifetime)
    } else {
        whole_millis(now + lifetime)
    };
    let next_refresh_time = match request.api {
        Api::GetClusterCredentials => None,
        _ => Some(expiration),
    };
    let db_name = match request.api {
        Api::ServerlessGetCredentials => request.param("dbName"),
        _ => request.param("DbName"),
    }
    .map(str::to_owned);
    Issued {
        api: request.api,
        db_user,
        password,
        expiration,
        next_refresh_time,
        db_name,
    }
}

fn whole_secs(t: SystemTime) -> SystemTime {
    let since = t.duration_since(UNIX_EPOCH).expect("after 1970");
    UNIX_EPOCH + Duration::from_secs(since.as_secs())
}

fn whole_millis(t: SystemTime) -> SystemTime {
    let since = t.duration_since(UNIX_EPOCH).expect("after 1970");
    UNIX_EPOCH + Duration::from_millis(since.as_millis() as u64)
}

/// A password shaped like Redshift's (base64 alphabet, including `+` and `/`).
fn random_password(n: u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let random = RandomState::new();
    let mut out = String::from("Fk");
    for i in 0..5u64 {
        let mut h = random.build_hasher();
        h.write_u64(n);
        h.write_u64(i);
        let mut bits = h.finish();
        for _ in 0..8 {
            out.push(ALPHABET[(bits & 63) as usize] as char);
            bits >>= 6;
        }
    }
    out
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// ISO 8601 with milliseconds, as Redshift writes timestamps (`2026-01-02T03:04:05.678Z`).
fn iso8601(t: SystemTime) -> String {
    let millis = t
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64;
    let whole = DateTime::from_secs(millis.div_euclid(1000))
        .fmt(Format::DateTime)
        .expect("format");
    format!(
        "{}.{:03}Z",
        whole.trim_end_matches('Z'),
        millis.rem_euclid(1000)
    )
}

/// Epoch seconds as awsJson services write timestamps: a double in Java's notation
/// (`1.795580855E9`). Whole seconds only, so the SDK's `f64` parse is exact.
fn epoch_seconds(t: SystemTime) -> String {
    let digits = t
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        .to_string();
    let (first, rest) = digits.split_at(1);
    let rest = rest.trim_end_matches('0');
    let rest = if rest.is_empty() { "0" } else { rest };
    format!("{first}.{rest}E{}", digits.len() - 1)
}

fn success(request: &FakeRequest, issued: &Issued, request_id: &str) -> ResponseTemplate {
    match request.api {
        Api::ServerlessGetCredentials => {
            let mut body = format!(
                "{{\"dbUser\":{},\"dbPassword\":{},\"expiration\":{}",
                json_string(&issued.db_user),
                json_string(&issued.password),
                epoch_seconds(issued.expiration)
            );
            if let Some(next) = issued.next_refresh_time {
                body.push_str(&format!(",\"nextRefreshTime\":{}", epoch_seconds(next)));
            }
            body.push('}');
            json_response(200, body, request_id)
        }
        api => {
            let name = if api == Api::GetClusterCredentials {
                "GetClusterCredentials"
            } else {
                "GetClusterCredentialsWithIAM"
            };
            let mut result = format!(
                "    <DbUser>{}</DbUser>\n    <DbPassword>{}</DbPassword>\n    <Expiration>{}</Expiration>\n",
                xml_escape(&issued.db_user),
                xml_escape(&issued.password),
                iso8601(issued.expiration)
            );
            if let Some(next) = issued.next_refresh_time {
                result.push_str(&format!(
                    "    <NextRefreshTime>{}</NextRefreshTime>\n",
                    iso8601(next)
                ));
            }
            let body = format!(
                "<{name}Response xmlns=\"{REDSHIFT_XMLNS}\">\n  <{name}Result>\n{result}  </{name}Result>\n  <ResponseMetadata>\n    <RequestId>{request_id}</RequestId>\n  </ResponseMetadata>\n</{name}Response>\n"
            );
            xml_response(200, body, request_id)
        }
    }
}

fn unknown_operation(request: &FakeRequest) -> FakeError {
    let name = request
        .header("x-amz-target")
        .or(request.param("Action"))
        .unwrap_or("(none)");
    if request.header("x-amz-target").is_some() {
        FakeError::Custom {
            status: 400,
            code: "UnknownOperationException".to_owned(),
            message: format!("The fake does not implement {name}"),
        }
    } else {
        FakeError::Custom {
            status: 400,
            code: "InvalidAction".to_owned(),
            message: format!("The action {name} is not valid for this web service."),
        }
    }
}

fn denied_resource(request: &FakeRequest) -> String {
    let region = request.signing_region().unwrap_or("us-east-1");
    match request.api {
        Api::GetClusterCredentials => format!(
            "arn:aws:redshift:{region}:{FAKE_ACCOUNT}:dbuser:{}/{}",
            request.param("ClusterIdentifier").unwrap_or_default(),
            request.param("DbUser").unwrap_or_default()
        ),
        Api::GetClusterCredentialsWithIam => format!(
            "arn:aws:redshift:{region}:{FAKE_ACCOUNT}:dbname:{}/{}",
            request.param("ClusterIdentifier").unwrap_or_default(),
            request.param("DbName").unwrap_or("dev")
        ),
        _ => format!(
            "arn:aws:redshift-serverless:{region}:{FAKE_ACCOUNT}:workgroup/{}",
            request.param("workgroupName").unwrap_or_default()
        ),
    }
}

fn failure(request: &FakeRequest, error: &FakeError, request_id: &str) -> ResponseTemplate {
    let json = request.api.is_json()
        || (request.api == Api::Unknown && request.header("x-amz-target").is_some());
    let denied = || {
        format!(
            "User: arn:aws:iam::{FAKE_ACCOUNT}:user/test is not authorized to perform: {} on resource: {}",
            request.api.iam_action(),
            denied_resource(request)
        )
    };
    let (status, code, message) = match (error, json) {
        (FakeError::Throttling, false) => {
            (400, "Throttling".to_owned(), "Rate exceeded".to_owned())
        }
        (FakeError::Throttling, true) => (
            400,
            "ThrottlingException".to_owned(),
            "Rate exceeded".to_owned(),
        ),
        (FakeError::AccessDenied, false) => (403, "AccessDenied".to_owned(), denied()),
        (FakeError::AccessDenied, true) => (400, "AccessDeniedException".to_owned(), denied()),
        (FakeError::NotFound, false) => (
            400,
            "ClusterNotFound".to_owned(),
            format!(
                "Cluster {} not found.",
                request.param("ClusterIdentifier").unwrap_or_default()
            ),
        ),
        (FakeError::NotFound, true) => (
            400,
            "ResourceNotFoundException".to_owned(),
            format!(
                "Workgroup {} not found.",
                request.param("workgroupName").unwrap_or_default()
            ),
        ),
        (FakeError::Internal, false) => (
            500,
            "InternalFailure".to_owned(),
            "An internal error has occurred. Please try again later.".to_owned(),
        ),
        (FakeError::Internal, true) => (
            500,
            "InternalServerException".to_owned(),
            "An internal error has occurred. Please try again later.".to_owned(),
        ),
        (
            FakeError::Custom {
                status,
                code,
                message,
            },
            _,
        ) => (*status, code.clone(), message.clone()),
    };
    if json {
        let body = format!(
            "{{\"__type\":{},\"message\":{}}}",
            json_string(&code),
            json_string(&message)
        );
        json_response(status, body, request_id).insert_header("x-amzn-ErrorType", code.as_str())
    } else {
        let kind = if status >= 500 { "Receiver" } else { "Sender" };
        let body = format!(
            "<ErrorResponse xmlns=\"{REDSHIFT_XMLNS}\">\n  <Error>\n    <Type>{kind}</Type>\n    <Code>{}</Code>\n    <Message>{}</Message>\n  </Error>\n  <RequestId>{request_id}</RequestId>\n</ErrorResponse>\n",
            xml_escape(&code),
            xml_escape(&message)
        );
        xml_response(status, body, request_id)
    }
}

fn xml_response(status: u16, body: String, request_id: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("x-amzn-RequestId", request_id)
        .set_body_raw(body, "text/xml")
}

fn json_response(status: u16, body: String, request_id: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("x-amzn-RequestId", request_id)
        .set_body_raw(body, "application/x-amz-json-1.1")
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

/// Parses `application/x-www-form-urlencoded` (`+` is a space, `%XX` a byte).
pub fn parse_form(body: &str) -> BTreeMap<String, String> {
    body.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses the top level of a JSON object: strings are unescaped, other values (numbers,
/// booleans, null, nested values) are kept as their JSON text. Malformed input yields what was
/// read before the problem.
pub fn parse_json_object(body: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut p = JsonCursor {
        s: body.as_bytes(),
        i: 0,
    };
    p.ws();
    if !p.eat(b'{') {
        return out;
    }
    loop {
        p.ws();
        if p.eat(b'}') {
            break;
        }
        let Some(key) = p.string() else { break };
        p.ws();
        if !p.eat(b':') {
            break;
        }
        p.ws();
        let value = if p.peek() == Some(b'"') {
            p.string()
        } else {
            p.raw_value()
        };
        let Some(value) = value else { break };
        out.insert(key, value);
        p.ws();
        if !p.eat(b',') {
            break;
        }
    }
    out
}

struct JsonCursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl JsonCursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn string(&mut self) -> Option<String> {
        if !self.eat(b'"') {
            return None;
        }
        let mut out: Vec<u8> = Vec::new();
        loop {
            let b = self.peek()?;
            self.i += 1;
            match b {
                b'"' => return String::from_utf8(out).ok(),
                b'\\' => {
                    let e = self.peek()?;
                    self.i += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'u' => {
                            let hex = std::str::from_utf8(self.s.get(self.i..self.i + 4)?).ok()?;
                            self.i += 4;
                            let mut code = u32::from_str_radix(hex, 16).ok()?;
                            if (0xD800..0xDC00).contains(&code)
                                && self.s.get(self.i..self.i + 2) == Some(b"\\u")
                            {
                                let low = std::str::from_utf8(self.s.get(self.i + 2..self.i + 6)?)
                                    .ok()?;
                                let low = u32::from_str_radix(low, 16).ok()?;
                                self.i += 6;
                                code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                            }
                            let c = char::from_u32(code).unwrap_or('\u{FFFD}');
                            out.extend_from_slice(c.to_string().as_bytes());
                        }
                        other => out.push(other),
                    }
                }
                other => out.push(other),
            }
        }
    }

    /// A non-string value: up to the `,` or `}` that ends it at depth 0.
    fn raw_value(&mut self) -> Option<String> {
        let start = self.i;
        let mut depth = 0i32;
        let mut in_string = false;
        while let Some(b) = self.peek() {
            if in_string {
                match b {
                    b'\\' => self.i += 1,
                    b'"' => in_string = false,
                    _ => {}
                }
            } else {
                match b {
                    b'"' => in_string = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' if depth > 0 => depth -= 1,
                    b',' | b'}' if depth == 0 => break,
                    _ => {}
                }
            }
            self.i += 1;
        }
        let raw = std::str::from_utf8(self.s.get(start..self.i)?).ok()?;
        Some(raw.trim().to_owned())
    }
}
