//! A fake of IAM Identity Center's SSO OIDC service, the three operations of the OAuth device
//! authorization flow, over HTTP with wiremock in the service's restJson1 wire format (the
//! paths and JSON member names of the aws-sdk-ssooidc models):
//!
//! - `POST /client/register` (RegisterClient): `clientName`, `clientType`, `scopes` →
//!   `clientId`, `clientSecret`, `clientIdIssuedAt`, `clientSecretExpiresAt`;
//! - `POST /device_authorization` (StartDeviceAuthorization): `clientId`, `clientSecret`,
//!   `startUrl` → `deviceCode`, `userCode`, `verificationUri`, `verificationUriComplete`,
//!   `expiresIn`, `interval`;
//! - `POST /token` (CreateToken): `clientId`, `clientSecret`, `grantType`, `deviceCode` →
//!   `accessToken`, `tokenType`, `expiresIn`, `refreshToken`.
//!
//! Errors are HTTP 400 (401 for an unknown client) with the exception's name in
//! `x-amzn-ErrorType` and an OAuth body `{"error": "authorization_pending",
//! "error_description": "…"}`, as the service sends them. `CreateToken` answers
//! `authorization_pending` for the first [`FakeSsoOidc::pending_polls`] polls of a device
//! code, optionally `slow_down` first, then what [`FakeSsoOidc::set_outcome`] says: a token,
//! `access_denied` or `expired_token`. Every request is recorded with its time.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The code the user would check on the verification page.
pub const USER_CODE: &str = "FAKE-CODE";
/// The verification page.
pub const VERIFICATION_URI: &str = "https://device.sso.us-east-1.amazonaws.com/";
/// How long a token lasts (8 hours, the service's default session).
pub const TOKEN_LIFETIME_SECS: u64 = 8 * 3600;
/// The device flow's grant type, which CreateToken must be called with.
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// What CreateToken answers once the pending polls are used up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The user approved: a token.
    Approve,
    /// The user refused: `AccessDeniedException`.
    Deny,
    /// Nobody approved in time: `ExpiredTokenException`.
    Expire,
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct OidcRequest {
    /// The URL path (`/client/register`, `/device_authorization`, `/token`).
    pub path: String,
    /// Headers, names lower-cased.
    pub headers: BTreeMap<String, String>,
    /// The JSON body (`Null` when it is not JSON).
    pub body: Value,
    /// When it arrived.
    pub at: Instant,
}

impl OidcRequest {
    /// A string member of the body.
    pub fn member(&self, name: &str) -> Option<&str> {
        self.body.get(name).and_then(Value::as_str)
    }
}

/// One token the fake issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The bearer token.
    pub access_token: String,
    /// The refresh token.
    pub refresh_token: String,
    /// The client it was issued to.
    pub client_id: String,
    /// When it expires (whole seconds).
    pub expires_at: SystemTime,
}

struct State {
    pending_polls: usize,
    slow_down_first: bool,
    outcome: Outcome,
    code_lifetime_secs: u64,
    remember_clients: bool,
    /// clientId → clientSecret.
    clients: BTreeMap<String, String>,
    /// deviceCode → (clientId, CreateToken calls so far).
    devices: BTreeMap<String, (String, usize)>,
    requests: Vec<OidcRequest>,
    issued: Vec<IssuedToken>,
    counter: u64,
}

/// The fake SSO OIDC endpoint. Dropping it stops the server.
pub struct FakeSsoOidc {
    /// Always `Some` until dropped; see the `Drop` impl.
    server: Option<MockServer>,
    uri: String,
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for FakeSsoOidc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeSsoOidc")
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}

