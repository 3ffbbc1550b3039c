//! Failures of the credential chain's own links, explained by what to fix: an SSO session to
//! sign in again, a profile or `source_profile` that is not in the files, a web identity token
//! file that cannot be read or that STS refuses, a role whose trust policy does not allow the
//! caller. Each is found from the typed error the SDK keeps in the source chain (the SSO
//! portal's and STS's service errors, the token provider's `TokenError`, the `io::Error` of a
//! file read), or, for profiles, from the shared files themselves: aws-config keeps only a
//! sentence of its `ProfileFileError` and goes on to the next link.

use std::error::Error as StdError;

use aws_credential_types::provider::error::{CredentialsError, TokenError};
use aws_sdk_sso::operation::get_role_credentials::GetRoleCredentialsError;
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sts::operation::assume_role::AssumeRoleError;
use aws_sdk_sts::operation::assume_role_with_web_identity::AssumeRoleWithWebIdentityError;

use super::CredentialError;
use super::aws::AwsClients;
use super::aws_errors::find_in_chain;
use super::aws_profiles::MissingProfile;

/// STS's codes for a web identity token it will not take.
const REFUSED_WEB_IDENTITY: [&str; 3] = [
    "InvalidIdentityToken",
    "ExpiredTokenException",
    "IDPRejectedClaim",
];

/// The web identity link's settings, from the proxy's environment.
#[derive(Debug, Clone, Default)]
pub struct WebIdentityEnv {
    /// `AWS_WEB_IDENTITY_TOKEN_FILE`.
    pub token_file: Option<String>,
    /// `AWS_ROLE_ARN`.
    pub role_arn: Option<String>,
}

impl WebIdentityEnv {
    fn from_process() -> WebIdentityEnv {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        WebIdentityEnv {
            token_file: var("AWS_WEB_IDENTITY_TOKEN_FILE"),
            role_arn: var("AWS_ROLE_ARN"),
        }
    }
}

/// What to fix for `error`, when it is one of the failures this module knows.
pub fn explain(error: &CredentialsError, clients: &AwsClients) -> Option<CredentialError> {
    explain_with(error, clients, &WebIdentityEnv::from_process())
}

fn explain_with(
    error: &CredentialsError,
    clients: &AwsClients,
    web_identity: &WebIdentityEnv,
) -> Option<CredentialError> {
    let profiles = clients.profiles();
    let found = || profiles.names();
    match profiles.missing() {
        Some(MissingProfile::Selected { profile }) => {
            return Some(CredentialError::ProfileNotFound {
                profile,
                found: found(),
            });
        }
        Some(MissingProfile::Source {
            profile,
            source_profile,
        }) => {
            return Some(CredentialError::SourceProfileNotFound {
                profile,
                source_profile,
                found: found(),
            });
        }
        None => {}
    }
    if let Some(why) = sso_expired(error, profiles.sso_profile().is_some()) {
        return Some(CredentialError::SsoExpired {
            profile: profiles
                .sso_profile()
                .unwrap_or(profiles.selected())
                .to_owned(),
            why: why.to_owned(),
        });
    }
    if let Some(denied) = assume_role_denied(error, clients) {
        return Some(denied);
    }
    web_identity_failure(error, web_identity)
}

/// Why the SSO session cannot give credentials, or `None` when SSO is not what failed.
fn sso_expired(error: &CredentialsError, sso_profile: bool) -> Option<&'static str> {
    if let Some(SdkError::ServiceError(service)) =
        find_in_chain::<SdkError<GetRoleCredentialsError>>(error)
        && matches!(
            service.err(),
            GetRoleCredentialsError::UnauthorizedException(_)
        )
    {
        return Some("the SSO portal refused its access token");
    }
    // The `sso-session` form's token provider: the cached token is past its time and cannot
    // be refreshed, or there is none.
    if find_in_chain::<TokenError>(error).is_some() {
        return Some("its cached token has expired and cannot be refreshed, or there is none");
    }
    // The legacy form reads the cache file itself: no file, no session.
    if sso_profile
        && find_in_chain::<std::io::Error>(error)
            .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound)
    {
        return Some("there is no cached token for it in ~/.aws/sso/cache");
    }
    None
}

