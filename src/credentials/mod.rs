//! Where database credentials come from. Sessions ask a `CredentialSource` for a user name
//! and password and do not care whether they came from the environment or from AWS, so new
//! sources (the IAM APIs) plug in without touching the session code.

mod aws;
mod aws_chain_errors;
mod aws_errors;
mod aws_profiles;
mod cache;
mod cluster;
mod secret;
mod serverless;
mod sso_reload;
mod static_password;

pub use aws::{AwsClients, AwsSettings, lookup_endpoint};
pub use cache::{CachePolicy, CachedSource};
pub use cluster::{ClusterCredentials, ClusterOptions};
pub use secret::Secret;
pub use serverless::ServerlessCredentials;
pub use static_password::{MissingPasswordEnv, StaticPassword};

use crate::protocol::sqlstate;
use std::future::Future;
use std::pin::Pin;
use std::time::SystemTime;

/// What a session asks for: the database user and database it resolved from the target and
/// the client's startup parameters. It is also the cache key (the target's groups and
/// auto-create setting are fixed per source, so per cache).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CredentialRequest {
    /// The database user to log in as, before any `IAM:` prefix AWS may add; `None` when the
    /// source derives the user from the IAM identity (serverless, `iam_identity`).
    pub db_user: Option<String>,
    /// The database the session will open.
    pub database: String,
}

/// A user name and password to log in with.
#[derive(Debug, Clone)]
pub struct DbCredentials {
    /// The name to put in the StartupMessage (for IAM: `IAM:alice`, `IAMR:role`, …).
    pub user: String,
    /// The password.
    pub password: Secret,
    /// When the password stops working, if it expires.
    pub expires_at: Option<SystemTime>,
    /// Whether it was fetched for this request or served from the cache, which decides
    /// whether a login the server refuses is worth one retry with fresh credentials.
    pub origin: Origin,
}

/// Where a session's credentials came from. A cached password can have expired or been
/// replaced since it was fetched (the user re-created, the cluster restored), so a refusal
/// of it deserves one retry with a fresh one; a refusal of a password fetched a moment ago
/// or of a fixed one would only be repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Fetched from the API while this request waited (by its own call or by the single
    /// flight it joined).
    Fetched,
    /// Served from the cache, fetched before this request arrived.
    Cached,
    /// A fixed password (static mode): asking again gives the same one.
    Fixed,
}

