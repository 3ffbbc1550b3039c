//! Turns a validated `ProxyConfig` into what the listeners serve: for each target, its
//! credential source (static, or an AWS API behind the cache), its upstream endpoint (looked
//! up in AWS for the JDBC short forms) and its TLS configuration; and, once for all targets,
//! the client TLS configuration and client authentication. The binary and the end-to-end
//! tests build the proxy through this one path.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::cancel::peer_list::PeerResolver;
use crate::cancel::peer_secret::{PeerSecret, PeerSecretError};
use crate::cancel::{CancelRouter, Peering};
use crate::client::auth::{
    ClientAuth, ClientAuthError, ClientAuthMethod, ClientPolicy, ClientSslMode, ScramUsers,
    UsersFileError,
};
use crate::client::tls::{ClientTls, ClientTlsError};
use crate::config::{ClientSettings, ListenTarget, ProxyConfig};
use crate::credentials::{
    AwsClients, CachePolicy, CachedSource, ClusterCredentials, ClusterOptions, CredentialError,
    CredentialSource, ServerlessCredentials, StaticPassword, lookup_endpoint,
};
use crate::ops::metrics::{Metrics, TargetMetrics};
use crate::session::TargetContext;
use crate::target::TargetKind;
use crate::upstream::UpstreamEndpoint;
use crate::upstream::compression::WireCounters;
use crate::upstream::tls::{TlsConfigError, upstream_client_config};
use crate::upstream::warm::{WarmBudget, WarmPool, WarmPools};

