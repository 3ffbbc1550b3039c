//! Several proxy replicas peered on loopback, as `cancel_peers` runs them: the real binary
//! with `--peers` listing every replica's peer port (its own too) and one secret file, and
//! the two clients that cancel through a balancer (tokio-postgres's cancel token, psql on
//! SIGINT), each timed from the cancel to 57014.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use crate::support::balancer::Balancer;
use crate::support::eventually::eventually;
use crate::support::http_get::{request, sample};
use crate::support::pg::{self, PgServer};
use crate::support::proxy_process::{ProxyCommand, ProxyProcess};

/// The secret the replicas share in these tests.
pub const PEER_SECRET: &str = "peer-secret-for-the-tests-0123456789";

/// One replica: the real binary with its client, HTTP and peer ports.
pub struct Replica {
    /// The running binary.
    pub proxy: ProxyProcess,
    /// Its HTTP endpoint's port.
    pub http: u16,
    /// Its peer port.
    pub peer: u16,
}

impl Replica {
    /// Its `/metrics`.
    pub async fn metrics(&self) -> String {
        let Some((status, body)) = request(self.http, "GET", "/metrics").await else {
            panic!(
                "GET /metrics on port {} failed; the proxy logged:\n{}",
                self.http,
                self.proxy.log()
            );
        };
        assert_eq!(status, 200);
        body
    }

    /// Its `redshift_proxy_cancel_requests_total` for `outcome` (0 before the first).
    pub async fn cancels(&self, outcome: &str) -> u64 {
        let metrics = self.metrics().await;
        let prefix = format!("redshift_proxy_cancel_requests_total{{outcome=\"{outcome}\"}}");
        sample(&metrics, &prefix).unwrap_or(0.0) as u64
    }
}

/// `n` replicas in front of the shared server, each listing every replica's peer port and
/// `extra_peers`, with the forward timeout given.
pub fn start_replicas(
    server: &PgServer,
    n: usize,
    extra_peers: &[u16],
    forward_timeout: &str,
) -> (Vec<Replica>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("dir");
    let secret_file = dir.path().join("peer-secret");
    std::fs::write(&secret_file, format!("{PEER_SECRET}\n")).expect("secret file");
    let free = pg::free_ports(3 * n);
    let ports: Vec<(u16, u16, u16)> = free.chunks_exact(3).map(|p| (p[0], p[1], p[2])).collect();
    let peers: Vec<String> = ports
        .iter()
        .map(|(_, _, peer)| *peer)
        .chain(extra_peers.iter().copied())
        .map(|port| format!("127.0.0.1:{port}"))
        .collect();
    let peers = peers.join(",");
    let secret_path = secret_file.display().to_string();
    let replicas = ports
        .iter()
        .map(|&(port, http, peer)| {
            let peer_text = format!("127.0.0.1:{peer}");
            let proxy = ProxyCommand::serving(
                server,
                "",
                (port, http),
                &[
                    "--peers",
                    &peers,
                    "--peer-address",
                    &peer_text,
                    "--peer-secret-file",
                    &secret_path,
                    "--peer-forward-timeout",
                    forward_timeout,
                ],
            )
            .spawn(port);
            Replica { proxy, http, peer }
        })
        .collect();
    (replicas, dir)
}

/// Waits until every replica's peer port accepts and its peers are resolved.
pub async fn wait_peered(replicas: &[Replica], expected_peers: usize) {
    for replica in replicas {
        let ready = eventually(Duration::from_secs(10), async || {
            let metrics = replica.metrics().await;
            TcpStream::connect(("127.0.0.1", replica.peer))
                .await
                .is_ok()
                && sample(&metrics, "redshift_proxy_peers ") == Some(expected_peers as f64)
        })
        .await;
        assert!(ready, "peers not ready: {}", replica.proxy.log());
    }
}

/// Turns the balancer so that the next connection goes to replica `index`.
pub fn aim(balancer: &Balancer, index: usize, replicas: usize) {
    let next = balancer.next_backend();
    balancer.skip((index + replicas - next) % replicas);
}

/// A libpq connection string through `port`, the session named `application_name`.
pub fn conninfo(port: u16, application_name: &str) -> String {
    format!(
        "host=127.0.0.1 port={port} dbname=dev user=anyone sslmode=disable connect_timeout=30 application_name={application_name}"
    )
}

/// Waits until PostgreSQL runs `pg_sleep` for the session named `application_name`, so a
/// cancel cannot arrive before the query does (PostgreSQL ignores such a cancel).
pub async fn wait_running(direct: &tokio_postgres::Client, application_name: &str) {
    let running = eventually(Duration::from_secs(20), async || {
        let rows = direct
            .query(
                "select 1 from pg_stat_activity where application_name = $1 and state = 'active' and query like '%pg_sleep%'",
                &[&application_name],
            )
            .await
            .expect("pg_stat_activity");
        !rows.is_empty()
    })
    .await;
    assert!(running, "{application_name}: pg_sleep never started");
}

/// A session through the balancer cancelled with tokio-postgres's cancel token, the cancel's
/// connection sent to replica `cancel_at`; the time from the cancel to 57014.
pub async fn cancel_with_token(
    balancer: &Balancer,
    direct: &tokio_postgres::Client,
    name: &str,
    cancel_at: usize,
    replicas: usize,
) -> Duration {
    let (client, connection) = tokio_postgres::connect(&conninfo(balancer.port, name), NoTls)
        .await
        .expect("session through the balancer");
    tokio::spawn(connection);
    let token = client.cancel_token();
    let query = tokio::spawn(async move { client.simple_query("select pg_sleep(60)").await });
    wait_running(direct, name).await;
    aim(balancer, cancel_at, replicas);
    let started = Instant::now();
    token.cancel_query(NoTls).await.expect("cancel sent");
    let result = tokio::time::timeout(Duration::from_secs(10), query)
        .await
        .unwrap_or_else(|_| panic!("{name}: not cancelled within 10 s"))
        .expect("query task");
    let elapsed = started.elapsed();
    let error = result.expect_err("the query was cancelled");
    assert_eq!(
        error.code(),
        Some(&SqlState::QUERY_CANCELED),
        "{name}: {error}"
    );
    elapsed
}

/// A psql session through the balancer interrupted with SIGINT, which makes psql send a
/// CancelRequest to the same host and port (the balancer), aimed at replica `cancel_at`.
pub async fn cancel_with_psql(
    server: &PgServer,
    balancer: &Balancer,
    direct: &tokio_postgres::Client,
    name: &str,
    cancel_at: usize,
    replicas: usize,
) -> Duration {
    let home = tempfile::tempdir().expect("home");
    let child = tokio::process::Command::new(server.psql_bin())
        .arg(conninfo(balancer.port, name))
        .args([
            "-X",
            "-w",
            "-v",
            "VERBOSITY=verbose",
            "-c",
            "select pg_sleep(60)",
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql starts");
    let pid = child.id().expect("psql pid").to_string();
    wait_running(direct, name).await;
    aim(balancer, cancel_at, replicas);
    let started = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -INT psql");
    let output = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{name}: psql not cancelled within 10 s"))
        .expect("psql output");
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("57014"),
        "{name}: psql did not get 57014: {stderr}"
    );
    elapsed
}
