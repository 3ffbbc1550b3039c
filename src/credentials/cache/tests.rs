//! The cache against a scripted credential source: hits, refresh ahead of expiry, single
//! flight, remembered failures and the bound on entries.

use super::*;
use crate::credentials::Secret;
use std::sync::atomic::AtomicUsize;

/// A source that counts calls, waits `delay`, and answers with a password numbered by
/// the call, valid for `lifetime`; or with `error` when set.
#[derive(Debug)]
struct Counting {
    calls: AtomicUsize,
    delay: Duration,
    lifetime: Duration,
    error: Mutex<Option<CredentialError>>,
}

impl Counting {
    fn new(delay: Duration, lifetime: Duration) -> Arc<Counting> {
        Arc::new(Counting {
            calls: AtomicUsize::new(0),
            delay,
            lifetime,
            error: Mutex::new(None),
        })
    }
}

impl CredentialSource for Counting {
    fn credentials<'a>(&'a self, _request: &'a CredentialRequest) -> CredentialFuture<'a> {
        Box::pin(async move {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(self.delay).await;
            if let Some(error) = lock(&self.error).clone() {
                return Err(error);
            }
            Ok(DbCredentials {
                user: "IAM:alice".to_owned(),
                password: Secret::new(format!("pw{n}")),
                // The paused clock does not move SystemTime, so expiry is relative to now.
                expires_at: Some(SystemTime::now() + self.lifetime),
                origin: Origin::Fetched,
            })
        })
    }

    fn api(&self) -> &'static str {
        "test"
    }
}

fn request(user: &str) -> CredentialRequest {
    CredentialRequest {
        db_user: Some(user.to_owned()),
        database: "dev".to_owned(),
    }
}

