//! The stop sequence Kubernetes users need from a sidecar (`docs/operations.md`):
//!
//! 1. a stop is asked for (SIGTERM, SIGINT or `POST /quitquitquit`): readiness fails at once,
//!    and the warm upstream sessions no client has (`--warm-sessions`) are closed, since no
//!    client will get one now and each holds a server session;
//! 2. new connections are still accepted for `--min-sigterm-delay`, because an application
//!    that is itself shutting down often needs one more;
//! 3. the listeners close and open sessions may finish for up to `--max-sigterm-delay`;
//! 4. the rest are ended (ErrorResponse 57P01) and the process exits 0.
//!
//! A second signal exits at once.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::ops::health::Health;
use crate::server::StopTokens;
use crate::upstream::warm::WarmPools;

/// The two delays of the sequence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShutdownDelays {
    /// Keep accepting this long after the stop is asked for.
    pub min: Duration,
    /// Then let open sessions run at most this long.
    pub max: Duration,
}

/// Runs the sequence once `requested` fires; returns when sessions have been told to end.
pub async fn drive(
    requested: CancellationToken,
    delays: ShutdownDelays,
    health: Arc<Health>,
    stop: StopTokens,
    warm: WarmPools,
) {
    requested.cancelled().await;
    health.set_draining();
    let spares_closed = warm.close_all().await;
    tracing::info!(
        min_sigterm_delay_ms = delays.min.as_millis() as u64,
        max_sigterm_delay_ms = delays.max.as_millis() as u64,
        warm_sessions_closed = spares_closed,
        "stop requested: readiness is off, warm sessions closed; still accepting for --min-sigterm-delay"
    );
    tokio::time::sleep(delays.min).await;
    stop.stop_accepting.cancel();
    tracing::info!("listeners closed; open sessions may finish within --max-sigterm-delay");
    tokio::time::sleep(delays.max).await;
    stop.end_sessions.cancel();
}

/// Turns SIGTERM/SIGINT into `requested`; a second signal exits the process at once.
pub async fn watch_signals(requested: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot listen for SIGTERM/SIGINT; stop the proxy with SIGKILL");
        return;
    };
    // The first stop request may also come from POST /quitquitquit; any signal after it
    // is the second.
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
        _ = requested.cancelled() => {}
    }
    requested.cancel();
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::warn!("second signal: exiting now");
    std::process::exit(1);
}

/// Keeps SIGHUP from killing the proxy when there are no client TLS files to reload: its
/// default action would end every session at once, so a `kill -HUP` meant as "reload" (a
/// logrotate hook, say) is only logged.
pub async fn ignore_hangups() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hangup.recv().await.is_some() {
        tracing::info!("SIGHUP received: there are no client TLS files to reload");
    }
}
