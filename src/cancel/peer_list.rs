//! `--peers`: which replicas a cancel for a key this replica does not own is forwarded to.
//! A comma-separated list of `host:port` entries (`[v6]:port` for IPv6), or `dns:NAME:PORT`
//! entries that stand for every address NAME has (a Kubernetes headless Service gives each
//! pod's IP). The resolver looks every name up again every [`REFRESH_INTERVAL`], so pods that
//! come and go are found; an entry that fails to resolve keeps its last addresses. Listing
//! this replica itself, as a headless Service does, is harmless: it answers "not mine".

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::ops::metrics::Metrics;

/// How often names are looked up again.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// One lookup may take this long before the entry counts as failed for this round.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// One entry of `--peers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEntry {
    /// `host:port`: one replica, by address or name.
    Static {
        /// An IP address or a host name.
        host: String,
        /// Its peer port.
        port: u16,
    },
    /// `dns:NAME:PORT`: every address of NAME.
    Dns {
        /// The name, e.g. a headless Service.
        name: String,
        /// The peer port of every replica.
        port: u16,
    },
}

impl PeerEntry {
    fn host(&self) -> &str {
        match self {
            PeerEntry::Static { host, .. } => host,
            PeerEntry::Dns { name, .. } => name,
        }
    }

    fn port(&self) -> u16 {
        match self {
            PeerEntry::Static { port, .. } | PeerEntry::Dns { port, .. } => *port,
        }
    }
}

impl std::fmt::Display for PeerEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerEntry::Static { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            PeerEntry::Static { host, port } => write!(f, "{host}:{port}"),
            PeerEntry::Dns { name, port } => write!(f, "dns:{name}:{port}"),
        }
    }
}

/// The parsed `--peers` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerList {
    /// The entries in the order given.
    pub entries: Vec<PeerEntry>,
}

/// A `--peers` value that cannot be used; the message quotes the entry and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerListError {
    /// Nothing but commas and spaces.
    #[error("--peers is empty: list host:port entries or dns:NAME:PORT, or leave it out")]
    Empty,
    /// One entry is malformed.
    #[error("--peers entry {entry:?}: {why}")]
    Entry {
        /// The entry as written.
        entry: String,
        /// What is wrong and how to write it.
        why: &'static str,
    },
}

impl PeerList {
    /// Parses `host:port,[v6]:port,dns:NAME:PORT`.
    pub fn parse(text: &str) -> Result<PeerList, PeerListError> {
        let mut entries = Vec::new();
        for raw in text.split(',') {
            let raw = raw.trim();
            if raw.is_empty() {
                continue;
            }
            let bad = |why| PeerListError::Entry {
                entry: raw.to_owned(),
                why,
            };
            let entry = match raw.strip_prefix("dns:") {
                Some(rest) => {
                    let (name, port) = rest.rsplit_once(':').ok_or_else(|| {
                        bad("a dns: entry needs a port: write dns:NAME:PORT, e.g. dns:redshift-auth-proxy-peers:9540")
                    })?;
                    check_name(name).map_err(bad)?;
                    PeerEntry::Dns {
                        name: name.to_owned(),
                        port: parse_port(port).map_err(bad)?,
                    }
                }
                None => {
                    let (host, port) = raw
                        .rsplit_once(':')
                        .ok_or_else(|| bad("needs a port: write host:port, e.g. 10.0.0.7:9540"))?;
                    let host = match host.strip_prefix('[') {
                        Some(v6) => v6
                            .strip_suffix(']')
                            .filter(|v6| v6.parse::<std::net::Ipv6Addr>().is_ok())
                            .ok_or_else(|| {
                                bad("an IPv6 address in brackets, e.g. [fd00::7]:9540")
                            })?,
                        None if host.contains(':') => {
                            return Err(bad(
                                "an IPv6 address goes in brackets, e.g. [fd00::7]:9540",
                            ));
                        }
                        None => {
                            check_name(host).map_err(bad)?;
                            host
                        }
                    };
                    PeerEntry::Static {
                        host: host.to_owned(),
                        port: parse_port(port).map_err(bad)?,
                    }
                }
            };
            entries.push(entry);
        }
        if entries.is_empty() {
            return Err(PeerListError::Empty);
        }
        Ok(PeerList { entries })
    }
}

fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("the host name is empty");
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    if !name.chars().all(allowed) {
        return Err("a host name has letters, digits, '.', '-' and '_' only");
    }
    Ok(())
}

fn parse_port(text: &str) -> Result<u16, &'static str> {
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err("the port must be a number from 1 to 65535"),
        Ok(port) => Ok(port),
    }
}

/// The peers' addresses as last resolved; cheap to clone and read.
#[derive(Debug, Clone)]
pub struct PeerAddresses {
    current: watch::Receiver<Arc<[SocketAddr]>>,
}

impl PeerAddresses {
    /// Every resolved address, this replica's own included when it is listed.
    pub fn current(&self) -> Arc<[SocketAddr]> {
        self.current.borrow().clone()
    }
}

/// Looks the entries up, now and every [`REFRESH_INTERVAL`], publishing the addresses.
#[derive(Debug)]
pub struct PeerResolver {
    list: PeerList,
    /// Each entry's last good addresses, kept when a lookup fails.
    last: Vec<Vec<SocketAddr>>,
    /// Whether each entry's last lookup failed, so a failure is logged when it starts only.
    failing: Vec<bool>,
    publish: watch::Sender<Arc<[SocketAddr]>>,
    metrics: Arc<Metrics>,
}

