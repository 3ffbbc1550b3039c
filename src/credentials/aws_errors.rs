//! Turns an AWS SDK error into a `CredentialError` a user can act on: which IAM permission is
//! missing on which resource, where the credential chain looked, that an SSO session needs a
//! new `aws sso login`, which cluster or workgroup does not exist in which region. AWS error
//! messages carry no secrets; the SDK's own debug output (which may show request details) is
//! never used.

use crate::protocol::sqlstate;
use std::error::Error as StdError;

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
            if let Some(credentials) = find_credentials_error(&error) {
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

fn find_credentials_error<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a CredentialsError> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<CredentialsError>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// An error of the credential chain itself (before any Redshift call).
pub fn classify_credentials(error: &CredentialsError, clients: &AwsClients) -> CredentialError {
    let text = error_chain(error);
    let lower = text.to_ascii_lowercase();
    if lower.contains("sso") && (lower.contains("expired") || lower.contains("token")) {
        return CredentialError::SsoExpired {
            profile: clients.profile_name(),
        };
    }
    match error {
        CredentialsError::CredentialsNotLoaded(_) => CredentialError::NoAwsCredentials {
            profile: clients.profile_hint(),
            detail: text,
        },
        _ => CredentialError::Unavailable {
            sqlstate: sqlstate::INVALID_AUTHORIZATION,
            message: format!(
                "the AWS credential chain failed: {text}; check the profile, role or environment the proxy runs with"
            ),
        },
    }
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
