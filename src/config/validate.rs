//! Validation: the merged settings become a `ProxyConfig` once, so the rest of the proxy never
//! sees a half-checked setting. Durations and addresses are parsed, client TLS and
//! authentication are checked against each other and the listen address, and the targets get
//! their local ports.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use figment::value::Value;

use super::error::ConfigError;
use super::settings::Settings;
use super::{ClientSettings, ListenTarget, PeerSettings, ProxyConfig};
use crate::cancel::peer_list::PeerList;
use crate::client::auth::{ClientAuthMethod, ClientSslMode};
use crate::client::tls::{ClientTlsMode, ClientTlsSettings, ClientTlsSource};
use crate::credentials::AwsSettings;
use crate::ops::shutdown::ShutdownDelays;
use crate::target::{Target, WARM_SESSIONS};
use crate::upstream::tls::UpstreamTrust;
use crate::upstream::warm::WarmSettings;

/// Checks the merged settings and builds the configuration the proxy runs with.
pub(super) fn validate(settings: Settings) -> Result<ProxyConfig, ConfigError> {
    let duration = |setting: &'static str, value: &str| {
        parse_duration(value).ok_or_else(|| ConfigError::Duration {
            setting,
            value: value.to_owned(),
        })
    };
    let connect_timeout = duration("connect_timeout", &settings.connect_timeout.0)?;
    let startup_timeout = duration("startup_timeout", &settings.startup_timeout.0)?;
    let off = |value: &str| matches!(value.trim(), "off" | "0" | "0s" | "");
    let http_address = match settings.http_address.trim() {
        "off" => None,
        text => Some(
            text.parse::<SocketAddr>()
                .map_err(|_| ConfigError::HttpAddress(text.to_owned()))?,
        ),
    };
    let shutdown = ShutdownDelays {
        min: duration("min_sigterm_delay", &settings.min_sigterm_delay.0)?,
        max: duration("max_sigterm_delay", &settings.max_sigterm_delay.0)?,
    };
    let idle_timeout = match off(&settings.idle_timeout.0) {
        true => None,
        false => Some(duration("idle_timeout", &settings.idle_timeout.0)?),
    };
    if settings.max_connections == Some(0) {
        return Err(ConfigError::ZeroMaxConnections);
    }
    if settings.worker_threads == Some(0) {
        return Err(ConfigError::ZeroWorkerThreads);
    }
    let warm = WarmSettings {
        idle: duration("warm_idle", &settings.warm_idle.0)?,
        max_age: duration("warm_max_age", &settings.warm_max_age.0)?,
        max_total: settings.warm_max_total,
    };
    if warm.idle.is_zero() {
        return Err(ConfigError::ZeroWarmDuration("warm_idle"));
    }
    if warm.max_age.is_zero() {
        return Err(ConfigError::ZeroWarmDuration("warm_max_age"));
    }
    if !WARM_SESSIONS.contains(&settings.warm_sessions) {
        return Err(ConfigError::WarmSessions(settings.warm_sessions));
    }
    let client = client_settings(&settings)?;
    let peer_forward_timeout = duration("peer_forward_timeout", &settings.peer_forward_timeout.0)?;
    let peers = peer_settings(&settings, peer_forward_timeout)?;

    let listen_targets = listen_targets(&settings)?;

    Ok(ProxyConfig {
        targets: listen_targets,
        trust: UpstreamTrust {
            roots: settings.upstream_roots,
            ca_files: settings.upstream_ca.0,
        },
        connect_timeout,
        startup_timeout,
        log_level: settings.log_level,
        log_format: settings.log_format,
        aws: AwsSettings {
            profile: settings.aws_profile,
            region: settings.aws_region,
            role_arn: settings.role_arn,
            role_external_id: settings.role_external_id,
            role_session_name: settings.role_session_name,
            endpoint_url: settings.aws_endpoint_url,
        },
        http_address,
        quitquitquit: settings.quitquitquit,
        shutdown,
        max_connections: settings.max_connections,
        worker_threads: settings.worker_threads,
        idle_timeout,
        warm,
        client,
        peers,
    })
}

