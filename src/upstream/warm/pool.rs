//! The spares of one target: handed over once when a client with their key logs in, refilled
//! after each login with the key, and reaped when too old or when their key has gone unused.
//! Every spare holds a slot of the [`WarmBudget`] all targets share and one count in the
//! target's `redshift_proxy_warm_sessions` gauge while it waits, both given back when it is
//! dropped, whoever drops it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;
use tokio_util::sync::CancellationToken;

use super::WarmSettings;
use super::key::WarmKey;
use super::refill;
use crate::credentials::CredentialSource;
use crate::net::pg_stream::PgStream;
use crate::ops::metrics::TargetMetrics;
use crate::upstream::{Greeting, ServerStream, UpstreamEndpoint, socket_is_quiet};

/// The reaper looks at the spares this often at most, and at least every 5 s.
const MIN_SWEEP: Duration = Duration::from_millis(50);
const MAX_SWEEP: Duration = Duration::from_secs(5);

/// `--warm-max-total`: spares and the logins making them, over every target. Spares are real
/// server sessions, so one number bounds what the proxy holds on the servers whatever the
/// number of targets and keys.
#[derive(Debug)]
pub struct WarmBudget {
    max: usize,
    used: AtomicUsize,
}

impl WarmBudget {
    /// A budget of `max` spares.
    pub fn new(max: usize) -> Arc<WarmBudget> {
        Arc::new(WarmBudget {
            max,
            used: AtomicUsize::new(0),
        })
    }

    /// Spares held or being made now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }

    fn reserve(self: &Arc<Self>) -> Option<Slot> {
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                (used < self.max).then_some(used + 1)
            })
            .ok()
            .map(|_| Slot {
                budget: self.clone(),
                gauge: None,
            })
    }
}

/// One place in the budget (and, once the spare waits in a pool, one count in the gauge),
/// given back when dropped.
#[derive(Debug)]
pub(super) struct Slot {
    budget: Arc<WarmBudget>,
    gauge: Option<Gauge>,
}

impl Slot {
    fn count_in(&mut self, gauge: &Gauge) {
        if self.gauge.is_none() {
            gauge.inc();
            self.gauge = Some(gauge.clone());
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(1, Ordering::SeqCst);
        if let Some(gauge) = &self.gauge {
            gauge.dec();
        }
    }
}

/// A logged-in session no client has used, with the greeting its login recorded.
#[derive(Debug)]
pub struct Spare {
    server: PgStream<ServerStream>,
    greeting: Greeting,
    db_user: String,
    created: Instant,
    slot: Slot,
}

impl Spare {
    pub(super) fn new(
        server: PgStream<ServerStream>,
        greeting: Greeting,
        db_user: String,
        slot: Slot,
    ) -> Spare {
        Spare {
            server,
            greeting,
            db_user,
            created: Instant::now(),
            slot,
        }
    }

    /// The server connection, its recorded greeting and the user name it logged in as; the
    /// spare's slot is given back.
    pub fn into_parts(self) -> (PgStream<ServerStream>, Greeting, String) {
        (self.server, self.greeting, self.db_user)
    }

    /// The server connection, for closing it.
    pub(super) fn server_mut(&mut self) -> &mut PgStream<ServerStream> {
        &mut self.server
    }

    /// Open and silent: the server has sent nothing since the greeting (a farewell such as
    /// `pg_terminate_backend`'s 57P01 would be pending) and has not closed.
    fn is_quiet(&mut self) -> bool {
        socket_is_quiet(self.server.get_ref().get_ref()) && self.server.is_quiet()
    }
}

/// What a login found in the pool.
#[derive(Debug)]
pub enum Taken {
    /// A silent spare with the client's key.
    Hit(Box<Spare>),
    /// The spare had spoken or closed and was discarded.
    Stale,
    /// No spare for the key.
    Miss,
}

impl Taken {
    /// The `outcome` label of `redshift_proxy_warm_handoffs_total`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Taken::Hit(_) => "hit",
            Taken::Stale => "stale",
            Taken::Miss => "miss",
        }
    }
}