#[tokio::test(start_paused = true)]
async fn concurrent_misses_share_one_call_and_hits_cost_none() {
    let source = Counting::new(Duration::from_millis(200), Duration::from_secs(900));
    let cache = Arc::new(CachedSource::new(
        source.clone(),
        CachePolicy::default(),
        TargetMetrics::detached("t"),
    ));
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let cache = cache.clone();
        tasks.push(tokio::spawn(async move {
            cache.credentials(&request("alice")).await
        }));
    }
    for task in tasks {
        let credentials = task.await.expect("task").expect("credentials");
        assert_eq!(credentials.password.expose(), "pw1");
    }
    assert_eq!(source.calls.load(Ordering::SeqCst), 1);
    cache.credentials(&request("alice")).await.expect("hit");
    assert_eq!(source.calls.load(Ordering::SeqCst), 1);
    // Another key is another call.
    cache.credentials(&request("bob")).await.expect("bob");
    assert_eq!(source.calls.load(Ordering::SeqCst), 2);
    assert_eq!(cache.api_calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn expired_entries_are_pruned_when_clients_invent_many_keys() {
    let source = Counting::new(Duration::ZERO, Duration::from_secs(60));
    let cache = CachedSource::new(
        source.clone(),
        CachePolicy::default(),
        TargetMetrics::detached("t"),
    );
    for n in 0..PRUNE_ABOVE {
        let request = CredentialRequest {
            db_user: Some("alice".to_owned()),
            database: format!("db{n}"),
        };
        cache.credentials(&request).await.expect("credentials");
    }
    assert_eq!(lock(&cache.entries).len(), PRUNE_ABOVE);
    // Still valid: nothing is dropped.
    cache.credentials(&request("bob")).await.expect("bob");
    assert_eq!(lock(&cache.entries).len(), PRUNE_ABOVE + 1);
    // Once they expire, the next new key clears them out.
    tokio::time::advance(Duration::from_secs(61)).await;
    cache.credentials(&request("carol")).await.expect("carol");
    assert_eq!(lock(&cache.entries).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn refreshes_ahead_of_expiry_without_making_clients_wait() {
    // 900 s lifetime: refresh once less than 180 s remain.
    let source = Counting::new(Duration::from_secs(1), Duration::from_secs(900));
    let cache = CachedSource::new(
        source.clone(),
        CachePolicy::default(),
        TargetMetrics::detached("t"),
    );
    assert_eq!(
        cache
            .credentials(&request("a"))
            .await
            .unwrap()
            .password
            .expose(),
        "pw1"
    );
    tokio::time::advance(Duration::from_secs(700)).await;
    assert_eq!(
        cache
            .credentials(&request("a"))
            .await
            .unwrap()
            .password
            .expose(),
        "pw1"
    );
    assert_eq!(
        source.calls.load(Ordering::SeqCst),
        1,
        "not yet in the margin"
    );
    tokio::time::advance(Duration::from_secs(30)).await;
    let started = Instant::now();
    // In the margin: the old password at once, a refresh in the background.
    assert_eq!(
        cache
            .credentials(&request("a"))
            .await
            .unwrap()
            .password
            .expose(),
        "pw1"
    );
    assert_eq!(Instant::now(), started, "the client did not wait");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(source.calls.load(Ordering::SeqCst), 2);
    assert_eq!(
        cache
            .credentials(&request("a"))
            .await
            .unwrap()
            .password
            .expose(),
        "pw2"
    );
}

#[tokio::test(start_paused = true)]
async fn the_margin_is_at_most_five_minutes() {
    let source = Counting::new(Duration::ZERO, Duration::from_secs(3600));
    let cache = CachedSource::new(
        source.clone(),
        CachePolicy::default(),
        TargetMetrics::detached("t"),
    );
    cache.credentials(&request("a")).await.unwrap();
    // A fifth of an hour is 12 minutes; the cap is 5: at 50 minutes no refresh yet.
    tokio::time::advance(Duration::from_secs(50 * 60)).await;
    cache.credentials(&request("a")).await.unwrap();
    tokio::task::yield_now().await;
    assert_eq!(source.calls.load(Ordering::SeqCst), 1);
    tokio::time::advance(Duration::from_secs(6 * 60)).await;
    cache.credentials(&request("a")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(source.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_refused_password_is_forgotten() {
    let source = Counting::new(Duration::ZERO, Duration::from_secs(900));
    let cache = CachedSource::new(
        source.clone(),
        CachePolicy::default(),
        TargetMetrics::detached("t"),
    );
    let first = cache.credentials(&request("a")).await.unwrap();
    assert_eq!(first.password.expose(), "pw1");
    cache.invalidate(&request("a"), &first);
    let second = cache.credentials(&request("a")).await.unwrap();
    assert_eq!(second.password.expose(), "pw2");
    assert_eq!(
        cache
            .credentials(&request("a"))
            .await
            .unwrap()
            .password
            .expose(),
        "pw2"
    );
    // A late refusal of pw1 (a session that picked it up before pw2 came) does not
    // throw away pw2: the crowd refused together makes one new call, not one each.
    cache.invalidate(&request("a"), &first);
    assert_eq!(
        cache
            .credentials(&request("a"))
            .await
            .unwrap()
            .password
            .expose(),
        "pw2"
    );
    assert_eq!(source.calls.load(Ordering::SeqCst), 2);
    // Another key's refusal touches nothing here.
    cache.invalidate(&request("b"), &second);
    cache.credentials(&request("a")).await.unwrap();
    assert_eq!(source.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn origin_says_whether_the_password_was_fetched_for_this_request() {
    let source = Counting::new(Duration::from_millis(100), Duration::from_secs(900));
    let cache = Arc::new(CachedSource::new(
        source.clone(),
        CachePolicy::default(),
        TargetMetrics::detached("t"),
    ));
    // Two requests on a cold cache: one calls, the other joins its flight; both got a
    // password fetched while they waited.
    let key = request("a");
    let (a, b) = tokio::join!(cache.credentials(&key), cache.credentials(&key));
    assert_eq!(a.unwrap().origin, Origin::Fetched);
    assert_eq!(b.unwrap().origin, Origin::Fetched);
    assert_eq!(source.calls.load(Ordering::SeqCst), 1);
    // The next one is served from the cache.
    let hit = cache.credentials(&request("a")).await.unwrap();
    assert_eq!(hit.origin, Origin::Cached);
    // Forgotten after a refusal: fetched again.
    cache.invalidate(&request("a"), &hit);
    let fresh = cache.credentials(&request("a")).await.unwrap();
    assert_eq!(fresh.origin, Origin::Fetched);
    assert_eq!(fresh.password.expose(), "pw2");
    // Near expiry: still the cached one while a refresh runs in the background.
    tokio::time::advance(Duration::from_secs(800)).await;
    let near = cache.credentials(&request("a")).await.unwrap();
    assert_eq!(
        (near.origin, near.password.expose()),
        (Origin::Cached, "pw2")
    );
}

#[tokio::test(start_paused = true)]
async fn expired_passwords_are_fetched_again() {
    let source = Counting::new(Duration::ZERO, Duration::from_secs(60));
    let cache = CachedSource::new(
        source.clone(),
        CachePolicy::default(),
        TargetMetrics::detached("t"),
    );
    cache.credentials(&request("a")).await.unwrap();
    tokio::time::advance(Duration::from_secs(59)).await;
    assert_eq!(
        cache
            .credentials(&request("a"))
            .await
            .unwrap()
            .password
            .expose(),
        "pw2"
    );
}

#[tokio::test(start_paused = true)]
async fn denials_are_remembered_briefly_and_transient_errors_not_at_all() {
    let source = Counting::new(Duration::ZERO, Duration::from_secs(900));
    *lock(&source.error) = Some(CredentialError::AccessDenied {
        action: "redshift:GetClusterCredentials".into(),
        resource: "arn".into(),
        extra: String::new(),
    });
    let cache = CachedSource::new(
        source.clone(),
        CachePolicy::default(),
        TargetMetrics::detached("t"),
    );
    for _ in 0..10 {
        assert!(cache.credentials(&request("a")).await.is_err());
    }
    assert_eq!(source.calls.load(Ordering::SeqCst), 1);
    tokio::time::advance(Duration::from_secs(6)).await;
    assert!(cache.credentials(&request("a")).await.is_err());
    assert_eq!(source.calls.load(Ordering::SeqCst), 2);

    *lock(&source.error) = Some(CredentialError::AwsUnavailable("down".into()));
    tokio::time::advance(Duration::from_secs(6)).await;
    assert!(cache.credentials(&request("b")).await.is_err());
    assert!(cache.credentials(&request("b")).await.is_err());
    assert_eq!(source.calls.load(Ordering::SeqCst), 4);
}
