//! The AWS side shared by every IAM target: one `SdkConfig` from aws-config's default
//! credential chain (environment, shared files with SSO, web identity/IRSA, EKS Pod Identity,
//! ECS, instance metadata), built anew when the SSO portal refuses its token, optionally
//! assuming a role first, and the Redshift and Redshift Serverless clients built from it for
//! each target's region.

use std::sync::Arc;
use std::time::Duration;

use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;

use super::CredentialError;
use super::aws_errors;
use super::aws_profiles::AwsProfiles;
use super::sso_reload::{BuildChain, ReloadOnSsoRefusal};
use crate::target::{Target, TargetKind};

/// The AWS settings (`--aws-profile`, `--aws-region`, `--role-arn`, …).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsSettings {
    /// A named profile from `~/.aws/config` instead of `AWS_PROFILE`/`default`.
    pub profile: Option<String>,
    /// The region for every credential API call, overriding the endpoint's region.
    pub region: Option<String>,
    /// A role to assume (with the chain's credentials) before calling the credential APIs.
    pub role_arn: Option<String>,
    /// The external id the role's trust policy asks for.
    pub role_external_id: Option<String>,
    /// The session name CloudTrail shows for the assumed role.
    pub role_session_name: Option<String>,
    /// Where the Redshift APIs are (VPC endpoints, tests); `AWS_ENDPOINT_URL` also works.
    pub endpoint_url: Option<String>,
}

/// Clients for the credential APIs, ready for any target's region.
#[derive(Clone)]
pub struct AwsClients {
    config: SdkConfig,
    settings: AwsSettings,
    /// The shared files as the chain read them at start-up, to explain its failures.
    profiles: AwsProfiles,
}

/// Only the settings: the SDK configuration holds the credential chain, whose cached AWS
/// keys (access key id, and the secret key and session token should the SDK's own redaction
/// ever slip) must not reach a log line through a `{:?}` of a target.
impl std::fmt::Debug for AwsClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsClients")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Initial and largest wait between retries of throttled or failed calls; the SDK adds
/// full jitter, so a crowd of proxies restarting together spreads out.
const RETRY_INITIAL_BACKOFF: Duration = Duration::from_millis(100);
const RETRY_MAX_BACKOFF: Duration = Duration::from_secs(2);
const RETRY_MAX_ATTEMPTS: u32 = 6;

/// aws-config's default chain and the settings every call uses: retries, the deadline, the
/// profile, the region for STS and SSO. `fallback_region` (the first target's) is used when
/// neither `--aws-region` nor the environment or profile names one.
async fn base_config(
    settings: &AwsSettings,
    fallback_region: Option<&str>,
    deadline: Duration,
) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(RETRY_MAX_ATTEMPTS)
                .with_initial_backoff(RETRY_INITIAL_BACKOFF)
                .with_max_backoff(RETRY_MAX_BACKOFF),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(deadline)
                .connect_timeout(deadline)
                .build(),
        );
    if let Some(profile) = &settings.profile {
        loader = loader.profile_name(profile);
    }
    // --aws-region, else the environment or profile, else the first target's region:
    // never instance metadata, whose lookup only delays start-up when a target names one.
    let mut profile_region = aws_config::profile::ProfileFileRegionProvider::builder();
    if let Some(profile) = &settings.profile {
        profile_region = profile_region.profile_name(profile);
    }
    let region = RegionProviderChain::first_try(settings.region.clone().map(Region::new))
        .or_else(aws_config::environment::region::EnvironmentVariableRegionProvider::new())
        .or_else(profile_region.build())
        .or_else(fallback_region.map(|r| Region::new(r.to_owned())));
    loader.region(region).load().await
}