/// STS refused to let the caller assume a role.
fn assume_role_denied(error: &CredentialsError, clients: &AwsClients) -> Option<CredentialError> {
    if let Some(SdkError::ServiceError(service)) = find_in_chain::<SdkError<AssumeRoleError>>(error)
        && service.err().code() == Some("AccessDenied")
    {
        let message = service.err().message().unwrap_or_default();
        let settings = clients.settings();
        let role_arn = resource_in(message)
            .or_else(|| settings.role_arn.clone())
            .or_else(|| clients.profiles().role_arn().map(str::to_owned))
            .unwrap_or_else(|| "(unnamed)".to_owned());
        let external_id = if settings.role_external_id.is_some() {
            ", with the sts:ExternalId condition matching --role-external-id".to_owned()
        } else {
            String::new()
        };
        return Some(CredentialError::AssumeRoleDenied {
            action: "sts:AssumeRole",
            role_arn,
            caller: caller_in(message).unwrap_or_else(|| "the proxy's AWS identity".to_owned()),
            external_id,
        });
    }
    None
}

/// The web identity link failed: its token file, or STS's answer to its token.
fn web_identity_failure(
    error: &CredentialsError,
    web_identity: &WebIdentityEnv,
) -> Option<CredentialError> {
    let path = web_identity.token_file.clone()?;
    if let Some(SdkError::ServiceError(service)) =
        find_in_chain::<SdkError<AssumeRoleWithWebIdentityError>>(error)
    {
        let inner = service.err();
        let code = inner.code().unwrap_or("Unknown");
        if code == "AccessDenied" {
            let role_arn = web_identity
                .role_arn
                .clone()
                .or_else(|| resource_in(inner.message().unwrap_or_default()))
                .unwrap_or_else(|| "(AWS_ROLE_ARN)".to_owned());
            return Some(CredentialError::AssumeRoleDenied {
                action: "sts:AssumeRoleWithWebIdentity",
                role_arn,
                caller: format!("the web identity in {path}"),
                external_id: String::new(),
            });
        }
        if REFUSED_WEB_IDENTITY.contains(&code) {
            return Some(CredentialError::WebIdentityTokenRefused {
                path,
                code: code.to_owned(),
                message: inner.message().unwrap_or_default().to_owned(),
            });
        }
        return None;
    }
    // The web identity link reads the file and hands the read's error up as it is: an
    // `io::Error` right under a provider error. (An SSO or credential_process failure wraps
    // its own error type in between.)
    let read_failed = chain_of(error).any(|e| {
        matches!(
            e.downcast_ref::<CredentialsError>(),
            Some(CredentialsError::ProviderError(_))
        ) && e
            .source()
            .is_some_and(|source| source.downcast_ref::<std::io::Error>().is_some())
    });
    if read_failed {
        let io = find_in_chain::<std::io::Error>(error)?;
        return Some(CredentialError::WebIdentityTokenUnreadable {
            path,
            error: io.to_string(),
        });
    }
    None
}

/// `error` and its sources.
fn chain_of<'a>(
    error: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(error), |e| (*e).source())
}

/// The resource of an IAM denial: "… on resource: ARN".
fn resource_in(message: &str) -> Option<String> {
    let rest = message.split("on resource: ").nth(1)?;
    let arn = rest
        .split(|c: char| c.is_whitespace() || c == '"')
        .next()?
        .trim_end_matches(['.', ',']);
    (!arn.is_empty()).then(|| arn.to_owned())
}

/// The caller of an IAM denial: "User: ARN is not authorized …".
fn caller_in(message: &str) -> Option<String> {
    let rest = message.split("User: ").nth(1)?;
    let (arn, _) = rest.split_once(" is not authorized")?;
    (!arn.is_empty() && !arn.contains(' ')).then(|| arn.to_owned())
}

#[cfg(test)]
mod tests {
    use aws_sdk_sts::error::ErrorMetadata;
    use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
    use aws_smithy_types::body::SdkBody;

    use super::*;
    use crate::credentials::AwsSettings;
    use crate::credentials::aws_profiles::AwsProfiles;

    fn response(status: u16) -> HttpResponse {
        HttpResponse::new(status.try_into().expect("status code"), SdkBody::from(""))
    }

    /// As the profile provider hands up a failed base link: the link's error inside its own.
    fn from_profile(source: impl StdError + Send + Sync + 'static) -> CredentialsError {
        CredentialsError::provider_error(CredentialsError::provider_error(source))
    }

    fn clients(settings: AwsSettings, profiles: AwsProfiles) -> AwsClients {
        AwsClients::from_sdk_config(aws_config::SdkConfig::builder().build(), settings)
            .with_profiles(profiles)
    }

    async fn profiles(config: &str, selected: Option<&str>) -> AwsProfiles {
        use aws_types::os_shim_internal::{Env, Fs};
        let home = tempfile::tempdir().expect("home");
        std::fs::create_dir(home.path().join(".aws")).expect(".aws");
        std::fs::write(home.path().join(".aws/config"), config).expect("config");
        let home_text = home.path().display().to_string();
        AwsProfiles::load_from(
            &Fs::real(),
            &Env::from_slice(&[("HOME", home_text.as_str())]),
            selected,
        )
        .await
    }

