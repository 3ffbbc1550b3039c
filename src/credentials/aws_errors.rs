//! Turns an AWS SDK error into a `CredentialError` a user can act on: which IAM permission is
//! missing on which resource, where the credential chain looked (what its links' own failures
//! mean is in `aws_chain_errors`), which cluster or workgroup does not exist in which region. AWS error
//! messages carry no secrets; the SDK's own debug output (which may show request details) is
//! never used.

use crate::protocol::sqlstate;
use std::error::Error as StdError;

use aws_config::imds::client::error::{ImdsError, TokenError};
use aws_config::meta::ProviderChainError;
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_redshift::error::{ProvideErrorMetadata, SdkError};

use super::CredentialError;
use super::aws::AwsClients;

/// What was asked of AWS, for the messages.
#[derive(Debug, Clone)]
pub struct Call {
    /// The IAM action, e.g. `redshift:GetClusterCredentials`.
    pub action: &'static str,
    /// The ARN the action needs (with `ACCOUNT_ID` when the account is not known).
    pub resource: String,
    /// Other permissions the options need, as "; …" text, or empty.
    pub extra: String,
    /// `cluster` or `workgroup`, and its name, for not-found answers.
    pub object: (&'static str, String),
    /// The region called.
    pub region: String,
}

impl Call {
    /// `redshift:DescribeClusters` for a JDBC short form.
    pub fn describe_cluster(cluster: &str, region: &str) -> Call {
        Call {
            action: "redshift:DescribeClusters",
            resource: format!("arn:aws:redshift:{region}:ACCOUNT_ID:cluster:{cluster}"),
            extra: String::new(),
            object: ("cluster", cluster.to_owned()),
            region: region.to_owned(),
        }
    }

