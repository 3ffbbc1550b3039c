//! Unit tests of target parsing: the accepted forms in `accepted`, the refusals in `refused`.

use super::aws_names::is_vpc_endpoint_label;
use super::options::option_names;
use super::parse::percent_decode;
use super::*;

mod accepted;
mod refused;

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
        compression: None,
        password_env: None,
        allowed_users: Vec::new(),
        warm_sessions: None,
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
fn unknown_options_are_answered_with_every_option_name() {
    let names: Vec<&str> = TARGET_OPTIONS.iter().map(|option| option.name).collect();
    assert_eq!(option_names(), names.join(", "));
    let err = Target::parse("db.example.com?password_env=PW&colour=blue").unwrap_err();
    assert!(err.to_string().ends_with(&names.join(", ")), "{err}");
}

#[test]
fn option_names_and_jdbc_aliases_are_unique_and_lowercase() {
    let mut seen = std::collections::HashSet::new();
    for option in TARGET_OPTIONS {
        for name in std::iter::once(&option.name).chain(option.jdbc_aliases) {
            assert_eq!(*name, name.to_ascii_lowercase(), "{name}");
            assert!(seen.insert(*name), "{name} is listed twice");
        }
        assert!(
            !option.meaning.is_empty() && !option.takes.is_empty(),
            "{}",
            option.name
        );
        // --help lists each option with its meaning on one line.
        assert!(
            option.meaning.len() <= 72,
            "{}: meaning too long",
            option.name
        );
    }
}

#[test]
fn every_option_is_a_config_table_key_and_a_jdbc_property() {
    for option in TARGET_OPTIONS {
        // An empty value clears a list and is refused for anything else, by name: the option
        // was found, not rejected as unknown.
        let err = Target::parse_with_options(SERVERLESS, [(option.name, "")]);
        let upper = option.name.to_ascii_uppercase();
        let jdbc = format!("jdbc:redshift:iam://{SERVERLESS}:5439/dev;{upper}");
        let jdbc_err = Target::parse(&jdbc);
        if option.list {
            assert!(err.is_ok(), "{}: {err:?}", option.name);
        } else {
            assert_eq!(
                err,
                Err(TargetError::NoValue {
                    key: option.name.to_owned()
                })
            );
        }
        assert_eq!(jdbc_err, Err(TargetError::NoValue { key: upper }));
    }
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
