//! The credential cache in front of an AWS source: what step 3 of a connection asks for
//! (`docs/architecture.md`).
//!
//! - A hit costs no AWS call.
//! - A password is refreshed in the background once less than a fifth of its lifetime (at
//!   most five minutes) remains, so a steady stream of clients never waits on AWS.
//! - Concurrent misses for one key share one call (single flight): however many clients
//!   arrive at once, AWS sees one request per key.
//! - An answer that will not change soon (access denied, not found, no AWS credentials) is
//!   remembered for a few seconds, so a crowd of clients does not hammer the API.
//!
//! Lifetimes come from the `Expiration` AWS returns, never from an assumed duration. Times
//! are `tokio::time::Instant`s so the tests can move the clock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use crate::ops::metrics::TargetMetrics;
use tokio::time::Instant;

use super::{
    CredentialError, CredentialFuture, CredentialRequest, CredentialSource, DbCredentials, Origin,
};

/// When to refresh and how long to remember a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    /// Refresh once less than `1 / refresh_fraction` of the lifetime remains.
    pub refresh_fraction: u32,
    /// … but never earlier than this before expiry.
    pub max_refresh_margin: Duration,
    /// A password with less than this left is not handed out: the login must finish first.
    pub min_remaining: Duration,
    /// How long a remembered failure is answered without calling AWS.
    pub remember_failure: Duration,
}

impl Default for CachePolicy {
    fn default() -> CachePolicy {
        CachePolicy {
            refresh_fraction: 5,
            max_refresh_margin: Duration::from_secs(5 * 60),
            min_remaining: Duration::from_secs(2),
            remember_failure: Duration::from_secs(5),
        }
    }
}

/// A caching, single-flight wrapper around any credential source.
#[derive(Debug)]
pub struct CachedSource {
    inner: Arc<dyn CredentialSource>,
    policy: CachePolicy,
    metrics: TargetMetrics,
    entries: Mutex<HashMap<CredentialRequest, Arc<Entry>>>,
    calls: Arc<AtomicU64>,
}