/// Why no credentials could be had. Messages go to the client: they say what to fix and
/// never carry a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// The client's user is not on the target's `allowed_users` list.
    #[error(
        "user \"{user}\" is not allowed through this proxy target: allowed_users ({source_name}) lists {allowed}"
    )]
    UserNotAllowed {
        /// The user the client asked for.
        user: String,
        /// The users allowed, comma-separated.
        allowed: String,
        /// Where the list was configured.
        source_name: String,
    },
    /// Neither the target nor the client named a database user.
    #[error(
        "no database user: the client sent no user name and the target sets no db_user; set db_user on the target or user= in the connection string"
    )]
    NoUser,
    /// A database user name the credential API would refuse, caught before calling it.
    #[error(
        "database user \"{user}\" cannot get IAM credentials: it {why}; Redshift user names are 1-64 characters, start with a letter, contain no ':' or '/' and are not PUBLIC"
    )]
    InvalidDbUser {
        /// The name.
        user: String,
        /// Which rule it breaks.
        why: &'static str,
    },
    /// AWS refused the call: the proxy's identity lacks a permission.
    #[error(
        "AWS denied {action} on {resource}: grant the proxy's IAM identity {action} on that resource{extra}"
    )]
    AccessDenied {
        /// The IAM action, e.g. `redshift:GetClusterCredentials`.
        action: String,
        /// The resource ARN the action needs.
        resource: String,
        /// Further permissions the target's options need, as text starting with "; ".
        extra: String,
    },
    /// The AWS credential chain found nothing: every link had nothing and the last one,
    /// instance metadata, refused or did not answer (the laptop case). The message lists
    /// where the proxy looked and how to provide credentials, not how IMDS failed.
    #[error(
        "no AWS credentials found: the proxy looked in the environment (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), profile `{profile}` in ~/.aws/config and ~/.aws/credentials, SSO (sso_session or sso_start_url in that profile), web identity (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN) and container or instance metadata ({metadata}); provide one: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, run `aws configure`, or `aws configure sso` and `aws sso login --profile {profile}`, choose another profile with --aws-profile or AWS_PROFILE, or run the proxy with an IAM role (EC2 instance profile, ECS task role, EKS IRSA or Pod Identity)"
    )]
    NoAwsCredentials {
        /// The profile the chain read (`--aws-profile`, `AWS_PROFILE`, else `default`).
        profile: String,
        /// What the metadata service did, as a short phrase (never the SDK's text).
        metadata: String,
    },
    /// An SSO session (legacy `sso_start_url` or `sso-session`) has expired: the portal
    /// refused its token, or the cached token is past its time or missing. Signing in again
    /// is the only fix, so the message names the command and the profile to give it.
    #[error(
        "the AWS SSO session of profile `{profile}` has expired ({why}): run `aws sso login --profile {profile}` (or `redshift-auth-proxy sso-login --profile {profile}`) as the user the proxy runs as, and connect again"
    )]
    SsoExpired {
        /// The profile that signs in with SSO (the selected one, or the `source_profile` of
        /// the selected role profile).
        profile: String,
        /// What happened, as a short phrase.
        why: String,
    },
    /// The selected profile (`--aws-profile`, `AWS_PROFILE`) is in neither shared file.
    #[error(
        "AWS profile `{profile}` does not exist; the profiles in ~/.aws/config and ~/.aws/credentials are: {found}; choose one of those with --aws-profile or AWS_PROFILE, or create it (`aws configure --profile {profile}` or `aws configure sso --profile {profile}`)"
    )]
    ProfileNotFound {
        /// The profile asked for.
        profile: String,
        /// The profiles the files have, comma-separated, or `none`.
        found: String,
    },
    /// A role profile's `source_profile` names a profile that is in neither shared file.
    #[error(
        "AWS profile `{profile}` takes its keys from source_profile `{source_profile}`, which does not exist; the profiles in ~/.aws/config and ~/.aws/credentials are: {found}; set source_profile to one of those, or add [profile {source_profile}] with keys or SSO"
    )]
    SourceProfileNotFound {
        /// The role profile.
        profile: String,
        /// The `source_profile` it names.
        source_profile: String,
        /// The profiles the files have, comma-separated, or `none`.
        found: String,
    },
    /// The web identity token file (EKS IRSA, `AWS_WEB_IDENTITY_TOKEN_FILE`) cannot be read.
    #[error(
        "the web identity token file {path} (AWS_WEB_IDENTITY_TOKEN_FILE) cannot be read: {error}; check that the token is mounted there (on EKS: the pod's service account has the eks.amazonaws.com/role-arn annotation) and that the proxy's user may read it"
    )]
    WebIdentityTokenUnreadable {
        /// The path in `AWS_WEB_IDENTITY_TOKEN_FILE`.
        path: String,
        /// The operating system's error.
        error: String,
    },
    /// STS refused the web identity token itself (expired, wrong issuer or audience).
    #[error(
        "AWS STS refused the web identity token in {path} ({code}: {message}); check that the token is fresh (the kubelet rotates it) and that the role's OIDC provider and audience (sts.amazonaws.com) match the token"
    )]
    WebIdentityTokenRefused {
        /// The path in `AWS_WEB_IDENTITY_TOKEN_FILE`.
        path: String,
        /// STS's error code (`InvalidIdentityToken`, `ExpiredTokenException`, …).
        code: String,
        /// STS's message.
        message: String,
    },
    /// STS denied assuming a role (`--role-arn`, a profile's `role_arn`, web identity): the
    /// role's trust policy does not name the caller, or the caller may not assume it.
    #[error(
        "AWS STS denied {action} on role {role_arn} to {caller}: the role's trust policy must allow {caller} to assume it (Principal and Action {action}{external_id}), and {caller} needs permission for {action} on the role"
    )]
    AssumeRoleDenied {
        /// `sts:AssumeRole` or `sts:AssumeRoleWithWebIdentity`.
        action: &'static str,
        /// The role.
        role_arn: String,
        /// Who asked, as STS named it, or a description when it did not.
        caller: String,
        /// ", with the sts:ExternalId condition …" when an external id was sent, or empty.
        external_id: String,
    },
    /// The cluster or workgroup does not exist in the region.
    #[error(
        "{what} \"{name}\" was not found in region {region}: check the name (cluster identifiers are case-sensitive) and the region (region= option or --aws-region)"
    )]
    NotFound {
        /// `cluster` or `workgroup`.
        what: &'static str,
        /// Its name.
        name: String,
        /// The region asked.
        region: String,
    },
    /// AWS could not be reached, kept throttling, or failed in some other transient way.
    #[error("{0}")]
    AwsUnavailable(String),
    /// The source could not provide credentials for another reason.
    #[error("{message}")]
    Unavailable {
        /// SQLSTATE for the client.
        sqlstate: &'static str,
        /// What went wrong and what to do.
        message: String,
    },
}

