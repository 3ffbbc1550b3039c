//! The Prometheus metric families `docs/operations.md` lists, and the per-target handles sessions
//! use. Labels stay low-cardinality: a target's label, a direction, an outcome or a reason,
//! never a user name, an address or query text.
//!
//! Families with fixed labels (bytes, messages, queries, active connections, histograms) are
//! resolved once per target at start-up into `TargetMetrics`, so the relay adds to plain
//! atomics without a map lookup; families labelled by an outcome are looked up per event.

use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets_range};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::ops::process_metrics::ProcessCollector;

/// `{target}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabel {
    /// The target's label (cluster, workgroup or host).
    pub target: String,
}

/// `{target,outcome}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// The target's label.
    pub target: String,
    /// How it ended.
    pub outcome: &'static str,
}

/// `{target,direction}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    /// The target's label.
    pub target: String,
    /// `client_to_server` or `server_to_client`.
    pub direction: &'static str,
}

/// `{target,api,outcome}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CredentialLabels {
    /// The target's label.
    pub target: String,
    /// The credential API.
    pub api: &'static str,
    /// `fetched`, `cache_hit`, or an error reason.
    pub outcome: &'static str,
}

/// `{target,api}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    /// The target's label.
    pub target: String,
    /// The credential API.
    pub api: &'static str,
}

/// `{target,reason}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// The target's label.
    pub target: String,
    /// Why.
    pub reason: &'static str,
}

/// `{outcome}` of a cancel: not per target, since a cancel is routed by its key whatever
/// listener it reached, and peers' cancels reach no target's listener at all.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CancelOutcomeLabel {
    /// What became of it.
    pub outcome: &'static str,
}

/// `{name}`: a startup parameter the proxy did not pass on.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ParameterLabel {
    /// The parameter's name, or `other` for a name the proxy does not know, so a client
    /// cannot mint label values.
    pub name: &'static str,
}

/// `_pq_.*` parameters drivers are known to send; any other is counted as `other`.
const KNOWN_DROPPED_PARAMETERS: [&str; 1] = ["_pq_.compression"];

/// `{version}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every family, registered once; cloned handles share the same values.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    connections: Family<OutcomeLabels, Counter>,
    active: Family<TargetLabel, Gauge>,
    setup_seconds: HistogramFamily<TargetLabel>,
    bytes: Family<DirectionLabels, Counter>,
    upstream_wire_bytes: Family<DirectionLabels, Counter>,
    messages: Family<DirectionLabels, Counter>,
    queries: Family<TargetLabel, Counter>,
    credential_requests: Family<CredentialLabels, Counter>,
    credential_fetch_seconds: HistogramFamily<ApiLabels>,
    credential_expiry: Family<TargetLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    auth_failures: Family<ReasonLabels, Counter>,
    cancel_requests: Family<CancelOutcomeLabel, Counter>,
    peers: Gauge,
    session_seconds: HistogramFamily<TargetLabel>,
    parameters_dropped: Family<ParameterLabel, Counter>,
    warm_sessions: Family<TargetLabel, Gauge>,
    warm_handoffs: Family<OutcomeLabels, Counter>,
}

/// Accept to ReadyForQuery: 1 ms to 30 s.
fn setup_histogram() -> Histogram {
    Histogram::new(exponential_buckets_range(0.001, 30.0, 16))
}

/// One AWS credential call: 5 ms to 10 s.
fn fetch_histogram() -> Histogram {
    Histogram::new(exponential_buckets_range(0.005, 10.0, 12))
}

/// A whole session: 10 ms to 1 day.
fn session_histogram() -> Histogram {
    Histogram::new(exponential_buckets_range(0.01, 86_400.0, 16))
}

