//! Why a configuration cannot be used. The proxy refuses to start rather than guess, so each
//! message names the setting and says what to write instead.

use std::net::IpAddr;

use crate::target::TargetError;

/// A configuration that cannot be used; each message names the setting and what to write.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// figment could not read or merge a layer.
    #[error("configuration: {0}")]
    Figment(Box<figment::Error>),
    /// A target string or table is wrong.
    #[error("target #{index} ({spec}): {source}")]
    Target {
        /// 1-based position.
        index: usize,
        /// What the user wrote.
        spec: String,
        /// Why it is wrong.
        source: TargetError,
    },
    /// A `[[target]]` table without its endpoint.
    #[error(
        "[[target]] #{0} in the config file has no endpoint: add endpoint = \"HOST[:PORT][/DATABASE]\""
    )]
    TargetWithoutEndpoint(usize),
    /// A `[[target]]` value that is not a string, number, boolean or list of those.
    #[error("[[target]] #{index} key {key}: expected a string, number, boolean or list of strings")]
    TargetValue {
        /// 1-based position.
        index: usize,
        /// The key.
        key: String,
    },
    /// No target anywhere.
    #[error(
        "no target given: name a cluster or workgroup endpoint, e.g. `redshift-auth-proxy default.123456789012.us-east-1.redshift-serverless.amazonaws.com`, or [[target]] tables in --config (see --help)"
    )]
    NoTargets,
    /// Two targets on one port.
    #[error(
        "targets {first} and {second} both want local port {port}: give one of them another port= option"
    )]
    PortClash {
        /// The port.
        port: u16,
        /// One target's label.
        first: String,
        /// The other's.
        second: String,
    },
    /// A port past 65535 after counting up.
    #[error("target #{0} would listen past port 65535: lower --port or give it a port= option")]
    PortOverflow(usize),
    /// An HTTP address that is neither `off` nor IP:PORT.
    #[error(
        "http_address = \"{0}\" is not an address: write IP:PORT such as 127.0.0.1:9539, or off"
    )]
    HttpAddress(String),
    /// `--worker-threads 0` would leave no thread to run sessions.
    #[error(
        "worker_threads = 0 would run nothing: use at least 1, or leave it out for one per CPU"
    )]
    ZeroWorkerThreads,
    /// `--max-connections 0` would refuse everyone.
    #[error("max_connections = 0 would refuse every client: leave it out for no limit")]
    ZeroMaxConnections,
    /// `--warm-sessions` beyond what a target may keep per key.
    #[error("warm_sessions = {0} is too many: use a number from 0 to 64")]
    WarmSessions(usize),
    /// A warm-session duration of 0 would close every spare as soon as it is made.
    #[error(
        "{0} = 0 would close every warm session as soon as it is made: use a duration such as 5m, or warm_sessions = 0 to keep none"
    )]
    ZeroWarmDuration(&'static str),
    /// Only one of the client TLS certificate and key.
    #[error(
        "client_tls_cert and client_tls_key go together: give both PEM files (--client-tls-cert FILE --client-tls-key FILE), or use --client-tls self-signed"
    )]
    ClientTlsIncomplete,
    /// Both a generated certificate and files.
    #[error(
        "--client-tls self-signed and --client-tls-cert/--client-tls-key exclude each other: choose one"
    )]
    ClientTlsTwice,
    /// A setting that needs client TLS without it.
    #[error(
        "{0} needs client TLS: give --client-tls-cert FILE --client-tls-key FILE, or --client-tls self-signed"
    )]
    ClientTlsNeeded(&'static str),
    /// `cert` without a CA to check certificates against.
    #[error(
        "client_auth = cert needs --client-ca FILE: the PEM CA certificates that sign client certificates"
    )]
    ClientCaNeeded,
    /// A CA file without `cert`.
    #[error("client_ca is only used with --client-auth cert: remove it or add --client-auth cert")]
    ClientCaUnused,
    /// `scram` or `password` without a users file.
    #[error(
        "client_auth = {0} needs --client-users FILE, with lines user:SCRAM-SHA-256$...; make them with `redshift-auth-proxy hash-password USER`"
    )]
    ClientUsersNeeded(&'static str),
    /// A users file without `scram` or `password`.
    #[error(
        "client_users is only used with --client-auth scram or password: remove it or add --client-auth scram"
    )]
    ClientUsersUnused,
    /// `password` where the cleartext password could be read on the way.
    #[error(
        "refusing --client-auth password on {0} without --client-sslmode require: the password would cross the network in cleartext. Require TLS from clients (--client-sslmode require with --client-tls-cert/--client-tls-key or --client-tls self-signed), listen on loopback or a --unix-socket, or use --client-auth scram"
    )]
    CleartextPasswordWithoutTls(IpAddr),
    /// `cert` with a Unix socket, where libpq never uses TLS.
    #[error(
        "--client-auth cert cannot work on --unix-socket (libpq does not use TLS on Unix sockets, so no client could present a certificate): drop one of them"
    )]
    CertAuthOnUnixSocket,
    /// `trust` on an address others can reach.
    #[error(
        "refusing to listen on {0} with --client-auth trust: anyone who can reach that address would run queries as this proxy's IAM identity, because the proxy logs in for every client. Listen on loopback (127.0.0.1 or ::1, the default) or a --unix-socket; or make clients authenticate with --client-auth scram (--client-users FILE) or --client-auth cert (--client-ca FILE); or, if a firewall or network policy already limits who can connect, pass --allow-unauthenticated-remote"
    )]
    UnauthenticatedRemote(IpAddr),
    /// `--peer-address` that is neither `IP:PORT` nor `off`.
    #[error("--peer-address {0:?} is not an address: write IP:PORT (e.g. 0.0.0.0:9540) or off")]
    PeerAddress(String),
    /// A `--peers` list that does not parse.
    #[error(transparent)]
    Peers(#[from] crate::cancel::peer_list::PeerListError),
    /// A peer setting without the secret that signs peer messages.
    #[error(
        "{0} needs --peer-secret-file: peer messages are signed with a secret every replica shares (make one with `openssl rand -hex 32 > FILE`)"
    )]
    PeerSecretNeeded(&'static str),
    /// A secret file with no peer setting to use it.
    #[error("peer_secret_file is only used with --peers or --peer-address: remove it or add them")]
    PeerSecretUnused,
    /// A forward timeout of zero.
    #[error("peer_forward_timeout = 0 would give up on every peer: use e.g. 500ms")]
    ZeroPeerForwardTimeout,
    /// A duration that does not parse.
    #[error("{setting} = \"{value}\" is not a duration: write e.g. 10s, 500ms or 2m")]
    Duration {
        /// The setting's name.
        setting: &'static str,
        /// What was given.
        value: String,
    },
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> ConfigError {
        ConfigError::Figment(Box::new(e))
    }
}