    /// `redshift-serverless:GetWorkgroup` for a JDBC short form.
    pub fn get_workgroup(workgroup: &str, region: &str) -> Call {
        Call {
            action: "redshift-serverless:GetWorkgroup",
            resource: format!("arn:aws:redshift-serverless:{region}:ACCOUNT_ID:workgroup/*"),
            extra: String::new(),
            object: ("workgroup", workgroup.to_owned()),
            region: region.to_owned(),
        }
    }
}

const ACCESS_DENIED: [&str; 4] = [
    "AccessDenied",
    "AccessDeniedException",
    "AccessDeniedFault",
    "UnauthorizedOperation",
];
const BAD_AWS_CREDENTIALS: [&str; 5] = [
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
];
const NOT_FOUND: [&str; 3] = [
    "ClusterNotFound",
    "ClusterNotFoundFault",
    "ResourceNotFoundException",
];
const THROTTLED: [&str; 5] = [
    "Throttling",
    "ThrottlingException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ServiceUnavailable",
];

/// Classifies `error` from `call`.
pub fn classify<E, R>(error: SdkError<E, R>, call: &Call, clients: &AwsClients) -> CredentialError
where
    E: ProvideErrorMetadata + StdError + 'static,
    R: std::fmt::Debug + 'static,
{
    match &error {
        // An answer without an AWS error code (an HTML page from a proxy, a body that does not
        // parse) or one the SDK could not read at all.
        SdkError::ServiceError(service) if service.err().code().is_none() => unreadable(call),
        SdkError::ResponseError(_) => unreadable(call),
        SdkError::ServiceError(service) => {
            let inner = service.err();
            classify_service(inner.code(), inner.message(), call)
        }
        SdkError::TimeoutError(_) => CredentialError::AwsUnavailable(format!(
            "cannot reach the AWS API for {} in region {}: no answer within --connect-timeout, retries included (the endpoint was silent, or kept failing with 5xx answers or throttling); check the network path to the AWS API (proxy, VPC endpoint, --aws-endpoint-url)",
            call.action, call.region
        )),
        _ => {
            if let Some(credentials) = find_in_chain::<CredentialsError>(&error) {
                return classify_credentials(credentials, clients);
            }
            CredentialError::AwsUnavailable(format!(
                "cannot reach the AWS API for {} in region {}: {}; check DNS, the network path and --aws-endpoint-url",
                call.action,
                call.region,
                error_chain(&error)
            ))
        }
    }
}

/// The endpoint answered, but with neither credentials nor an AWS error. The answer itself is
/// not quoted: a parse error's text can hold part of the body, and the body of a credential
/// answer holds a password.
fn unreadable(call: &Call) -> CredentialError {
    CredentialError::AwsUnavailable(format!(
        "the AWS API answered {} in region {} with something that is neither credentials nor an AWS error (not shown, as it might hold a password); check --aws-endpoint-url and any HTTP proxy between the proxy and AWS",
        call.action, call.region
    ))
}

/// Maps a service's error code and message.
pub fn classify_service(code: Option<&str>, message: Option<&str>, call: &Call) -> CredentialError {
    let code = code.unwrap_or("Unknown");
    let message = message.unwrap_or("");
    if ACCESS_DENIED.contains(&code) {
        let (action, resource) = denied_action_and_resource(message)
            .unwrap_or((call.action.to_owned(), call.resource.clone()));
        return CredentialError::AccessDenied {
            action,
            resource,
            extra: call.extra.clone(),
        };
    }
    if BAD_AWS_CREDENTIALS.contains(&code) {
        return CredentialError::Unavailable {
            sqlstate: sqlstate::INVALID_AUTHORIZATION,
            message: format!(
                "AWS rejected the proxy's AWS credentials ({code}: {message}): refresh them (aws sso login, new access keys, or check the role the proxy runs as)"
            ),
        };
    }
    if NOT_FOUND.contains(&code) {
        let (what, name) = &call.object;
        return CredentialError::NotFound {
            what,
            name: name.clone(),
            region: call.region.clone(),
        };
    }
    if THROTTLED.contains(&code) {
        return CredentialError::AwsUnavailable(format!(
            "AWS kept throttling {} ({code}) after retries within --connect-timeout: too many calls for this account; try again shortly",
            call.action
        ));
    }
    CredentialError::Unavailable {
        sqlstate: sqlstate::CLIENT_UNABLE_TO_ESTABLISH_CONNECTION,
        message: format!("AWS refused {} ({code}): {message}", call.action),
    }
}

/// The three fields every credential API answers with, as the field names of its protocol
/// (`DbUser`/`dbUser`, …), so a missing one is named as the API spells it.
pub struct AnswerFields<'a> {
    /// The user name field and its value.
    pub user: (&'static str, Option<&'a str>),
    /// The password field and its value.
    pub password: (&'static str, Option<&'a str>),
    /// The expiration field and its value.
    pub expiration: (&'static str, Option<&'a aws_smithy_types::DateTime>),
}

/// Turns an API's answer into credentials; a missing field is an error naming it.
pub fn credentials_from_answer(
    call: &Call,
    fields: AnswerFields<'_>,
) -> Result<super::DbCredentials, CredentialError> {
    let incomplete = |what: &str| {
        CredentialError::AwsUnavailable(format!(
            "{} answered without {what}: try again, and report it if it persists",
            call.action
        ))
    };
    let (user_name, user) = fields.user;
    let (password_name, password) = fields.password;
    let (expiration_name, expiration) = fields.expiration;
    Ok(super::DbCredentials {
        user: user.ok_or_else(|| incomplete(user_name))?.to_owned(),
        password: super::Secret::new(password.ok_or_else(|| incomplete(password_name))?),
        expires_at: Some(
            expiration
                .and_then(|t| std::time::SystemTime::try_from(*t).ok())
                .ok_or_else(|| incomplete(expiration_name))?,
        ),
        origin: super::Origin::Fetched,
    })
}

/// Reads "…is not authorized to perform: ACTION on resource: ARN…" from an IAM denial.
fn denied_action_and_resource(message: &str) -> Option<(String, String)> {
    let after = message.split("perform: ").nth(1)?;
    let (action, rest) = after.split_once(" on resource: ")?;
    let resource = rest
        .split(|c: char| c.is_whitespace() || c == '"')
        .next()?
        .trim_end_matches(['.', ',']);
    (!action.is_empty() && !resource.is_empty())
        .then(|| (action.trim().to_owned(), resource.to_owned()))
}