/// A target that cannot be set up; the message names the target and the fix.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// `password_env` names an unset variable.
    #[error("target {target}: {source}")]
    Password {
        /// The target's label.
        target: String,
        /// Which variable.
        source: crate::credentials::MissingPasswordEnv,
    },
    /// The TLS settings do not load (CA file unreadable, …).
    #[error("target {target}: {source}")]
    Tls {
        /// The target's label.
        target: String,
        /// Why.
        source: TlsConfigError,
    },
    /// A JDBC short form whose endpoint could not be looked up.
    #[error("target {target}: cannot look up its endpoint: {source}")]
    Lookup {
        /// The target's label.
        target: String,
        /// Why.
        source: CredentialError,
    },
    /// The client TLS certificate, key or CA cannot be used.
    #[error("client TLS: {0}")]
    ClientTls(#[from] ClientTlsError),
    /// The users file for `--client-auth scram` cannot be used.
    #[error(transparent)]
    ClientUsers(#[from] UsersFileError),
    /// `scram` without a users file (refused by config validation, so only reachable
    /// through the library API).
    #[error("client_auth = scram needs a users file (--client-users FILE)")]
    NoUsersFile,
    /// Client authentication cannot be set up.
    #[error("client authentication: {0}")]
    ClientAuth(#[from] ClientAuthError),
    /// `--peer-secret-file` cannot be used.
    #[error(transparent)]
    PeerSecret(#[from] PeerSecretError),
    /// A target with neither a password nor an AWS name (refused by config validation, so
    /// only reachable through the library API).
    #[error(
        "target {0}: no credential source: set password_env, or cluster=/workgroup= with region="
    )]
    NoSource(String),
}

/// The listeners' work, ready to bind.
#[derive(Debug)]
pub struct Assembled {
    /// Each target's listen address and context, in order.
    pub targets: Vec<(SocketAddr, Arc<TargetContext>)>,
    /// The cancel router every target and the peer listener share.
    pub cancel: Arc<CancelRouter>,
    /// Keeps `--peers` resolved; the binary resolves once, then runs it.
    pub peer_resolver: Option<PeerResolver>,
    /// The client TLS configuration, for the reload watcher.
    pub client_tls: Option<Arc<ClientTls>>,
    /// The warm-session pools of the targets that keep them, for the stop sequence.
    pub warm: WarmPools,
}

/// Builds every target of `config`. AWS credentials are only loaded when some target needs
/// them, so static-password setups never touch AWS.
pub async fn assemble(
    config: &ProxyConfig,
    metrics: &Arc<Metrics>,
) -> Result<Assembled, SetupError> {
    let (cancel, peer_resolver) = cancel_router(config, metrics)?;
    let first_region = config
        .targets
        .iter()
        .filter(|t| !t.target.is_static())
        .find_map(|t| t.target.region.clone());
    let aws = match config.targets.iter().any(|t| !t.target.is_static()) {
        true => Some(
            AwsClients::load(&config.aws, first_region.as_deref(), config.connect_timeout).await,
        ),
        false => None,
    };
    let client = Arc::new(client_policy(&config.client)?);
    let client_tls = client.tls.clone();
    let budget = WarmBudget::new(config.warm.max_total);
    let mut warm = WarmPools::default();
    let mut targets = Vec::with_capacity(config.targets.len());
    for listen in &config.targets {
        let target_metrics = metrics.target(listen.target.label());
        let mut ctx = target_context(
            config,
            listen,
            aws.as_ref(),
            &cancel,
            &client,
            target_metrics,
        )
        .await?;
        if listen.warm_sessions > 0 {
            let pool = WarmPool::start(
                listen.warm_sessions,
                config.warm,
                budget.clone(),
                ctx.endpoint.clone(),
                ctx.credentials.clone(),
                ctx.metrics.clone(),
            );
            warm.push(pool.clone());
            ctx.warm = Some(pool);
        }
        targets.push((listen.listen, Arc::new(ctx)));
    }
    Ok(Assembled {
        targets,
        cancel,
        peer_resolver,
        client_tls,
        warm,
    })
}

/// The cancel router: with peer settings, the shared secret (read now, so a bad file stops
/// the start) and the resolver of `--peers`.
pub fn cancel_router(
    config: &ProxyConfig,
    metrics: &Arc<Metrics>,
) -> Result<(Arc<CancelRouter>, Option<PeerResolver>), SetupError> {
    let Some(peers) = &config.peers else {
        return Ok((CancelRouter::new(metrics.clone(), None), None));
    };
    let secret = Arc::new(PeerSecret::load(&peers.secret_file)?);
    let (resolver, addresses) = match &peers.peers {
        Some(list) => {
            let (resolver, addresses) = PeerResolver::new(list.clone(), metrics.clone());
            (Some(resolver), Some(addresses))
        }
        None => (None, None),
    };
    let peering = Peering {
        secret,
        addresses,
        forward_timeout: peers.forward_timeout,
    };
    Ok((CancelRouter::new(metrics.clone(), Some(peering)), resolver))
}

/// Loads the client TLS files (or makes the self-signed certificate, logging its
/// fingerprint) and the users file.
pub fn client_policy(settings: &ClientSettings) -> Result<ClientPolicy, SetupError> {
    let tls = match &settings.tls {
        Some(tls_settings) => {
            let tls = ClientTls::load(tls_settings.clone())?;
            if tls.is_self_signed() {
                tracing::info!(
                    fingerprint_sha256 = %tls.fingerprint(),
                    "client TLS: generated a self-signed certificate; clients cannot verify it against a CA, compare or pin this fingerprint"
                );
            } else {
                tracing::info!(fingerprint_sha256 = %tls.fingerprint(), "client TLS certificate loaded");
            }
            Some(Arc::new(tls))
        }
        None => None,
    };
    let auth = match settings.auth {
        ClientAuthMethod::Trust => ClientAuth::Trust,
        ClientAuthMethod::Cert => ClientAuth::Cert,
        method @ (ClientAuthMethod::Scram | ClientAuthMethod::Password) => {
            let path = settings
                .users_file
                .as_deref()
                .ok_or(SetupError::NoUsersFile)?;
            let users = ScramUsers::load(path)?;
            tracing::info!(users = users.len(), file = %path.display(), method = method.as_str(), "client authentication");
            if method == ClientAuthMethod::Password {
                ClientAuth::password(users)?
            } else {
                ClientAuth::scram(users)?
            }
        }
    };
    Ok(ClientPolicy {
        tls,
        require_tls: settings.sslmode == ClientSslMode::Require,
        auth,
    })
}

async fn target_context(
    config: &ProxyConfig,
    listen: &ListenTarget,
    aws: Option<&AwsClients>,
    cancel: &Arc<CancelRouter>,
    client: &Arc<ClientPolicy>,
    metrics: TargetMetrics,
) -> Result<TargetContext, SetupError> {
    let target = &listen.target;
    let label = || target.label().to_owned();
    let credentials = credential_source(listen, aws, &metrics)?;
    let (host, port) = match (target.lookup_endpoint, aws) {
        (true, Some(aws)) => {
            lookup_endpoint(aws, target)
                .await
                .map_err(|source| SetupError::Lookup {
                    target: label(),
                    source,
                })?
        }
        _ => (target.host.clone(), target.upstream_port),
    };
    let tls = upstream_client_config(listen.sslmode, &config.trust).map_err(|source| {
        SetupError::Tls {
            target: label(),
            source,
        }
    })?;
    Ok(TargetContext {
        target: target.clone(),
        endpoint: Arc::new(UpstreamEndpoint {
            host,
            port,
            sslmode: listen.sslmode,
            tls,
            connect_timeout: config.connect_timeout,
            compression: listen.compression,
            wire: WireCounters {
                to_server: metrics.wire_up.clone(),
                from_server: metrics.wire_down.clone(),
            },
        }),
        credentials,
        cancel: cancel.clone(),
        startup_timeout: config.startup_timeout,
        idle_timeout: config.idle_timeout,
        metrics,
        client: client.clone(),
        warm: None,
    })
}

/// The static source for `password_env` targets; otherwise the target's AWS API behind the
/// cache.
fn credential_source(
    listen: &ListenTarget,
    aws: Option<&AwsClients>,
    metrics: &TargetMetrics,
) -> Result<Arc<dyn CredentialSource>, SetupError> {
    let target = &listen.target;
    if let Some(var) = &target.password_env {
        let source = StaticPassword::from_env(var).map_err(|source| SetupError::Password {
            target: target.label().to_owned(),
            source,
        })?;
        return Ok(Arc::new(source));
    }
    let no_source = || SetupError::NoSource(target.label().to_owned());
    let aws = aws.ok_or_else(no_source)?;
    let region = aws.region_for(target).ok_or_else(no_source)?;
    let inner: Arc<dyn CredentialSource> = match &target.kind {
        TargetKind::Provisioned { cluster } => Arc::new(ClusterCredentials::new(
            aws,
            ClusterOptions {
                cluster: cluster.clone(),
                region,
                account: target.account.clone(),
                db_groups: target.db_groups.clone(),
                auto_create: target.auto_create,
                with_iam: target.iam_identity,
                duration_seconds: target.duration_seconds,
                custom_domain: target.custom_domain.clone(),
            },
        )),
        TargetKind::Serverless { workgroup } => Arc::new(ServerlessCredentials::new(
            aws,
            workgroup.clone(),
            region,
            target.account.clone(),
            target.duration_seconds,
            target.custom_domain.clone(),
        )),
        TargetKind::Unknown => return Err(no_source()),
    };
    Ok(Arc::new(CachedSource::new(
        inner,
        CachePolicy::default(),
        metrics.clone(),
    )))
}
