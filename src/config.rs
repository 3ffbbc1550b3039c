//! Command-line flags and configuration, layered with figment: built-in defaults < config
//! file (`--config`, TOML) < `REDSHIFT_AUTH_PROXY_*` environment < command-line flags.
//! The result is validated once into `ProxyConfig`, so the rest of the proxy never sees a
//! half-checked setting.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::Value;
use serde::{Deserialize, Deserializer, Serialize};

use crate::client::auth::{ClientAuthMethod, ClientSslMode};
use crate::client::tls::{ClientTlsMode, ClientTlsSettings, ClientTlsSource};
use crate::credentials::AwsSettings;
use crate::ops::shutdown::ShutdownDelays;
use crate::target::{Target, TargetError};
use crate::upstream::tls::{SslMode, UpstreamRoots, UpstreamTrust};

const ABOUT: &str = "A PostgreSQL wire-protocol proxy for Amazon Redshift: clients connect to \
localhost without a password and the proxy logs in to the cluster or workgroup with short-lived \
IAM database credentials, over verified TLS.";

const AFTER_HELP: &str = "\
TARGETS
  A target is one cluster or workgroup with its own local port. Write it as
    an endpoint:   HOST[:PORT][/DATABASE][?option=value&...]
    a JDBC URL:    jdbc:redshift:iam://HOST:PORT/DB, jdbc:redshift://HOST:PORT/DB,
                   jdbc:redshift:iam://CLUSTER:REGION/DB,
                   jdbc:redshift:iam://redshift-serverless-WORKGROUP:REGION/DB
    or a [[target]] table in the --config file (endpoint = \"...\" plus options).
  Options: port (local port), database, cluster, workgroup, region, db_user, db_groups,
  auto_create, iam_identity, duration_seconds, custom_domain, sslmode, password_env,
  allowed_users.

EXAMPLES
  # Serverless: workgroup, account and region come from the endpoint name
  redshift-auth-proxy default.123456789012.us-east-1.redshift-serverless.amazonaws.com

  # A fixed database user, and a second cluster on the next port (5440)
  redshift-auth-proxy 'examplecluster.abc123xyz789.us-west-2.redshift.amazonaws.com/dev?db_user=analyst' \\
      'jdbc:redshift:iam://other.def456.eu-west-1.redshift.amazonaws.com:5439/prod'

  # Static password mode (no AWS), verifying the server with a private CA
  PW=secret redshift-auth-proxy 'db.example.com:5439/dev?db_user=alice&password_env=PW' --upstream-ca ca.pem

  Then: psql \"host=127.0.0.1 port=5439 dbname=dev\"   (no password)

  # Reachable from other hosts: TLS for clients and a password per client
  redshift-auth-proxy TARGET --address 0.0.0.0 --client-tls-cert tls.crt --client-tls-key tls.key \\
      --client-sslmode require --client-auth scram --client-users users.txt
  redshift-auth-proxy hash-password alice >> users.txt     (reads the password from stdin)

CLIENT SECURITY
  Whoever can connect to a listener acts with the proxy's IAM identity. With the default
  --client-auth trust the proxy therefore refuses to listen on anything but loopback (and
  the --unix-socket), unless --allow-unauthenticated-remote says a firewall or network
  policy already limits who can connect.

Every flag can also be set as REDSHIFT_AUTH_PROXY_<FLAG> (e.g. REDSHIFT_AUTH_PROXY_PORT=6000) or
as a key in the --config file (e.g. port = 6000); flags win over the environment, which wins
over the file.";

/// The command line. Options are `Option`s so that only flags actually given override the
/// lower configuration layers.
#[derive(Debug, Clone, Default, Parser, Serialize)]
#[command(
    name = "redshift-auth-proxy",
    version,
    about = ABOUT,
    after_help = AFTER_HELP,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// A helper command instead of serving.
    #[command(subcommand)]
    #[serde(skip)]
    pub command: Option<Command>,

    /// Targets to serve, each on its own local port (see TARGETS below).
    #[arg(value_name = "TARGET")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,

    /// Local address to listen on. Example: --address 0.0.0.0 (default 127.0.0.1).
    #[arg(long, value_name = "IP")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<IpAddr>,

    /// First local port; each further target takes the next port unless it names one.
    /// Example: --port 6432 (default 5439).
    #[arg(long, value_name = "PORT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,

    /// TOML configuration file with settings and [[target]] tables.
    /// Example: --config config/proxy.toml (also REDSHIFT_AUTH_PROXY_CONFIG).
    #[arg(long, value_name = "FILE", env = "REDSHIFT_AUTH_PROXY_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// How the server's certificate is checked: verify-full (chain and host name, the
    /// default), verify-ca (chain only), require (encrypt without checking), disable (no TLS).
    /// A target's sslmode= option overrides it. Example: --sslmode verify-ca.
    #[arg(long, value_name = "MODE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sslmode: Option<SslMode>,

    /// PEM file of extra CA certificates to trust for the server (repeatable), e.g. a
    /// private CA or Amazon's bundle. Example: --upstream-ca /etc/ssl/amazon-trust-ca-bundle.crt.
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub upstream_ca: Vec<PathBuf>,

    /// Base set of trusted roots: webpki (Mozilla's, compiled in; default) or native (the
    /// operating system's store). Example: --upstream-roots native.
    #[arg(long, value_name = "SOURCE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_roots: Option<UpstreamRoots>,

    /// Limit for TCP connect, TLS handshake and login to the server together, and for each AWS
    /// call with its retries. Example: --connect-timeout 5s
    /// (default 10s; units ms, s, m; a bare number is seconds).
    #[arg(long, value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<String>,

    /// How long a client may take from connecting to sending its StartupMessage before it is
    /// closed. Example: --startup-timeout 10s (default 30s).
    #[arg(long, value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub startup_timeout: Option<String>,

    /// Log filter: error, warn, info, debug, trace, or a tracing directive such as
    /// "redshift_auth_proxy=debug". RUST_LOG, when set, wins. Example: --log-level debug.
    #[arg(long, value_name = "LEVEL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,

    /// Log line format: text for people, json for log collectors. Example: --log-format json.
    #[arg(long, value_name = "FORMAT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,

    /// AWS profile from ~/.aws/config and ~/.aws/credentials (SSO profiles included) instead
    /// of AWS_PROFILE or "default". Example: --aws-profile analytics.
    #[arg(long, value_name = "NAME")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws_profile: Option<String>,

    /// Region for the credential APIs, overriding the region read from each endpoint name.
    /// Example: --aws-region eu-west-1.
    #[arg(long, value_name = "REGION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws_region: Option<String>,

    /// Assume this IAM role (with the credentials the chain finds) before asking for
    /// database credentials; refreshed automatically.
    /// Example: --role-arn arn:aws:iam::123456789012:role/redshift-proxy.
    #[arg(long, value_name = "ARN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,

    /// External id the role's trust policy requires (with --role-arn). Example: --role-external-id 4f2a9c.
    #[arg(long, value_name = "ID")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_external_id: Option<String>,

    /// Session name of the assumed role, as CloudTrail shows it (with --role-arn; default
    /// redshift-auth-proxy). Example: --role-session-name etl-proxy.
    #[arg(long, value_name = "NAME")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_session_name: Option<String>,

    /// Endpoint URL for the Redshift and Redshift Serverless APIs (VPC interface endpoints,
    /// local stand-ins); AWS_ENDPOINT_URL is honoured too. Example: --aws-endpoint-url http://127.0.0.1:4566.
    #[arg(long, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws_endpoint_url: Option<String>,

    /// Address of the HTTP endpoint for /metrics and the health probes, or "off".
    /// Example: --http-address 0.0.0.0:9539 (default 127.0.0.1:9539).
    #[arg(long, value_name = "ADDR|off")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_address: Option<String>,

    /// Accept POST /quitquitquit on the HTTP endpoint to start the same graceful stop as
    /// SIGTERM (for Kubernetes Jobs whose main container has finished). Example: --quitquitquit.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub quitquitquit: bool,

    /// After SIGTERM/SIGINT, keep accepting new connections this long (readiness is already
    /// failing). Example: --min-sigterm-delay 5s (default 0s).
    #[arg(long, value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_sigterm_delay: Option<String>,

    /// Then let open sessions finish for at most this long before ending them with 57P01.
    /// Example: --max-sigterm-delay 30s (default 0s).
    #[arg(long, value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_sigterm_delay: Option<String>,

    /// Most client sessions per target; the next client gets 53300. Example:
    /// --max-connections 100 (default unlimited).
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,

    /// Threads that run sessions. One thread wakes fewer times per query (on two cores, 31
    /// instead of 39 µs of proxy CPU per pgbench -S transaction with 4 clients); one per CPU
    /// serves many busy clients faster. Example: --worker-threads 1 (default: one per CPU).
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_threads: Option<usize>,

    /// End a session that waits on its client this long (FATAL 57P05). Example:
    /// --idle-timeout 30m (default off).
    #[arg(long, value_name = "DURATION|off")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<String>,

    /// Serve TLS to clients with this PEM certificate chain (leaf first; with
    /// --client-tls-key): SSLRequest is answered with S. Reloaded without a restart when the
    /// file changes or on SIGHUP. Example: --client-tls-cert /etc/proxy/tls.crt.
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_tls_cert: Option<PathBuf>,

    /// The PEM private key of --client-tls-cert. Example: --client-tls-key /etc/proxy/tls.key.
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_tls_key: Option<PathBuf>,

    /// self-signed: generate a client TLS certificate at start-up (for drivers that insist on
    /// TLS) and log its SHA-256 fingerprint; off: only --client-tls-cert/--client-tls-key
    /// (default). Example: --client-tls self-signed.
    #[arg(long, value_name = "MODE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_tls: Option<ClientTlsMode>,

    /// prefer: TLS when the client asks for it (default); require: refuse plain-text TCP
    /// clients with 08P01 (needs client TLS). Example: --client-sslmode require.
    #[arg(long, value_name = "MODE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_sslmode: Option<ClientSslMode>,

    /// How clients prove who they are: trust (no check; default, loopback and Unix socket
    /// only), scram (a password checked against --client-users), cert (a client certificate
    /// signed by --client-ca whose CN is the user name). Example: --client-auth scram.
    #[arg(long, value_name = "METHOD")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuthMethod>,

    /// Users file for --client-auth scram: lines user:SCRAM-SHA-256$<iter>:<salt>$<storedkey>:<serverkey>
    /// (PostgreSQL's verifier format; make them with `redshift-auth-proxy hash-password USER`).
    /// Example: --client-users /etc/proxy/users.txt.
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_users: Option<PathBuf>,

    /// PEM CA certificates that sign client certificates, for --client-auth cert.
    /// Example: --client-ca /etc/proxy/client-ca.pem.
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<PathBuf>,

    /// Listen on a non-loopback --address with --client-auth trust anyway (a warning is
    /// logged): only when a firewall or network policy already limits who can connect, since
    /// anyone who reaches the port acts with the proxy's IAM identity.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub allow_unauthenticated_remote: bool,

    /// Also serve the first target on a Unix socket in this directory, named .s.PGSQL.<port>
    /// as libpq expects (psql -h DIR -p PORT). Example: --unix-socket /run/redshift-auth-proxy.
    #[arg(long, value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unix_socket: Option<PathBuf>,

    /// Test every target and exit: fetch credentials, connect, log in, run `select 1`, print
    /// one line per target; exit status 0 when all work, 1 otherwise. Example: --check.
    #[arg(long)]
    #[serde(skip)]
    pub check: bool,
}

