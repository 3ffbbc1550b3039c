//! The proxy's lifecycle as the health endpoints report it: started (every listener bound),
//! draining (a stop was asked for), and each target's room under `--max-connections`.
//! Readiness never dials an upstream: a slow cluster must not get a sidecar restarted.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// One target's open sessions and its limit.
#[derive(Debug, Clone)]
pub struct Capacity {
    /// Sessions open now (admitted by the accept loop).
    pub open: Arc<AtomicUsize>,
    /// `--max-connections`, if any.
    pub limit: Option<usize>,
}

impl Capacity {
    /// True while another client would be admitted.
    pub fn has_room(&self) -> bool {
        self.limit
            .is_none_or(|limit| self.open.load(Ordering::Relaxed) < limit)
    }
}

/// Shared by the listeners, the shutdown driver and the HTTP endpoint.
#[derive(Debug, Default)]
pub struct Health {
    started: AtomicBool,
    draining: AtomicBool,
    capacities: Mutex<Vec<Capacity>>,
}

impl Health {
    /// A proxy that has not bound its listeners yet.
    pub fn new() -> Arc<Health> {
        Arc::new(Health::default())
    }

    /// Every listener is bound.
    pub fn set_started(&self) {
        self.started.store(true, Ordering::SeqCst);
    }

    /// A stop was asked for: readiness turns false at once.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Adds a target's capacity to the readiness check.
    pub fn add_capacity(&self, capacity: Capacity) {
        self.capacities
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(capacity);
    }

    /// `/startup`: listeners are bound.
    pub fn is_started(&self) -> bool {
        self.started.load(Ordering::SeqCst)
    }

    /// Whether a stop is under way.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// `/readiness`: started, not draining, and every target under its limit.
    pub fn is_ready(&self) -> bool {
        self.is_started()
            && !self.is_draining()
            && self
                .capacities
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .all(Capacity::has_room)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_start_drain_and_limits() {
        let health = Health::new();
        assert!(!health.is_ready());
        let open = Arc::new(AtomicUsize::new(0));
        health.add_capacity(Capacity {
            open: open.clone(),
            limit: Some(2),
        });
        health.set_started();
        assert!(health.is_ready());
        open.store(2, Ordering::Relaxed);
        assert!(!health.is_ready(), "at the limit");
        open.store(1, Ordering::Relaxed);
        assert!(health.is_ready());
        health.set_draining();
        assert!(!health.is_ready());
        assert!(health.is_started());
    }
}
