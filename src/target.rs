//! Targets: the upstream clusters and workgroups the proxy serves, parsed from the forms users
//! already have at hand — an AWS endpoint name, a JDBC URL copied from the Redshift console or
//! a SQL tool, or a `[[target]]` table in the config file.
//!
//! Everything the credential APIs need (cluster identifier or workgroup name, account, region)
//! is read from the endpoint name where AWS puts it there (design section 6), so the common
//! case is a single argument. Every refusal is one line that names the bad input and says what
//! to write instead, because the user fixes it on the command line.

use std::net::Ipv6Addr;
use std::ops::RangeInclusive;
use std::str::FromStr;

use crate::upstream::tls::SslMode;

/// Redshift's port, for the upstream when none is written.
const DEFAULT_UPSTREAM_PORT: u16 = 5439;
/// How long temporary credentials live unless `duration_seconds` says otherwise.
const DEFAULT_DURATION_SECONDS: u32 = 900;
/// What the credential APIs accept for `DurationSeconds`.
const DURATION_SECONDS: RangeInclusive<u32> = 900..=3600;
/// The ports a Redshift Serverless workgroup can listen on.
const SERVERLESS_PORTS: [RangeInclusive<u16>; 2] = [5431..=5455, 8191..=8215];
/// The JDBC short form for a workgroup: `redshift-serverless-WORKGROUP:REGION`.
const SERVERLESS_SHORT_PREFIX: &str = "redshift-serverless-";
/// The JDBC URL prefixes of the Redshift driver (with and without its IAM plugin).
const JDBC_PREFIXES: [&str; 2] = ["jdbc:redshift:iam://", "jdbc:redshift://"];
/// The option names, as listed in errors; a test keeps this in step with [`OPTIONS`].
const KNOWN_OPTIONS: &str = "port, database, cluster, workgroup, region, db_user, db_groups, \
auto_create, iam_identity, duration_seconds, custom_domain, sslmode, password_env, allowed_users";

/// Which Redshift API family serves credentials for a target: provisioned clusters and
/// serverless workgroups have different credential calls, different rules for the database
/// user and different port ranges, so everything downstream branches on this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetKind {
    /// A provisioned cluster, served by `redshift:GetClusterCredentials[WithIAM]`; the
    /// identifier is case-sensitive and kept as written.
    Provisioned {
        /// The cluster identifier.
        cluster: String,
    },
    /// A serverless workgroup (3–64 of `[a-z0-9-]`), served by `redshift-serverless:GetCredentials`.
    Serverless {
        /// The workgroup name.
        workgroup: String,
    },
    /// Neither could be determined: only allowed with `password_env` (static password mode),
    /// which never calls AWS.
    Unknown,
}

/// One upstream with its own local listener: everything the proxy needs to reach it and to get
/// a password for it, decided once at startup so sessions never re-parse user input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The upstream host name, used for the TCP connect and as TLS SNI (IPv6 without brackets).
    /// For the JDBC short forms it is the cluster or workgroup name, since the real endpoint
    /// is not in the URL.
    pub host: String,
    /// The upstream port (default 5439).
    pub upstream_port: u16,
    /// The database to log in to; `None` uses the client's startup `database`.
    pub database: Option<String>,
    /// The `port` option: the local listen port, `None` to take the next free one in order.
    pub listen_port: Option<u16>,
    /// Which API family gives credentials, and for which cluster or workgroup.
    pub kind: TargetKind,
    /// The AWS region of the credential API; `None` only in static password mode.
    pub region: Option<String>,
    /// The 12-digit account id when the endpoint name carries it (serverless names do).
    pub account: Option<String>,
    /// A fixed database user; `None` uses the client's `user`.
    pub db_user: Option<String>,
    /// Groups the temporary user joins (`DbGroups`, provisioned only).
    pub db_groups: Vec<String>,
    /// Create the database user if missing (`AutoCreate`, provisioned only).
    pub auto_create: bool,
    /// Use `GetClusterCredentialsWithIAM`: the database user comes from the IAM identity.
    pub iam_identity: bool,
    /// Lifetime of the temporary password, 900–3600 s (default 900).
    pub duration_seconds: u32,
    /// A custom domain name passed to the credential API as `CustomDomainName`.
    pub custom_domain: Option<String>,
    /// This target's `sslmode`, overriding the global one.
    pub sslmode: Option<SslMode>,
    /// Static password mode: the environment variable that holds the password.
    pub password_env: Option<String>,
    /// Client user names allowed to connect; empty allows everyone.
    pub allowed_users: Vec<String>,
    /// The JDBC short forms name a cluster or workgroup but not its address: the endpoint is
    /// looked up with the AWS API (DescribeClusters, GetWorkgroup) before the first connect.
    pub lookup_endpoint: bool,
}

