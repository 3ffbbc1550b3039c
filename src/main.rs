//! The binary: parse flags, load configuration, set up logging, build each target's
//! credential source and TLS configuration, serve until SIGINT/SIGTERM.

use std::process::ExitCode;

use clap::Parser;
use redshift_auth_proxy::check::check_target;
use redshift_auth_proxy::config::{Cli, LogFormat, ProxyConfig};
use redshift_auth_proxy::server::Server;
use redshift_auth_proxy::setup::{Assembled, assemble};
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
    match runtime.block_on(run(config, cli.check)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("redshift-auth-proxy: {e}");
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

async fn run(config: ProxyConfig, check: bool) -> anyhow::Result<bool> {
    let assembled = assemble(&config).await?;
    if check {
        return Ok(run_checks(&assembled).await);
    }
    let server = Server::bind(assembled.targets).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    server.run(shutdown).await;
    tracing::info!("stopped");
    Ok(true)
}

/// `--check`: one line per target on stdout; true when every target works.
async fn run_checks(assembled: &Assembled) -> bool {
    let os_user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok();
    let mut all_ok = true;
    for (_, ctx) in &assembled.targets {
        let report = check_target(ctx, os_user.as_deref()).await;
        all_ok &= report.error.is_none();
        println!("{}", report.line());
    }
    all_ok
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