impl Drop for FakeSsoOidc {
    /// Dropped on a thread of its own, for the reason `FakeAws`'s drop gives: wiremock's
    /// blocking check never ends inside a tokio task out of cooperative budget.
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = std::thread::spawn(move || drop(server)).join();
        }
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl FakeSsoOidc {
    /// Starts the fake on a random local port: no pending polls, approving at once.
    pub async fn start() -> FakeSsoOidc {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(State {
            pending_polls: 0,
            slow_down_first: false,
            outcome: Outcome::Approve,
            code_lifetime_secs: 600,
            remember_clients: true,
            clients: BTreeMap::new(),
            devices: BTreeMap::new(),
            requests: Vec::new(),
            issued: Vec::new(),
            counter: 0,
        }));
        Mock::given(any())
            .respond_with(Responder {
                state: state.clone(),
            })
            .mount(&server)
            .await;
        FakeSsoOidc {
            uri: server.uri(),
            server: Some(server),
            state,
        }
    }

    /// The base URL, for `AWS_ENDPOINT_URL_SSO_OIDC`.
    pub fn uri(&self) -> String {
        self.uri.clone()
    }

    /// CreateToken answers `authorization_pending` this many times per device code first.
    pub fn pending_polls(&self, n: usize) {
        lock(&self.state).pending_polls = n;
    }

    /// The `expiresIn` StartDeviceAuthorization gives (default 600 s); the fake itself never
    /// expires a code.
    pub fn set_code_lifetime(&self, secs: u64) {
        lock(&self.state).code_lifetime_secs = secs;
    }

    /// The first CreateToken of each device code answers `slow_down`.
    pub fn slow_down_first(&self) {
        lock(&self.state).slow_down_first = true;
    }

    /// What CreateToken answers after the pending polls.
    pub fn set_outcome(&self, outcome: Outcome) {
        lock(&self.state).outcome = outcome;
    }

    /// Forgets every registered client, as when a registration is revoked: calls with
    /// their ids get `InvalidClientException`.
    pub fn forget_clients(&self) {
        lock(&self.state).clients.clear();
    }

    /// From now on, registrations succeed but are not remembered, as if revoked at once:
    /// every later call with them gets `InvalidClientException`.
    pub fn forget_new_clients(&self) {
        lock(&self.state).remember_clients = false;
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<OidcRequest> {
        lock(&self.state).requests.clone()
    }

    /// The requests to `path`.
    pub fn requests_to(&self, path: &str) -> Vec<OidcRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Every token issued so far.
    pub fn issued(&self) -> Vec<IssuedToken> {
        lock(&self.state).issued.clone()
    }
}

struct Responder {
    state: Arc<Mutex<State>>,
}

impl Respond for Responder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let mut state = lock(&self.state);
        state.requests.push(OidcRequest {
            path: request.url.path().to_owned(),
            headers: request
                .headers
                .iter()
                .filter_map(|(name, value)| {
                    Some((
                        name.as_str().to_ascii_lowercase(),
                        value.to_str().ok()?.to_owned(),
                    ))
                })
                .collect(),
            body: body.clone(),
            at: Instant::now(),
        });
        if request.method.as_str() != "POST" {
            return error(
                400,
                "InvalidRequestException",
                "invalid_request",
                "POST only",
            );
        }
        let member = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_owned);
        match request.url.path() {
            "/client/register" => register(&mut state, member("clientName"), member("clientType")),
            "/device_authorization" => {
                if let Some(refused) = check_client(&state, &member) {
                    return refused;
                }
                let Some(_start_url) = member("startUrl") else {
                    return error(
                        400,
                        "InvalidRequestException",
                        "invalid_request",
                        "startUrl is required",
                    );
                };
                state.counter += 1;
                let device_code = format!("fake-device-code-{}", state.counter);
                let client_id = member("clientId").unwrap_or_default();
                state.devices.insert(device_code.clone(), (client_id, 0));
                ok(json!({
                    "deviceCode": device_code,
                    "userCode": USER_CODE,
                    "verificationUri": VERIFICATION_URI,
                    "verificationUriComplete": format!("{VERIFICATION_URI}?user_code={USER_CODE}"),
                    "expiresIn": state.code_lifetime_secs,
                    "interval": 1,
                }))
            }
            "/token" => create_token(&mut state, &member),
            _ => error(
                404,
                "UnknownOperationException",
                "invalid_request",
                "no such operation",
            ),
        }
    }
}