impl PeerResolver {
    /// A resolver for `list` with nothing resolved yet, and the handle forwarders read.
    pub fn new(list: PeerList, metrics: Arc<Metrics>) -> (PeerResolver, PeerAddresses) {
        let (publish, current) = watch::channel(Arc::from(Vec::new()));
        let n = list.entries.len();
        let resolver = PeerResolver {
            list,
            last: vec![Vec::new(); n],
            failing: vec![false; n],
            publish,
            metrics,
        };
        (resolver, PeerAddresses { current })
    }

    /// Looks every entry up once and publishes the union of their addresses.
    pub async fn refresh(&mut self) {
        for (i, entry) in self.list.entries.iter().enumerate() {
            let lookup = tokio::time::timeout(
                LOOKUP_TIMEOUT,
                tokio::net::lookup_host((entry.host(), entry.port())),
            )
            .await;
            let found: Result<Vec<SocketAddr>, String> = match lookup {
                Ok(Ok(addresses)) => Ok(addresses.collect()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {LOOKUP_TIMEOUT:?}")),
            };
            match found {
                Ok(addresses) if !addresses.is_empty() => {
                    if self.failing[i] {
                        tracing::info!(peers = %entry, "peer entry resolves again");
                    }
                    self.failing[i] = false;
                    self.last[i] = addresses;
                }
                other => {
                    let why = other.err().unwrap_or_else(|| "no addresses".to_owned());
                    if !self.failing[i] {
                        tracing::warn!(peers = %entry, error = %why, kept = self.last[i].len(), "peer entry does not resolve; keeping its last addresses");
                    }
                    self.failing[i] = true;
                }
            }
        }
        let mut all: Vec<SocketAddr> = self.last.iter().flatten().copied().collect();
        all.sort();
        all.dedup();
        if self.publish.borrow()[..] != all[..] {
            tracing::info!(count = all.len(), peers = ?all, "peer addresses");
        }
        self.metrics.set_peers(all.len());
        self.publish.send_replace(Arc::from(all));
    }

    /// Refreshes every [`REFRESH_INTERVAL`] until `stop`.
    pub async fn run(mut self, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(REFRESH_INTERVAL) => self.refresh().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<PeerEntry>, String> {
        PeerList::parse(text)
            .map(|list| list.entries)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn static_and_dns_entries_parse() {
        assert_eq!(
            parse(" 10.0.0.7:9540, proxy-1.example:9541 ,[fd00::7]:9540,dns:peers.ns.svc:9540,"),
            Ok(vec![
                PeerEntry::Static {
                    host: "10.0.0.7".into(),
                    port: 9540
                },
                PeerEntry::Static {
                    host: "proxy-1.example".into(),
                    port: 9541
                },
                PeerEntry::Static {
                    host: "fd00::7".into(),
                    port: 9540
                },
                PeerEntry::Dns {
                    name: "peers.ns.svc".into(),
                    port: 9540
                },
            ])
        );
        let list = PeerList::parse("[fd00::7]:9540,dns:a:1").expect("parses");
        let shown: Vec<String> = list.entries.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["[fd00::7]:9540", "dns:a:1"]);
    }

    #[test]
    fn bad_entries_say_how_to_write_them() {
        for (text, message) in [
            ("", "--peers is empty"),
            (" , ", "--peers is empty"),
            ("10.0.0.7", "needs a port: write host:port"),
            ("10.0.0.7:0", "the port must be a number from 1 to 65535"),
            (
                "10.0.0.7:95400",
                "the port must be a number from 1 to 65535",
            ),
            ("host:port", "the port must be a number"),
            (":9540", "the host name is empty"),
            ("fd00::7:9540", "an IPv6 address goes in brackets"),
            ("[fd00::7:9540", "an IPv6 address in brackets"),
            ("[nothost]:9540", "an IPv6 address in brackets"),
            (
                "dns:peers",
                "a dns: entry needs a port: write dns:NAME:PORT",
            ),
            ("dns::9540", "the host name is empty"),
            ("dns:pe ers:9540", "letters, digits"),
            ("peer/x:9540", "letters, digits"),
        ] {
            let error = parse(text).expect_err(text);
            assert!(error.contains(message), "{text:?}: {error}");
        }
    }

    #[tokio::test]
    async fn entries_resolve_to_every_address_once_and_publish_the_count() {
        let metrics = Metrics::new();
        let list = PeerList::parse("127.0.0.1:9540,localhost:9540,127.0.0.2:9540,127.0.0.1:9540")
            .expect("parses");
        let (mut resolver, addresses) = PeerResolver::new(list, metrics.clone());
        assert!(addresses.current().is_empty());
        resolver.refresh().await;
        let current = addresses.current();
        assert!(current.contains(&"127.0.0.1:9540".parse().expect("addr")));
        assert!(current.contains(&"127.0.0.2:9540".parse().expect("addr")));
        let unique: std::collections::HashSet<_> = current.iter().collect();
        assert_eq!(
            unique.len(),
            current.len(),
            "duplicates removed: {current:?}"
        );
        let text = metrics.encode();
        assert!(
            text.contains(&format!("redshift_proxy_peers {}", current.len())),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_name_that_stops_resolving_keeps_its_last_addresses() {
        let list = PeerList::parse("dns:no-such-peer.invalid:9540").expect("parses");
        let (mut resolver, addresses) = PeerResolver::new(list, Metrics::new());
        resolver.last[0] = vec!["10.0.0.9:9540".parse().expect("addr")];
        resolver.refresh().await;
        assert_eq!(
            &addresses.current()[..],
            &["10.0.0.9:9540".parse().expect("addr")]
        );
        assert!(resolver.failing[0]);
    }
}
