//! Remembers the nonces of the peer requests a replica accepted, for as long as their
//! timestamps stay fresh, so a captured request sent again within the freshness window is
//! refused; after the window the timestamp check refuses it. Only requests whose MAC was
//! verified get here, so nobody without the secret can fill it.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use super::peer_message::{FRESHNESS_WINDOW, NONCE_LEN};

/// More accepted requests than this within one window is a flood, not cancels: further ones
/// are refused until old nonces expire, rather than letting memory grow.
const MAX_REMEMBERED: usize = 100_000;

/// The nonces seen, each with the time (Unix ms) after which its request is stale anyway.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    seen: Mutex<HashMap<[u8; NONCE_LEN], u64>>,
}

impl ReplayGuard {
    /// True the first time `nonce` is offered while its request (sent at `timestamp_ms`) is
    /// fresh; false for a copy, or when the guard is full.
    pub fn first_use(&self, nonce: [u8; NONCE_LEN], timestamp_ms: u64, now_ms: u64) -> bool {
        let window = FRESHNESS_WINDOW.as_millis() as u64;
        let expires = timestamp_ms.saturating_add(window);
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.len() >= MAX_REMEMBERED / 2 {
            seen.retain(|_, until| *until >= now_ms);
        }
        if seen.len() >= MAX_REMEMBERED || seen.contains_key(&nonce) {
            return false;
        }
        seen.insert(nonce, expires);
        true
    }

    /// Nonces remembered now.
    pub fn len(&self) -> usize {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_taken_once_and_forgotten_after_its_window() {
        let guard = ReplayGuard::default();
        let now = 1_000_000;
        assert!(guard.first_use([1; NONCE_LEN], now, now));
        assert!(!guard.first_use([1; NONCE_LEN], now, now + 5));
        assert!(guard.first_use([2; NONCE_LEN], now, now));
        assert_eq!(guard.len(), 2);
    }

    #[test]
    fn expired_nonces_are_dropped_when_the_guard_fills() {
        let guard = ReplayGuard::default();
        let window = FRESHNESS_WINDOW.as_millis() as u64;
        for i in 0..(MAX_REMEMBERED / 2) as u32 {
            let mut nonce = [0; NONCE_LEN];
            nonce[..4].copy_from_slice(&i.to_be_bytes());
            assert!(guard.first_use(nonce, 0, 0));
        }
        // Later than every remembered request's window: they are pruned, not counted.
        assert!(guard.first_use([9; NONCE_LEN], window + 10, window + 10));
        assert_eq!(guard.len(), 1);
    }
}