impl Metrics {
    /// Registers every family (and the process collector and build info).
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::default();
        let connections = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "redshift_proxy_connections",
            "Client connections by how they ended",
            connections.clone(),
        );
        let active = Family::<TargetLabel, Gauge>::default();
        registry.register(
            "redshift_proxy_connections_active",
            "Client connections open now",
            active.clone(),
        );
        let setup_seconds: HistogramFamily<TargetLabel> =
            Family::new_with_constructor(setup_histogram);
        registry.register(
            "redshift_proxy_connection_setup_seconds",
            "Accept to ReadyForQuery: credentials, upstream connect, TLS and login",
            setup_seconds.clone(),
        );
        let bytes = Family::<DirectionLabels, Counter>::default();
        registry.register(
            "redshift_proxy_bytes",
            "Bytes relayed after the greeting",
            bytes.clone(),
        );
        let upstream_wire_bytes = Family::<DirectionLabels, Counter>::default();
        registry.register(
            "redshift_proxy_upstream_wire_bytes",
            "Protocol bytes on the server connection as they travel, compressed when the server compresses",
            upstream_wire_bytes.clone(),
        );
        let messages = Family::<DirectionLabels, Counter>::default();
        registry.register(
            "redshift_proxy_messages",
            "Protocol messages relayed after the greeting",
            messages.clone(),
        );
        let queries = Family::<TargetLabel, Counter>::default();
        registry.register(
            "redshift_proxy_queries",
            "Simple queries and Executes sent by clients",
            queries.clone(),
        );
        let credential_requests = Family::<CredentialLabels, Counter>::default();
        registry.register(
            "redshift_proxy_credential_requests",
            "Requests for database credentials: cache hits, AWS fetches and failures by reason",
            credential_requests.clone(),
        );
        let credential_fetch_seconds: HistogramFamily<ApiLabels> =
            Family::new_with_constructor(fetch_histogram);
        registry.register(
            "redshift_proxy_credential_fetch_seconds",
            "Duration of AWS credential calls, retries included",
            credential_fetch_seconds.clone(),
        );
        let credential_expiry = Family::default();
        registry.register(
            "redshift_proxy_credential_expiry_timestamp_seconds",
            "When the newest fetched database password of the target expires (Unix time)",
            credential_expiry.clone(),
        );
        let auth_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "redshift_proxy_auth_failures",
            "Logins that failed, by reason",
            auth_failures.clone(),
        );
        let cancel_requests = Family::<CancelOutcomeLabel, Counter>::default();
        registry.register(
            "redshift_proxy_cancel_requests",
            "CancelRequests from clients and cancels forwarded by peers, by outcome",
            cancel_requests.clone(),
        );
        let peers = Gauge::default();
        registry.register(
            "redshift_proxy_peers",
            "Peer addresses resolved from --peers, this replica's own included when listed",
            peers.clone(),
        );
        let session_seconds: HistogramFamily<TargetLabel> =
            Family::new_with_constructor(session_histogram);
        registry.register(
            "redshift_proxy_session_seconds",
            "Duration of relayed sessions",
            session_seconds.clone(),
        );
        let parameters_dropped = Family::<ParameterLabel, Counter>::default();
        registry.register(
            "redshift_proxy_startup_parameters_dropped",
            "Protocol-extension (_pq_.*) startup parameters not passed to the server",
            parameters_dropped.clone(),
        );
        let warm_sessions = Family::<TargetLabel, Gauge>::default();
        registry.register(
            "redshift_proxy_warm_sessions",
            "Logged-in upstream sessions kept ready for clients (--warm-sessions)",
            warm_sessions.clone(),
        );
        let warm_handoffs = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "redshift_proxy_warm_handoffs",
            "Logins of targets with warm sessions: hit (a spare was handed over), miss (none \
             for the key), stale (the spare had closed or spoken and was discarded)",
            warm_handoffs.clone(),
        );
        registry.register(
            "redshift_proxy_build",
            "The proxy's version",
            Info::new(VersionLabel {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        registry.register_collector(Box::new(ProcessCollector));
        Arc::new(Metrics {
            registry,
            connections,
            active,
            setup_seconds,
            bytes,
            upstream_wire_bytes,
            messages,
            queries,
            credential_requests,
            credential_fetch_seconds,
            credential_expiry,
            auth_failures,
            cancel_requests,
            peers,
            session_seconds,
            parameters_dropped,
            warm_sessions,
            warm_handoffs,
        })
    }

    /// The Prometheus text exposition of every family.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing to a String cannot fail.
        let _ = text::encode(&mut out, &self.registry);
        out
    }

    /// A cancel ended with `outcome` (`crate::cancel::CancelOutcome`).
    pub fn cancel_request(&self, outcome: &'static str) {
        self.cancel_requests
            .get_or_create(&CancelOutcomeLabel { outcome })
            .inc();
    }

    /// `--peers` now resolves to `count` addresses.
    pub fn set_peers(&self, count: usize) {
        self.peers.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// The handles one target's sessions use.
    pub fn target(self: &Arc<Self>, target: &str) -> TargetMetrics {
        let label = TargetLabel {
            target: target.to_owned(),
        };
        let direction = |direction| DirectionLabels {
            target: target.to_owned(),
            direction,
        };
        TargetMetrics {
            target: target.to_owned(),
            active: self.active.get_or_create_owned(&label),
            setup_seconds: self.setup_seconds.get_or_create_owned(&label),
            session_seconds: self.session_seconds.get_or_create_owned(&label),
            warm_sessions: self.warm_sessions.get_or_create_owned(&label),
            queries: self.queries.get_or_create_owned(&label),
            bytes_up: self
                .bytes
                .get_or_create_owned(&direction("client_to_server")),
            bytes_down: self
                .bytes
                .get_or_create_owned(&direction("server_to_client")),
            wire_up: self
                .upstream_wire_bytes
                .get_or_create_owned(&direction("client_to_server")),
            wire_down: self
                .upstream_wire_bytes
                .get_or_create_owned(&direction("server_to_client")),
            messages_up: self
                .messages
                .get_or_create_owned(&direction("client_to_server")),
            messages_down: self
                .messages
                .get_or_create_owned(&direction("server_to_client")),
            metrics: self.clone(),
        }
    }
}

/// One target's metric handles.
#[derive(Debug, Clone)]
pub struct TargetMetrics {
    target: String,
    metrics: Arc<Metrics>,
    /// Connections open now.
    pub active: Gauge,
    /// Accept to ReadyForQuery.
    pub setup_seconds: Histogram,
    /// Session durations.
    pub session_seconds: Histogram,
    /// Warm upstream sessions held now.
    pub warm_sessions: Gauge,
    /// Queries sent.
    pub queries: Counter,
    /// Bytes client to server.
    pub bytes_up: Counter,
    /// Bytes server to client.
    pub bytes_down: Counter,
    /// Bytes written to the server connection (`upstream_wire_bytes`).
    pub wire_up: Counter,
    /// Bytes read from the server connection, compressed when the server compresses.
    pub wire_down: Counter,
    /// Messages client to server.
    pub messages_up: Counter,
    /// Messages server to client.
    pub messages_down: Counter,
}

impl TargetMetrics {
    /// Handles registered nowhere, for code paths (tests, `--check`) that report to no one.
    pub fn detached(target: &str) -> TargetMetrics {
        Metrics::new().target(target)
    }

    /// The target's label.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// A client's startup parameter `name` was not passed to the server.
    pub fn startup_parameter_dropped(&self, name: &str) {
        let name = KNOWN_DROPPED_PARAMETERS
            .into_iter()
            .find(|known| *known == name)
            .unwrap_or("other");
        self.metrics
            .parameters_dropped
            .get_or_create(&ParameterLabel { name })
            .inc();
    }

    /// A connection ended with `outcome`.
    pub fn connection_closed(&self, outcome: &'static str) {
        self.metrics
            .connections
            .get_or_create(&OutcomeLabels {
                target: self.target.clone(),
                outcome,
            })
            .inc();
    }

    /// A login failed for `reason`.
    pub fn auth_failure(&self, reason: &'static str) {
        self.metrics
            .auth_failures
            .get_or_create(&ReasonLabels {
                target: self.target.clone(),
                reason,
            })
            .inc();
    }

    /// A login of a target with warm sessions found a spare (`hit`), none (`miss`), or one
    /// that had closed or spoken (`stale`).
    pub fn warm_handoff(&self, outcome: &'static str) {
        self.metrics
            .warm_handoffs
            .get_or_create(&OutcomeLabels {
                target: self.target.clone(),
                outcome,
            })
            .inc();
    }

    /// A credential request to `api` ended with `outcome`.
    pub fn credential_request(&self, api: &'static str, outcome: &'static str) {
        self.metrics
            .credential_requests
            .get_or_create(&CredentialLabels {
                target: self.target.clone(),
                api,
                outcome,
            })
            .inc();
    }

    /// An AWS call to `api` took `seconds`.
    pub fn credential_fetch(&self, api: &'static str, seconds: f64) {
        self.metrics
            .credential_fetch_seconds
            .get_or_create(&ApiLabels {
                target: self.target.clone(),
                api,
            })
            .observe(seconds);
    }

    /// The newest password expires at `unix_seconds`.
    pub fn credential_expiry(&self, unix_seconds: f64) {
        self.metrics
            .credential_expiry
            .get_or_create(&TargetLabel {
                target: self.target.clone(),
            })
            .set(unix_seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_exposed_with_their_labels() {
        let metrics = Metrics::new();
        let target = metrics.target("c1");
        target.bytes_down.inc_by(42);
        target.connection_closed("closed");
        target.credential_request("GetClusterCredentials", "fetched");
        target.credential_fetch("GetClusterCredentials", 0.02);
        target.setup_seconds.observe(0.004);
        metrics.cancel_request("forwarded");
        metrics.set_peers(3);
        let text = metrics.encode();
        for line in [
            "redshift_proxy_bytes_total{target=\"c1\",direction=\"server_to_client\"} 42",
            "redshift_proxy_connections_total{target=\"c1\",outcome=\"closed\"} 1",
            "redshift_proxy_credential_requests_total{target=\"c1\",api=\"GetClusterCredentials\",outcome=\"fetched\"} 1",
            "redshift_proxy_connection_setup_seconds_bucket{le=\"0.001\",target=\"c1\"} 0",
            "redshift_proxy_credential_fetch_seconds_count{target=\"c1\",api=\"GetClusterCredentials\"} 1",
            "redshift_proxy_build_info{version=\"",
            "redshift_proxy_cancel_requests_total{outcome=\"forwarded\"} 1",
            "redshift_proxy_peers 3",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_cpu_seconds_total ",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn dropped_startup_parameters_are_counted_by_known_name_only() {
        let metrics = Metrics::new();
        let target = metrics.target("c1");
        target.startup_parameter_dropped("_pq_.compression");
        target.startup_parameter_dropped("_pq_.compression");
        target.startup_parameter_dropped("_pq_.anything_a_client_makes_up");
        let text = metrics.encode();
        for line in [
            "redshift_proxy_startup_parameters_dropped_total{name=\"_pq_.compression\"} 2",
            "redshift_proxy_startup_parameters_dropped_total{name=\"other\"} 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains("made_up"), "{text}");
    }
}
