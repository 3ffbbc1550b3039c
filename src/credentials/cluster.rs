//! Provisioned clusters: `redshift:GetClusterCredentials` (a named database user, optional
//! groups and auto-create) or, with `iam_identity`, `redshift:GetClusterCredentialsWithIAM`
//! (the database user is the IAM identity itself).

use super::aws::AwsClients;
use super::aws_errors::{self, AnswerFields, Call, credentials_from_answer};
use super::{
    CredentialError, CredentialFuture, CredentialRequest, CredentialSource, DbCredentials,
};
use crate::target::db_user_problem;

/// Credentials for one provisioned cluster.
#[derive(Clone)]
pub struct ClusterCredentials {
    clients: AwsClients,
    client: aws_sdk_redshift::Client,
    cluster: String,
    region: String,
    account: Option<String>,
    db_groups: Vec<String>,
    auto_create: bool,
    with_iam: bool,
    duration_seconds: u32,
    custom_domain: Option<String>,
}

/// What the target says about the cluster and the credentials it wants.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The cluster identifier (case-sensitive).
    pub cluster: String,
    /// The region to call.
    pub region: String,
    /// The account, when known (for permission messages).
    pub account: Option<String>,
    /// `DbGroups`.
    pub db_groups: Vec<String>,
    /// `AutoCreate`.
    pub auto_create: bool,
    /// Use `GetClusterCredentialsWithIAM`.
    pub with_iam: bool,
    /// `DurationSeconds`.
    pub duration_seconds: u32,
    /// `CustomDomainName`.
    pub custom_domain: Option<String>,
}

/// What the source asks for, without the SDK client (its configuration holds AWS keys).
impl std::fmt::Debug for ClusterCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCredentials")
            .field("clients", &self.clients)
            .field("cluster", &self.cluster)
            .field("region", &self.region)
            .field("account", &self.account)
            .field("db_groups", &self.db_groups)
            .field("auto_create", &self.auto_create)
            .field("with_iam", &self.with_iam)
            .field("duration_seconds", &self.duration_seconds)
            .field("custom_domain", &self.custom_domain)
            .finish_non_exhaustive()
    }
}

impl ClusterCredentials {
    /// A source for the cluster in `options`, calling through `clients`.
    pub fn new(clients: &AwsClients, options: ClusterOptions) -> ClusterCredentials {
        ClusterCredentials {
            client: clients.redshift(&options.region),
            clients: clients.clone(),
            cluster: options.cluster,
            region: options.region,
            account: options.account,
            db_groups: options.db_groups,
            auto_create: options.auto_create,
            with_iam: options.with_iam,
            duration_seconds: options.duration_seconds,
            custom_domain: options.custom_domain,
        }
    }

    fn arn(&self, kind: &str, name: &str) -> String {
        format!(
            "arn:aws:redshift:{}:{}:{kind}:{}/{name}",
            self.region,
            self.account.as_deref().unwrap_or("ACCOUNT_ID"),
            self.cluster
        )
    }

    /// The call as messages describe it, with the extra permissions the options need.
    fn call(&self, request: &CredentialRequest) -> Call {
        let (action, resource) = if self.with_iam {
            (
                "redshift:GetClusterCredentialsWithIAM",
                self.arn("dbname", &request.database),
            )
        } else {
            let user = request.db_user.as_deref().unwrap_or("*");
            ("redshift:GetClusterCredentials", self.arn("dbuser", user))
        };
        let mut extra = String::new();
        if !self.with_iam {
            extra.push_str(&format!(
                "; the action also needs {}",
                self.arn("dbname", &request.database)
            ));
            if !self.db_groups.is_empty() {
                extra.push_str(&format!(
                    "; db_groups needs redshift:JoinGroup on {}",
                    self.db_groups
                        .iter()
                        .map(|g| self.arn("dbgroup", g))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if self.auto_create {
                extra.push_str(&format!(
                    "; auto_create needs redshift:CreateClusterUser on {}",
                    self.arn("dbuser", request.db_user.as_deref().unwrap_or("*"))
                ));
            }
        }
        Call {
            action,
            resource,
            extra,
            object: ("cluster", self.cluster.clone()),
            region: self.region.clone(),
        }
    }

    async fn fetch(&self, request: &CredentialRequest) -> Result<DbCredentials, CredentialError> {
        let call = self.call(request);
        let duration = i32::try_from(self.duration_seconds).unwrap_or(900);
        if self.with_iam {
            let out = self
                .client
                .get_cluster_credentials_with_iam()
                .cluster_identifier(&self.cluster)
                .db_name(&request.database)
                .duration_seconds(duration)
                .set_custom_domain_name(self.custom_domain.clone())
                .send()
                .await
                .map_err(|e| aws_errors::classify(e, &call, &self.clients))?;
            return credentials_from_answer(
                &call,
                AnswerFields {
                    user: ("DbUser", out.db_user()),
                    password: ("DbPassword", out.db_password()),
                    expiration: ("Expiration", out.expiration()),
                },
            );
        }
        let user = request.db_user.as_deref().ok_or(CredentialError::NoUser)?;
        if let Some(why) = db_user_problem(user) {
            return Err(CredentialError::InvalidDbUser {
                user: user.to_owned(),
                why,
            });
        }
        let out = self
            .client
            .get_cluster_credentials()
            .cluster_identifier(&self.cluster)
            .db_user(user)
            .db_name(&request.database)
            .duration_seconds(duration)
            .auto_create(self.auto_create)
            .set_db_groups((!self.db_groups.is_empty()).then(|| self.db_groups.clone()))
            .set_custom_domain_name(self.custom_domain.clone())
            .send()
            .await
            .map_err(|e| aws_errors::classify(e, &call, &self.clients))?;
        credentials_from_answer(
            &call,
            AnswerFields {
                user: ("DbUser", out.db_user()),
                password: ("DbPassword", out.db_password()),
                expiration: ("Expiration", out.expiration()),
            },
        )
    }
}

impl CredentialSource for ClusterCredentials {
    fn credentials<'a>(&'a self, request: &'a CredentialRequest) -> CredentialFuture<'a> {
        Box::pin(self.fetch(request))
    }

    fn api(&self) -> &'static str {
        if self.with_iam {
            "GetClusterCredentialsWithIAM"
        } else {
            "GetClusterCredentials"
        }
    }

    fn user_from_identity(&self) -> bool {
        self.with_iam
    }
}
