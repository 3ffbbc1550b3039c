//! Reloads the client TLS files when they change, or at once on SIGHUP, so a renewed
//! certificate (cert-manager, certbot, a rotated Kubernetes secret) is served without a
//! restart. Changes are found by the files' contents rather than their times: a copy that
//! keeps the modification time, or two writes within one second, still counts. The files are
//! a few kilobytes, read every few seconds.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::ClientTls;

/// How often the files are looked at.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// What the files held at one look: a digest per file, `None` for one that cannot be read.
type Snapshot = Vec<Option<[u8; 32]>>;

fn snapshot(files: &[PathBuf]) -> Snapshot {
    files
        .iter()
        .map(|path| {
            std::fs::read(path)
                .ok()
                .map(|bytes| Sha256::digest(bytes).into())
        })
        .collect()
}

/// Watches `tls`'s files every `every` and on SIGHUP until `stop` fires. A change swaps in
/// the new configuration; a failed reload is logged and the current certificate stays. A
/// change is tried once: a half-written pair (new certificate, old key) fails, and the next
/// change (the key) succeeds.
pub async fn watch(tls: Arc<ClientTls>, every: Duration, stop: CancellationToken) {
    let files = tls.watched_files();
    if files.is_empty() {
        return;
    }
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; client TLS files are still polled");
            None
        }
    };
    let mut seen = snapshot(&files);
    loop {
        let forced = tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => false,
            Some(()) = async {
                match hangup.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            } => true,
        };
        let now = snapshot(&files);
        if now == seen && !forced {
            continue;
        }
        seen = now;
        match tls.reload() {
            Ok(fingerprint) => tracing::info!(
                fingerprint_sha256 = %fingerprint,
                trigger = if forced { "SIGHUP" } else { "file change" },
                "client TLS certificate reloaded"
            ),
            Err(e) => tracing::warn!(
                error = %e,
                fingerprint_sha256 = %tls.fingerprint(),
                "client TLS reload failed; still serving the previous certificate"
            ),
        }
    }
}