impl AwsClients {
    /// Loads the credential chain once. `fallback_region` (the first target's) is used for
    /// STS and SSO when neither `--aws-region` nor the environment or profile names one.
    /// Every call, retries included, must finish within `deadline` (`--connect-timeout`).
    pub async fn load(
        settings: &AwsSettings,
        fallback_region: Option<&str>,
        deadline: Duration,
    ) -> AwsClients {
        let mut config = base_config(settings, fallback_region, deadline).await;
        // The chain, replaced by a fresh one when the SSO portal refuses its token, so a new
        // sign-in works without a restart (see sso_reload.rs).
        if let Some(chain) = config.credentials_provider() {
            let (settings, fallback_region) =
                (settings.clone(), fallback_region.map(str::to_owned));
            let build: BuildChain = Arc::new(move || {
                let (settings, fallback_region) = (settings.clone(), fallback_region.clone());
                Box::pin(async move {
                    base_config(&settings, fallback_region.as_deref(), deadline)
                        .await
                        .credentials_provider()
                })
            });
            config = config
                .into_builder()
                .credentials_provider(SharedCredentialsProvider::new(ReloadOnSsoRefusal::new(
                    chain, build,
                )))
                .build();
        }
        if let Some(role_arn) = &settings.role_arn {
            let mut role = aws_config::sts::AssumeRoleProvider::builder(role_arn)
                .session_name(
                    settings
                        .role_session_name
                        .clone()
                        .unwrap_or_else(|| "redshift-auth-proxy".to_owned()),
                )
                .configure(&config);
            if let Some(external_id) = &settings.role_external_id {
                role = role.external_id(external_id);
            }
            let provider = role.build().await;
            config = config
                .into_builder()
                .credentials_provider(SharedCredentialsProvider::new(provider))
                .build();
        }
        let profiles = AwsProfiles::load(settings.profile.as_deref()).await;
        AwsClients::from_sdk_config(config, settings.clone()).with_profiles(profiles)
    }

    /// Clients over an already loaded SDK configuration (tests give one with fixed keys).
    pub fn from_sdk_config(config: SdkConfig, settings: AwsSettings) -> AwsClients {
        let profiles = AwsProfiles::unread(settings.profile.as_deref());
        AwsClients {
            config,
            settings,
            profiles,
        }
    }

    pub(super) fn with_profiles(mut self, profiles: AwsProfiles) -> AwsClients {
        self.profiles = profiles;
        self
    }

    /// The shared files as read at start-up.
    pub(super) fn profiles(&self) -> &AwsProfiles {
        &self.profiles
    }

    /// The settings the clients were loaded with.
    pub(super) fn settings(&self) -> &AwsSettings {
        &self.settings
    }

    /// The region calls for `target` go to: `--aws-region`, else the target's.
    pub fn region_for(&self, target: &Target) -> Option<String> {
        self.settings
            .region
            .clone()
            .or_else(|| target.region.clone())
    }

    /// The profile name for messages (`default` when none is set).
    pub fn profile_name(&self) -> String {
        self.settings
            .profile
            .clone()
            .or_else(|| std::env::var("AWS_PROFILE").ok())
            .unwrap_or_else(|| "default".to_owned())
    }

    /// A Redshift (provisioned) client for `region`.
    pub fn redshift(&self, region: &str) -> aws_sdk_redshift::Client {
        let mut builder = aws_sdk_redshift::config::Builder::from(&self.config)
            .region(Region::new(region.to_owned()));
        if let Some(url) = &self.settings.endpoint_url {
            builder = builder.endpoint_url(url);
        }
        aws_sdk_redshift::Client::from_conf(builder.build())
    }

    /// A Redshift Serverless client for `region`.
    pub fn serverless(&self, region: &str) -> aws_sdk_redshiftserverless::Client {
        let mut builder = aws_sdk_redshiftserverless::config::Builder::from(&self.config)
            .region(Region::new(region.to_owned()));
        if let Some(url) = &self.settings.endpoint_url {
            builder = builder.endpoint_url(url);
        }
        aws_sdk_redshiftserverless::Client::from_conf(builder.build())
    }
}

