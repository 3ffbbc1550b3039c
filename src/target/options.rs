//! The options a target takes, listed once: the query string of the endpoint form, the driver
//! properties of a JDBC URL, the keys of a `[[target]]` table, the "write one of ..." message
//! and the `--help` text all read [`TARGET_OPTIONS`], so none of them can name an option the
//! others do not know or check a value differently.

use std::ops::RangeInclusive;

use super::error::TargetError;
use super::parse::{check_database, is_host_name, parse_port};
use crate::upstream::compression::Compression;
use crate::upstream::tls::SslMode;

/// How long temporary credentials live unless `duration_seconds` says otherwise.
const DEFAULT_DURATION_SECONDS: u32 = 900;
/// What the credential APIs accept for `DurationSeconds`.
const DURATION_SECONDS: RangeInclusive<u32> = 900..=3600;
/// Warm sessions a target may keep per key: each is a real server session, and a handful
/// covers a BI tool's bursts.
pub const WARM_SESSIONS: RangeInclusive<usize> = 0..=64;

/// One option of a target. It is public data so that documentation and `--help` are written
/// from the same list the parser uses.
#[derive(Debug)]
pub struct TargetOption {
    /// The name in query strings and `[[target]]` tables (JDBC URLs match it ignoring case).
    pub name: &'static str,
    /// What the option does, for `--help` and documentation.
    pub meaning: &'static str,
    /// The values it takes, phrased to follow "write" in the message for a bad value.
    pub takes: &'static str,
    /// Redshift JDBC driver properties (lowercase) that mean this option, so a URL copied from
    /// a SQL tool keeps working.
    pub jdbc_aliases: &'static [&'static str],
    /// A comma-separated list, where an empty value clears the list instead of being refused.
    pub list: bool,
    /// Checks one value and records it; [`Refusal::Invalid`] becomes a message quoting `takes`.
    apply: fn(&mut Given, &str) -> Result<(), Refusal>,
}

/// Why an option's value was refused.
pub(super) enum Refusal {
    /// The value is not one of what the option `takes`.
    Invalid,
    /// A refusal with its own, more specific message.
    Target(TargetError),
}

impl From<TargetError> for Refusal {
    fn from(error: TargetError) -> Refusal {
        Refusal::Target(error)
    }
}

/// Every option a target takes, in the order messages and `--help` list them.
pub const TARGET_OPTIONS: &[TargetOption] = &[
    TargetOption {
        name: "port",
        meaning: "local listen port of this target",
        takes: "a local port from 1 to 65535",
        jdbc_aliases: &[],
        list: false,
        apply: |given, value| {
            given.listen_port = Some(parse_port(value).ok_or(Refusal::Invalid)?);
            Ok(())
        },
    },
    TargetOption {
        name: "database",
        meaning: "database to log in to; overrides the /DATABASE path",
        takes: "one database name",
        jdbc_aliases: &[],
        list: false,
        apply: |given, value| {
            given.database = Some(check_database(value)?);
            Ok(())
        },
    },
    TargetOption {
        name: "cluster",
        meaning: "provisioned cluster identifier (case-sensitive)",
        takes: "1-63 letters, digits or hyphens starting with a letter",
        jdbc_aliases: &["clusterid"],
        list: false,
        apply: |given, value| {
            given.cluster = Some(value.to_owned());
            Ok(())
        },
    },
    TargetOption {
        name: "workgroup",
        meaning: "serverless workgroup name; not together with cluster",
        takes: "3-64 lowercase letters, digits or hyphens",
        jdbc_aliases: &[],
        list: false,
        apply: |given, value| {
            given.workgroup = Some(value.to_owned());
            Ok(())
        },
    },
    TargetOption {
        name: "region",
        meaning: "AWS region of the credential API",
        takes: "a region name like us-east-1",
        jdbc_aliases: &[],
        list: false,
        apply: |given, value| {
            given.region = Some(value.to_owned());
            Ok(())
        },
    },
    TargetOption {
        name: "db_user",
        meaning: "fixed database user (DbUser); the client's user is then ignored",
        takes: "1-64 characters starting with a letter, without ':' or '/', other than PUBLIC",
        jdbc_aliases: &["dbuser"],
        list: false,
        apply: |given, value| {
            given.db_user = Some(check_db_user(value)?);
            Ok(())
        },
    },
    TargetOption {
        name: "db_groups",
        meaning: "groups the temporary user joins (DbGroups; provisioned only)",
        takes: "a comma-separated list of group names",
        jdbc_aliases: &["dbgroups"],
        list: true,
        apply: |given, value| {
            given.db_groups = split_list(value);
            Ok(())
        },
    },
    TargetOption {
        name: "auto_create",
        meaning: "create the database user if missing (AutoCreate; provisioned only)",
        takes: "true or false",
        jdbc_aliases: &["autocreate"],
        list: false,
        apply: |given, value| {
            given.auto_create = parse_bool(value).ok_or(Refusal::Invalid)?;
            Ok(())
        },
    },
    TargetOption {
        name: "iam_identity",
        meaning: "use GetClusterCredentialsWithIAM: the user comes from the IAM identity",
        takes: "true or false",
        jdbc_aliases: &["groupfederation"],
        list: false,
        apply: |given, value| {
            given.iam_identity = parse_bool(value).ok_or(Refusal::Invalid)?;
            Ok(())
        },
    },
    TargetOption {
        name: "duration_seconds",
        meaning: "lifetime of the temporary password (DurationSeconds; default 900)",
        takes: "a number of seconds from 900 to 3600",
        jdbc_aliases: &["iamduration"],
        list: false,
        apply: |given, value| {
            given.duration_seconds = value
                .parse()
                .ok()
                .filter(|seconds| DURATION_SECONDS.contains(seconds))
                .ok_or(Refusal::Invalid)?;
            Ok(())
        },
    },
    TargetOption {
        name: "custom_domain",
        meaning: "custom domain name passed to the credential API (CustomDomainName)",
        takes: "a DNS name such as db.example.com",
        jdbc_aliases: &[],
        list: false,
        apply: |given, value| {
            if !is_host_name(value) {
                return Err(Refusal::Invalid);
            }
            given.custom_domain = Some(value.to_owned());
            Ok(())
        },
    },
    TargetOption {
        name: "sslmode",
        meaning: "upstream TLS mode of this target; overrides --sslmode",
        takes: "one of verify-full, verify-ca, require, disable",
        jdbc_aliases: &[],
        list: false,
        apply: |given, value| {
            given.sslmode = Some(value.parse().map_err(|_| Refusal::Invalid)?);
            Ok(())
        },
    },
    TargetOption {
        name: "compression",
        meaning: "ask the server to compress results: lz4 or off; overrides --compression",
        takes: "one of off, lz4",
        jdbc_aliases: &[],
        list: false,
        apply: |given, value| {
            given.compression = Some(value.parse().map_err(|_| Refusal::Invalid)?);
            Ok(())
        },
    },
    TargetOption {
        name: "password_env",
        meaning: "static password mode: the environment variable holding the password",
        takes: "an environment variable name: letters, digits and '_', not starting with a digit",
        jdbc_aliases: &[],
        list: false,
        apply: |given, value| {
            if !is_env_name(value) {
                return Err(Refusal::Invalid);
            }
            given.password_env = Some(value.to_owned());
            Ok(())
        },
    },
    TargetOption {
        name: "warm_sessions",
        meaning: "logged-in spare server sessions kept per key; overrides --warm-sessions",
        takes: "a number from 0 to 64",
        jdbc_aliases: &[],
        list: false,
        apply: |given, value| {
            given.warm_sessions = Some(
                value
                    .parse()
                    .ok()
                    .filter(|n| WARM_SESSIONS.contains(n))
                    .ok_or(Refusal::Invalid)?,
            );
            Ok(())
        },
    },
    TargetOption {
        name: "allowed_users",
        meaning: "client user names allowed through this target; others get 28000",
        takes: "a comma-separated list of user names",
        jdbc_aliases: &[],
        list: true,
        apply: |given, value| {
            given.allowed_users = split_list(value);
            Ok(())
        },
    },
];

