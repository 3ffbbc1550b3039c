//! Serverless workgroups: `redshift-serverless:GetCredentials`. The database user is derived
//! from the IAM identity (`IAMR:role` or `IAM:user`), so the request carries no user.

use super::aws::AwsClients;
use super::aws_errors::{self, AnswerFields, Call, credentials_from_answer};
use super::{
    CredentialError, CredentialFuture, CredentialRequest, CredentialSource, DbCredentials,
};

/// Credentials for one workgroup.
#[derive(Clone)]
pub struct ServerlessCredentials {
    clients: AwsClients,
    client: aws_sdk_redshiftserverless::Client,
    workgroup: String,
    region: String,
    account: Option<String>,
    duration_seconds: u32,
    custom_domain: Option<String>,
}

/// What the source asks for, without the SDK client (its configuration holds AWS keys).
impl std::fmt::Debug for ServerlessCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerlessCredentials")
            .field("clients", &self.clients)
            .field("workgroup", &self.workgroup)
            .field("region", &self.region)
            .field("account", &self.account)
            .field("duration_seconds", &self.duration_seconds)
            .field("custom_domain", &self.custom_domain)
            .finish_non_exhaustive()
    }
}

impl ServerlessCredentials {
    /// A source for `workgroup` in `region`, calling through `clients`.
    pub fn new(
        clients: &AwsClients,
        workgroup: String,
        region: String,
        account: Option<String>,
        duration_seconds: u32,
        custom_domain: Option<String>,
    ) -> ServerlessCredentials {
        ServerlessCredentials {
            client: clients.serverless(&region),
            clients: clients.clone(),
            workgroup,
            region,
            account,
            duration_seconds,
            custom_domain,
        }
    }

    fn call(&self) -> Call {
        Call {
            action: "redshift-serverless:GetCredentials",
            resource: format!(
                "arn:aws:redshift-serverless:{}:{}:workgroup/* (the workgroup named {})",
                self.region,
                self.account.as_deref().unwrap_or("ACCOUNT_ID"),
                self.workgroup
            ),
            extra: String::new(),
            object: ("workgroup", self.workgroup.clone()),
            region: self.region.clone(),
        }
    }

    async fn fetch(&self, request: &CredentialRequest) -> Result<DbCredentials, CredentialError> {
        let call = self.call();
        let out = self
            .client
            .get_credentials()
            .workgroup_name(&self.workgroup)
            .db_name(&request.database)
            .duration_seconds(i32::try_from(self.duration_seconds).unwrap_or(900))
            .set_custom_domain_name(self.custom_domain.clone())
            .send()
            .await
            .map_err(|e| aws_errors::classify(e, &call, &self.clients))?;
        credentials_from_answer(
            &call,
            AnswerFields {
                user: ("dbUser", out.db_user()),
                password: ("dbPassword", out.db_password()),
                expiration: ("expiration", out.expiration()),
            },
        )
    }
}

impl CredentialSource for ServerlessCredentials {
    fn credentials<'a>(&'a self, request: &'a CredentialRequest) -> CredentialFuture<'a> {
        Box::pin(self.fetch(request))
    }

    fn api(&self) -> &'static str {
        "GetCredentials"
    }

    fn user_from_identity(&self) -> bool {
        true
    }
}