/// An error of the credential chain itself (before any Redshift call).
pub fn classify_credentials(error: &CredentialsError, clients: &AwsClients) -> CredentialError {
    let text = error_chain(error);
    // The SDK's own wording stays in the debug log: the client gets the proxy's sentence.
    tracing::debug!(error = %text, "the AWS credential chain gave no credentials");
    if let Some(explained) = super::aws_chain_errors::explain(error, clients) {
        return explained;
    }
    if let Some(metadata) = nothing_anywhere(error) {
        return CredentialError::NoAwsCredentials {
            profile: clients.profile_name(),
            metadata,
        };
    }
    CredentialError::Unavailable {
        sqlstate: sqlstate::INVALID_AUTHORIZATION,
        message: format!(
            "the AWS credential chain failed: {text}; check the profile, role or environment the proxy runs with"
        ),
    }
}

/// The chain's last link is instance metadata. Every link before it either had nothing
/// (`CredentialsNotLoaded`, and the chain goes on) or failed (and the chain stops there), so
/// an error that comes from the metadata client means nothing was found anywhere. On a laptop
/// the metadata endpoint refuses or does not answer, and the SDK reports that as a provider
/// error ("failed to load IMDS session token…"), not as "not loaded"; the user needs to read
/// that no credentials were configured, not how IMDS failed. Returns what the metadata
/// service did, for the message, or `None` when the chain failed for another reason.
fn nothing_anywhere(error: &CredentialsError) -> Option<String> {
    match error {
        // The whole chain ran and no link had credentials (metadata disabled, or its
        // endpoint unreachable): the chain's error lists each link's attempt.
        CredentialsError::CredentialsNotLoaded(_) => {
            let attempts = find_in_chain::<ProviderChainError<CredentialsError>>(error)
                .map(|chain| chain.attempts())
                .unwrap_or_default();
            let outcome = attempts
                .iter()
                .filter(|attempt| attempt.name() == METADATA_LINK)
                .find_map(|attempt| metadata_outcome(attempt.error()));
            let disabled = std::env::var("AWS_EC2_METADATA_DISABLED")
                .is_ok_and(|value| value.eq_ignore_ascii_case("true"));
            Some(outcome.unwrap_or_else(|| {
                if disabled {
                    "instance metadata is off: AWS_EC2_METADATA_DISABLED=true".to_owned()
                } else {
                    "no credentials there either".to_owned()
                }
            }))
        }
        _ => metadata_outcome(error),
    }
}

/// The name aws-config's default chain gives its instance-metadata link.
const METADATA_LINK: &str = "Ec2InstanceMetadata";