/// Why a target string or table cannot be used. Every message is one line that names the bad
/// input and says what to write instead.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    /// Nothing was written.
    #[error(
        "empty target: write HOST[:PORT][/DATABASE][?option=value&...], e.g. default.123456789012.us-east-1.redshift-serverless.amazonaws.com"
    )]
    Empty,
    /// A URL of some other scheme (`postgresql://`, `redshift://`, ...).
    #[error(
        "{scheme:?} URLs are not understood: write HOST[:PORT][/DATABASE][?option=value&...] or jdbc:redshift:iam://HOST:PORT/DB"
    )]
    UnsupportedScheme {
        /// The scheme as written.
        scheme: String,
    },
    /// A JDBC URL of another driver.
    #[error(
        "{prefix:?} is not a Redshift JDBC URL: write jdbc:redshift:iam://HOST:PORT/DB or jdbc:redshift://HOST:PORT/DB"
    )]
    UnsupportedJdbc {
        /// The URL up to its `//`.
        prefix: String,
    },
    /// No host before the port, path or options.
    #[error("{spec:?} has no host name: write HOST[:PORT][/DATABASE]")]
    EmptyHost {
        /// The target as written.
        spec: String,
    },
    /// `user@host`, as in a libpq URL.
    #[error(
        "{authority:?} names a user before '@': drop it and write ?db_user=NAME (or let the client's user name through)"
    )]
    UserInHost {
        /// The `user@host[:port]` part.
        authority: String,
    },
    /// Characters no host name has, or IPv6 without brackets.
    #[error(
        "host {host:?} is not a host name: write a DNS name or an IP address, IPv6 in brackets like [::1]:5439"
    )]
    BadHost {
        /// The host part as written.
        host: String,
    },
    /// Something after `HOST:` that is not a port.
    #[error(
        "{value:?} after the host is not a port number: write HOST:PORT with a port from 1 to 65535 (a region goes in ?region=REGION)"
    )]
    BadPort {
        /// What followed the colon.
        value: String,
    },
    /// Something after `HOST:` in a JDBC URL that is neither a port nor a short-form region.
    #[error(
        "{value:?} after {host:?} is not a port: write jdbc:redshift:iam://HOST:PORT/DB, or the short form jdbc:redshift:iam://CLUSTER:REGION/DB with a cluster identifier (no dots) and a region like us-east-1"
    )]
    BadJdbcPortOrRegion {
        /// The host part.
        host: String,
        /// What followed the colon.
        value: String,
    },
    /// A path or `database=` that is not one database name.
    #[error("database {database:?} is not one database name: write HOST[:PORT]/DATABASE")]
    BadDatabase {
        /// The database as written (decoded).
        database: String,
    },
    /// A `%` not followed by two hex digits, or escapes that are not UTF-8.
    #[error(
        "{text:?} has a bad percent escape: write %XX with two hex digits, e.g. %2C for ',' and %40 for '@'"
    )]
    BadEscape {
        /// The raw text.
        text: String,
    },
    /// An option name the proxy does not know (endpoint form and config tables).
    #[error("unknown option {key:?}: write one of {KNOWN_OPTIONS}")]
    UnknownOption {
        /// The name as written.
        key: String,
    },
    /// A password written into the target, where it would end up in shell history and `ps`.
    #[error(
        "option {key:?} would put a password in the target: write password_env=VAR and export VAR=<password> instead"
    )]
    PasswordInTarget {
        /// The name as written.
        key: String,
    },
    /// `?key` or `key=` without a value.
    #[error("option {key} has no value: write {key}=VALUE")]
    NoValue {
        /// The name as written.
        key: String,
    },
    /// A value that does not parse for its option.
    #[error("{key}={value:?} is not valid: write {expected}")]
    BadValue {
        /// The name as written.
        key: String,
        /// The value (decoded).
        value: String,
        /// What the option takes.
        expected: &'static str,
    },
    /// A host that is not an AWS endpoint name, with no `cluster=`/`workgroup=` to say which.
    #[error(
        "{host:?} is not a Redshift endpoint name, so the cluster or workgroup is unknown: add ?cluster=NAME&region=REGION or ?workgroup=NAME&region=REGION, or password_env=VAR for a static password"
    )]
    NeedsAwsName {
        /// The host.
        host: String,
    },
    /// A serverless VPC endpoint, whose name does not carry the workgroup.
    #[error(
        "{host:?} is a Redshift Serverless VPC endpoint, whose name does not carry the workgroup: add ?workgroup=NAME (or password_env=VAR for a static password)"
    )]
    VpcEndpointNeedsWorkgroup {
        /// The host.
        host: String,
    },
    /// An AWS-credential target without a region.
    #[error(
        "target {label:?} has no region: add ?region=REGION, e.g. region=us-east-1 (or password_env=VAR for a static password)"
    )]
    NeedsRegion {
        /// The target's label.
        label: String,
    },
    /// Both `cluster=` and `workgroup=`.
    #[error(
        "both cluster={cluster:?} and workgroup={workgroup:?} are set: a target is one provisioned cluster or one serverless workgroup, keep only one"
    )]
    ClusterAndWorkgroup {
        /// The cluster option.
        cluster: String,
        /// The workgroup option.
        workgroup: String,
    },
    /// A cluster identifier AWS would refuse.
    #[error(
        "cluster identifier {cluster:?} is not valid: write 1-63 letters, digits or hyphens starting with a letter, as the Redshift console shows it"
    )]
    BadCluster {
        /// The identifier.
        cluster: String,
    },
    /// A workgroup name AWS would refuse.
    #[error(
        "workgroup {workgroup:?} is not a workgroup name: write 3-64 lowercase letters, digits or hyphens"
    )]
    BadWorkgroup {
        /// The name.
        workgroup: String,
    },
    /// Not a region name.
    #[error("region {region:?} is not an AWS region name: write one like us-east-1 or cn-north-1")]
    BadRegion {
        /// The region as written.
        region: String,
    },
    /// A database user the credential API would refuse.
    #[error(
        "db_user {user:?} {why}: write 1-64 characters starting with a letter, without ':' or '/', other than PUBLIC"
    )]
    BadDbUser {
        /// The user.
        user: String,
        /// Which rule it breaks.
        why: &'static str,
    },
    /// A serverless target on a port serverless workgroups never use.
    #[error(
        "upstream port {port} is not a Redshift Serverless port: workgroups listen on 5431-5455 or 8191-8215, write one of those or leave the port out for 5439"
    )]
    ServerlessPort {
        /// The port.
        port: u16,
    },
    /// A fixed database user where the user comes from the IAM identity.
    #[error(
        "db_user={user:?} cannot be used with {because}: the database user comes from the IAM identity; drop db_user and use allowed_users=NAME,... to restrict which clients may connect"
    )]
    DbUserFromIdentity {
        /// The user.
        user: String,
        /// What derives the user from the identity.
        because: &'static str,
    },
    /// `db_groups`/`auto_create` where the credential API takes neither.
    #[error(
        "{option} cannot be used with {because}: only GetClusterCredentials for a provisioned cluster creates users and joins groups; drop {option} and grant the roles to the IAM identity's user in the database"
    )]
    NotWithIdentity {
        /// The option.
        option: &'static str,
        /// What derives the user from the identity.
        because: &'static str,
    },
    /// `iam_identity=true` together with a static password.
    #[error(
        "iam_identity=true and password_env={var:?} contradict each other: drop iam_identity for a static password, or drop password_env to log in with IAM"
    )]
    IdentityWithPassword {
        /// The variable name.
        var: String,
    },
}

impl Target {
    /// Parses an endpoint or JDBC URL (the positional command-line form).
    pub fn parse(spec: &str) -> Result<Target, TargetError> {
        Target::parse_with_options(spec, [])
    }