/// The option names joined for "write one of ..." messages.
pub(super) fn option_names() -> String {
    let names: Vec<&str> = TARGET_OPTIONS.iter().map(|option| option.name).collect();
    names.join(", ")
}

/// The option `name` means, as the endpoint form and `[[target]]` tables spell it (exactly).
pub(super) fn find(name: &str) -> Option<&'static TargetOption> {
    TARGET_OPTIONS.iter().find(|option| option.name == name)
}

/// The option a JDBC property means: an option name or a driver alias, ignoring case.
pub(super) fn find_jdbc(name: &str) -> Option<&'static TargetOption> {
    let lower = name.to_ascii_lowercase();
    TARGET_OPTIONS
        .iter()
        .find(|option| option.name == lower || option.jdbc_aliases.contains(&lower.as_str()))
}

impl TargetOption {
    /// Checks `value` and records it in `given`; `written` is the name as the user spelled it
    /// (a JDBC alias, say), so the message quotes what they wrote.
    pub(super) fn apply(
        &self,
        given: &mut Given,
        written: &str,
        value: &str,
    ) -> Result<(), TargetError> {
        let value = value.trim();
        if value.is_empty() && !self.list {
            return Err(TargetError::NoValue {
                key: written.to_owned(),
            });
        }
        (self.apply)(given, value).map_err(|refusal| match refusal {
            Refusal::Invalid => TargetError::BadValue {
                key: written.to_owned(),
                value: value.to_owned(),
                expected: self.takes,
            },
            Refusal::Target(error) => error,
        })
    }
}

/// The options as given; the parser merges them with what the endpoint name says.
#[derive(Debug)]
pub(super) struct Given {
    pub(super) listen_port: Option<u16>,
    pub(super) database: Option<String>,
    pub(super) cluster: Option<String>,
    pub(super) workgroup: Option<String>,
    pub(super) region: Option<String>,
    pub(super) db_user: Option<String>,
    pub(super) db_groups: Vec<String>,
    pub(super) auto_create: bool,
    pub(super) iam_identity: bool,
    pub(super) duration_seconds: u32,
    pub(super) custom_domain: Option<String>,
    pub(super) sslmode: Option<SslMode>,
    pub(super) compression: Option<Compression>,
    pub(super) password_env: Option<String>,
    pub(super) allowed_users: Vec<String>,
    pub(super) warm_sessions: Option<usize>,
}

impl Default for Given {
    fn default() -> Given {
        Given {
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
            compression: None,
            password_env: None,
            allowed_users: Vec::new(),
            warm_sessions: None,
        }
    }
}

/// Refuses a `db_user` the credential API would refuse, before any call is made.
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
/// `db_user` at start-up and for a client's user name before calling AWS, so a bad name gets
/// a clear message instead of an opaque AWS validation error.
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

/// A portable environment variable name.
fn is_env_name(name: &str) -> bool {
    !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}
