//! Targets: the upstream clusters and workgroups the proxy serves, parsed from the forms users
//! already have at hand — an AWS endpoint name, a JDBC URL copied from the Redshift console or
//! a SQL tool, or a `[[target]]` table in the config file.
//!
//! Everything the credential APIs need (cluster identifier or workgroup name, account, region)
//! is read from the endpoint name where AWS puts it there, so the common case is a single
//! argument. Every refusal is one line that names the bad input and says what to write
//! instead, because the user fixes it on the command line.

mod aws_names;
mod error;
mod options;
mod parse;
#[cfg(test)]
mod tests;

use std::ops::RangeInclusive;
use std::str::FromStr;

use crate::upstream::compression::Compression;
use crate::upstream::tls::SslMode;

pub use error::TargetError;
pub use options::{TARGET_OPTIONS, TargetOption, WARM_SESSIONS, db_user_problem};

/// The ports a Redshift Serverless workgroup can listen on.
const SERVERLESS_PORTS: [RangeInclusive<u16>; 2] = [5431..=5455, 8191..=8215];

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
    /// This target's `compression`, overriding the global one.
    pub compression: Option<Compression>,
    /// Static password mode: the environment variable that holds the password.
    pub password_env: Option<String>,
    /// Client user names allowed to connect; empty allows everyone.
    pub allowed_users: Vec<String>,
    /// This target's `warm_sessions`, overriding `--warm-sessions`.
    pub warm_sessions: Option<usize>,
    /// The JDBC short forms name a cluster or workgroup but not its address: the endpoint is
    /// looked up with the AWS API (DescribeClusters, GetWorkgroup) before the first connect.
    pub lookup_endpoint: bool,
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
        parse::parse(spec, options)
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

    /// The rules that span options and the endpoint name, checked on the merged target so
    /// they hold however it was written.
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
