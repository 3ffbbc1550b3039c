//! The settings table: each layered setting once, with its help text, kind, default and value
//! placeholder. Its key is the config-file key; the flag (`--key-with-dashes`), the environment
//! variable (`REDSHIFT_AUTH_PROXY_KEY`), the default layer and the `--help` line are made from
//! this entry by the macros in `table`.

use std::net::IpAddr;
use std::path::PathBuf;

use super::LogFormat;
use super::table::SettingDoc;
use crate::client::auth::{ClientAuthMethod, ClientSslMode};
use crate::client::tls::ClientTlsMode;
use crate::upstream::compression::Compression;
use crate::upstream::tls::{SslMode, UpstreamRoots};

settings! {
    /// Local address to listen on. Example: --address 0.0.0.0.
    address: value<IpAddr> = "127.0.0.1", "IP";

    /// First local port; each further target takes the next port unless it names one.
    /// Example: --port 6432.
    port: value<u16> = "5439", "PORT";

    /// How the server's certificate is checked: verify-full (chain and host name),
    /// verify-ca (chain only), require (encrypt without checking), disable (no TLS).
    /// A target's sslmode= option overrides it. Example: --sslmode verify-ca.
    sslmode: value<SslMode> = "verify-full", "MODE";

    /// Ask the server to compress what it sends: off, or lz4 (Redshift's wire compression,
    /// decompressed by the proxy so every client benefits; for slow or metered links). A
    /// target's compression= option overrides it. Example: --compression lz4.
    compression: value<Compression> = "off", "MODE";

    /// PEM file of extra CA certificates to trust for the server (repeatable), e.g. a
    /// private CA or Amazon's bundle. Example: --upstream-ca /etc/ssl/amazon-trust-ca-bundle.crt.
    upstream_ca: list<PathBuf>, "FILE";

    /// Base set of trusted roots: webpki (Mozilla's, compiled in) or native (the operating
    /// system's store). Example: --upstream-roots native.
    upstream_roots: value<UpstreamRoots> = "webpki", "SOURCE";

    /// Limit for TCP connect, TLS handshake and login to the server together, and for each
    /// AWS call with its retries. Units ms, s, m; a bare number is seconds.
    /// Example: --connect-timeout 5s.
    connect_timeout: duration = "10s", "DURATION";

    /// How long a client may take from connecting to sending its StartupMessage before it
    /// is closed. Example: --startup-timeout 10s.
    startup_timeout: duration = "30s", "DURATION";

    /// Log filter: error, warn, info, debug, trace, or a tracing directive such as
    /// "redshift_auth_proxy=debug". RUST_LOG, when set, wins. Example: --log-level debug.
    log_level: value<String> = "info", "LEVEL";

    /// Log line format: text for people, json for log collectors. Example: --log-format json.
    log_format: value<LogFormat> = "text", "FORMAT";

    /// AWS profile from ~/.aws/config and ~/.aws/credentials (SSO profiles included).
    /// Example: --aws-profile analytics.
    aws_profile: optional<String> unset "AWS_PROFILE, else \"default\"", "NAME";

    /// Region for the credential APIs, overriding the region read from each endpoint name.
    /// Example: --aws-region eu-west-1.
    aws_region: optional<String>, "REGION";

    /// Assume this IAM role (with the credentials the chain finds) before asking for
    /// database credentials; refreshed automatically.
    /// Example: --role-arn arn:aws:iam::123456789012:role/redshift-proxy.
    role_arn: optional<String>, "ARN";

    /// External id the role's trust policy requires (with --role-arn).
    /// Example: --role-external-id 4f2a9c.
    role_external_id: optional<String>, "ID";

    /// Session name of the assumed role, as CloudTrail shows it (with --role-arn).
    /// Example: --role-session-name etl-proxy.
    role_session_name: optional<String> unset "redshift-auth-proxy", "NAME";

    /// Endpoint URL for the Redshift and Redshift Serverless APIs (VPC interface endpoints,
    /// local stand-ins); AWS_ENDPOINT_URL is honoured too.
    /// Example: --aws-endpoint-url http://127.0.0.1:4566.
    aws_endpoint_url: optional<String>, "URL";

    /// Address of the HTTP endpoint for /metrics and the health probes, or "off".
    /// Example: --http-address 0.0.0.0:9539.
    http_address: value<String> = "127.0.0.1:9539", "ADDR|off";

    /// Accept POST /quitquitquit on the HTTP endpoint to start the same graceful stop as
    /// SIGTERM (for Kubernetes Jobs whose main container has finished). Example: --quitquitquit.
    quitquitquit: switch;

    /// After SIGTERM/SIGINT, keep accepting new connections this long (readiness is already
    /// failing). Example: --min-sigterm-delay 5s.
    min_sigterm_delay: duration = "0s", "DURATION";

    /// Then let open sessions finish for at most this long before ending them with 57P01.
    /// Example: --max-sigterm-delay 30s.
    max_sigterm_delay: duration = "0s", "DURATION";

    /// Most client sessions per target; the next client gets 53300.
    /// Example: --max-connections 100.
    max_connections: optional<usize> unset "unlimited", "N";

    /// Threads that run sessions. One thread wakes fewer times per query and so spends less
    /// proxy CPU per transaction; one per CPU serves many busy clients faster.
    /// Example: --worker-threads 1.
    worker_threads: optional<usize> unset "one per CPU", "N";

    /// End a session that waits on its client this long (FATAL 57P05).
    /// Example: --idle-timeout 30m.
    idle_timeout: duration = "off", "DURATION|off";

    /// Serve TLS to clients with this PEM certificate chain (leaf first; with
    /// --client-tls-key): SSLRequest is answered with S. Reloaded without a restart when the
    /// file changes or on SIGHUP. Example: --client-tls-cert /etc/proxy/tls.crt.
    client_tls_cert: optional<PathBuf>, "FILE";

    /// The PEM private key of --client-tls-cert. Example: --client-tls-key /etc/proxy/tls.key.
    client_tls_key: optional<PathBuf>, "FILE";

    /// self-signed: generate a client TLS certificate at start-up (for drivers that insist
    /// on TLS) and log its SHA-256 fingerprint; off: only --client-tls-cert/--client-tls-key.
    /// Example: --client-tls self-signed.
    client_tls: value<ClientTlsMode> = "off", "MODE";

    /// prefer: TLS when the client asks for it; require: refuse plain-text TCP clients with
    /// 08P01 (needs client TLS). Example: --client-sslmode require.
    client_sslmode: value<ClientSslMode> = "prefer", "MODE";

    /// How clients prove who they are: trust (no check; loopback and Unix socket only),
    /// scram (a password checked against --client-users), cert (a client certificate signed
    /// by --client-ca whose CN is the user name). Example: --client-auth scram.
    client_auth: value<ClientAuthMethod> = "trust", "METHOD";

    /// Users file for --client-auth scram: lines
    /// user:SCRAM-SHA-256$<iter>:<salt>$<storedkey>:<serverkey> (PostgreSQL's verifier
    /// format; make them with `redshift-auth-proxy hash-password USER`).
    /// Example: --client-users /etc/proxy/users.txt.
    client_users: optional<PathBuf>, "FILE";

    /// PEM CA certificates that sign client certificates, for --client-auth cert.
    /// Example: --client-ca /etc/proxy/client-ca.pem.
    client_ca: optional<PathBuf>, "FILE";

    /// Listen on a non-loopback --address with --client-auth trust anyway (a warning is
    /// logged): only when a firewall or network policy already limits who can connect, since
    /// anyone who reaches the port acts with the proxy's IAM identity.
    allow_unauthenticated_remote: switch;

    /// Logged-in, never-used server sessions kept ready per key (target, database user,
    /// database and every startup parameter) once a client has logged in with it, so the
    /// next such client skips the server login. Real server sessions: they count toward the
    /// server's connection limits. A target's warm_sessions= option overrides it.
    /// Example: --warm-sessions 2.
    warm_sessions: value<usize> = "0", "N";

    /// Close a key's warm sessions when no client logged in with it this long.
    /// Example: --warm-idle 2m.
    warm_idle: duration = "5m", "DURATION";

    /// Close a warm session this old, used or not (a fresh one replaces it while its key is
    /// in use). Example: --warm-max-age 5m.
    warm_max_age: duration = "10m", "DURATION";

    /// Most warm sessions held over all targets and keys. Example: --warm-max-total 16.
    warm_max_total: value<usize> = "64", "N";

    /// Also serve the first target on a Unix socket in this directory, named
    /// .s.PGSQL.<port> as libpq expects (psql -h DIR -p PORT).
    /// Example: --unix-socket /run/redshift-auth-proxy.
    unix_socket: optional<PathBuf>, "DIR";

    /// The other replicas' peer ports, where a cancel for a session this replica does not
    /// own is forwarded: host:port entries separated by commas, or dns:NAME:PORT for every
    /// address NAME has (a headless Service), looked up again every 5 s. Listing this replica
    /// too is harmless. Needs --peer-secret-file.
    /// Example: --peers dns:redshift-auth-proxy-peers:9540.
    peers: optional<String>, "LIST";

    /// Where this replica accepts the cancels its peers forward, or "off"; what arrives there
    /// is handled here and never forwarded again. Needs --peer-secret-file.
    /// Example: --peer-address 0.0.0.0:9540.
    peer_address: value<String> = "off", "ADDR|off";

    /// File with the secret every replica shares (at least 16 bytes, a trailing newline is
    /// ignored): it signs and checks peer messages. Required with --peers or --peer-address.
    /// Example: --peer-secret-file /etc/redshift-auth-proxy-peers/secret.
    peer_secret_file: optional<PathBuf>, "FILE";

    /// How long a forwarded cancel waits for the peers' answers; a peer that is down or
    /// silent costs no more than this, and the client never waits for it.
    /// Example: --peer-forward-timeout 1s.
    peer_forward_timeout: duration = "500ms", "DURATION";
}
