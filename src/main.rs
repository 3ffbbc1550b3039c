//! The binary: parse flags, load configuration, set up logging, build each target's
//! credential source and TLS configuration, serve until SIGINT/SIGTERM.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Parser;
use redshift_auth_proxy::cancel::CancelRegistry;
use redshift_auth_proxy::config::{Cli, LogFormat, ProxyConfig};
use redshift_auth_proxy::credentials::{CredentialSource, StaticPassword};
use redshift_auth_proxy::server::Server;
use redshift_auth_proxy::session::TargetContext;
use redshift_auth_proxy::tls::upstream_client_config;
use redshift_auth_proxy::upstream::UpstreamEndpoint;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match ProxyConfig::load(&cli) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("redshift-auth-proxy: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("redshift-auth-proxy: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("redshift-auth-proxy: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &ProxyConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

async fn run(config: ProxyConfig) -> anyhow::Result<()> {
    let cancel = CancelRegistry::new();
    let mut targets = Vec::new();
    for listen in &config.targets {
        let target = &listen.target;
        let credentials: Arc<dyn CredentialSource> = match &target.password_env {
            Some(var) => Arc::new(StaticPassword::from_env(var)?),
            None => bail!(
                "target {}: this build has no IAM credential source yet; set password_env=VAR on the target to log in with a static password",
                target.label()
            ),
        };
        let tls = upstream_client_config(listen.sslmode, &config.trust)
            .with_context(|| format!("target {}", target.label()))?;
        let endpoint = Arc::new(UpstreamEndpoint {
            host: target.host.clone(),
            port: target.upstream_port,
            sslmode: listen.sslmode,
            tls,
            connect_timeout: config.connect_timeout,
        });
        let ctx = Arc::new(TargetContext {
            target: target.clone(),
            endpoint,
            credentials,
            cancel: cancel.clone(),
            startup_timeout: config.startup_timeout,
        });
        targets.push((listen.listen, ctx));
    }
    let server = Server::bind(targets).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    server.run(shutdown).await;
    tracing::info!("stopped");
    Ok(())
}

/// Ends the proxy on SIGINT or SIGTERM.
async fn stop_on_signal(shutdown: CancellationToken) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down");
    shutdown.cancel();
}