/// Helper commands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Print a --client-users line for USER: reads the password from stdin (typed twice
    /// without echo on a terminal) and prints USER:SCRAM-SHA-256$... (the verifier alone
    /// without USER). Example: redshift-auth-proxy hash-password alice >> users.txt.
    HashPassword {
        /// The client user name the line is for.
        user: Option<String>,
    },
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The merged settings before validation; field names are the config file keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Settings {
    address: IpAddr,
    port: u16,
    sslmode: SslMode,
    #[serde(deserialize_with = "one_or_many")]
    upstream_ca: Vec<PathBuf>,
    upstream_roots: UpstreamRoots,
    #[serde(deserialize_with = "duration_setting")]
    connect_timeout: String,
    #[serde(deserialize_with = "duration_setting")]
    startup_timeout: String,
    log_level: String,
    log_format: LogFormat,
    aws_profile: Option<String>,
    aws_region: Option<String>,
    role_arn: Option<String>,
    role_external_id: Option<String>,
    role_session_name: Option<String>,
    aws_endpoint_url: Option<String>,
    http_address: String,
    quitquitquit: bool,
    #[serde(deserialize_with = "duration_setting")]
    min_sigterm_delay: String,
    #[serde(deserialize_with = "duration_setting")]
    max_sigterm_delay: String,
    max_connections: Option<usize>,
    worker_threads: Option<usize>,
    #[serde(deserialize_with = "duration_setting")]
    idle_timeout: String,
    client_tls: ClientTlsMode,
    client_tls_cert: Option<PathBuf>,
    client_tls_key: Option<PathBuf>,
    client_sslmode: ClientSslMode,
    client_auth: ClientAuthMethod,
    client_users: Option<PathBuf>,
    client_ca: Option<PathBuf>,
    allow_unauthenticated_remote: bool,
    unix_socket: Option<PathBuf>,
    /// Positional targets from the command line.
    targets: Vec<String>,
    /// `[[target]]` tables from the config file.
    target: Vec<BTreeMap<String, Value>>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 5439,
            sslmode: SslMode::VerifyFull,
            upstream_ca: Vec::new(),
            upstream_roots: UpstreamRoots::Webpki,
            connect_timeout: "10s".to_owned(),
            startup_timeout: "30s".to_owned(),
            log_level: "info".to_owned(),
            log_format: LogFormat::Text,
            aws_profile: None,
            aws_region: None,
            role_arn: None,
            role_external_id: None,
            role_session_name: None,
            aws_endpoint_url: None,
            http_address: "127.0.0.1:9539".to_owned(),
            quitquitquit: false,
            min_sigterm_delay: "0s".to_owned(),
            max_sigterm_delay: "0s".to_owned(),
            max_connections: None,
            worker_threads: None,
            idle_timeout: "off".to_owned(),
            client_tls: ClientTlsMode::Off,
            client_tls_cert: None,
            client_tls_key: None,
            client_sslmode: ClientSslMode::Prefer,
            client_auth: ClientAuthMethod::Trust,
            client_users: None,
            client_ca: None,
            allow_unauthenticated_remote: false,
            unix_socket: None,
            targets: Vec::new(),
            target: Vec::new(),
        }
    }
}