impl CredentialError {
    /// The SQLSTATE the client receives: 28000 (invalid authorization) when the fix is a
    /// permission or an identity, 08001 when the server side cannot be reached or named.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            CredentialError::UserNotAllowed { .. }
            | CredentialError::NoUser
            | CredentialError::InvalidDbUser { .. }
            | CredentialError::AccessDenied { .. }
            | CredentialError::NoAwsCredentials { .. }
            | CredentialError::SsoExpired { .. }
            | CredentialError::ProfileNotFound { .. }
            | CredentialError::SourceProfileNotFound { .. }
            | CredentialError::WebIdentityTokenUnreadable { .. }
            | CredentialError::WebIdentityTokenRefused { .. }
            | CredentialError::AssumeRoleDenied { .. } => sqlstate::INVALID_AUTHORIZATION,
            CredentialError::NotFound { .. } | CredentialError::AwsUnavailable(_) => {
                sqlstate::CLIENT_UNABLE_TO_ESTABLISH_CONNECTION
            }
            CredentialError::Unavailable { sqlstate, .. } => sqlstate,
        }
    }

    /// A short, fixed label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            CredentialError::UserNotAllowed { .. } => "user_not_allowed",
            CredentialError::NoUser => "no_user",
            CredentialError::InvalidDbUser { .. } => "invalid_db_user",
            CredentialError::AccessDenied { .. } => "access_denied",
            CredentialError::NoAwsCredentials { .. } => "no_aws_credentials",
            CredentialError::SsoExpired { .. } => "sso_expired",
            CredentialError::ProfileNotFound { .. }
            | CredentialError::SourceProfileNotFound { .. } => "aws_profile_missing",
            CredentialError::WebIdentityTokenUnreadable { .. }
            | CredentialError::WebIdentityTokenRefused { .. } => "web_identity_token",
            CredentialError::AssumeRoleDenied { .. } => "assume_role_denied",
            CredentialError::NotFound { .. } => "not_found",
            CredentialError::AwsUnavailable(_) => "aws_unavailable",
            CredentialError::Unavailable { .. } => "unavailable",
        }
    }

    /// Answers that will not change in the next seconds, so a crowd of clients should get
    /// the remembered answer instead of each calling AWS again.
    pub fn is_remembered(&self) -> bool {
        matches!(
            self,
            CredentialError::AccessDenied { .. }
                | CredentialError::NotFound { .. }
                | CredentialError::NoAwsCredentials { .. }
                | CredentialError::SsoExpired { .. }
                | CredentialError::ProfileNotFound { .. }
                | CredentialError::SourceProfileNotFound { .. }
                | CredentialError::WebIdentityTokenUnreadable { .. }
                | CredentialError::WebIdentityTokenRefused { .. }
                | CredentialError::AssumeRoleDenied { .. }
        )
    }
}