fn register(
    state: &mut State,
    name: Option<String>,
    client_type: Option<String>,
) -> ResponseTemplate {
    if name.is_none() || client_type.as_deref() != Some("public") {
        return error(
            400,
            "InvalidClientMetadataException",
            "invalid_client_metadata",
            "clientName and clientType=public are required",
        );
    }
    state.counter += 1;
    let client_id = format!("fake-client-id-{}", state.counter);
    let client_secret = format!("fake-client-secret-{}", state.counter);
    if state.remember_clients {
        state
            .clients
            .insert(client_id.clone(), client_secret.clone());
    }
    let now = unix_now();
    ok(json!({
        "clientId": client_id,
        "clientSecret": client_secret,
        "clientIdIssuedAt": now,
        "clientSecretExpiresAt": now + 90 * 86_400,
    }))
}

fn check_client(
    state: &State,
    member: &dyn Fn(&str) -> Option<String>,
) -> Option<ResponseTemplate> {
    let known = match (member("clientId"), member("clientSecret")) {
        (Some(id), Some(secret)) => state.clients.get(&id) == Some(&secret),
        _ => false,
    };
    (!known).then(|| {
        error(
            401,
            "InvalidClientException",
            "invalid_client",
            "Invalid client",
        )
    })
}

fn create_token(state: &mut State, member: &dyn Fn(&str) -> Option<String>) -> ResponseTemplate {
    if let Some(refused) = check_client(state, member) {
        return refused;
    }
    if member("grantType").as_deref() != Some(DEVICE_CODE_GRANT) {
        return error(
            400,
            "UnsupportedGrantTypeException",
            "unsupported_grant_type",
            "Unsupported grant type",
        );
    }
    let (pending_polls, slow_down_first, outcome) =
        (state.pending_polls, state.slow_down_first, state.outcome);
    let Some((client_id, polls)) =
        member("deviceCode").and_then(|code| state.devices.get_mut(&code))
    else {
        return error(
            400,
            "InvalidGrantException",
            "invalid_grant",
            "Invalid device code provided",
        );
    };
    *polls += 1;
    let poll = *polls;
    let client_id = client_id.clone();
    let extra = usize::from(slow_down_first);
    if slow_down_first && poll == 1 {
        return error(
            400,
            "SlowDownException",
            "slow_down",
            "Client is polling too quickly",
        );
    }
    if poll <= pending_polls + extra {
        return error(
            400,
            "AuthorizationPendingException",
            "authorization_pending",
            "Authorization is still pending",
        );
    }
    match outcome {
        Outcome::Deny => error(
            400,
            "AccessDeniedException",
            "access_denied",
            "User denied the authorization request",
        ),
        Outcome::Expire => error(
            400,
            "ExpiredTokenException",
            "expired_token",
            "Device code has expired",
        ),
        Outcome::Approve => {
            state.counter += 1;
            let issued = IssuedToken {
                access_token: format!("fake-sso-access-token-{}", state.counter),
                refresh_token: format!("fake-sso-refresh-token-{}", state.counter),
                client_id,
                expires_at: UNIX_EPOCH
                    + std::time::Duration::from_secs(unix_now() + TOKEN_LIFETIME_SECS),
            };
            let body = json!({
                "accessToken": issued.access_token,
                "tokenType": "Bearer",
                "expiresIn": TOKEN_LIFETIME_SECS,
                "refreshToken": issued.refresh_token,
            });
            state.issued.push(issued);
            ok(body)
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn ok(body: Value) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("content-type", "application/json")
        .set_body_string(body.to_string())
}

fn error(status: u16, exception: &str, oauth_error: &str, description: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("content-type", "application/json")
        .insert_header("x-amzn-errortype", exception)
        .set_body_string(
            json!({ "error": oauth_error, "error_description": description }).to_string(),
        )
}