/// Checks the peer settings: the list parses, the address is one, and a secret file is
/// named exactly when a peer setting is on.
fn peer_settings(
    settings: &Settings,
    forward_timeout: Duration,
) -> Result<Option<PeerSettings>, ConfigError> {
    let peers = settings.peers.as_deref().map(PeerList::parse).transpose()?;
    let listen = match settings.peer_address.trim() {
        "off" | "" => None,
        text => Some(
            text.parse::<SocketAddr>()
                .map_err(|_| ConfigError::PeerAddress(text.to_owned()))?,
        ),
    };
    let needed_by = match (&peers, &listen) {
        (None, None) => {
            if settings.peer_secret_file.is_some() {
                return Err(ConfigError::PeerSecretUnused);
            }
            return Ok(None);
        }
        (Some(_), _) => "--peers",
        (None, Some(_)) => "--peer-address",
    };
    let secret_file = settings
        .peer_secret_file
        .clone()
        .ok_or(ConfigError::PeerSecretNeeded(needed_by))?;
    if forward_timeout.is_zero() {
        return Err(ConfigError::ZeroPeerForwardTimeout);
    }
    Ok(Some(PeerSettings {
        peers,
        listen,
        secret_file,
        forward_timeout,
    }))
}

/// Parses the command-line targets, then the `[[target]]` tables, and gives each its local
/// port: its own `port` option, else the first port plus its position. Two targets on one
/// port are refused here rather than failing to bind later.
fn listen_targets(settings: &Settings) -> Result<Vec<ListenTarget>, ConfigError> {
    let mut targets = Vec::new();
    for spec in &settings.targets {
        let index = targets.len() + 1;
        // --aws-region overrides the region an endpoint name carries (and supplies one
        // for names that carry none).
        let region = settings.aws_region.as_deref().map(|r| ("region", r));
        let target =
            Target::parse_with_options(spec, region).map_err(|source| ConfigError::Target {
                index,
                spec: spec.clone(),
                source,
            })?;
        targets.push(target);
    }
    for table in &settings.target {
        let index = targets.len() + 1;
        targets.push(target_from_table(
            index,
            table,
            settings.aws_region.as_deref(),
        )?);
    }
    if targets.is_empty() {
        return Err(ConfigError::NoTargets);
    }

    let mut used: HashSet<u16> = HashSet::new();
    let mut labels: BTreeMap<u16, String> = BTreeMap::new();
    let mut listen_targets = Vec::new();
    for (i, target) in targets.into_iter().enumerate() {
        let port = match target.listen_port {
            Some(port) => port,
            None => u16::try_from(u32::from(settings.port) + i as u32)
                .map_err(|_| ConfigError::PortOverflow(i + 1))?,
        };
        if !used.insert(port) && port != 0 {
            return Err(ConfigError::PortClash {
                port,
                first: labels.get(&port).cloned().unwrap_or_default(),
                second: target.label().to_owned(),
            });
        }
        labels.insert(port, target.label().to_owned());
        listen_targets.push(ListenTarget {
            listen: SocketAddr::new(settings.address, port),
            sslmode: target.sslmode.unwrap_or(settings.sslmode),
            compression: target.compression.unwrap_or(settings.compression),
            warm_sessions: target.warm_sessions.unwrap_or(settings.warm_sessions),
            target,
        });
    }
    Ok(listen_targets)
}