    /// Parses `spec`, then applies extra `(key, value)` options (from a TOML `[[target]]`
    /// table) with the very same option code as the query string, so both forms accept and
    /// refuse the same things. Extra options override the query string; their values are taken
    /// literally (no percent-decoding) and unknown keys are refused even for JDBC URLs.
    pub fn parse_with_options<'a>(
        spec: &str,
        options: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Target, TargetError> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err(TargetError::Empty);
        }
        let (form, rest) = split_scheme(spec)?;
        let (location, query) = split_query(rest, form);
        let location = parse_location(spec, location, form)?;
        let mut settings = Settings::default();
        apply_query(&mut settings, query, form)?;
        for (name, value) in options {
            if let Some(key) = resolve_key(name, Form::Endpoint)? {
                settings.set(key, name, value)?;
            }
        }
        finish(location, settings)
    }

    /// A short, stable, low-cardinality name for logs and metric labels: the cluster
    /// identifier, the workgroup name, or the host.
    #[must_use]
    pub fn label(&self) -> &str {
        match &self.kind {
            TargetKind::Provisioned { cluster } => cluster,
            TargetKind::Serverless { workgroup } => workgroup,
            TargetKind::Unknown => &self.host,
        }
    }

    /// True when credentials come from the environment (`password_env`) rather than AWS.
    #[must_use]
    pub fn is_static(&self) -> bool {
        self.password_env.is_some()
    }

    /// The combination rules that need the whole target (design section 6).
    fn check(&self) -> Result<(), TargetError> {
        let is_static = self.is_static();
        if !is_static && self.region.is_none() {
            return Err(TargetError::NeedsRegion {
                label: self.label().to_owned(),
            });
        }
        if let TargetKind::Serverless { .. } = self.kind {
            // Only AWS's own endpoint names are bound to the serverless port ranges; a custom
            // domain, tunnel or load balancer in front may listen anywhere.
            let aws_name = self
                .host
                .to_ascii_lowercase()
                .contains(".redshift-serverless");
            if aws_name
                && !SERVERLESS_PORTS
                    .iter()
                    .any(|ports| ports.contains(&self.upstream_port))
            {
                return Err(TargetError::ServerlessPort {
                    port: self.upstream_port,
                });
            }
            self.check_identity_user("a serverless workgroup")?;
        }
        if self.iam_identity {
            if let Some(var) = &self.password_env {
                return Err(TargetError::IdentityWithPassword { var: var.clone() });
            }
            self.check_identity_user("iam_identity=true")?;
        }
        Ok(())
    }

    /// Refuses what only `GetClusterCredentials` takes when the user comes from the identity.
    fn check_identity_user(&self, because: &'static str) -> Result<(), TargetError> {
        if let (Some(user), false) = (&self.db_user, self.is_static()) {
            return Err(TargetError::DbUserFromIdentity {
                user: user.clone(),
                because,
            });
        }
        let option = if !self.db_groups.is_empty() {
            "db_groups"
        } else if self.auto_create {
            "auto_create"
        } else {
            return Ok(());
        };
        Err(TargetError::NotWithIdentity { option, because })
    }
}

impl FromStr for Target {
    type Err = TargetError;

    /// The same as [`Target::parse`], so clap can use it as a value parser.
    fn from_str(spec: &str) -> Result<Target, TargetError> {
        Target::parse(spec)
    }
}

/// Which syntax a target is written in: it decides separators and how strict option names are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// `HOST[:PORT][/DATABASE][?k=v&...]` and config tables: unknown options are errors.
    Endpoint,
    /// A Redshift JDBC URL: driver property names are aliases, unknown properties are ignored.
    Jdbc,
}

/// What an option sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Port,
    Database,
    Cluster,
    Workgroup,
    Region,
    DbUser,
    DbGroups,
    AutoCreate,
    IamIdentity,
    DurationSeconds,
    CustomDomain,
    SslMode,
    PasswordEnv,
    AllowedUsers,
}

/// The option names shared by query strings, config tables and JDBC URLs.
const OPTIONS: [(&str, Key); 14] = [
    ("port", Key::Port),
    ("database", Key::Database),
    ("cluster", Key::Cluster),
    ("workgroup", Key::Workgroup),
    ("region", Key::Region),
    ("db_user", Key::DbUser),
    ("db_groups", Key::DbGroups),
    ("auto_create", Key::AutoCreate),
    ("iam_identity", Key::IamIdentity),
    ("duration_seconds", Key::DurationSeconds),
    ("custom_domain", Key::CustomDomain),
    ("sslmode", Key::SslMode),
    ("password_env", Key::PasswordEnv),
    ("allowed_users", Key::AllowedUsers),
];

/// Redshift JDBC driver properties that mean one of our options, lowercase (JDBC form only).
const JDBC_ALIASES: [(&str, Key); 7] = [
    ("dbuser", Key::DbUser),
    ("dbgroups", Key::DbGroups),
    ("autocreate", Key::AutoCreate),
    ("clusterid", Key::Cluster),
    ("region", Key::Region),
    ("iamduration", Key::DurationSeconds),
    ("groupfederation", Key::IamIdentity),
];

/// What the host name (or a JDBC short form) says about the upstream.
#[derive(Debug, Default)]
struct Named {
    kind: NamedKind,
    region: Option<String>,
    account: Option<String>,
}

/// The upstream a host name points at, as far as the name tells.
#[derive(Debug, Default)]
enum NamedKind {
    /// Not an AWS endpoint name.
    #[default]
    Nothing,
    Cluster(String),
    Workgroup(String),
    /// A serverless VPC endpoint: serverless, but the workgroup is not in the name.
    ServerlessVpcEndpoint,
}

/// The part of a target before its options.
#[derive(Debug)]
struct Location {
    host: String,
    port: u16,
    database: Option<String>,
    named: Named,
    /// A JDBC short form: `host` is a name, not an address.
    short_form: bool,
}

/// The options as given; `finish` merges them with what the name says.
#[derive(Debug)]
struct Settings {
    listen_port: Option<u16>,
    database: Option<String>,
    cluster: Option<String>,
    workgroup: Option<String>,
    region: Option<String>,
    db_user: Option<String>,
    db_groups: Vec<String>,
    auto_create: bool,
    iam_identity: bool,
    duration_seconds: u32,
    custom_domain: Option<String>,
    sslmode: Option<SslMode>,
    password_env: Option<String>,
    allowed_users: Vec<String>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            listen_port: None,
            database: None,
            cluster: None,
            workgroup: None,
            region: None,
            db_user: None,
            db_groups: Vec::new(),
            auto_create: false,
            iam_identity: false,
            duration_seconds: DEFAULT_DURATION_SECONDS,
            custom_domain: None,
            sslmode: None,
            password_env: None,
            allowed_users: Vec::new(),
        }
    }
}

impl Settings {
    /// Applies one option; `name` is the spelling the user wrote, for messages.
    fn set(&mut self, key: Key, name: &str, value: &str) -> Result<(), TargetError> {
        let value = value.trim();
        let is_list = matches!(key, Key::DbGroups | Key::AllowedUsers);
        if value.is_empty() && !is_list {
            return Err(TargetError::NoValue {
                key: name.to_owned(),
            });
        }
        let bad = |expected| TargetError::BadValue {
            key: name.to_owned(),
            value: value.to_owned(),
            expected,
        };
        match key {
            Key::Port => {
                let port = parse_port(value).ok_or_else(|| bad("a local port from 1 to 65535"))?;
                self.listen_port = Some(port);
            }
            Key::Database => self.database = Some(check_database(value)?),
            Key::Cluster => self.cluster = Some(value.to_owned()),
            Key::Workgroup => self.workgroup = Some(value.to_owned()),
            Key::Region => self.region = Some(value.to_owned()),
            Key::DbUser => self.db_user = Some(check_db_user(value)?),
            Key::DbGroups => self.db_groups = split_list(value),
            Key::AutoCreate => {
                self.auto_create = parse_bool(value).ok_or_else(|| bad("true or false"))?;
            }
            Key::IamIdentity => {
                self.iam_identity = parse_bool(value).ok_or_else(|| bad("true or false"))?;
            }
            Key::DurationSeconds => {
                self.duration_seconds = value
                    .parse()
                    .ok()
                    .filter(|seconds| DURATION_SECONDS.contains(seconds))
                    .ok_or_else(|| bad("a number of seconds from 900 to 3600"))?;
            }
            Key::CustomDomain => {
                if !is_host_name(value) {
                    return Err(bad("a DNS name such as db.example.com"));
                }
                self.custom_domain = Some(value.to_owned());
            }
            Key::SslMode => {
                let mode = value
                    .parse()
                    .map_err(|_| bad("one of verify-full, verify-ca, require, disable"))?;
                self.sslmode = Some(mode);
            }
            Key::PasswordEnv => {
                if !is_env_name(value) {
                    return Err(bad(
                        "an environment variable name: letters, digits and '_', not starting with a digit",
                    ));
                }
                self.password_env = Some(value.to_owned());
            }
            Key::AllowedUsers => self.allowed_users = split_list(value),
        }
        Ok(())
    }
}

