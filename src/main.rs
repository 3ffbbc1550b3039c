//! The binary: parse flags, load configuration, set up logging, build each target's
//! credential source and TLS configuration, serve until SIGINT/SIGTERM. The `hash-password`
//! subcommand prints a users-file line instead, and `sso-login` signs in to IAM Identity
//! Center.

use std::process::ExitCode;

use clap::Parser;
use redshift_auth_proxy::cancel::peer_listener;
use redshift_auth_proxy::check::check_target;
use redshift_auth_proxy::client::tls as client_tls;
use redshift_auth_proxy::config::{Cli, Command, LogFormat, ProxyConfig};
use redshift_auth_proxy::hash_password;
use redshift_auth_proxy::ops::health::Health;
use redshift_auth_proxy::ops::http::{self, HttpState};
use redshift_auth_proxy::ops::log_format::{SafeFields, filter_directives};
use redshift_auth_proxy::ops::metrics::Metrics;
use redshift_auth_proxy::ops::shutdown;
use redshift_auth_proxy::server::{Server, StopTokens};
use redshift_auth_proxy::setup::{Assembled, assemble};
use redshift_auth_proxy::sso_login::{self, SsoLoginOptions};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::HashPassword { user }) = &cli.command {
        return match hash_password::run(user.as_deref()) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("redshift-auth-proxy hash-password: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::SsoLogin {
        profile,
        no_browser,
    }) = &cli.command
    {
        return run_sso_login(SsoLoginOptions {
            profile: profile.clone(),
            open_browser: !*no_browser && redshift_auth_proxy::sso_login::has_desktop(),
        });
    }
    let config = match ProxyConfig::load(&cli) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("redshift-auth-proxy: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = config.worker_threads {
        builder.worker_threads(threads);
    }
    let runtime = match builder.enable_all().build() {
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

/// `sso-login`: the prompt on stderr, one line on stdout when the token is written.
fn run_sso_login(options: SsoLoginOptions) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("redshift-auth-proxy sso-login: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stderr = std::io::stderr();
    match runtime.block_on(sso_login::run(&options, &mut stderr)) {
        Ok(signed_in) => {
            println!(
                "Signed in for profile `{}`: the token is in {} until {}; the proxy, the AWS CLI and the AWS SDKs use it.",
                signed_in.profile,
                signed_in.token_file.display(),
                sso_login::cache_file::format_utc(signed_in.expires_at)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("redshift-auth-proxy sso-login: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &ProxyConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(filter_directives(&config.log_level)))
        .unwrap_or_else(|e| {
            eprintln!(
                "redshift-auth-proxy: --log-level {:?} is not a log filter ({e}); logging at info",
                config.log_level
            );
            EnvFilter::new("info")
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: collectors and files get plain key=value text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match config.log_format {
        LogFormat::Text => builder.fmt_fields(SafeFields).init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_span_list(false)
            .init(),
    }
}

async fn run(config: ProxyConfig, check: bool) -> anyhow::Result<bool> {
    let metrics = Metrics::new();
    let assembled = assemble(&config, &metrics).await?;
    if check {
        return Ok(run_checks(&assembled).await);
    }
    if let Some(address) = config.client.unauthenticated_remote {
        tracing::warn!(
            address = %address,
            "listening on a non-loopback address without client authentication (--allow-unauthenticated-remote): anyone who can reach these ports acts with this proxy's IAM identity"
        );
    }
    let health = Health::new();
    let requested = CancellationToken::new();
    let http_stop = CancellationToken::new();
    if let Some(address) = config.http_address {
        let listener = http::bind(address).await?;
        let state = HttpState {
            metrics: metrics.clone(),
            health: health.clone(),
            quit: config.quitquitquit.then(|| requested.clone()),
        };
        tokio::spawn(http::serve(listener, state, http_stop.clone()));
    }
    let mut server = Server::bind(assembled.targets, config.max_connections).await?;
    // Peers' cancels are taken until the sessions they may target are gone, so the peer
    // listener stops with the HTTP endpoint, after the drain.
    if let Some(address) = config.peers.as_ref().and_then(|p| p.listen) {
        let listener = peer_listener::bind(address).await?;
        tokio::spawn(peer_listener::serve(
            listener,
            assembled.cancel.clone(),
            http_stop.clone(),
        ));
    }
    if let Some(mut resolver) = assembled.peer_resolver {
        resolver.refresh().await;
        tokio::spawn(resolver.run(http_stop.clone()));
    }
    if let Some(dir) = &config.client.unix_socket {
        server.add_unix_socket(dir)?;
    }
    match assembled.client_tls {
        Some(tls) if !tls.watched_files().is_empty() => {
            tokio::spawn(client_tls::watch(
                tls,
                client_tls::POLL_INTERVAL,
                http_stop.clone(),
            ));
        }
        _ => {
            tokio::spawn(shutdown::ignore_hangups());
        }
    }
    let stop = StopTokens::default();
    tokio::spawn(shutdown::watch_signals(requested.clone()));
    tokio::spawn(shutdown::drive(
        requested,
        config.shutdown,
        health.clone(),
        stop.clone(),
        assembled.warm.clone(),
    ));
    let cut = server.run(health, stop).await;
    http_stop.cancel();
    tracing::info!(sessions_cut = cut, "stopped");
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
