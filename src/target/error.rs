//! Why a target cannot be used. Targets are typed by hand on command lines and in config
//! files, so every refusal is one line that names the bad input and says what to write.

use super::options::option_names;

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
    #[error("unknown option {key:?}: write one of {}", option_names())]
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