/// A target ready to serve: where it listens and its effective sslmode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenTarget {
    /// The local address and port.
    pub listen: SocketAddr,
    /// The target as parsed.
    pub target: Target,
    /// The target's `sslmode` option, else the global one.
    pub sslmode: SslMode,
}

/// Validated configuration.
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
    /// Client TLS, client authentication and the Unix socket.
    pub client: ClientSettings,
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
    /// `scram` without a users file.
    #[error(
        "client_auth = scram needs --client-users FILE, with lines user:SCRAM-SHA-256$...; make them with `redshift-auth-proxy hash-password USER`"
    )]
    ClientUsersNeeded,
    /// A users file without `scram`.
    #[error(
        "client_users is only used with --client-auth scram: remove it or add --client-auth scram"
    )]
    ClientUsersUnused,
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

impl ProxyConfig {
    /// Merges the layers for `cli` (file and environment as the process sees them) and
    /// validates the result.
    pub fn load(cli: &Cli) -> Result<ProxyConfig, ConfigError> {
        ProxyConfig::from_figment(Self::figment(cli))
    }

    /// The layered figment: defaults < file < environment < flags.
    fn figment(cli: &Cli) -> Figment {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = &cli.config {
            figment = figment.merge(Toml::file_exact(path));
        }
        figment
            .merge(Env::prefixed("REDSHIFT_AUTH_PROXY_").ignore(&["config"]))
            .merge(Serialized::defaults(cli))
    }

