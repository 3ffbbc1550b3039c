//! The OAuth device authorization flow against IAM Identity Center's SSO OIDC service, as the
//! AWS CLI's `SSOTokenFetcher` runs it: `RegisterClient` (a public client), then
//! `StartDeviceAuthorization` for the start URL, then `CreateToken` with the device code at
//! the interval the service gave until the user approves in a browser. Answers while polling:
//! `AuthorizationPendingException` (not yet approved: wait and ask again),
//! `SlowDownException` (wait 5 s longer from then on, RFC 8628 section 3.5),
//! `ExpiredTokenException` (the code expired) and `AccessDeniedException` (the user refused).
//!
//! The client comes from aws-config's loader, so `AWS_ENDPOINT_URL_SSO_OIDC`,
//! `AWS_ENDPOINT_URL` and a profile's `endpoint_url` or `services` section choose the
//! endpoint as they do for any SDK; the calls are unsigned, as the service requires.

use std::time::{Duration, Instant, SystemTime};

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_ssooidc::config::http::HttpResponse;
use aws_sdk_ssooidc::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ssooidc::operation::create_token::CreateTokenError;

use super::cache_file::Registration;
use crate::credentials::Secret;

/// The grant type of the device flow (RFC 8628).
const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// How much longer to wait after each `SlowDownException` (RFC 8628 section 3.5).
pub const SLOW_DOWN_DELAY: Duration = Duration::from_secs(5);
/// The poll interval when the service names none (RFC 8628 section 3.2).
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// How long a code lasts when the service does not say (the service's own lifetime).
const DEFAULT_CODE_LIFETIME: Duration = Duration::from_secs(600);
/// Each call may take this long; a hung endpoint ends the command instead of hanging it.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What the user must do, from `StartDeviceAuthorization`.
#[derive(Debug)]
pub struct Authorization {
    /// Exchanged for the token once the user approves; never shown.
    device_code: Secret,
    /// The code the user checks (or types) on the verification page.
    pub user_code: String,
    /// The verification page.
    pub verification_uri: String,
    /// The verification page with the code filled in.
    pub verification_uri_complete: String,
    /// How long the code stays valid.
    pub expires_in: Duration,
    /// How long to wait between `CreateToken` calls.
    pub interval: Duration,
}

/// The token `CreateToken` issued.
#[derive(Debug)]
pub struct Token {
    /// The bearer token for the SSO portal.
    pub access_token: Secret,
    /// When it stops working.
    pub expires_at: SystemTime,
    /// Renews it without a new sign-in, when the service gives one.
    pub refresh_token: Option<Secret>,
}

/// Why the flow ended without a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    /// The user refused on the verification page (`AccessDeniedException`).
    #[error("the sign-in was denied{}", .0.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Denied(Option<String>),
    /// The code expired before it was approved (`ExpiredTokenException`, or its lifetime
    /// passed without an answer).
    #[error("the code expired before it was approved")]
    Expired,
    /// A call failed otherwise.
    #[error("{call} failed: {detail}")]
    Call {
        /// `RegisterClient`, `StartDeviceAuthorization` or `CreateToken`.
        call: &'static str,
        /// The service's error code and message, or why it could not be reached.
        detail: String,
        /// The service said the client registration is unknown or expired.
        invalid_client: bool,
    },
}

/// One answer to `CreateToken` while polling.
enum PollAnswer {
    Token(Token),
    Pending,
    SlowDown,
    Failed(FlowError),
}

/// An SSO OIDC client for one IAM Identity Center region.
pub struct OidcClient {
    client: aws_sdk_ssooidc::Client,
}