/// The spares of one key and when a client last logged in with it.
#[derive(Debug)]
struct KeyState {
    spares: VecDeque<Spare>,
    last_used: Instant,
    /// Logins making spares for this key now.
    logging_in: usize,
}

/// One target's spares, by key.
#[derive(Debug)]
pub struct WarmPool {
    per_key: usize,
    settings: WarmSettings,
    budget: Arc<WarmBudget>,
    pub(super) endpoint: Arc<UpstreamEndpoint>,
    pub(super) credentials: Arc<dyn CredentialSource>,
    pub(super) metrics: TargetMetrics,
    keys: Mutex<HashMap<WarmKey, KeyState>>,
    closed: CancellationToken,
}

impl WarmPool {
    /// A pool keeping `per_key` spares for each key of the target that `endpoint`,
    /// `credentials` and `metrics` belong to; starts its reaper.
    pub fn start(
        per_key: usize,
        settings: WarmSettings,
        budget: Arc<WarmBudget>,
        endpoint: Arc<UpstreamEndpoint>,
        credentials: Arc<dyn CredentialSource>,
        metrics: TargetMetrics,
    ) -> Arc<WarmPool> {
        let pool = Arc::new(WarmPool {
            per_key,
            settings,
            budget,
            endpoint,
            credentials,
            metrics,
            keys: Mutex::new(HashMap::new()),
            closed: CancellationToken::new(),
        });
        tokio::spawn(pool.clone().reap());
        pool
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<WarmKey, KeyState>> {
        // Every update is one call under the lock, so the map is whole even after a panic.
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Spares waiting now, over every key.
    pub fn spares(&self) -> usize {
        self.lock().values().map(|state| state.spares.len()).sum()
    }

    /// The oldest silent spare for `key`, taken out for good. Spares past `--warm-max-age`
    /// are discarded on the way; one that is not silent is discarded and ends the search
    /// (the client then logs in normally).
    pub fn take(&self, key: &WarmKey) -> Taken {
        let mut discarded = Vec::new();
        let taken = {
            let mut keys = self.lock();
            match keys.get_mut(key) {
                None => Taken::Miss,
                Some(state) => {
                    state.last_used = Instant::now();
                    let mut taken = Taken::Miss;
                    while let Some(mut spare) = state.spares.pop_front() {
                        if spare.created.elapsed() >= self.settings.max_age {
                            discarded.push(spare);
                            continue;
                        }
                        if spare.is_quiet() {
                            taken = Taken::Hit(Box::new(spare));
                        } else {
                            discarded.push(spare);
                            taken = Taken::Stale;
                        }
                        break;
                    }
                    taken
                }
            }
        };
        refill::close_soon(discarded);
        taken
    }

    /// A client logged in with `key`: starts the logins that bring its spares back to N.
    pub fn logged_in(self: &Arc<Self>, key: &WarmKey) {
        self.fill(key, true);
    }

    /// Starts logins for the spares `key` lacks, within the budget; `touch` marks the key as
    /// used now.
    fn fill(self: &Arc<Self>, key: &WarmKey, touch: bool) {
        if self.closed.is_cancelled() {
            return;
        }
        let mut keys = self.lock();
        let state = keys.entry(key.clone()).or_insert_with(|| KeyState {
            spares: VecDeque::new(),
            last_used: Instant::now(),
            logging_in: 0,
        });
        if touch {
            state.last_used = Instant::now();
        }
        let have = state.spares.len() + state.logging_in;
        for _ in have..self.per_key {
            let Some(slot) = self.budget.reserve() else {
                tracing::debug!(
                    max_total = self.settings.max_total,
                    "--warm-max-total reached: no more warm sessions"
                );
                break;
            };
            state.logging_in += 1;
            tokio::spawn(refill::make_spare(self.clone(), key.clone(), slot));
        }
    }

    /// Whether a spare for `key` is still worth a new login attempt: the pool is open and a
    /// client used the key within `--warm-idle`.
    pub(super) fn wants(&self, key: &WarmKey) -> bool {
        !self.closed.is_cancelled()
            && self
                .lock()
                .get(key)
                .is_some_and(|state| state.last_used.elapsed() < self.settings.idle)
    }

    /// Waits `delay`; false when the pool closed meanwhile.
    pub(super) async fn pause(&self, delay: Duration) -> bool {
        tokio::select! {
            () = self.closed.cancelled() => false,
            () = tokio::time::sleep(delay) => true,
        }
    }

    /// A login for `key` ended, with a spare or without; the spare waits for a client unless
    /// the pool closed or the key went unused meanwhile.
    pub(super) fn spare_made(&self, key: &WarmKey, spare: Option<Spare>) {
        let Some(mut spare) = spare else {
            if let Some(state) = self.lock().get_mut(key) {
                state.logging_in = state.logging_in.saturating_sub(1);
            }
            return;
        };
        let unwanted = {
            let mut keys = self.lock();
            match keys.get_mut(key) {
                Some(state) => {
                    state.logging_in = state.logging_in.saturating_sub(1);
                    if self.closed.is_cancelled() || state.last_used.elapsed() >= self.settings.idle
                    {
                        Some(spare)
                    } else {
                        spare.slot.count_in(&self.metrics.warm_sessions);
                        state.spares.push_back(spare);
                        None
                    }
                }
                None => Some(spare),
            }
        };
        refill::close_soon(unwanted.into_iter().collect());
    }

    /// Every so often: closes spares past `--warm-max-age` (and starts their replacements
    /// while the key is in use) and the spares of keys unused for `--warm-idle`.
    async fn reap(self: Arc<Self>) {
        let every = (self.settings.idle.min(self.settings.max_age) / 4).clamp(MIN_SWEEP, MAX_SWEEP);
        loop {
            tokio::select! {
                () = self.closed.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            let mut discarded = Vec::new();
            let mut refill = Vec::new();
            {
                let mut keys = self.lock();
                keys.retain(|key, state| {
                    let idle = state.last_used.elapsed() >= self.settings.idle;
                    let before = state.spares.len();
                    let max_age = self.settings.max_age;
                    let (old, kept): (Vec<Spare>, Vec<Spare>) = state
                        .spares
                        .drain(..)
                        .partition(|spare| idle || spare.created.elapsed() >= max_age);
                    state.spares = kept.into();
                    if !idle && state.spares.len() < before {
                        refill.push(key.clone());
                    }
                    discarded.extend(old);
                    !idle || state.logging_in > 0
                });
            }
            if !discarded.is_empty() {
                tracing::debug!(
                    target_name = self.metrics.target(),
                    closed = discarded.len(),
                    "closing warm sessions past --warm-max-age or unused for --warm-idle"
                );
            }
            refill::close_soon(discarded);
            for key in refill {
                self.fill(&key, false);
            }
        }
    }

    /// Stops refilling and closes every spare; returns how many were closed.
    pub async fn close(&self) -> usize {
        self.closed.cancel();
        let spares: Vec<Spare> = {
            let mut keys = self.lock();
            keys.values_mut()
                .flat_map(|state| state.spares.drain(..))
                .collect()
        };
        let count = spares.len();
        refill::close_all(spares).await;
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_shared_and_given_back_on_drop() {
        let budget = WarmBudget::new(2);
        let gauge = Gauge::default();
        let mut first = budget.reserve().expect("first slot");
        let second = budget.reserve().expect("second slot");
        assert!(budget.reserve().is_none(), "--warm-max-total reached");
        assert_eq!(budget.used(), 2);
        first.count_in(&gauge);
        first.count_in(&gauge);
        assert_eq!(gauge.get(), 1, "a spare counts once in the gauge");
        drop(first);
        assert_eq!((budget.used(), gauge.get()), (1, 0));
        assert!(
            budget.reserve().is_some(),
            "a slot given back is free again"
        );
        drop(second);
        assert_eq!(budget.used(), 0);
    }
}