    fn from_figment(figment: Figment) -> Result<ProxyConfig, ConfigError> {
        let settings: Settings = figment.extract()?;
        let connect_timeout =
            parse_duration(&settings.connect_timeout).ok_or_else(|| ConfigError::Duration {
                setting: "connect_timeout",
                value: settings.connect_timeout.clone(),
            })?;
        let startup_timeout =
            parse_duration(&settings.startup_timeout).ok_or_else(|| ConfigError::Duration {
                setting: "startup_timeout",
                value: settings.startup_timeout.clone(),
            })?;

        let duration = |setting: &'static str, value: &str| {
            parse_duration(value).ok_or_else(|| ConfigError::Duration {
                setting,
                value: value.to_owned(),
            })
        };
        let off = |value: &str| matches!(value.trim(), "off" | "0" | "0s" | "");
        let http_address = match settings.http_address.trim() {
            "off" => None,
            text => Some(
                text.parse::<SocketAddr>()
                    .map_err(|_| ConfigError::HttpAddress(text.to_owned()))?,
            ),
        };
        let shutdown = ShutdownDelays {
            min: duration("min_sigterm_delay", &settings.min_sigterm_delay)?,
            max: duration("max_sigterm_delay", &settings.max_sigterm_delay)?,
        };
        let idle_timeout = match off(&settings.idle_timeout) {
            true => None,
            false => Some(duration("idle_timeout", &settings.idle_timeout)?),
        };
        if settings.max_connections == Some(0) {
            return Err(ConfigError::ZeroMaxConnections);
        }
        if settings.worker_threads == Some(0) {
            return Err(ConfigError::ZeroWorkerThreads);
        }
        let client = client_settings(&settings)?;

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
                target,
            });
        }

        Ok(ProxyConfig {
            targets: listen_targets,
            trust: UpstreamTrust {
                roots: settings.upstream_roots,
                ca_files: settings.upstream_ca,
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
            client,
        })
    }
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
        ClientAuthMethod::Scram if settings.client_users.is_none() => {
            return Err(ConfigError::ClientUsersNeeded);
        }
        _ => {}
    }
    if settings.client_ca.is_some() && settings.client_auth != ClientAuthMethod::Cert {
        return Err(ConfigError::ClientCaUnused);
    }
    if settings.client_users.is_some() && settings.client_auth != ClientAuthMethod::Scram {
        return Err(ConfigError::ClientUsersUnused);
    }
    let remote = !settings.address.to_canonical().is_loopback();
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
pub fn parse_duration(text: &str) -> Option<Duration> {
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

/// Accepts a duration as a number of seconds or a string with a unit.
fn duration_setting<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(f64),
        Text(String),
    }
    Ok(match Raw::deserialize(deserializer)? {
        Raw::Number(n) => format!("{n}s"),
        Raw::Text(s) => s,
    })
}