impl OidcClient {
    /// A client for `region`, with `profile`'s endpoint settings when one is named.
    pub async fn new(region: &str, profile: Option<&str>) -> OidcClient {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .no_credentials()
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CALL_TIMEOUT)
                    .operation_timeout(CALL_TIMEOUT)
                    .build(),
            );
        if let Some(profile) = profile {
            loader = loader.profile_name(profile);
        }
        let config = loader.load().await;
        OidcClient {
            client: aws_sdk_ssooidc::Client::new(&config),
        }
    }

    /// `RegisterClient`: a public client named `client_name`, with `scopes` when there are any.
    pub async fn register(
        &self,
        client_name: &str,
        scopes: Option<&[String]>,
    ) -> Result<Registration, FlowError> {
        let scopes = scopes.filter(|s| !s.is_empty()).map(<[String]>::to_vec);
        let output = self
            .client
            .register_client()
            .client_name(client_name)
            .client_type("public")
            .set_scopes(scopes.clone())
            .send()
            .await
            .map_err(|e| call_error("RegisterClient", &e))?;
        let (Some(client_id), Some(client_secret)) = (output.client_id(), output.client_secret())
        else {
            return Err(missing("RegisterClient", "clientId or clientSecret"));
        };
        let expires_at = u64::try_from(output.client_secret_expires_at())
            .ok()
            .and_then(|secs| SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs)))
            .ok_or_else(|| missing("RegisterClient", "a valid clientSecretExpiresAt"))?;
        Ok(Registration {
            client_id: client_id.to_owned(),
            client_secret: Secret::new(client_secret),
            expires_at,
            scopes,
        })
    }

    /// `StartDeviceAuthorization` for `start_url`.
    pub async fn start(
        &self,
        registration: &Registration,
        start_url: &str,
    ) -> Result<Authorization, FlowError> {
        let output = self
            .client
            .start_device_authorization()
            .client_id(&registration.client_id)
            .client_secret(registration.client_secret.expose())
            .start_url(start_url)
            .send()
            .await
            .map_err(|e| call_error("StartDeviceAuthorization", &e))?;
        let (Some(device_code), Some(user_code), Some(uri)) = (
            output.device_code(),
            output.user_code(),
            output.verification_uri(),
        ) else {
            return Err(missing(
                "StartDeviceAuthorization",
                "deviceCode, userCode or verificationUri",
            ));
        };
        let interval = match u64::try_from(output.interval()) {
            Ok(secs) if secs > 0 => Duration::from_secs(secs),
            _ => DEFAULT_INTERVAL,
        };
        Ok(Authorization {
            device_code: Secret::new(device_code),
            user_code: user_code.to_owned(),
            verification_uri: uri.to_owned(),
            verification_uri_complete: output.verification_uri_complete().unwrap_or(uri).to_owned(),
            expires_in: match u64::try_from(output.expires_in()) {
                Ok(secs) if secs > 0 => Duration::from_secs(secs),
                _ => DEFAULT_CODE_LIFETIME,
            },
            interval,
        })
    }

    /// Polls `CreateToken` until the user approves, refuses, or the code expires. The first
    /// call is made at once (a client may already be approved); `on_pending` runs once, when
    /// the first answer is "pending", to tell the user what to do.
    pub async fn wait_for_token(
        &self,
        registration: &Registration,
        authorization: &Authorization,
        on_pending: impl FnOnce(&Authorization),
    ) -> Result<Token, FlowError> {
        let deadline = Instant::now() + authorization.expires_in;
        let mut interval = authorization.interval;
        let mut on_pending = Some(on_pending);
        loop {
            match self.create_token(registration, authorization).await {
                PollAnswer::Token(token) => return Ok(token),
                PollAnswer::Pending => {}
                PollAnswer::SlowDown => interval += SLOW_DOWN_DELAY,
                PollAnswer::Failed(error) => return Err(error),
            }
            if let Some(tell) = on_pending.take() {
                tell(authorization);
            }
            // The service answers ExpiredTokenException once the code's time is up; should
            // it never, the code's own lifetime still ends the wait.
            if Instant::now() > deadline {
                return Err(FlowError::Expired);
            }
            tokio::time::sleep(interval).await;
        }
    }

    async fn create_token(
        &self,
        registration: &Registration,
        authorization: &Authorization,
    ) -> PollAnswer {
        let sent = self
            .client
            .create_token()
            .client_id(&registration.client_id)
            .client_secret(registration.client_secret.expose())
            .grant_type(DEVICE_CODE_GRANT)
            .device_code(authorization.device_code.expose())
            .send()
            .await;
        let output = match sent {
            Ok(output) => output,
            Err(error) => {
                if let SdkError::ServiceError(e) = &error {
                    match e.err() {
                        CreateTokenError::AuthorizationPendingException(_) => {
                            return PollAnswer::Pending;
                        }
                        CreateTokenError::SlowDownException(_) => return PollAnswer::SlowDown,
                        CreateTokenError::ExpiredTokenException(_) => {
                            return PollAnswer::Failed(FlowError::Expired);
                        }
                        CreateTokenError::AccessDeniedException(_) => {
                            return PollAnswer::Failed(FlowError::Denied(
                                error_description(e.raw())
                                    .or_else(|| e.err().message().map(str::to_owned)),
                            ));
                        }
                        _ => {}
                    }
                }
                return PollAnswer::Failed(call_error("CreateToken", &error));
            }
        };
        let Some(access_token) = output.access_token() else {
            return PollAnswer::Failed(missing("CreateToken", "accessToken"));
        };
        let lifetime = Duration::from_secs(u64::try_from(output.expires_in()).unwrap_or(0));
        PollAnswer::Token(Token {
            access_token: Secret::new(access_token),
            expires_at: SystemTime::now() + lifetime,
            refresh_token: output.refresh_token().map(Secret::new),
        })
    }
}

/// A failed call, with the service's code and message, or why it could not be reached.
fn call_error<E>(call: &'static str, error: &SdkError<E, HttpResponse>) -> FlowError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let detail = match error {
        SdkError::ServiceError(e) => format!(
            "{}: {}",
            e.err().code().unwrap_or("unknown error"),
            error_description(e.raw())
                .or_else(|| e.err().message().map(str::to_owned))
                .unwrap_or_else(|| "no description".to_owned())
        ),
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => format!(
            "cannot reach the SSO OIDC endpoint (set AWS_ENDPOINT_URL_SSO_OIDC to use another): {}",
            causes(error)
        ),
        other => causes(other),
    };
    let invalid_client = matches!(
        error,
        SdkError::ServiceError(e) if e.err().code() == Some("InvalidClientException")
    );
    FlowError::Call {
        call,
        detail,
        invalid_client,
    }
}

/// An error and its causes on one line, without the SDK's Debug dump of the response.
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

/// The OAuth `error_description` of an error answer: SSO OIDC's errors carry their text
/// there, which the SDK's generic error metadata (`message`) does not read.
fn error_description(response: &HttpResponse) -> Option<String> {
    let body: serde_json::Value = serde_json::from_slice(response.body().bytes()?).ok()?;
    body.get("error_description")?.as_str().map(str::to_owned)
}

fn missing(call: &'static str, what: &str) -> FlowError {
    FlowError::Call {
        call,
        detail: format!("the answer has no {what}"),
        invalid_client: false,
    }
}