/// Recognises the JDBC prefixes and other URL schemes; anything else is the endpoint form.
fn split_scheme(spec: &str) -> Result<(Form, &str), TargetError> {
    if let Some(rest) = JDBC_PREFIXES
        .iter()
        .find_map(|prefix| strip_prefix_ignore_case(spec, prefix))
    {
        return Ok((Form::Jdbc, rest));
    }
    if strip_prefix_ignore_case(spec, "jdbc:").is_some() {
        let prefix = spec.split_once("//").map_or(spec, |(prefix, _)| prefix);
        return Err(TargetError::UnsupportedJdbc {
            prefix: prefix.to_owned(),
        });
    }
    if let Some((scheme, _)) = spec.split_once("://")
        && !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return Err(TargetError::UnsupportedScheme {
            scheme: scheme.to_owned(),
        });
    }
    Ok((Form::Endpoint, spec))
}

/// Splits the options off: after `?`, or in a JDBC URL also after `;`.
fn split_query(rest: &str, form: Form) -> (&str, &str) {
    let split = match form {
        Form::Endpoint => rest.split_once('?'),
        Form::Jdbc => rest.split_once(['?', ';']),
    };
    split.unwrap_or((rest, ""))
}

/// Parses `HOST[:PORT][/DATABASE]` (or a JDBC short form) and reads the host name.
fn parse_location(spec: &str, text: &str, form: Form) -> Result<Location, TargetError> {
    let (authority, path) = match text.split_once('/') {
        Some((authority, path)) => (authority, path),
        None => (text, ""),
    };
    let database = match path {
        "" => None,
        path => Some(check_database(&percent_decode(path)?)?),
    };
    let Authority {
        host,
        after_colon,
        ip_literal,
    } = split_authority(spec, authority)?;
    let is_short_form = matches!(after_colon, Some(value) if form == Form::Jdbc && !value.bytes().all(|b| b.is_ascii_digit()));
    let (host, port, named) = match after_colon {
        None => {
            let named = infer_from_host(&host);
            (host, DEFAULT_UPSTREAM_PORT, named)
        }
        Some(value) if value.bytes().all(|b| b.is_ascii_digit()) => {
            let port = parse_port(value).ok_or_else(|| TargetError::BadPort {
                value: value.to_owned(),
            })?;
            let named = infer_from_host(&host);
            (host, port, named)
        }
        Some(value) if form == Form::Jdbc => {
            let region = value.to_ascii_lowercase();
            if ip_literal || host.contains('.') || !is_region(&region) {
                return Err(TargetError::BadJdbcPortOrRegion {
                    host,
                    value: value.to_owned(),
                });
            }
            let named = short_form(&host, region);
            // No endpoint in a short form: the host is the cluster or workgroup name.
            let host = match &named.kind {
                NamedKind::Workgroup(workgroup) => workgroup.clone(),
                _ => host,
            };
            (host, DEFAULT_UPSTREAM_PORT, named)
        }
        Some(value) => {
            return Err(TargetError::BadPort {
                value: value.to_owned(),
            });
        }
    };
    Ok(Location {
        host,
        port,
        database,
        named,
        short_form: is_short_form,
    })
}

/// A host and whatever followed its colon.
struct Authority<'a> {
    /// The host, IPv6 without brackets.
    host: String,
    after_colon: Option<&'a str>,
    ip_literal: bool,
}

/// Splits `HOST[:PORT]` or `[IPV6][:PORT]`.
fn split_authority<'a>(spec: &str, authority: &'a str) -> Result<Authority<'a>, TargetError> {
    let bad_host = || TargetError::BadHost {
        host: authority.to_owned(),
    };
    if let Some(bracketed) = authority.strip_prefix('[') {
        let (inner, after) = bracketed.split_once(']').ok_or_else(bad_host)?;
        inner.parse::<Ipv6Addr>().map_err(|_| bad_host())?;
        let after_colon = match after {
            "" => None,
            after => Some(after.strip_prefix(':').ok_or_else(bad_host)?),
        };
        return Ok(Authority {
            host: inner.to_owned(),
            after_colon,
            ip_literal: true,
        });
    }
    if authority.contains('@') {
        return Err(TargetError::UserInHost {
            authority: authority.to_owned(),
        });
    }
    let (host, after_colon) = match authority.split_once(':') {
        Some((host, after)) => (host, Some(after)),
        None => (authority, None),
    };
    if after_colon.is_some_and(|after| after.contains(':')) {
        return Err(bad_host());
    }
    if host.is_empty() {
        return Err(TargetError::EmptyHost {
            spec: spec.to_owned(),
        });
    }
    if !is_host_name(host) {
        return Err(bad_host());
    }
    Ok(Authority {
        host: host.to_owned(),
        after_colon,
        ip_literal: false,
    })
}

/// Reads `CLUSTER:REGION` or `redshift-serverless-WORKGROUP:REGION` (JDBC short forms).
fn short_form(host: &str, region: String) -> Named {
    let kind = match strip_prefix_ignore_case(host, SERVERLESS_SHORT_PREFIX) {
        Some(workgroup) => NamedKind::Workgroup(workgroup.to_ascii_lowercase()),
        None => NamedKind::Cluster(host.to_owned()),
    };
    Named {
        kind,
        region: Some(region),
        account: None,
    }
}

/// Reads the cluster or workgroup, account and region from an AWS endpoint name; anything
/// else (a custom domain, an IP address) says nothing. Matching ignores case, but the
/// cluster identifier keeps the case it was written in.
fn infer_from_host(host: &str) -> Named {
    let lower = host.trim_end_matches('.').to_ascii_lowercase();
    let Some(stem) = lower
        .strip_suffix(".amazonaws.com")
        .or_else(|| lower.strip_suffix(".amazonaws.com.cn"))
    else {
        return Named::default();
    };
    let labels: Vec<&str> = stem.split('.').collect();
    let [first, second, region, service] = labels.as_slice() else {
        return Named::default();
    };
    if !is_region(region) || first.is_empty() {
        return Named::default();
    }
    let region = Some((*region).to_owned());
    match *service {
        "redshift" | "redshift-dev" => {
            // ASCII lowercasing keeps byte offsets, so the first label is at the same place.
            let cluster = host.get(..first.len()).unwrap_or(first);
            Named {
                kind: NamedKind::Cluster(cluster.to_owned()),
                region,
                account: None,
            }
        }
        "redshift-serverless" | "redshift-serverless-dev" if is_account(second) => {
            let kind = if is_vpc_endpoint_label(first) {
                NamedKind::ServerlessVpcEndpoint
            } else {
                NamedKind::Workgroup((*first).to_owned())
            };
            Named {
                kind,
                region,
                account: Some((*second).to_owned()),
            }
        }
        _ => Named::default(),
    }
}

