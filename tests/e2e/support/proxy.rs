//! Starts the proxy in-process on an ephemeral port, in front of whatever upstream a test
//! names, with the static password source.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use redshift_auth_proxy::cancel::CancelRouter;
use redshift_auth_proxy::client::auth::ClientPolicy;
use redshift_auth_proxy::credentials::{Secret, StaticPassword};
use redshift_auth_proxy::ops::health::Health;
use redshift_auth_proxy::ops::metrics::Metrics;
use redshift_auth_proxy::server::{Server, StopTokens};
use redshift_auth_proxy::session::TargetContext;
use redshift_auth_proxy::target::Target;
use redshift_auth_proxy::upstream::UpstreamEndpoint;
use redshift_auth_proxy::upstream::compression::WireCounters;
use redshift_auth_proxy::upstream::tls::{
    SslMode, UpstreamRoots, UpstreamTrust, upstream_client_config,
};
use redshift_auth_proxy::upstream::warm::{WarmBudget, WarmPool, WarmSettings};
use tokio::task::JoinHandle;

/// What to put in front of which upstream.
pub struct ProxyOptions {
    /// The target as a user writes it (host, port, database, options).
    pub target: String,
    /// The password the static source hands out.
    pub password: String,
    /// How the upstream certificate is checked.
    pub sslmode: SslMode,
    /// Extra CA files.
    pub ca_files: Vec<PathBuf>,
    /// Limit for connect + TLS handshake.
    pub connect_timeout: Duration,
    /// Limit for the client's startup packet.
    pub startup_timeout: Duration,
    /// `--idle-timeout`.
    pub idle_timeout: Option<Duration>,
    /// `--max-connections`.
    pub max_connections: Option<usize>,
    /// Client TLS and client authentication (trust without TLS by default).
    pub client: Arc<ClientPolicy>,
    /// `--warm-sessions` and the limits of warm sessions; none by default.
    pub warm: Option<(usize, WarmSettings)>,
}

impl ProxyOptions {
    /// A static-password target with verify-full against `ca`.
    pub fn new(target: impl Into<String>, password: impl Into<String>, ca: PathBuf) -> Self {
        ProxyOptions {
            target: target.into(),
            password: password.into(),
            sslmode: SslMode::VerifyFull,
            ca_files: vec![ca],
            connect_timeout: Duration::from_secs(5),
            startup_timeout: Duration::from_secs(5),
            idle_timeout: None,
            max_connections: None,
            client: Arc::new(ClientPolicy::trust()),
            warm: None,
        }
    }
}

/// A running proxy; stop it with `stop` to wait for every session task.
pub struct TestProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    /// The cancel router, to see registrations and counts.
    pub cancel: Arc<CancelRouter>,
    /// The proxy's metrics, to see what an operator would.
    pub metrics: Arc<Metrics>,
    /// The target's warm sessions, when it keeps them.
    pub warm: Option<Arc<WarmPool>>,
    stop: StopTokens,
    handle: JoinHandle<usize>,
}

impl TestProxy {
    /// Binds 127.0.0.1:0 and serves until stopped.
    pub async fn start(options: ProxyOptions) -> TestProxy {
        let target = Target::parse(&options.target).expect("test target parses");
        let trust = UpstreamTrust {
            roots: UpstreamRoots::Webpki,
            ca_files: options.ca_files.clone(),
        };
        let tls = upstream_client_config(options.sslmode, &trust).expect("tls config");
        let metrics = Metrics::new();
        let label = target.label().to_owned();
        let target_metrics = metrics.target(&label);
        let endpoint = Arc::new(UpstreamEndpoint {
            host: target.host.clone(),
            port: target.upstream_port,
            sslmode: options.sslmode,
            tls,
            connect_timeout: options.connect_timeout,
            compression: target.compression.unwrap_or_default(),
            wire: WireCounters {
                to_server: target_metrics.wire_up.clone(),
                from_server: target_metrics.wire_down.clone(),
            },
        });
        let cancel = CancelRouter::new(metrics.clone(), None);
        let credentials: Arc<dyn redshift_auth_proxy::credentials::CredentialSource> =
            Arc::new(StaticPassword::new(Secret::new(options.password)));
        let warm = options.warm.map(|(per_key, settings)| {
            WarmPool::start(
                per_key,
                settings,
                WarmBudget::new(settings.max_total),
                endpoint.clone(),
                credentials.clone(),
                target_metrics.clone(),
            )
        });
        let ctx = Arc::new(TargetContext {
            target,
            endpoint,
            credentials,
            cancel: cancel.clone(),
            startup_timeout: options.startup_timeout,
            idle_timeout: options.idle_timeout,
            metrics: target_metrics,
            client: options.client.clone(),
            warm: warm.clone(),
        });
        let server = Server::bind(
            [("127.0.0.1:0".parse().expect("address"), ctx)],
            options.max_connections,
        )
        .await
        .expect("proxy binds");
        let addr = server.local_addrs()[0];
        let stop = StopTokens::default();
        let health = Health::new();
        let handle = tokio::spawn(server.run(health.clone(), stop.clone()));
        TestProxy {
            addr,
            cancel,
            metrics,
            warm,
            stop,
            handle,
        }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// A libpq connection string for this proxy (no password: the proxy supplies it).
    pub fn conninfo(&self, dbname: &str) -> String {
        format!(
            "host=127.0.0.1 port={} dbname={dbname} user=anything sslmode=disable",
            self.port()
        )
    }

    /// Closes the warm sessions, stops accepting, ends sessions, and waits for every task.
    pub async fn stop(self) {
        if let Some(warm) = &self.warm {
            warm.close().await;
        }
        self.stop.stop_accepting.cancel();
        self.stop.end_sessions.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.handle)
            .await
            .expect("proxy stops within 10 s")
            .expect("proxy task did not panic");
    }
}
