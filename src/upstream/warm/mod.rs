//! Warm upstream sessions (`--warm-sessions N`): a login to Redshift costs several network
//! round trips (TCP, SSLRequest, TLS, the authentication exchange) and the server's own
//! session start, which a user of a BI tool that opens connection after connection feels
//! each time. After a client logs in with a given [`WarmKey`] (the target, the database
//! user, the database and every startup parameter, since each is a session setting), the
//! target's [`WarmPool`] keeps up to N logged-in, never-used sessions with exactly that key,
//! refilled in the background. The next client with that key gets one: its recorded greeting
//! is replayed (with a cancel key issued to this client) and the relay starts.
//!
//! A spare is used once, never after a client had it, and only while it is silent: before
//! the handoff it must have no pending bytes and no end of stream, else it is discarded
//! (outcome `stale`) and the client logs in normally. A spare lives at most `--warm-max-age`;
//! the spares of a key nobody used for `--warm-idle` are closed. Spares are real server
//! sessions: they count toward the server's connection limits but toward no client limit of
//! the proxy, and all targets together hold at most `--warm-max-total`. A stop closes them
//! first, before open sessions drain.
//!
//! - `key.rs`: what must match for a spare to be handed over;
//! - `pool.rs`: the spares of one target, the handoff and the reaper;
//! - `refill.rs`: the background logins that make spares, and how a spare is closed.

mod key;
mod pool;
mod refill;

use std::sync::Arc;
use std::time::Duration;

pub use key::WarmKey;
pub use pool::{Spare, Taken, WarmBudget, WarmPool};

/// The limits every target's pool shares (`--warm-idle`, `--warm-max-age`,
/// `--warm-max-total`); how many spares a key gets is the target's own `warm_sessions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WarmSettings {
    /// Close a key's spares when no client used the key this long.
    pub idle: Duration,
    /// Close a spare this old, used or not.
    pub max_age: Duration,
    /// Spares (and logins making them) held at most, over all targets.
    pub max_total: usize,
}

impl Default for WarmSettings {
    fn default() -> WarmSettings {
        WarmSettings {
            idle: Duration::from_secs(5 * 60),
            max_age: Duration::from_secs(10 * 60),
            max_total: 64,
        }
    }
}

/// Every target's pool, so a stop can close all spares before sessions drain.
#[derive(Debug, Clone, Default)]
pub struct WarmPools(Vec<Arc<WarmPool>>);

impl WarmPools {
    /// Adds a target's pool.
    pub fn push(&mut self, pool: Arc<WarmPool>) {
        self.0.push(pool);
    }

    /// Closes every spare of every target and stops refilling; returns how many were closed.
    /// Sessions already handed to clients are not touched.
    pub async fn close_all(&self) -> usize {
        let mut closed = 0;
        for pool in &self.0 {
            closed += pool.close().await;
        }
        closed
    }
}
