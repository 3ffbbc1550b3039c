//! The credential chain, built anew after the SSO portal refuses its token, so that signing
//! in again (`aws sso login` or `redshift-auth-proxy sso-login`) works for a proxy that is
//! already serving. aws-config's `sso-session` token provider keeps the token it read from
//! `~/.aws/sso/cache/` in memory until the token's own `expiresAt`: a session the portal has
//! ended sooner (signed out, revoked, past its session duration) would otherwise be presented
//! again and again until the proxy restarts, whatever file the new sign-in wrote. A fresh
//! chain reads the file again on its next call.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{self, ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_sso::error::SdkError;
use aws_sdk_sso::operation::get_role_credentials::GetRoleCredentialsError;

use super::aws_errors::find_in_chain;

/// Builds a fresh chain.
pub type BuildChain = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = Option<SharedCredentialsProvider>> + Send>>
        + Send
        + Sync,
>;

/// A credential chain replaced by a freshly built one whenever the SSO portal refuses the
/// token it presented.
pub struct ReloadOnSsoRefusal {
    current: Mutex<SharedCredentialsProvider>,
    build: BuildChain,
}

impl std::fmt::Debug for ReloadOnSsoRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadOnSsoRefusal").finish_non_exhaustive()
    }
}

impl ReloadOnSsoRefusal {
    /// `current` until the portal refuses it, then what `build` makes.
    pub fn new(current: SharedCredentialsProvider, build: BuildChain) -> ReloadOnSsoRefusal {
        ReloadOnSsoRefusal {
            current: Mutex::new(current),
            build,
        }
    }

    fn current(&self) -> SharedCredentialsProvider {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn credentials(&self) -> provider::Result {
        let chain = self.current();
        let result = chain.provide_credentials().await;
        if let Err(error) = &result
            && portal_refused(error)
            && let Some(fresh) = (self.build)().await
        {
            tracing::debug!("the SSO portal refused the token: the credential chain is rebuilt");
            *self.current.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
        }
        result
    }
}

impl ProvideCredentials for ReloadOnSsoRefusal {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        provider::future::ProvideCredentials::new(self.credentials())
    }
}

/// The SSO portal said the session is over (`GetRoleCredentials`' 401 `UnauthorizedException`).
fn portal_refused(error: &CredentialsError) -> bool {
    matches!(
        find_in_chain::<SdkError<GetRoleCredentialsError>>(error),
        Some(SdkError::ServiceError(service))
            if matches!(service.err(), GetRoleCredentialsError::UnauthorizedException(_))
    )
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use aws_credential_types::Credentials;

    use super::*;

    #[derive(Debug)]
    struct Failing(&'static str);

    impl ProvideCredentials for Failing {
        fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            provider::future::ProvideCredentials::ready(Err(CredentialsError::not_loaded(self.0)))
        }
    }

    fn fixed(key: &str) -> SharedCredentialsProvider {
        SharedCredentialsProvider::new(Credentials::new(key, "secret", None, None, "test"))
    }

    #[tokio::test]
    async fn other_failures_keep_the_chain() {
        let builds = Arc::new(AtomicUsize::new(0));
        let counter = builds.clone();
        let reloading = ReloadOnSsoRefusal::new(
            SharedCredentialsProvider::new(Failing("no profile")),
            Arc::new(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                Box::pin(async { Some(fixed("AKIDNEW")) })
            }),
        );
        assert!(reloading.provide_credentials().await.is_err());
        assert!(reloading.provide_credentials().await.is_err());
        assert_eq!(builds.load(Ordering::SeqCst), 0);
    }

    /// What the SSO link hands up when the portal answers 401 `UnauthorizedException`.
    fn portal_refusal() -> CredentialsError {
        use aws_sdk_sso::types::error::UnauthorizedException;
        use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
        use aws_smithy_types::body::SdkBody;
        let response = HttpResponse::new(401.try_into().expect("status"), SdkBody::from(""));
        let error = SdkError::service_error(
            GetRoleCredentialsError::UnauthorizedException(
                UnauthorizedException::builder().build(),
            ),
            response,
        );
        CredentialsError::provider_error(CredentialsError::provider_error(error))
    }

    #[derive(Debug)]
    struct Refused;

    impl ProvideCredentials for Refused {
        fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            provider::future::ProvideCredentials::ready(Err(portal_refusal()))
        }
    }

    #[tokio::test]
    async fn a_portal_refusal_is_reported_and_the_next_call_uses_a_fresh_chain() {
        let builds = Arc::new(AtomicUsize::new(0));
        let counter = builds.clone();
        let reloading = ReloadOnSsoRefusal::new(
            SharedCredentialsProvider::new(Refused),
            Arc::new(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                Box::pin(async { Some(fixed("AKIDNEW")) })
            }),
        );
        let error = reloading.provide_credentials().await.unwrap_err();
        assert!(portal_refused(&error), "the refusal reaches the caller");
        assert_eq!(builds.load(Ordering::SeqCst), 1);
        let credentials = reloading.provide_credentials().await.unwrap();
        assert_eq!(credentials.access_key_id(), "AKIDNEW");
        assert_eq!(builds.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn working_credentials_pass_through() {
        let reloading = ReloadOnSsoRefusal::new(
            fixed("AKIDOLD"),
            Arc::new(|| Box::pin(async { Some(fixed("AKIDNEW")) })),
        );
        let credentials = reloading.provide_credentials().await.unwrap();
        assert_eq!(credentials.access_key_id(), "AKIDOLD");
    }
}
