//! What AWS endpoint names say. A Redshift endpoint name carries the cluster identifier and
//! region (`CLUSTER.HASH.REGION.redshift.amazonaws.com`), a serverless one the workgroup,
//! account and region (`WORKGROUP.ACCOUNT.REGION.redshift-serverless.amazonaws.com`), so the
//! common target is a single argument. China regions end in `.amazonaws.com.cn`, AWS's
//! pre-release stages use `redshift-dev` and `redshift-serverless-dev`, and a serverless VPC
//! endpoint (`NAME-endpoint-HASH.ACCOUNT.REGION...`) carries no workgroup at all.

use super::parse::strip_prefix_ignore_case;

/// The JDBC short form for a workgroup: `redshift-serverless-WORKGROUP:REGION`.
const SERVERLESS_SHORT_PREFIX: &str = "redshift-serverless-";

/// What the host name (or a JDBC short form) says about the upstream.
#[derive(Debug, Default)]
pub(super) struct Named {
    pub(super) kind: NamedKind,
    pub(super) region: Option<String>,
    pub(super) account: Option<String>,
}

/// The upstream a host name points at, as far as the name tells.
#[derive(Debug, Default)]
pub(super) enum NamedKind {
    /// Not an AWS endpoint name.
    #[default]
    Nothing,
    Cluster(String),
    Workgroup(String),
    /// A serverless VPC endpoint: serverless, but the workgroup is not in the name.
    ServerlessVpcEndpoint,
}

/// Reads `CLUSTER:REGION` or `redshift-serverless-WORKGROUP:REGION` (JDBC short forms).
pub(super) fn short_form(host: &str, region: String) -> Named {
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
pub(super) fn infer_from_host(host: &str) -> Named {
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
pub(super) fn is_vpc_endpoint_label(label: &str) -> bool {
    label.rsplit_once("-endpoint-").is_some_and(|(name, hash)| {
        !name.is_empty() && hash.len() >= 12 && hash.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// `us-east-1`, `cn-north-1`, `us-gov-west-1`: lowercase words and a final number.
pub(super) fn is_region(region: &str) -> bool {
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
pub(super) fn is_cluster_id(cluster: &str) -> bool {
    (1..=63).contains(&cluster.len())
        && cluster.starts_with(|c: char| c.is_ascii_alphabetic())
        && cluster
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// AWS's rule for workgroup names: 3–64 of `[a-z0-9-]`.
pub(super) fn is_workgroup(workgroup: &str) -> bool {
    (3..=64).contains(&workgroup.len())
        && workgroup
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}