/// What the instance-metadata client's typed error says happened, as a short phrase; `None`
/// when the error did not come from it, or says the service itself is broken (an answer
/// other than a refusal), which is not the "nothing configured" case.
fn metadata_outcome(error: &(dyn StdError + 'static)) -> Option<String> {
    if let Some(imds) = find_in_chain::<ImdsError>(error) {
        return match imds {
            ImdsError::FailedToLoadToken(_) => {
                Some(token_outcome(find_in_chain::<SdkError<TokenError>>(error)))
            }
            ImdsError::ErrorResponse(answer) => {
                let status = answer.response().status().as_u16();
                match status {
                    404 => Some(
                        "the instance metadata service answered 404: this machine has no IAM role attached".to_owned(),
                    ),
                    400..=499 => Some(format!(
                        "the instance metadata service refused with HTTP {status}"
                    )),
                    _ => None,
                }
            }
            ImdsError::IoError(_) => {
                Some("the instance metadata endpoint could not be reached".to_owned())
            }
            _ => None,
        };
    }
    // Unreachable endpoint: the provider reports "not loaded" around the token request's
    // own error, without an `ImdsError`.
    find_in_chain::<SdkError<TokenError>>(error).map(|token| token_outcome(Some(token)))
}

/// How the session-token request (IMDSv2's first call) failed.
fn token_outcome(token: Option<&SdkError<TokenError>>) -> String {
    match token {
        Some(SdkError::TimeoutError(_)) => "the instance metadata endpoint did not answer in time",
        Some(SdkError::DispatchFailure(_)) => "the instance metadata endpoint could not be reached",
        // 403 and the like: not on EC2, or IMDS turned off for this instance.
        _ => "the instance metadata endpoint refused: not on EC2, or IMDS is disabled",
    }
    .to_owned()
}

/// The first error of type `T` in `error`'s source chain.
pub(super) fn find_in_chain<'a, T: StdError + 'static>(
    error: &'a (dyn StdError + 'static),
) -> Option<&'a T> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// The error and its sources as one line ("a: b: c"), each message once, without the
/// Debug dumps `DisplayErrorContext` appends.
fn error_chain(error: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = current {
        let text = e
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call() -> Call {
        Call {
            action: "redshift:GetClusterCredentials",
            resource: "arn:aws:redshift:us-east-1:ACCOUNT_ID:dbuser:c1/alice".to_owned(),
            extra: String::new(),
            object: ("cluster", "c1".to_owned()),
            region: "us-east-1".to_owned(),
        }
    }

    fn clients(profile: Option<&str>) -> AwsClients {
        AwsClients::from_sdk_config(
            aws_config::SdkConfig::builder().build(),
            super::super::AwsSettings {
                profile: profile.map(str::to_owned),
                ..Default::default()
            },
        )
    }

    /// The chain's metadata link against `endpoint`, as aws-config's default chain builds it
    /// (the same link name), with one attempt so a refusal is quick.
    async fn metadata_chain_error(endpoint: &str) -> CredentialsError {
        use aws_config::meta::credentials::CredentialsProviderChain;
        use aws_credential_types::provider::ProvideCredentials;
        let client = aws_config::imds::Client::builder()
            .endpoint(endpoint)
            .expect("endpoint")
            .max_attempts(1)
            .connect_timeout(std::time::Duration::from_secs(2))
            .build();
        let imds = aws_config::imds::credentials::ImdsCredentialsProvider::builder()
            .imds_client(client)
            .build();
        let chain = CredentialsProviderChain::first_try(
            "Environment",
            aws_credential_types::credential_fn::provide_credentials_fn(|| async {
                Err(CredentialsError::not_loaded("no keys in the environment"))
            }),
        )
        .or_else(METADATA_LINK, imds);
        chain
            .provide_credentials()
            .await
            .expect_err("no credentials anywhere")
    }

    /// A metadata stand-in that answers every request with 403, as IMDS does when it is
    /// disabled for the instance.
    async fn refusing_metadata() -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buffer = [0u8; 4096];
                let _ = stream.read(&mut buffer).await;
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    )
                    .await;
            }
        });
        format!("http://{address}")
    }

    /// With `AWS_EC2_METADATA_DISABLED=true` in the test's own environment (a developer's
    /// shell may set it everywhere), aws-config's metadata link reads it and never calls the
    /// stand-in: the chain then ends "not loaded", and the message must say metadata is off.
    /// The tests below check that instead of the stand-in's answer, so they pass, and still
    /// test something, in either environment.
    fn metadata_off_here() -> bool {
        std::env::var("AWS_EC2_METADATA_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
    }

    fn assert_metadata_off(error: &CredentialsError, profile: Option<&str>) {
        assert!(
            matches!(error, CredentialsError::CredentialsNotLoaded(_)),
            "{error:?}"
        );
        let text = classify_credentials(error, &clients(profile)).to_string();
        assert!(text.starts_with("no AWS credentials found"), "{text}");
        assert!(
            text.contains("instance metadata is off: AWS_EC2_METADATA_DISABLED=true"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_refusing_metadata_service_means_no_credentials_anywhere() {
        let error = metadata_chain_error(&refusing_metadata().await).await;
        if metadata_off_here() {
            return assert_metadata_off(&error, None);
        }
        // The SDK reports the refusal as a provider error, not as "not loaded".
        assert!(
            !matches!(error, CredentialsError::CredentialsNotLoaded(_)),
            "{error:?}"
        );
        let classified = classify_credentials(&error, &clients(None));
        assert_eq!(classified.reason(), "no_aws_credentials");
        assert_eq!(classified.sqlstate(), "28000");
        let text = classified.to_string();
        assert!(text.starts_with("no AWS credentials found"), "{text}");
        assert!(text.contains("profile `default`"), "{text}");
        assert!(
            text.contains("instance metadata endpoint refused"),
            "{text}"
        );
        assert!(!text.contains("IMDS session token"), "{text}");
    }

    #[tokio::test]
    async fn an_unreachable_metadata_service_means_no_credentials_anywhere() {
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("address")
        };
        let error = metadata_chain_error(&format!("http://{closed}")).await;
        if metadata_off_here() {
            return assert_metadata_off(&error, Some("work"));
        }
        assert!(
            matches!(error, CredentialsError::CredentialsNotLoaded(_)),
            "{error:?}"
        );
        let text = classify_credentials(&error, &clients(Some("work"))).to_string();
        assert!(text.starts_with("no AWS credentials found"), "{text}");
        assert!(text.contains("profile `work`"), "{text}");
        assert!(text.contains("aws sso login --profile work"), "{text}");
        assert!(
            text.contains("instance metadata endpoint could not be reached"),
            "{text}"
        );
    }

    #[test]
    fn another_chain_failure_is_not_called_missing_credentials() {
        let error = CredentialsError::provider_error("credential_process exited with status 1");
        let classified = classify_credentials(&error, &clients(None));
        assert_eq!(classified.reason(), "unavailable");
        assert!(
            classified.to_string().contains("credential_process exited"),
            "{classified}"
        );
    }

    #[test]
    fn an_answer_that_is_no_answer_is_not_quoted() {
        use aws_sdk_redshift::error::ErrorMetadata;
        use aws_sdk_redshift::operation::get_cluster_credentials::GetClusterCredentialsError;
        let clients = AwsClients::from_sdk_config(
            aws_config::SdkConfig::builder().build(),
            super::super::AwsSettings::default(),
        );
        let codeless = GetClusterCredentialsError::generic(
            ErrorMetadata::builder()
                .message("failed to parse <DbPassword>hunter2</DbPassword>")
                .build(),
        );
        let errors = [
            classify(SdkError::service_error(codeless, ()), &call(), &clients),
            classify(
                SdkError::<GetClusterCredentialsError, ()>::response_error(
                    "invalid XML near <DbPassword>hunter2",
                    (),
                ),
                &call(),
                &clients,
            ),
        ];
        for error in errors {
            assert_eq!(error.sqlstate(), "08001");
            let text = error.to_string();
            assert!(!text.contains("hunter2"), "{text}");
            assert!(
                text.contains("redshift:GetClusterCredentials")
                    && text.contains("neither credentials nor an AWS error"),
                "{text}"
            );
        }
    }

    #[test]
    fn denial_names_the_action_and_resource_from_aws() {
        let error = classify_service(
            Some("AccessDenied"),
            Some(
                "User: arn:aws:iam::123456789012:user/test is not authorized to perform: redshift:GetClusterCredentials on resource: arn:aws:redshift:us-east-1:123456789012:dbuser:c1/alice because no identity-based policy allows it",
            ),
            &call(),
        );
        assert_eq!(error.sqlstate(), "28000");
        let text = error.to_string();
        assert!(
            text.contains("redshift:GetClusterCredentials on arn:aws:redshift:us-east-1:123456789012:dbuser:c1/alice"),
            "{text}"
        );
        assert!(error.is_remembered());
    }

    #[test]
    fn denial_without_details_uses_the_call() {
        let error = classify_service(Some("AccessDeniedException"), None, &call());
        assert!(
            error.to_string().contains("ACCOUNT_ID:dbuser:c1/alice"),
            "{error}"
        );
    }

    #[test]
    fn not_found_and_throttled() {
        let error = classify_service(
            Some("ClusterNotFound"),
            Some("Cluster c1 not found."),
            &call(),
        );
        assert_eq!(error.sqlstate(), "08001");
        assert!(
            error
                .to_string()
                .contains("cluster \"c1\" was not found in region us-east-1")
        );
        let error = classify_service(Some("Throttling"), Some("Rate exceeded"), &call());
        assert_eq!(error.sqlstate(), "08001");
        assert!(!error.is_remembered());
        assert!(error.to_string().contains("throttling"), "{error}");
    }
}