/// `NAME-endpoint-HASH`, where HASH is a long run of letters and digits.
fn is_vpc_endpoint_label(label: &str) -> bool {
    label.rsplit_once("-endpoint-").is_some_and(|(name, hash)| {
        !name.is_empty() && hash.len() >= 12 && hash.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// Parses the options after `?` (or `;` in a JDBC URL), percent-decoding names and values.
fn apply_query(settings: &mut Settings, query: &str, form: Form) -> Result<(), TargetError> {
    let separators: &[char] = match form {
        Form::Endpoint => &['&'],
        Form::Jdbc => &['&', ';'],
    };
    for pair in query.split(separators).filter(|pair| !pair.is_empty()) {
        let (raw_name, raw_value) = match pair.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (pair, None),
        };
        let name = percent_decode(raw_name)?;
        let Some(key) = resolve_key(&name, form)? else {
            tracing::debug!(property = %name, "ignoring a JDBC driver property the proxy does not use");
            continue;
        };
        let value = raw_value.ok_or_else(|| TargetError::NoValue { key: name.clone() })?;
        settings.set(key, &name, &percent_decode(value)?)?;
    }
    Ok(())
}

/// Resolves an option name. `Ok(None)` is a JDBC driver property the proxy has no use for.
fn resolve_key(name: &str, form: Form) -> Result<Option<Key>, TargetError> {
    let lookup = |table: &[(&str, Key)], name: &str| {
        table
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, key)| *key)
    };
    match form {
        Form::Endpoint => match lookup(&OPTIONS, name) {
            Some(key) => Ok(Some(key)),
            None if ["password", "pwd", "passwd"]
                .iter()
                .any(|p| name.eq_ignore_ascii_case(p)) =>
            {
                Err(TargetError::PasswordInTarget {
                    key: name.to_owned(),
                })
            }
            None => Err(TargetError::UnknownOption {
                key: name.to_owned(),
            }),
        },
        Form::Jdbc => {
            let lower = name.to_ascii_lowercase();
            Ok(lookup(&OPTIONS, &lower).or_else(|| lookup(&JDBC_ALIASES, &lower)))
        }
    }
}

/// Merges the options with what the name says and checks the result.
fn finish(location: Location, settings: Settings) -> Result<Target, TargetError> {
    let Location {
        host,
        port,
        database,
        named,
        short_form,
    } = location;
    let is_static = settings.password_env.is_some();
    let kind = match (settings.cluster, settings.workgroup) {
        (Some(cluster), Some(workgroup)) => {
            return Err(TargetError::ClusterAndWorkgroup { cluster, workgroup });
        }
        (Some(cluster), None) => TargetKind::Provisioned { cluster },
        (None, Some(workgroup)) => TargetKind::Serverless { workgroup },
        (None, None) => match named.kind {
            NamedKind::Cluster(cluster) => TargetKind::Provisioned { cluster },
            NamedKind::Workgroup(workgroup) => TargetKind::Serverless { workgroup },
            NamedKind::ServerlessVpcEndpoint | NamedKind::Nothing if is_static => {
                TargetKind::Unknown
            }
            NamedKind::ServerlessVpcEndpoint => {
                return Err(TargetError::VpcEndpointNeedsWorkgroup { host });
            }
            NamedKind::Nothing => return Err(TargetError::NeedsAwsName { host }),
        },
    };
    match &kind {
        TargetKind::Provisioned { cluster } if !is_cluster_id(cluster) => {
            return Err(TargetError::BadCluster {
                cluster: cluster.clone(),
            });
        }
        TargetKind::Serverless { workgroup } if !is_workgroup(workgroup) => {
            return Err(TargetError::BadWorkgroup {
                workgroup: workgroup.clone(),
            });
        }
        _ => {}
    }
    let region = settings.region.or(named.region);
    if let Some(region) = region.as_ref().filter(|region| !is_region(region)) {
        return Err(TargetError::BadRegion {
            region: region.clone(),
        });
    }
    let target = Target {
        host,
        upstream_port: port,
        database: settings.database.or(database),
        listen_port: settings.listen_port,
        kind,
        region,
        account: named.account,
        db_user: settings.db_user,
        db_groups: settings.db_groups,
        auto_create: settings.auto_create,
        iam_identity: settings.iam_identity,
        duration_seconds: settings.duration_seconds,
        custom_domain: settings.custom_domain,
        sslmode: settings.sslmode,
        password_env: settings.password_env,
        allowed_users: settings.allowed_users,
        lookup_endpoint: short_form,
    };
    target.check()?;
    Ok(target)
}

/// `DbUser` rules of the credential API, checked before any call (design section 6).
fn check_db_user(user: &str) -> Result<String, TargetError> {
    match db_user_problem(user) {
        None => Ok(user.to_owned()),
        Some(why) => Err(TargetError::BadDbUser {
            user: user.to_owned(),
            why,
        }),
    }
}

/// Which `DbUser` rule of the credential API `user` breaks, if any: checked for the target's
/// `db_user` at start-up and for a client's user name before calling AWS.
pub fn db_user_problem(user: &str) -> Option<&'static str> {
    if user.is_empty() {
        Some("is empty")
    } else if user.chars().count() > 64 {
        Some("is longer than 64 characters")
    } else if !user.starts_with(|c: char| c.is_ascii_alphabetic()) {
        Some("does not start with a letter")
    } else if user.contains([':', '/']) {
        Some("contains ':' or '/'")
    } else if user.eq_ignore_ascii_case("public") {
        Some("is the reserved name PUBLIC")
    } else {
        None
    }
}

/// One database name: a path with further `/` is a mistake, not a name.
fn check_database(database: &str) -> Result<String, TargetError> {
    if database.contains('/') || database.chars().any(char::is_control) {
        return Err(TargetError::BadDatabase {
            database: database.to_owned(),
        });
    }
    Ok(database.to_owned())
}

/// A port from 1 to 65535, digits only.
fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|port| *port != 0)
}

/// The spellings of a boolean people write in URLs and config files.
fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// A comma-separated list, trimmed, empty items dropped (so an empty value clears it).
fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A DNS name or IPv4 address as far as characters go.
fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && !host.starts_with(['.', '-'])
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// `us-east-1`, `cn-north-1`, `us-gov-west-1`: lowercase words and a final number.
fn is_region(region: &str) -> bool {
    region.starts_with(|c: char| c.is_ascii_lowercase())
        && region.ends_with(|c: char| c.is_ascii_digit())
        && region.contains('-')
        && !region.contains("--")
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A 12-digit AWS account id.
fn is_account(account: &str) -> bool {
    account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())
}