    const SSO_CONFIG: &str = "\
[profile work]
sso_start_url = https://corp.awsapps.com/start
sso_region = us-east-1
sso_account_id = 123456789012
sso_role_name = Analyst

[profile deploy]
role_arn = arn:aws:iam::123456789012:role/deploy
source_profile = work
";

    fn unauthorized() -> SdkError<GetRoleCredentialsError> {
        SdkError::service_error(
            GetRoleCredentialsError::UnauthorizedException(
                aws_sdk_sso::types::error::UnauthorizedException::builder()
                    .message("Session token not found or invalid")
                    .build(),
            ),
            response(401),
        )
    }

    #[tokio::test]
    async fn the_portal_refusing_the_token_names_the_sso_profile_and_the_commands() {
        let clients = clients(
            AwsSettings::default(),
            profiles(SSO_CONFIG, Some("deploy")).await,
        );
        let error = explain_with(
            &from_profile(unauthorized()),
            &clients,
            &WebIdentityEnv::default(),
        )
        .expect("explained");
        assert_eq!(error.reason(), "sso_expired");
        assert_eq!(error.sqlstate(), "28000");
        let text = error.to_string();
        // The role profile takes its keys from `work`: that is the one to sign in.
        assert!(
            text.starts_with("the AWS SSO session of profile `work` has expired"),
            "{text}"
        );
        assert!(text.contains("the SSO portal refused"), "{text}");
        assert!(text.contains("aws sso login --profile work"), "{text}");
        assert!(
            text.contains("redshift-auth-proxy sso-login --profile work"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn an_expired_cached_token_or_none_is_an_expired_session() {
        let clients = clients(
            AwsSettings::default(),
            profiles(SSO_CONFIG, Some("work")).await,
        );
        let token = CredentialsError::provider_error(TokenError::provider_error(
            "the SSO token has expired and cannot be refreshed",
        ));
        let error = explain_with(&token, &clients, &WebIdentityEnv::default()).expect("token");
        assert!(error.to_string().contains("its cached token has expired"));
        let no_file = from_profile(std::io::Error::from(std::io::ErrorKind::NotFound));
        let error = explain_with(&no_file, &clients, &WebIdentityEnv::default()).expect("file");
        assert!(error.to_string().contains("no cached token"), "{error}");
    }

    #[tokio::test]
    async fn another_sso_error_or_a_missing_file_elsewhere_is_not_an_expired_session() {
        let sso = clients(
            AwsSettings::default(),
            profiles(SSO_CONFIG, Some("work")).await,
        );
        let throttled = SdkError::service_error(
            GetRoleCredentialsError::TooManyRequestsException(
                aws_sdk_sso::types::error::TooManyRequestsException::builder().build(),
            ),
            response(429),
        );
        assert!(explain_with(&from_profile(throttled), &sso, &WebIdentityEnv::default()).is_none());
        let plain = clients(AwsSettings::default(), AwsProfiles::unread(None));
        let no_file = from_profile(std::io::Error::from(std::io::ErrorKind::NotFound));
        assert!(explain_with(&no_file, &plain, &WebIdentityEnv::default()).is_none());
    }

    #[tokio::test]
    async fn a_missing_profile_lists_the_profiles_found() {
        let clients = clients(
            AwsSettings {
                profile: Some("nope".to_owned()),
                ..Default::default()
            },
            profiles(SSO_CONFIG, Some("nope")).await,
        );
        let error = explain_with(
            &CredentialsError::not_loaded("no providers in chain provided credentials"),
            &clients,
            &WebIdentityEnv::default(),
        )
        .expect("explained");
        assert_eq!(error.reason(), "aws_profile_missing");
        let text = error.to_string();
        assert!(
            text.starts_with("AWS profile `nope` does not exist"),
            "{text}"
        );
        assert!(
            text.contains("~/.aws/config and ~/.aws/credentials are: deploy, work"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_missing_source_profile_is_named() {
        let config = "[profile r]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = ghost\n";
        let clients = clients(AwsSettings::default(), profiles(config, Some("r")).await);
        let error = explain_with(
            &CredentialsError::not_loaded("x"),
            &clients,
            &WebIdentityEnv::default(),
        )
        .expect("explained");
        let text = error.to_string();
        assert!(
            text.starts_with(
                "AWS profile `r` takes its keys from source_profile `ghost`, which does not exist"
            ),
            "{text}"
        );
        assert!(text.contains("are: r;"), "{text}");
    }

    fn denied(message: &str) -> SdkError<AssumeRoleError> {
        SdkError::service_error(
            AssumeRoleError::generic(
                ErrorMetadata::builder()
                    .code("AccessDenied")
                    .message(message)
                    .build(),
            ),
            response(403),
        )
    }

    #[test]
    fn access_denied_on_assume_role_names_the_role_the_caller_and_the_trust_policy() {
        let clients = clients(
            AwsSettings {
                role_arn: Some("arn:aws:iam::123456789012:role/settings".to_owned()),
                role_external_id: Some("x".to_owned()),
                ..Default::default()
            },
            AwsProfiles::unread(None),
        );
        let error = explain_with(
            &CredentialsError::provider_error(denied(
                "User: arn:aws:iam::123456789012:user/alice is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::123456789012:role/reader",
            )),
            &clients,
            &WebIdentityEnv::default(),
        )
        .expect("explained");
        assert_eq!(error.reason(), "assume_role_denied");
        assert_eq!(error.sqlstate(), "28000");
        let text = error.to_string();
        assert!(
            text.starts_with("AWS STS denied sts:AssumeRole on role arn:aws:iam::123456789012:role/reader to arn:aws:iam::123456789012:user/alice"),
            "{text}"
        );
        assert!(text.contains("trust policy must allow"), "{text}");
        assert!(text.contains("sts:ExternalId"), "{text}");
        // Without details in the message: the configured role and a description of the caller.
        let error = explain_with(
            &CredentialsError::provider_error(denied("Access denied")),
            &clients,
            &WebIdentityEnv::default(),
        )
        .expect("explained");
        assert!(
            error.to_string().contains(
                "on role arn:aws:iam::123456789012:role/settings to the proxy's AWS identity"
            ),
            "{error}"
        );
    }

    #[test]
    fn an_unreadable_token_file_is_named_with_the_os_error() {
        let clients = clients(AwsSettings::default(), AwsProfiles::unread(None));
        let env = WebIdentityEnv {
            token_file: Some("/var/run/secrets/token".to_owned()),
            role_arn: Some("arn:aws:iam::1:role/irsa".to_owned()),
        };
        let read = CredentialsError::provider_error(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "Permission denied (os error 13)",
        ));
        let error = explain_with(&read, &clients, &env).expect("explained");
        assert_eq!(error.reason(), "web_identity_token");
        let text = error.to_string();
        assert!(
            text.starts_with("the web identity token file /var/run/secrets/token (AWS_WEB_IDENTITY_TOKEN_FILE) cannot be read: Permission denied (os error 13)"),
            "{text}"
        );
        // Without AWS_WEB_IDENTITY_TOKEN_FILE it is not the web identity link.
        assert!(explain_with(&read, &clients, &WebIdentityEnv::default()).is_none());
        // Nor is a file read another link wraps in its own error.
        let wrapped = from_profile(CacheFileError(std::io::Error::from(
            std::io::ErrorKind::NotFound,
        )));
        assert!(explain_with(&wrapped, &clients, &env).is_none());
    }

    #[test]
    fn a_refused_web_identity_token_gives_stss_reason() {
        let clients = clients(AwsSettings::default(), AwsProfiles::unread(None));
        let env = WebIdentityEnv {
            token_file: Some("/t".to_owned()),
            role_arn: Some("arn:aws:iam::1:role/irsa".to_owned()),
        };
        let refused = |code: &str| {
            CredentialsError::provider_error(SdkError::<AssumeRoleWithWebIdentityError>::service_error(
                AssumeRoleWithWebIdentityError::generic(
                    ErrorMetadata::builder()
                        .code(code)
                        .message("Token expired: current date/time 1 must be before the expiration date/time 0")
                        .build(),
                ),
                response(400),
            ))
        };
        let text = explain_with(&refused("ExpiredTokenException"), &clients, &env)
            .expect("explained")
            .to_string();
        assert!(
            text.starts_with(
                "AWS STS refused the web identity token in /t (ExpiredTokenException: Token expired"
            ),
            "{text}"
        );
        let text = explain_with(&refused("AccessDenied"), &clients, &env)
            .expect("explained")
            .to_string();
        assert!(
            text.starts_with("AWS STS denied sts:AssumeRoleWithWebIdentity on role arn:aws:iam::1:role/irsa to the web identity in /t"),
            "{text}"
        );
    }

    /// Another link's error type around a file read, as the SSO cache reader has.
    #[derive(Debug)]
    struct CacheFileError(std::io::Error);

    impl std::fmt::Display for CacheFileError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("failed to read the cached file")
        }
    }

    impl StdError for CacheFileError {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }
}
