//! Reading what the user wrote: the endpoint form `HOST[:PORT][/DATABASE][?option=value&...]`
//! and Redshift JDBC URLs (full host names and the `CLUSTER:REGION` short forms), then merging
//! the options with what the endpoint name says.

use std::net::Ipv6Addr;

use super::aws_names::{
    Named, NamedKind, infer_from_host, is_cluster_id, is_region, is_workgroup, short_form,
};
use super::error::TargetError;
use super::options::{self, Given, TargetOption};
use super::{Target, TargetKind};

/// Redshift's port, for the upstream when none is written.
const DEFAULT_UPSTREAM_PORT: u16 = 5439;
/// The JDBC URL prefixes of the Redshift driver (with and without its IAM plugin).
const JDBC_PREFIXES: [&str; 2] = ["jdbc:redshift:iam://", "jdbc:redshift://"];
/// What people call the option that would put a password into the target.
const PASSWORD_NAMES: [&str; 3] = ["password", "pwd", "passwd"];

/// Which syntax a target is written in: it decides separators and how strict option names are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// `HOST[:PORT][/DATABASE][?k=v&...]` and config tables: unknown options are errors.
    Endpoint,
    /// A Redshift JDBC URL: driver property names are aliases, unknown properties are ignored.
    Jdbc,
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

/// Parses `spec`, then applies the extra `(name, value)` options of a `[[target]]` table
/// with the same option code as the query string.
pub(super) fn parse<'a>(
    spec: &str,
    extra: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Target, TargetError> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Err(TargetError::Empty);
    }
    let (form, rest) = split_scheme(spec)?;
    let (location, query) = split_query(rest, form);
    let location = parse_location(spec, location, form)?;
    let mut given = Given::default();
    apply_query(&mut given, query, form)?;
    for (name, value) in extra {
        find_option(name)?.apply(&mut given, name, value)?;
    }
    finish(location, given)
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

/// Parses the options after `?` (or `;` in a JDBC URL), percent-decoding names and values.
fn apply_query(given: &mut Given, query: &str, form: Form) -> Result<(), TargetError> {
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
        let option = match form {
            Form::Endpoint => find_option(&name)?,
            Form::Jdbc => match options::find_jdbc(&name) {
                Some(option) => option,
                None => {
                    tracing::debug!(property = %name, "ignoring a JDBC driver property the proxy does not use");
                    continue;
                }
            },
        };
        let value = raw_value.ok_or_else(|| TargetError::NoValue { key: name.clone() })?;
        option.apply(given, &name, &percent_decode(value)?)?;
    }
    Ok(())
}

/// The option `name` means in the endpoint form and `[[target]]` tables, where a name the
/// proxy does not know is refused rather than silently ignored.
fn find_option(name: &str) -> Result<&'static TargetOption, TargetError> {
    if let Some(option) = options::find(name) {
        return Ok(option);
    }
    if PASSWORD_NAMES.iter().any(|p| name.eq_ignore_ascii_case(p)) {
        return Err(TargetError::PasswordInTarget {
            key: name.to_owned(),
        });
    }
    Err(TargetError::UnknownOption {
        key: name.to_owned(),
    })
}

/// Merges the options with what the name says (options win) and checks the result.
fn finish(location: Location, given: Given) -> Result<Target, TargetError> {
    let Location {
        host,
        port,
        database,
        named,
        short_form,
    } = location;
    let is_static = given.password_env.is_some();
    let kind = match (given.cluster, given.workgroup) {
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
    let region = given.region.or(named.region);
    if let Some(region) = region.as_ref().filter(|region| !is_region(region)) {
        return Err(TargetError::BadRegion {
            region: region.clone(),
        });
    }
    let target = Target {
        host,
        upstream_port: port,
        database: given.database.or(database),
        listen_port: given.listen_port,
        kind,
        region,
        account: named.account,
        db_user: given.db_user,
        db_groups: given.db_groups,
        auto_create: given.auto_create,
        iam_identity: given.iam_identity,
        duration_seconds: given.duration_seconds,
        custom_domain: given.custom_domain,
        sslmode: given.sslmode,
        compression: given.compression,
        password_env: given.password_env,
        allowed_users: given.allowed_users,
        warm_sessions: given.warm_sessions,
        lookup_endpoint: short_form,
    };
    target.check()?;
    Ok(target)
}
/// One database name: a path with further `/` is a mistake, not a name.
pub(super) fn check_database(database: &str) -> Result<String, TargetError> {
    if database.contains('/') || database.chars().any(char::is_control) {
        return Err(TargetError::BadDatabase {
            database: database.to_owned(),
        });
    }
    Ok(database.to_owned())
}

/// A port from 1 to 65535, digits only.
pub(super) fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|port| *port != 0)
}

/// A DNS name or IPv4 address as far as characters go.
pub(super) fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && !host.starts_with(['.', '-'])
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// `prefix` at the start of `text`, ignoring ASCII case.
pub(super) fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.get(..prefix.len())
        .filter(|head| head.eq_ignore_ascii_case(prefix))
        .and_then(|_| text.get(prefix.len()..))
}

/// Decodes `%XX` escapes (RFC 3986: `+` stays a plus); the result must be UTF-8.
pub(super) fn percent_decode(text: &str) -> Result<String, TargetError> {
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
