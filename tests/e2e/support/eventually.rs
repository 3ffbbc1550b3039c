//! Polling for a state another process reaches in its own time (a log line, a gauge, a file).

use std::time::{Duration, Instant};

/// Waits until `check` holds, for at most `limit`; whether it did.
pub async fn eventually(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