/// A boxed future, so sources can be used as trait objects.
pub type CredentialFuture<'a> =
    Pin<Box<dyn Future<Output = Result<DbCredentials, CredentialError>> + Send + 'a>>;

/// Anything that can produce credentials for a request: the static password source here,
/// the IAM sources and their cache later.
pub trait CredentialSource: Send + Sync + std::fmt::Debug {
    /// Fetches (or returns cached) credentials for `request`.
    fn credentials<'a>(&'a self, request: &'a CredentialRequest) -> CredentialFuture<'a>;

    /// The name of the API behind this source, for logs and metric labels.
    fn api(&self) -> &'static str;

    /// True when the API derives the database user from the IAM identity (serverless
    /// `GetCredentials`, `GetClusterCredentialsWithIAM`): the client's `user` is then only
    /// checked against `allowed_users`, never sent.
    fn user_from_identity(&self) -> bool {
        false
    }

    /// Forgets `refused`, a password the server refused (it expired between fetch and use,
    /// the user was dropped and re-created, the cluster restored, …), so the next client
    /// fetches a fresh one instead of meeting the same refusal until the old password
    /// expires. Only that password is forgotten: when another session has already replaced
    /// it, the replacement stays, so a crowd of sessions refused together makes one new call,
    /// not one each. Sources without a cache ignore it.
    fn invalidate(&self, _request: &CredentialRequest, _refused: &DbCredentials) {}
}

/// Decides the database user (`docs/configuration.md`, targets): the target's fixed `db_user` when
/// set, otherwise the client's `user`, which must then be on `allowed_users` if that is set.
///
/// With `from_identity` the API derives the user from the IAM identity: the client's user is
/// still checked against the list, and `None` is returned.
pub fn resolve_db_user(
    fixed: Option<&str>,
    client_user: Option<&str>,
    allowed_users: &[String],
    allowed_source: &str,
    from_identity: bool,
) -> Result<Option<String>, CredentialError> {
    if let Some(user) = client_user.filter(|_| !allowed_users.is_empty())
        && !allowed_users.iter().any(|allowed| allowed == user)
    {
        return Err(CredentialError::UserNotAllowed {
            user: user.to_owned(),
            allowed: allowed_users.join(", "),
            source_name: allowed_source.to_owned(),
        });
    }
    if from_identity {
        return Ok(None);
    }
    match (fixed, client_user) {
        (Some(user), _) => Ok(Some(user.to_owned())),
        (None, Some(user)) if !user.is_empty() => Ok(Some(user.to_owned())),
        _ => Err(CredentialError::NoUser),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_user_wins() {
        assert_eq!(
            resolve_db_user(Some("alice"), Some("bob"), &[], "t", false).unwrap(),
            Some("alice".to_owned())
        );
    }

    #[test]
    fn client_user_checked_against_list() {
        let allowed = vec!["bob".to_owned()];
        assert_eq!(
            resolve_db_user(None, Some("bob"), &allowed, "t", false).unwrap(),
            Some("bob".to_owned())
        );
        let err = resolve_db_user(None, Some("eve"), &allowed, "target x", false).unwrap_err();
        assert_eq!(err.sqlstate(), "28000");
        assert!(err.to_string().contains("\"eve\"") && err.to_string().contains("target x"));
        assert_eq!(
            resolve_db_user(None, None, &[], "t", false).unwrap_err(),
            CredentialError::NoUser
        );
        // The IAM identity decides the user; the list still guards the door.
        assert_eq!(
            resolve_db_user(None, Some("bob"), &allowed, "t", true).unwrap(),
            None
        );
        assert!(resolve_db_user(None, Some("eve"), &allowed, "t", true).is_err());
    }
}