/// Checks the client TLS and authentication settings against each other and the listen
/// address.
fn client_settings(settings: &Settings) -> Result<ClientSettings, ConfigError> {
    let source = match (
        settings.client_tls,
        &settings.client_tls_cert,
        &settings.client_tls_key,
    ) {
        (ClientTlsMode::Off, None, None) => None,
        (ClientTlsMode::Off, Some(cert), Some(key)) => Some(ClientTlsSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        }),
        (ClientTlsMode::Off, _, _) => return Err(ConfigError::ClientTlsIncomplete),
        (ClientTlsMode::SelfSigned, None, None) => Some(ClientTlsSource::SelfSigned {
            names: self_signed_names(settings.address),
        }),
        (ClientTlsMode::SelfSigned, _, _) => return Err(ConfigError::ClientTlsTwice),
    };
    if settings.client_sslmode == ClientSslMode::Require && source.is_none() {
        return Err(ConfigError::ClientTlsNeeded("client_sslmode = require"));
    }
    match settings.client_auth {
        ClientAuthMethod::Cert if source.is_none() => {
            return Err(ConfigError::ClientTlsNeeded("client_auth = cert"));
        }
        ClientAuthMethod::Cert if settings.client_ca.is_none() => {
            return Err(ConfigError::ClientCaNeeded);
        }
        ClientAuthMethod::Cert if settings.unix_socket.is_some() => {
            return Err(ConfigError::CertAuthOnUnixSocket);
        }
        ClientAuthMethod::Scram | ClientAuthMethod::Password if settings.client_users.is_none() => {
            return Err(ConfigError::ClientUsersNeeded(
                settings.client_auth.as_str(),
            ));
        }
        _ => {}
    }
    if settings.client_ca.is_some() && settings.client_auth != ClientAuthMethod::Cert {
        return Err(ConfigError::ClientCaUnused);
    }
    let uses_verifiers = matches!(
        settings.client_auth,
        ClientAuthMethod::Scram | ClientAuthMethod::Password
    );
    if settings.client_users.is_some() && !uses_verifiers {
        return Err(ConfigError::ClientUsersUnused);
    }
    let remote = !settings.address.to_canonical().is_loopback();
    if settings.client_auth == ClientAuthMethod::Password
        && remote
        && settings.client_sslmode != ClientSslMode::Require
    {
        return Err(ConfigError::CleartextPasswordWithoutTls(settings.address));
    }
    let unauthenticated_remote = match (settings.client_auth, remote) {
        (ClientAuthMethod::Trust, true) if !settings.allow_unauthenticated_remote => {
            return Err(ConfigError::UnauthenticatedRemote(settings.address));
        }
        (ClientAuthMethod::Trust, true) => Some(settings.address),
        _ => None,
    };
    Ok(ClientSettings {
        tls: source.map(|source| ClientTlsSettings {
            source,
            client_ca: settings.client_ca.clone(),
        }),
        sslmode: settings.client_sslmode,
        auth: settings.client_auth,
        users_file: settings.client_users.clone(),
        unauthenticated_remote,
        unix_socket: settings.unix_socket.clone(),
    })
}

/// The names a generated certificate carries: the loopback names, and the listen address
/// when it is a specific one.
fn self_signed_names(address: IpAddr) -> Vec<String> {
    let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"]
        .iter()
        .map(|n| (*n).to_owned())
        .collect();
    let own = address.to_string();
    if !address.is_unspecified() && !names.contains(&own) {
        names.push(own);
    }
    names
}

/// Turns a `[[target]]` table into a target: `endpoint` is parsed like a positional target
/// and every other key is applied as that target's option.
fn target_from_table(
    index: usize,
    table: &BTreeMap<String, Value>,
    aws_region: Option<&str>,
) -> Result<Target, ConfigError> {
    let endpoint = table
        .get("endpoint")
        .and_then(Value::as_str)
        .ok_or(ConfigError::TargetWithoutEndpoint(index))?;
    let mut options = Vec::new();
    for (key, value) in table.iter().filter(|(key, _)| key.as_str() != "endpoint") {
        let text = option_text(value).ok_or_else(|| ConfigError::TargetValue {
            index,
            key: key.clone(),
        })?;
        options.push((key.as_str(), text));
    }
    if let Some(region) = aws_region {
        options.push(("region", region.to_owned()));
    }
    Target::parse_with_options(
        endpoint,
        options.iter().map(|(key, value)| (*key, value.as_str())),
    )
    .map_err(|source| ConfigError::Target {
        index,
        spec: endpoint.to_owned(),
        source,
    })
}

/// A TOML scalar or list as the text the query-string form would carry.
fn option_text(value: &Value) -> Option<String> {
    match value {
        Value::String(_, s) => Some(s.clone()),
        Value::Bool(_, b) => Some(b.to_string()),
        Value::Num(_, n) => n
            .to_u128()
            .map(|n| n.to_string())
            .or_else(|| n.to_i128().map(|n| n.to_string())),
        Value::Array(_, items) => items
            .iter()
            .map(option_text)
            .collect::<Option<Vec<_>>>()
            .map(|items| items.join(",")),
        _ => None,
    }
}

/// Parses `10`, `10s`, `500ms`, `2m`, `1h`.
pub(super) fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit.trim() {
        "" | "s" | "sec" | "secs" => number,
        "ms" => number / 1000.0,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        _ => return None,
    };
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}