/// Finds the address and port of a target written in a JDBC short form
/// (`jdbc:redshift:iam://CLUSTER:REGION/DB`), as the Redshift drivers do: `DescribeClusters`
/// for a cluster, `GetWorkgroup` for a workgroup.
pub async fn lookup_endpoint(
    clients: &AwsClients,
    target: &Target,
) -> Result<(String, u16), CredentialError> {
    let region = clients.region_for(target).unwrap_or_default();
    let missing = |what: &str| {
        CredentialError::AwsUnavailable(format!(
            "{} \"{}\" has no endpoint yet (is it still being created?): write its endpoint instead of the JDBC short form",
            what,
            target.label()
        ))
    };
    match &target.kind {
        TargetKind::Provisioned { cluster } => {
            let out = clients
                .redshift(&region)
                .describe_clusters()
                .cluster_identifier(cluster)
                .send()
                .await
                .map_err(|e| {
                    aws_errors::classify(
                        e,
                        &aws_errors::Call::describe_cluster(cluster, &region),
                        clients,
                    )
                })?;
            let endpoint = out
                .clusters()
                .first()
                .and_then(|c| c.endpoint())
                .ok_or_else(|| missing("cluster"))?;
            let address = endpoint.address().ok_or_else(|| missing("cluster"))?;
            let port = endpoint
                .port()
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(5439);
            Ok((address.to_owned(), port))
        }
        TargetKind::Serverless { workgroup } => {
            let out = clients
                .serverless(&region)
                .get_workgroup()
                .workgroup_name(workgroup)
                .send()
                .await
                .map_err(|e| {
                    aws_errors::classify(
                        e,
                        &aws_errors::Call::get_workgroup(workgroup, &region),
                        clients,
                    )
                })?;
            let endpoint = out
                .workgroup()
                .and_then(|w| w.endpoint())
                .ok_or_else(|| missing("workgroup"))?;
            let address = endpoint.address().ok_or_else(|| missing("workgroup"))?;
            let port = endpoint
                .port()
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(5439);
            Ok((address.to_owned(), port))
        }
        TargetKind::Unknown => Ok((target.host.clone(), target.upstream_port)),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use aws_credential_types::Credentials;
    use aws_credential_types::provider::SharedCredentialsProvider;

    use super::*;
    use crate::credentials::{
        CachePolicy, CachedSource, ClusterCredentials, ClusterOptions, ServerlessCredentials,
    };
    use crate::ops::metrics::TargetMetrics;

    const ACCESS_KEY_ID: &str = "AKIDDEBUGPRINTCHECK";
    const SECRET_KEY: &str = "debug-print-check-secret-access-key";
    const SESSION_TOKEN: &str = "debug-print-check-session-token";

    #[tokio::test]
    async fn no_aws_key_is_printable_through_a_source() {
        let config = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                ACCESS_KEY_ID,
                SECRET_KEY,
                Some(SESSION_TOKEN.to_owned()),
                None,
                "test",
            )))
            .build();
        let clients = AwsClients::from_sdk_config(config, AwsSettings::default());
        let cluster = ClusterCredentials::new(
            &clients,
            ClusterOptions {
                cluster: "c1".to_owned(),
                region: "us-east-1".to_owned(),
                account: None,
                db_groups: vec![],
                auto_create: false,
                with_iam: false,
                duration_seconds: 900,
                custom_domain: None,
            },
        );
        let serverless = ServerlessCredentials::new(
            &clients,
            "wg".to_owned(),
            "us-east-1".to_owned(),
            None,
            900,
            None,
        );
        let cached = CachedSource::new(
            Arc::new(cluster.clone()),
            CachePolicy::default(),
            TargetMetrics::detached("t"),
        );
        let text = format!("{clients:?} {cluster:?} {serverless:#?} {cached:?}");
        assert!(text.contains("c1") && text.contains("wg"), "{text}");
        for secret in [ACCESS_KEY_ID, SECRET_KEY, SESSION_TOKEN] {
            assert!(!text.contains(secret), "{secret} printed: {text}");
        }
    }
}