/// AWS's rule for cluster identifiers: 1–63 letters, digits or hyphens, starting with a letter.
fn is_cluster_id(cluster: &str) -> bool {
    (1..=63).contains(&cluster.len())
        && cluster.starts_with(|c: char| c.is_ascii_alphabetic())
        && cluster
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// AWS's rule for workgroup names: 3–64 of `[a-z0-9-]`.
fn is_workgroup(workgroup: &str) -> bool {
    (3..=64).contains(&workgroup.len())
        && workgroup
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A portable environment variable name.
fn is_env_name(name: &str) -> bool {
    !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `prefix` at the start of `text`, ignoring ASCII case.
fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.get(..prefix.len())
        .filter(|head| head.eq_ignore_ascii_case(prefix))
        .and_then(|_| text.get(prefix.len()..))
}

/// Decodes `%XX` escapes (RFC 3986: `+` stays a plus); the result must be UTF-8.
fn percent_decode(text: &str) -> Result<String, TargetError> {
    let bad = || TargetError::BadEscape {
        text: text.to_owned(),
    };
    if !text.contains('%') {
        return Ok(text.to_owned());
    }
    let mut bytes = text.bytes();
    let mut out = Vec::with_capacity(text.len());
    while let Some(byte) = bytes.next() {
        if byte == b'%' {
            let high = bytes.next().and_then(hex_value).ok_or_else(bad)?;
            let low = bytes.next().and_then(hex_value).ok_or_else(bad)?;
            out.push((high << 4) | low);
        } else {
            out.push(byte);
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

/// The value of one hex digit.
fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|value| u8::try_from(value).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROVISIONED: &str = "examplecluster.abc123xyz789.us-west-2.redshift.amazonaws.com";
    const SERVERLESS: &str = "default.123456789012.us-east-1.redshift-serverless.amazonaws.com";
    const VPC_ENDPOINT: &str = "analytics-vpce-endpoint-abcdefghij0123456789.123456789012.eu-west-1.redshift-serverless.amazonaws.com";

    /// A target with every default, for struct-update syntax in the table.
    fn base(host: &str, kind: TargetKind, region: Option<&str>) -> Target {
        Target {
            host: host.to_owned(),
            upstream_port: 5439,
            database: None,
            listen_port: None,
            kind,
            region: region.map(str::to_owned),
            account: None,
            db_user: None,
            db_groups: Vec::new(),
            auto_create: false,
            iam_identity: false,
            duration_seconds: 900,
            custom_domain: None,
            sslmode: None,
            password_env: None,
            allowed_users: Vec::new(),
            lookup_endpoint: false,
        }
    }

    fn cluster(name: &str) -> TargetKind {
        TargetKind::Provisioned {
            cluster: name.to_owned(),
        }
    }

    fn workgroup(name: &str) -> TargetKind {
        TargetKind::Serverless {
            workgroup: name.to_owned(),
        }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| (*item).to_owned()).collect()
    }

    fn some(text: &str) -> Option<String> {
        Some(text.to_owned())
    }

    type Extra = &'static [(&'static str, &'static str)];

    /// (what the user wrote, extra `[[target]]` options, the target it means)
    fn good_cases() -> Vec<(String, Extra, Target)> {
        let provisioned = || base(PROVISIONED, cluster("examplecluster"), Some("us-west-2"));
        let serverless = || Target {
            account: some("123456789012"),
            ..base(SERVERLESS, workgroup("default"), Some("us-east-1"))
        };
        vec![
            // Serverless: everything from the name.
            (SERVERLESS.to_owned(), &[], serverless()),
            // Serverless on another allowed port, with a database.
            (
                format!("{SERVERLESS}:8192/dev"),
                &[],
                Target {
                    upstream_port: 8192,
                    database: some("dev"),
                    ..serverless()
                },
            ),
            // The design's provisioned example.
            (
                format!("{PROVISIONED}/dev?db_user=analyst&db_groups=bi,readers"),
                &[],
                Target {
                    database: some("dev"),
                    db_user: some("analyst"),
                    db_groups: strings(&["bi", "readers"]),
                    ..provisioned()
                },
            ),
            // Host matching ignores case; the cluster identifier keeps it.
            (
                "ExampleCluster.ABC123.US-WEST-2.Redshift.AmazonAWS.com:5440".to_owned(),
                &[],
                Target {
                    upstream_port: 5440,
                    ..base(
                        "ExampleCluster.ABC123.US-WEST-2.Redshift.AmazonAWS.com",
                        cluster("ExampleCluster"),
                        Some("us-west-2"),
                    )
                },
            ),
            // Serverless VPC endpoint: the workgroup comes from the option.
            (
                format!("{VPC_ENDPOINT}:5439/dev?workgroup=analytics"),
                &[],
                Target {
                    database: some("dev"),
                    account: some("123456789012"),
                    ..base(VPC_ENDPOINT, workgroup("analytics"), Some("eu-west-1"))
                },
            ),
            // China regions.
            (
                "c1.xyz789.cn-north-1.redshift.amazonaws.com.cn".to_owned(),
                &[],
                base(
                    "c1.xyz789.cn-north-1.redshift.amazonaws.com.cn",
                    cluster("c1"),
                    Some("cn-north-1"),
                ),
            ),
            (
                "wg1.123456789012.cn-northwest-1.redshift-serverless.amazonaws.com.cn".to_owned(),
                &[],
                Target {
                    account: some("123456789012"),
                    ..base(
                        "wg1.123456789012.cn-northwest-1.redshift-serverless.amazonaws.com.cn",
                        workgroup("wg1"),
                        Some("cn-northwest-1"),
                    )
                },
            ),
            // -dev service names.
            (
                "c1.h.us-east-1.redshift-dev.amazonaws.com".to_owned(),
                &[],
                base(
                    "c1.h.us-east-1.redshift-dev.amazonaws.com",
                    cluster("c1"),
                    Some("us-east-1"),
                ),
            ),
            (
                "wg-dev.123456789012.us-east-1.redshift-serverless-dev.amazonaws.com".to_owned(),
                &[],
                Target {
                    account: some("123456789012"),
                    ..base(
                        "wg-dev.123456789012.us-east-1.redshift-serverless-dev.amazonaws.com",
                        workgroup("wg-dev"),
                        Some("us-east-1"),
                    )
                },
            ),
            // Custom domains name the cluster or workgroup and the region.
            (
                "db.example.com:5439/dev?cluster=prod&region=us-east-1&custom_domain=db.example.com"
                    .to_owned(),
                &[],
                Target {
                    database: some("dev"),
                    custom_domain: some("db.example.com"),
                    ..base("db.example.com", cluster("prod"), Some("us-east-1"))
                },
            ),
            (
                "sl.example.com?workgroup=analytics&region=eu-central-1".to_owned(),
                &[],
                base("sl.example.com", workgroup("analytics"), Some("eu-central-1")),
            ),
            // Options override what the name says.
            (
                format!("{PROVISIONED}?cluster=other&region=eu-west-1"),
                &[],
                base(PROVISIONED, cluster("other"), Some("eu-west-1")),
            ),
            // JDBC with the full host name, with and without the IAM plugin.
            (
                "jdbc:redshift:iam://other.def456.eu-west-1.redshift.amazonaws.com:5439/prod"
                    .to_owned(),
                &[],
                Target {
                    database: some("prod"),
                    ..base(
                        "other.def456.eu-west-1.redshift.amazonaws.com",
                        cluster("other"),
                        Some("eu-west-1"),
                    )
                },
            ),
            (
                format!("jdbc:redshift://{SERVERLESS}:5439/dev"),
                &[],
                Target {
                    database: some("dev"),
                    ..serverless()
                },
            ),
            // JDBC short forms: no host, so host is the cluster or workgroup name.
            (
                "jdbc:redshift:iam://examplecluster:us-west-2/dev".to_owned(),
                &[],
                Target {
                    database: some("dev"),
                    lookup_endpoint: true,
                    ..base("examplecluster", cluster("examplecluster"), Some("us-west-2"))
                },
            ),
            (
                "JDBC:Redshift:IAM://redshift-serverless-analytics:eu-central-1/dev".to_owned(),
                &[],
                Target {
                    database: some("dev"),
                    lookup_endpoint: true,
                    ..base("analytics", workgroup("analytics"), Some("eu-central-1"))
                },
            ),
            // `;` properties, driver aliases case-insensitively, other driver properties ignored.
            (
                format!(
                    "jdbc:redshift:iam://{PROVISIONED}:5439/dev;DbUser=alice;DBGROUPS=a,b;AutoCreate=true;ssl=true;UID=x;plugin_name=com.amazon.redshift.plugin.X"
                ),
                &[],
                Target {
                    database: some("dev"),
                    db_user: some("alice"),
                    db_groups: strings(&["a", "b"]),
                    auto_create: true,
                    ..provisioned()
                },
            ),
            // `?` properties, aliases naming cluster and region on a custom domain.
            (
                "jdbc:redshift:iam://db.example.com:5439/dev?ClusterID=prod&Region=us-east-1&IAMDuration=3600&groupfederation=true&loginTimeout=5"
                    .to_owned(),
                &[],
                Target {
                    database: some("dev"),
                    duration_seconds: 3600,
                    iam_identity: true,
                    ..base("db.example.com", cluster("prod"), Some("us-east-1"))
                },
            ),
            // Percent-decoding in path and values; %2C separates list items.
            (
                format!("{PROVISIONED}/my%20db?db_user=al%40ice&db_groups=bi%2Creaders&allowed_users=a%2Bb"),
                &[],
                Target {
                    database: some("my db"),
                    db_user: some("al@ice"),
                    db_groups: strings(&["bi", "readers"]),
                    allowed_users: strings(&["a+b"]),
                    ..provisioned()
                },
            ),
            // `[[target]]` options override the query string.
            (
                format!("{PROVISIONED}/dev?db_user=alice&duration_seconds=1200&port=6000"),
                &[
                    ("db_user", "bob"),
                    ("db_groups", "bi,readers"),
                    ("port", "6001"),
                    ("duration_seconds", "3600"),
                    ("sslmode", "verify-ca"),
                    ("auto_create", "yes"),
                    ("database", "prod"),
                ],
                Target {
                    database: some("prod"),
                    listen_port: Some(6001),
                    db_user: some("bob"),
                    db_groups: strings(&["bi", "readers"]),
                    auto_create: true,
                    duration_seconds: 3600,
                    sslmode: Some(SslMode::VerifyCa),
                    ..provisioned()
                },
            ),
            // Config options apply to JDBC specs too.
            (
                "jdbc:redshift:iam://examplecluster:us-west-2/dev".to_owned(),
                &[("iam_identity", "true"), ("allowed_users", "alice, bob")],
                Target {
                    database: some("dev"),
                    iam_identity: true,
                    allowed_users: strings(&["alice", "bob"]),
                    lookup_endpoint: true,
                    ..base("examplecluster", cluster("examplecluster"), Some("us-west-2"))
                },
            ),
            // Static password mode needs no AWS names at all.
            (
                "db.example.com:5439/dev?db_user=alice&password_env=PW".to_owned(),
                &[],
                Target {
                    database: some("dev"),
                    db_user: some("alice"),
                    password_env: some("PW"),
                    ..base("db.example.com", TargetKind::Unknown, None)
                },
            ),
            // ... also on a VPC endpoint, keeping what the name says.
            (
                format!("{VPC_ENDPOINT}?password_env=PW"),
                &[],
                Target {
                    account: some("123456789012"),
                    password_env: some("PW"),
                    ..base(VPC_ENDPOINT, TargetKind::Unknown, Some("eu-west-1"))
                },
            ),
            // IPv6 and IPv4 literals.
            (
                "[::1]:15439/dev?password_env=PW&sslmode=disable".to_owned(),
                &[],
                Target {
                    upstream_port: 15439,
                    database: some("dev"),
                    password_env: some("PW"),
                    sslmode: Some(SslMode::Disable),
                    ..base("::1", TargetKind::Unknown, None)
                },
            ),
            (
                "127.0.0.1:6543?password_env=PW&port=7000".to_owned(),
                &[],
                Target {
                    upstream_port: 6543,
                    listen_port: Some(7000),
                    password_env: some("PW"),
                    ..base("127.0.0.1", TargetKind::Unknown, None)
                },
            ),
            // The database option overrides the path; trailing `&` is harmless.
            (
                format!("{PROVISIONED}/dev?database=prod&iam_identity=1&"),
                &[],
                Target {
                    database: some("prod"),
                    iam_identity: true,
                    ..provisioned()
                },
            ),
        ]
    }

    #[test]
    fn good_targets_parse_to_the_expected_fields() {
        for (spec, extra, want) in good_cases() {
            let got = Target::parse_with_options(&spec, extra.iter().copied());
            assert_eq!(got.as_ref(), Ok(&want), "{spec} with {extra:?}");
        }
    }

    /// (what the user wrote, a piece the message must contain)
    const BAD: &[(&str, &str)] = &[
        ("", "empty target"),
        ("   ", "empty target"),
        ("postgresql://h:5439/dev", "\"postgresql\" URLs"),
        ("jdbc:postgresql://h:5439/dev", "not a Redshift JDBC URL"),
        (":5439/dev?password_env=PW", "has no host name"),
        ("alice@db.example.com/dev", "?db_user=NAME"),
        ("::1:5439?password_env=PW", "IPv6 in brackets"),
        ("[::1?password_env=PW", "IPv6 in brackets"),
        (
            "db example.com?password_env=PW",
            "\"db example.com\" is not a host",
        ),
        (
            "db.example.com:abc?password_env=PW",
            "\"abc\" after the host",
        ),
        ("db.example.com:0?password_env=PW", "\"0\" after the host"),
        ("db.example.com:70000?password_env=PW", "1 to 65535"),
        ("db.example.com?password_env=PW&port=0", "port=\"0\""),
        (
            "db.example.com/dev/x?password_env=PW",
            "\"dev/x\" is not one database",
        ),
        (
            "db.example.com?password_env=PW&dbuser=a",
            "\"dbuser\": write one of port, database",
        ),
        ("db.example.com?password=secret", "password_env=VAR"),
        ("db.example.com?password_env", "password_env has no value"),
        (
            "db.example.com?password_env=PW&db_user=al%2",
            "\"al%2\" has a bad percent escape",
        ),
        (
            "db.example.com?password_env=PW&db_user=%FF",
            "bad percent escape",
        ),
        (
            "db.example.com?password_env=PW&duration_seconds=600",
            "from 900 to 3600",
        ),
        (
            "db.example.com?password_env=PW&auto_create=maybe",
            "auto_create=\"maybe\"",
        ),
        (
            "db.example.com?password_env=PW&sslmode=prefer",
            "verify-full, verify-ca",
        ),
        (
            "db.example.com?password_env=1PW",
            "environment variable name",
        ),
        ("db.example.com/dev", "?cluster=NAME&region=REGION"),
        ("db.example.com/dev?cluster=prod", "add ?region=REGION"),
        (
            "db.example.com?cluster=prod&region=useast",
            "region \"useast\"",
        ),
        (
            "db.example.com?cluster=my_cluster&region=us-east-1",
            "identifier \"my_cluster\"",
        ),
        (VPC_ENDPOINT, "add ?workgroup=NAME"),
        (
            "db.example.com?cluster=c&workgroup=w&region=us-east-1",
            "keep only one",
        ),
        (
            "db.example.com?workgroup=Bad_WG&region=us-east-1",
            "workgroup \"Bad_WG\"",
        ),
        (
            "db.example.com?workgroup=ab&region=us-east-1",
            "3-64 lowercase",
        ),
        (
            "default.123456789012.us-east-1.redshift-serverless.amazonaws.com:6000",
            "5431-5455 or 8191-8215",
        ),
        (
            "jdbc:redshift:iam://c1:nowhere/dev",
            "\"nowhere\" after \"c1\" is not a port",
        ),
        (
            "jdbc:redshift:iam://a.b.example.com:us-east-1/dev",
            "(no dots)",
        ),
        (
            "jdbc:redshift:iam://c1:us-west-2/dev;IAMDuration=100",
            "IAMDuration=\"100\"",
        ),
        (
            "jdbc:redshift:iam://c1:us-west-2/dev?DbUser",
            "DbUser has no value",
        ),
    ];

    /// (an endpoint, extra `[[target]]` options, a piece the message must contain)
    const BAD_OPTIONS: &[(&str, Extra, &str)] = &[
        (
            PROVISIONED,
            &[("db_user", "1alice")],
            "does not start with a letter",
        ),
        (
            PROVISIONED,
            &[("db_user", "IAM:alice")],
            "contains ':' or '/'",
        ),
        (
            PROVISIONED,
            &[("db_user", "public")],
            "reserved name PUBLIC",
        ),
        (PROVISIONED, &[("db_user", LONG_USER)], "longer than 64"),
        (
            PROVISIONED,
            &[("DbUser", "alice")],
            "unknown option \"DbUser\"",
        ),
        (
            PROVISIONED,
            &[("duration_seconds", "4000")],
            "duration_seconds=\"4000\"",
        ),
        (SERVERLESS, &[("db_user", "alice")], "allowed_users=NAME"),
        (
            SERVERLESS,
            &[("db_groups", "bi")],
            "db_groups cannot be used with a serverless",
        ),
        (
            SERVERLESS,
            &[("auto_create", "true")],
            "auto_create cannot be used",
        ),
        (
            PROVISIONED,
            &[("iam_identity", "true"), ("db_user", "a")],
            "with iam_identity=true",
        ),
        (
            PROVISIONED,
            &[("iam_identity", "yes"), ("db_groups", "bi")],
            "db_groups cannot be",
        ),
        (
            PROVISIONED,
            &[("iam_identity", "1"), ("password_env", "PW")],
            "contradict",
        ),
    ];

    /// 65 characters: one too many for a database user.
    const LONG_USER: &str = "a2345678901234567890123456789012345678901234567890123456789012345";

    #[test]
    fn bad_targets_say_what_to_write() {
        let no_options: Extra = &[];
        let cases = BAD.iter().map(|(spec, want)| (*spec, no_options, *want));
        for (spec, extra, want) in cases.chain(BAD_OPTIONS.iter().copied()) {
            let err = Target::parse_with_options(spec, extra.iter().copied())
                .expect_err(&format!("{spec:?} with {extra:?} should be refused"));
            let message = err.to_string();
            assert!(
                message.contains(want),
                "{spec:?}: {message:?} lacks {want:?}"
            );
            assert!(
                !message.contains('\n'),
                "{spec:?}: {message:?} is not one line"
            );
        }
    }

    #[test]
    fn from_str_is_parse() {
        let parsed: Target = SERVERLESS.parse().expect("parses");
        assert_eq!(Ok(parsed), Target::parse(SERVERLESS));
        assert_eq!("".parse::<Target>(), Err(TargetError::Empty));
    }

    #[test]
    fn labels_are_the_cluster_workgroup_or_host() {
        let label = |spec: &str| Target::parse(spec).expect("parses").label().to_owned();
        assert_eq!(label(PROVISIONED), "examplecluster");
        assert_eq!(label(SERVERLESS), "default");
        assert_eq!(label("db.example.com?password_env=PW"), "db.example.com");
    }

    #[test]
    fn static_means_password_env() {
        assert!(
            Target::parse("db.example.com?password_env=PW")
                .expect("parses")
                .is_static()
        );
        assert!(!Target::parse(SERVERLESS).expect("parses").is_static());
    }

    #[test]
    fn known_options_lists_every_option() {
        let names: Vec<&str> = OPTIONS.iter().map(|(name, _)| *name).collect();
        assert_eq!(KNOWN_OPTIONS, names.join(", "));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(
            percent_decode("a%2Cb%40c%2fd+e"),
            Ok("a,b@c/d+e".to_owned())
        );
        assert_eq!(percent_decode("%C3%A9"), Ok("é".to_owned()));
        assert!(percent_decode("%").is_err());
        assert!(percent_decode("%g0").is_err());
    }

    #[test]
    fn vpc_endpoint_names_are_told_from_workgroups() {
        assert!(is_vpc_endpoint_label(
            "my-vpce-endpoint-abcdefghij0123456789"
        ));
        assert!(!is_vpc_endpoint_label("my-endpoint-test"));
        assert!(!is_vpc_endpoint_label("default"));
    }
}