/// One key's state, plus the lock that makes its fetches single-flight.
#[derive(Debug, Default)]
struct Entry {
    state: Mutex<EntryState>,
    flight: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct EntryState {
    value: Option<Cached>,
    failure: Option<(CredentialError, Instant)>,
    refreshing: bool,
}

#[derive(Debug, Clone)]
struct Cached {
    credentials: DbCredentials,
    fetched: Instant,
    expires: Instant,
}

/// Entries in the cache above which unused, empty or expired ones are dropped.
const PRUNE_ABOVE: usize = 1024;

impl Entry {
    /// Holds a password that has not expired, a failure still remembered, or a refresh.
    fn worth_keeping(&self, now: Instant, policy: &CachePolicy) -> bool {
        let Ok(state) = self.state.try_lock() else {
            return true;
        };
        state.refreshing
            || state
                .value
                .as_ref()
                .is_some_and(|cached| cached.expires > now)
            || state
                .failure
                .as_ref()
                .is_some_and(|(_, at)| now.duration_since(*at) < policy.remember_failure)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update is a single assignment, so the state is consistent even after a panic.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a look at the cache found.
enum Lookup {
    Hit(DbCredentials),
    HitRefresh(DbCredentials),
    Failure(CredentialError),
    Miss,
}

impl CachedSource {
    /// Caches `inner` with `policy`, counting requests, fetch times and expiry in `metrics`.
    pub fn new(
        inner: Arc<dyn CredentialSource>,
        policy: CachePolicy,
        metrics: TargetMetrics,
    ) -> CachedSource {
        CachedSource {
            inner,
            policy,
            metrics,
            entries: Mutex::new(HashMap::new()),
            calls: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Calls made to the inner source since start.
    pub fn api_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    fn entry(&self, request: &CredentialRequest) -> Arc<Entry> {
        let mut entries = lock(&self.entries);
        if entries.len() >= PRUNE_ABOVE && !entries.contains_key(request) {
            // The key includes the database name the client chose, so clients could grow the
            // map without end: past the threshold, entries nobody is using that hold neither
            // a live password nor a remembered failure go.
            let now = Instant::now();
            entries.retain(|_, entry| {
                Arc::strong_count(entry) > 1 || entry.worth_keeping(now, &self.policy)
            });
        }
        entries.entry(request.clone()).or_default().clone()
    }

    /// Looks at the entry. The first look (`before_flight`) happens before the request waits
    /// on the flight: it may start a background refresh, and what it finds was cached before
    /// the request arrived. A look after waiting finds only what the flight just fetched
    /// (the first look missed), so that counts as fetched for this request.
    fn look(&self, entry: &Entry, before_flight: bool) -> Lookup {
        let now = Instant::now();
        let mut state = lock(&entry.state);
        if let Some(cached) = &state.value {
            let remaining = cached.expires.saturating_duration_since(now);
            if remaining > self.policy.min_remaining {
                let credentials = cached.credentials.clone();
                let credentials = DbCredentials {
                    origin: if before_flight {
                        Origin::Cached
                    } else {
                        Origin::Fetched
                    },
                    ..credentials
                };
                let lifetime = cached.expires.saturating_duration_since(cached.fetched);
                let margin = (lifetime / self.policy.refresh_fraction.max(1))
                    .min(self.policy.max_refresh_margin);
                if remaining < margin && before_flight && !state.refreshing {
                    state.refreshing = true;
                    return Lookup::HitRefresh(credentials);
                }
                return Lookup::Hit(credentials);
            }
        }
        if let Some((error, at)) = &state.failure
            && now.saturating_duration_since(*at) < self.policy.remember_failure
        {
            return Lookup::Failure(error.clone());
        }
        Lookup::Miss
    }

    async fn get(&self, request: &CredentialRequest) -> Result<DbCredentials, CredentialError> {
        let entry = self.entry(request);
        let api = self.inner.api();
        match self.look(&entry, true) {
            Lookup::Hit(credentials) => {
                self.metrics.credential_request(api, "cache_hit");
                return Ok(credentials);
            }
            Lookup::HitRefresh(credentials) => {
                self.metrics.credential_request(api, "cache_hit");
                self.spawn_refresh(entry, request.clone());
                return Ok(credentials);
            }
            Lookup::Failure(error) => {
                self.metrics.credential_request(api, "remembered_failure");
                return Err(error);
            }
            Lookup::Miss => {}
        }
        let _flight = entry.flight.lock().await;
        // Whoever held the flight before us may have filled the entry.
        match self.look(&entry, false) {
            Lookup::Hit(credentials) | Lookup::HitRefresh(credentials) => {
                self.metrics.credential_request(api, "cache_hit");
                return Ok(credentials);
            }
            Lookup::Failure(error) => {
                self.metrics.credential_request(api, "remembered_failure");
                return Err(error);
            }
            Lookup::Miss => {}
        }
        fetch_and_store(&*self.inner, &self.calls, &self.metrics, &entry, request).await
    }

    fn spawn_refresh(&self, entry: Arc<Entry>, request: CredentialRequest) {
        let inner = self.inner.clone();
        let calls = self.calls.clone();
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            let _flight = entry.flight.lock().await;
            if let Err(e) = fetch_and_store(&*inner, &calls, &metrics, &entry, &request).await {
                tracing::warn!(api = inner.api(), error = %e, "background credential refresh failed; the current password is used until it expires");
            }
            lock(&entry.state).refreshing = false;
        });
    }
}

/// One call to the source, with its answer stored for the key.
async fn fetch_and_store(
    inner: &dyn CredentialSource,
    calls: &AtomicU64,
    metrics: &TargetMetrics,
    entry: &Entry,
    request: &CredentialRequest,
) -> Result<DbCredentials, CredentialError> {
    calls.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let result = inner.credentials(request).await;
    let now = Instant::now();
    metrics.credential_fetch(inner.api(), (now - started).as_secs_f64());
    match &result {
        Ok(credentials) => {
            metrics.credential_request(inner.api(), "fetched");
            if let Some(at) = credentials.expires_at
                && let Ok(since_epoch) = at.duration_since(std::time::UNIX_EPOCH)
            {
                metrics.credential_expiry(since_epoch.as_secs_f64());
            }
        }
        Err(error) => metrics.credential_request(inner.api(), error.reason()),
    }
    let mut state = lock(&entry.state);
    match &result {
        Ok(credentials) => {
            let remaining = credentials
                .expires_at
                .map(|at| at.duration_since(SystemTime::now()).unwrap_or_default())
                .unwrap_or(Duration::MAX / 4);
            tracing::debug!(
                api = inner.api(),
                fetch_ms = (now - started).as_millis() as u64,
                expires_in_s = remaining.as_secs(),
                "credentials fetched"
            );
            state.value = Some(Cached {
                credentials: credentials.clone(),
                fetched: now,
                expires: now + remaining,
            });
            state.failure = None;
        }
        Err(error) if error.is_remembered() => state.failure = Some((error.clone(), now)),
        Err(_) => {}
    }
    result
}

impl CredentialSource for CachedSource {
    fn credentials<'a>(&'a self, request: &'a CredentialRequest) -> CredentialFuture<'a> {
        Box::pin(self.get(request))
    }

    fn api(&self) -> &'static str {
        self.inner.api()
    }

    fn user_from_identity(&self) -> bool {
        self.inner.user_from_identity()
    }

    fn invalidate(&self, request: &CredentialRequest, refused: &DbCredentials) {
        let Some(entry) = lock(&self.entries).get(request).cloned() else {
            return;
        };
        let mut state = lock(&entry.state);
        if state
            .value
            .as_ref()
            .is_some_and(|cached| cached.credentials.password == refused.password)
        {
            state.value = None;
        }
    }
}

#[cfg(test)]
mod tests;
