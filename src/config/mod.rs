//! Command-line flags and configuration, layered with figment: built-in defaults < config
//! file (`--config`, TOML) < `REDSHIFT_AUTH_PROXY_*` environment < command-line flags.
//! The result is validated once into `ProxyConfig`, so the rest of the proxy never sees a
//! half-checked setting.
//!
//! Every layered setting is declared once, in `settings.rs`: its flag, config key,
//! environment variable, default and `--help` line all come from that entry.

#[macro_use]
mod table;
mod cli;
mod error;
mod layers;
mod settings;
#[cfg(test)]
mod tests;
mod validate;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cancel::peer_list::PeerList;
use crate::client::auth::{ClientAuthMethod, ClientSslMode};
use crate::client::tls::ClientTlsSettings;
use crate::credentials::AwsSettings;
use crate::ops::shutdown::ShutdownDelays;
use crate::target::Target;
use crate::upstream::compression::Compression;
use crate::upstream::tls::{SslMode, UpstreamTrust};
use crate::upstream::warm::WarmSettings;

pub use cli::{Cli, Command};
pub use error::ConfigError;
pub use settings::SETTINGS;
pub use table::SettingDoc;

/// How log lines are written: people read text, log collectors parse JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// A target ready to serve: its port and sslmode are settled here, once, so the listeners
/// never look at the global settings again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenTarget {
    /// The local address and port.
    pub listen: SocketAddr,
    /// The target as parsed.
    pub target: Target,
    /// The target's `sslmode` option, else the global one.
    pub sslmode: SslMode,
    /// The target's `compression` option, else the global one.
    pub compression: Compression,
    /// The target's `warm_sessions` option, else `--warm-sessions`.
    pub warm_sessions: usize,
}

/// The configuration the proxy runs with. Every value in it has been checked, alone and
/// against the others, so nothing downstream re-validates or can meet a half-checked setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// The targets in listen order.
    pub targets: Vec<ListenTarget>,
    /// Roots and extra CAs for upstream certificates.
    pub trust: UpstreamTrust,
    /// Limit for connect, TLS handshake and login together (and each AWS call).
    pub connect_timeout: Duration,
    /// Connect-to-StartupMessage limit.
    pub startup_timeout: Duration,
    /// Log filter directive.
    pub log_level: String,
    /// Log format.
    pub log_format: LogFormat,
    /// How to reach AWS for the IAM targets.
    pub aws: AwsSettings,
    /// The HTTP endpoint's address; `None` when off.
    pub http_address: Option<SocketAddr>,
    /// Whether POST /quitquitquit stops the proxy.
    pub quitquitquit: bool,
    /// The stop sequence's delays.
    pub shutdown: ShutdownDelays,
    /// Most sessions per target.
    pub max_connections: Option<usize>,
    /// Threads of the async runtime that runs every session; `None`: one per CPU.
    pub worker_threads: Option<usize>,
    /// End sessions idle this long.
    pub idle_timeout: Option<Duration>,
    /// Limits of the warm upstream sessions all targets share.
    pub warm: WarmSettings,
    /// Client TLS, client authentication and the Unix socket.
    pub client: ClientSettings,
    /// Cancel routing among replicas; `None` when neither `--peers` nor `--peer-address` is set.
    pub peers: Option<PeerSettings>,
}

/// Cancel routing among replicas, validated: a secret file is named whenever a peer setting
/// is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSettings {
    /// Where to forward cancels for keys this replica did not issue.
    pub peers: Option<PeerList>,
    /// Where to accept peers' cancels.
    pub listen: Option<SocketAddr>,
    /// The shared secret's file.
    pub secret_file: PathBuf,
    /// How long a forward waits for the peers.
    pub forward_timeout: Duration,
}

/// How clients reach the proxy and prove who they are, validated: every combination here
/// works (client TLS where `require` or `cert` needs it, a users file for `scram`, no
/// `trust` beyond loopback unless explicitly allowed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSettings {
    /// Client TLS (with the client CA for `cert`), if configured.
    pub tls: Option<ClientTlsSettings>,
    /// Whether plain-text TCP clients are refused.
    pub sslmode: ClientSslMode,
    /// The authentication method.
    pub auth: ClientAuthMethod,
    /// The users file for `scram`.
    pub users_file: Option<PathBuf>,
    /// Set to the listen address when `trust` serves a non-loopback address because
    /// `--allow-unauthenticated-remote` said so: the binary logs a warning.
    pub unauthenticated_remote: Option<IpAddr>,
    /// The directory of the first target's Unix socket.
    pub unix_socket: Option<PathBuf>,
}

impl ProxyConfig {
    /// Merges the layers for `cli` (file and environment as the process sees them) and
    /// validates the result, so start-up fails with one message instead of a session failing
    /// later.
    pub fn load(cli: &Cli) -> Result<ProxyConfig, ConfigError> {
        validate::validate(layers::merge(cli)?)
    }
}