/// Accepts one path or a list (the environment gives one string, the file may give a list).
fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<PathBuf>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        One(PathBuf),
        Many(Vec<PathBuf>),
    }
    Ok(match Raw::deserialize(deserializer)? {
        Raw::One(path) => vec![path],
        Raw::Many(paths) => paths,
    })
}

#[cfg(test)]
// figment's `Jail` closures must return its own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    const STATIC: &str = "db.example.com:5439/dev?db_user=alice&password_env=PW";

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("redshift-auth-proxy").chain(args.iter().copied()))
            .expect("flags parse")
    }

    #[test]
    fn defaults() {
        Jail::expect_with(|_| {
            let config = ProxyConfig::load(&cli(&[STATIC])).expect("loads");
            assert_eq!(config.targets.len(), 1);
            assert_eq!(config.targets[0].listen, "127.0.0.1:5439".parse().unwrap());
            assert_eq!(config.targets[0].sslmode, SslMode::VerifyFull);
            assert_eq!(config.connect_timeout, Duration::from_secs(10));
            assert_eq!(config.startup_timeout, Duration::from_secs(30));
            assert_eq!(config.log_format, LogFormat::Text);
            Ok(())
        });
    }

    #[test]
    fn further_targets_take_the_next_port_unless_they_name_one() {
        Jail::expect_with(|_| {
            let second = "db2.example.com/dev?db_user=bob&password_env=PW";
            let third = "db3.example.com/dev?db_user=bob&password_env=PW&port=7000";
            let config =
                ProxyConfig::load(&cli(&[STATIC, second, third, "--port", "6000"])).expect("loads");
            let ports: Vec<u16> = config.targets.iter().map(|t| t.listen.port()).collect();
            assert_eq!(ports, vec![6000, 6001, 7000]);
            Ok(())
        });
    }

    #[test]
    fn layers_file_then_env_then_flags() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "proxy.toml",
                r#"
                port = 6000
                connect_timeout = 3
                startup_timeout = "5s"
                sslmode = "verify-ca"
                upstream_ca = ["a.pem", "b.pem"]

                [[target]]
                endpoint = "db.example.com:5439/dev"
                db_user = "alice"
                password_env = "PW"
                db_groups = ["bi", "readers"]
                "#,
            )?;
            let config = ProxyConfig::load(&cli(&["--config", "proxy.toml"])).expect("file");
            assert_eq!(config.targets[0].listen.port(), 6000);
            assert_eq!(config.targets[0].sslmode, SslMode::VerifyCa);
            assert_eq!(config.targets[0].target.db_groups, vec!["bi", "readers"]);
            assert_eq!(config.connect_timeout, Duration::from_secs(3));
            assert_eq!(config.startup_timeout, Duration::from_secs(5));
            assert_eq!(config.trust.ca_files.len(), 2);

            jail.set_env("REDSHIFT_AUTH_PROXY_PORT", "6100");
            jail.set_env("REDSHIFT_AUTH_PROXY_UPSTREAM_CA", "env.pem");
            let config = ProxyConfig::load(&cli(&["--config", "proxy.toml"])).expect("env");
            assert_eq!(config.targets[0].listen.port(), 6100);
            assert_eq!(config.trust.ca_files, vec![PathBuf::from("env.pem")]);

            let config = ProxyConfig::load(&cli(&["--config", "proxy.toml", "--port", "6200"]))
                .expect("flags");
            assert_eq!(config.targets[0].listen.port(), 6200);
            Ok(())
        });
    }

    #[test]
    fn aws_region_supplies_and_overrides_target_regions() {
        Jail::expect_with(|_| {
            let config = ProxyConfig::load(&cli(&[
                "db.example.com/dev?cluster=c1",
                "examplecluster.abc123xyz789.us-west-2.redshift.amazonaws.com",
                "--aws-region",
                "eu-west-1",
            ]))
            .expect("loads");
            for listen in &config.targets {
                assert_eq!(listen.target.region.as_deref(), Some("eu-west-1"));
            }
            assert_eq!(config.aws.region.as_deref(), Some("eu-west-1"));
            let err = ProxyConfig::load(&cli(&["db.example.com/dev?cluster=c1"])).unwrap_err();
            assert!(err.to_string().contains("region"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn refusals_name_what_to_write() {
        Jail::expect_with(|jail| {
            let err = ProxyConfig::load(&cli(&[])).unwrap_err().to_string();
            assert!(err.contains("no target given"), "{err}");
            let err = ProxyConfig::load(&cli(&[STATIC, "--connect-timeout", "soon"]))
                .unwrap_err()
                .to_string();
            assert!(err.contains("10s, 500ms or 2m"), "{err}");
            let clash = "db2.example.com/dev?db_user=bob&password_env=PW&port=5439";
            let err = ProxyConfig::load(&cli(&[STATIC, clash]))
                .unwrap_err()
                .to_string();
            assert!(err.contains("both want local port 5439"), "{err}");
            jail.create_file("bad.toml", "[[target]]\ndb_user = \"x\"\n")?;
            let err = ProxyConfig::load(&cli(&["--config", "bad.toml"]))
                .unwrap_err()
                .to_string();
            assert!(err.contains("has no endpoint"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn client_security_defaults_and_the_remote_trust_refusal() {
        Jail::expect_with(|_| {
            let config = ProxyConfig::load(&cli(&[STATIC])).expect("loads");
            assert_eq!(config.client.auth, ClientAuthMethod::Trust);
            assert_eq!(config.client.sslmode, ClientSslMode::Prefer);
            assert!(config.client.tls.is_none());
            assert!(config.client.unauthenticated_remote.is_none());

            let err = ProxyConfig::load(&cli(&[STATIC, "--address", "0.0.0.0"]))
                .unwrap_err()
                .to_string();
            for needle in [
                "0.0.0.0",
                "IAM identity",
                "--client-auth",
                "--allow-unauthenticated-remote",
            ] {
                assert!(err.contains(needle), "{needle}: {err}");
            }
            let config = ProxyConfig::load(&cli(&[
                STATIC,
                "--address",
                "0.0.0.0",
                "--allow-unauthenticated-remote",
            ]))
            .expect("allowed");
            assert_eq!(
                config.client.unauthenticated_remote,
                Some("0.0.0.0".parse().unwrap())
            );
            for address in ["::1", "127.0.0.2", "::ffff:127.0.0.1"] {
                ProxyConfig::load(&cli(&[STATIC, "--address", address])).expect(address);
            }
            Ok(())
        });
    }

    #[test]
    fn client_security_from_file_env_and_flags() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "proxy.toml",
                r#"
                address = "0.0.0.0"
                client_auth = "scram"
                client_users = "users.txt"
                client_tls_cert = "tls.crt"
                client_tls_key = "tls.key"
                client_sslmode = "require"
                unix_socket = "/run/proxy"
                "#,
            )?;
            let config =
                ProxyConfig::load(&cli(&[STATIC, "--config", "proxy.toml"])).expect("file");
            assert_eq!(config.client.auth, ClientAuthMethod::Scram);
            assert_eq!(config.client.sslmode, ClientSslMode::Require);
            assert_eq!(config.client.users_file, Some(PathBuf::from("users.txt")));
            assert_eq!(config.client.unix_socket, Some(PathBuf::from("/run/proxy")));
            assert_eq!(
                config.client.tls.map(|t| t.source),
                Some(ClientTlsSource::Files {
                    cert: PathBuf::from("tls.crt"),
                    key: PathBuf::from("tls.key"),
                })
            );
            assert!(config.client.unauthenticated_remote.is_none());

            jail.set_env("REDSHIFT_AUTH_PROXY_ADDRESS", "10.1.2.3");
            jail.set_env("REDSHIFT_AUTH_PROXY_CLIENT_TLS", "self-signed");
            jail.set_env("REDSHIFT_AUTH_PROXY_ALLOW_UNAUTHENTICATED_REMOTE", "true");
            let config = ProxyConfig::load(&cli(&[STATIC])).expect("env");
            let Some(ClientTlsSource::SelfSigned { names }) = config.client.tls.map(|t| t.source)
            else {
                panic!("self-signed expected");
            };
            assert!(names.contains(&"10.1.2.3".to_owned()), "{names:?}");
            assert!(names.contains(&"localhost".to_owned()), "{names:?}");
            assert!(config.client.unauthenticated_remote.is_some());

            let config = ProxyConfig::load(&cli(&[
                STATIC,
                "--client-auth",
                "cert",
                "--client-ca",
                "ca.pem",
            ]))
            .expect("flags");
            assert_eq!(config.client.auth, ClientAuthMethod::Cert);
            assert_eq!(
                config.client.tls.and_then(|t| t.client_ca),
                Some(PathBuf::from("ca.pem"))
            );
            Ok(())
        });
    }

    #[test]
    fn client_security_combinations_that_cannot_work() {
        Jail::expect_with(|_| {
            let tls = ["--client-tls-cert", "c.pem", "--client-tls-key", "k.pem"];
            let cases: Vec<(Vec<&str>, &str)> = vec![
                (vec!["--client-tls-cert", "c.pem"], "go together"),
                (
                    [&["--client-tls", "self-signed"][..], &tls[..]].concat(),
                    "exclude each other",
                ),
                (
                    vec!["--client-sslmode", "require"],
                    "client_sslmode = require needs client TLS",
                ),
                (
                    vec!["--client-auth", "cert", "--client-ca", "ca.pem"],
                    "client_auth = cert needs client TLS",
                ),
                (
                    [&["--client-auth", "cert"][..], &tls[..]].concat(),
                    "--client-ca FILE",
                ),
                (
                    [
                        &[
                            "--client-auth",
                            "cert",
                            "--client-ca",
                            "ca.pem",
                            "--unix-socket",
                            "/tmp",
                        ][..],
                        &tls[..],
                    ]
                    .concat(),
                    "Unix sockets",
                ),
                (
                    vec!["--client-ca", "ca.pem"],
                    "only used with --client-auth cert",
                ),
                (vec!["--client-auth", "scram"], "hash-password"),
                (
                    vec!["--client-users", "u.txt"],
                    "only used with --client-auth scram",
                ),
            ];
            for (flags, needle) in cases {
                let mut args = vec![STATIC];
                args.extend(flags.iter().copied());
                let err = ProxyConfig::load(&cli(&args)).unwrap_err().to_string();
                assert!(err.contains(needle), "{flags:?}: {err}");
            }
            Ok(())
        });
    }

    #[test]
    fn hash_password_is_a_subcommand_and_targets_still_parse() {
        let parsed = cli(&["hash-password", "alice"]);
        assert!(matches!(
            parsed.command,
            Some(Command::HashPassword { user: Some(ref u) }) if u == "alice"
        ));
        assert!(cli(&["hash-password"]).command.is_some());
        let parsed = cli(&[STATIC]);
        assert!(parsed.command.is_none());
        assert_eq!(parsed.targets, vec![STATIC.to_owned()]);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("fast"), None);
        assert_eq!(parse_duration("-1s"), None);
    }
}
