//! Unit tests of the configuration: layering, defaults, refusals and the settings table.

// figment's `Jail` closures must return its own (large) error type.
#![allow(clippy::result_large_err)]

use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use figment::Jail;

use super::validate::parse_duration;
use super::*;
use crate::client::tls::ClientTlsSource;
use crate::target::TARGET_OPTIONS;

mod warm;

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

        let config =
            ProxyConfig::load(&cli(&["--config", "proxy.toml", "--port", "6200"])).expect("flags");
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
        let config = ProxyConfig::load(&cli(&[STATIC, "--config", "proxy.toml"])).expect("file");
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
                vec!["--client-auth", "password"],
                "client_auth = password needs --client-users",
            ),
            (
                vec!["--client-users", "u.txt"],
                "only used with --client-auth scram",
            ),
            (
                [
                    &[
                        "--client-auth",
                        "password",
                        "--client-users",
                        "u.txt",
                        "--address",
                        "0.0.0.0",
                    ][..],
                    &tls[..],
                ]
                .concat(),
                "refusing --client-auth password on 0.0.0.0 without --client-sslmode require",
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

#[test]
fn every_setting_is_a_flag_a_key_and_an_environment_variable() {
    let command = Cli::command();
    let mut keys = std::collections::HashSet::new();
    for setting in SETTINGS {
        assert!(keys.insert(setting.key), "{} twice", setting.key);
        assert_eq!(setting.flag, format!("--{}", setting.key.replace('_', "-")));
        assert_eq!(
            setting.env,
            format!("REDSHIFT_AUTH_PROXY_{}", setting.key.to_ascii_uppercase())
        );
        let arg = command
            .get_arguments()
            .find(|arg| arg.get_long() == Some(&setting.flag[2..]))
            .unwrap_or_else(|| panic!("no flag {}", setting.flag));
        let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
        assert!(help.starts_with(setting.help), "{}: {help}", setting.key);
        assert!(help.contains(setting.env), "{}: {help}", setting.key);
        if let Some(default) = setting.default {
            assert!(help.contains(default), "{}: {help}", setting.key);
        }
        assert!(!setting.help.contains("  "), "{}", setting.key);
    }
}

#[test]
fn every_setting_is_read_from_the_environment_and_the_file() {
    // Each setting set to a value that validates together with the others, through the
    // environment and through the file; client_ca cannot go with scram (see the client
    // security tests).
    let values: [(&str, Option<&str>); 40] = [
        ("address", Some("127.0.0.2")),
        ("port", Some("6000")),
        ("sslmode", Some("verify-ca")),
        ("compression", Some("lz4")),
        ("upstream_ca", Some("a.pem")),
        ("upstream_roots", Some("native")),
        ("connect_timeout", Some("3s")),
        ("startup_timeout", Some("4s")),
        ("log_level", Some("debug")),
        ("log_format", Some("json")),
        ("aws_profile", Some("p")),
        ("aws_region", Some("eu-west-1")),
        ("role_arn", Some("arn:aws:iam::123456789012:role/r")),
        ("role_external_id", Some("x")),
        ("role_session_name", Some("s")),
        ("aws_endpoint_url", Some("http://127.0.0.1:1")),
        ("http_address", Some("off")),
        ("quitquitquit", Some("true")),
        ("min_sigterm_delay", Some("1s")),
        ("max_sigterm_delay", Some("2s")),
        ("max_connections", Some("7")),
        ("worker_threads", Some("2")),
        ("idle_timeout", Some("5m")),
        ("client_tls_cert", Some("c.pem")),
        ("client_tls_key", Some("k.pem")),
        ("client_tls", Some("off")),
        ("client_sslmode", Some("require")),
        ("client_auth", Some("scram")),
        ("client_users", Some("u.txt")),
        ("client_ca", None),
        ("allow_unauthenticated_remote", Some("true")),
        ("warm_sessions", Some("3")),
        ("warm_idle", Some("90s")),
        ("warm_max_age", Some("4m")),
        ("warm_max_total", Some("9")),
        ("unix_socket", Some("/run/p")),
        ("peers", Some("dns:peers.example:9540,10.0.0.7:9541")),
        ("peer_address", Some("0.0.0.0:9540")),
        ("peer_secret_file", Some("/run/peer-secret")),
        ("peer_forward_timeout", Some("250ms")),
    ];
    let keys: Vec<&str> = values.iter().map(|(key, _)| *key).collect();
    let table: Vec<&str> = SETTINGS.iter().map(|setting| setting.key).collect();
    assert_eq!(keys, table, "a new setting needs a value here");
    let check = |config: ProxyConfig| {
        assert_eq!(config.targets[0].listen, "127.0.0.2:6000".parse().unwrap());
        assert_eq!(config.targets[0].compression, Compression::Lz4);
        assert_eq!(config.idle_timeout, Some(Duration::from_secs(300)));
        assert_eq!(config.worker_threads, Some(2));
        assert_eq!(config.aws.role_session_name.as_deref(), Some("s"));
        assert_eq!(config.client.auth, ClientAuthMethod::Scram);
        assert!(config.http_address.is_none() && config.quitquitquit);
        assert_eq!(config.targets[0].warm_sessions, 3);
        assert_eq!(
            config.warm,
            crate::upstream::warm::WarmSettings {
                idle: Duration::from_secs(90),
                max_age: Duration::from_secs(240),
                max_total: 9,
            }
        );
        let peers = config.peers.expect("peer settings");
        assert_eq!(peers.peers.map(|list| list.entries.len()), Some(2));
        assert_eq!(peers.listen, Some("0.0.0.0:9540".parse().unwrap()));
        assert_eq!(peers.secret_file, PathBuf::from("/run/peer-secret"));
        assert_eq!(peers.forward_timeout, Duration::from_millis(250));
    };
    Jail::expect_with(|jail| {
        for (key, value) in values.iter().filter_map(|(key, v)| Some((key, (*v)?))) {
            jail.set_env(
                format!("REDSHIFT_AUTH_PROXY_{}", key.to_ascii_uppercase()),
                value,
            );
        }
        check(ProxyConfig::load(&cli(&[STATIC])).expect("environment"));
        jail.clear_env();
        let file: String = values
            .iter()
            .filter_map(|(key, value)| Some((key, (*value)?)))
            .map(|(key, value)| match value.parse::<u64>() {
                Ok(_) => format!("{key} = {value}\n"),
                Err(_) if value == "true" => format!("{key} = true\n"),
                Err(_) => format!("{key} = {value:?}\n"),
            })
            .collect();
        jail.create_file("all.toml", &file)?;
        check(ProxyConfig::load(&cli(&[STATIC, "--config", "all.toml"])).expect("file"));
        let mut flags = vec![STATIC.to_owned()];
        for (setting, value) in SETTINGS
            .iter()
            .zip(values)
            .filter_map(|(s, (_, v))| Some((s, v?)))
        {
            flags.push(setting.flag.to_owned());
            if setting.value_name.is_some() {
                flags.push(value.to_owned());
            }
        }
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        check(ProxyConfig::load(&cli(&flags)).expect("flags"));
        Ok(())
    });
}

#[test]
fn help_lists_the_target_options_from_the_parser_list() {
    let help = Cli::command().render_long_help().to_string();
    for option in TARGET_OPTIONS {
        assert!(help.contains(option.name), "{}", option.name);
        assert!(help.contains(option.meaning), "{}", option.meaning);
    }
    assert!(help.contains("REDSHIFT_AUTH_PROXY_CONFIG"), "{help}");
}

/// `docs/configuration.md` is where users look settings up: every flag, its environment
/// variable and every target option must be there, so adding a setting without documenting
/// it fails here.
#[test]
fn the_configuration_page_documents_every_setting_and_target_option() {
    let page = include_str!("../../../docs/configuration.md");
    for setting in SETTINGS {
        for name in [setting.flag, setting.env, setting.key] {
            assert!(
                page.contains(name),
                "docs/configuration.md does not mention {name}"
            );
        }
    }
    for option in crate::target::TARGET_OPTIONS {
        assert!(
            page.contains(&format!("`{}`", option.name)),
            "docs/configuration.md does not list the target option {}",
            option.name
        );
    }
}

#[test]
fn cleartext_passwords_only_over_required_tls_or_on_loopback() {
    Jail::expect_with(|_| {
        let password = ["--client-auth", "password", "--client-users", "u.txt"];
        let loopback = ProxyConfig::load(&cli(&[&[STATIC][..], &password[..]].concat()))
            .expect("loopback needs no TLS");
        assert_eq!(loopback.client.auth, ClientAuthMethod::Password);
        let remote = [
            "--address",
            "0.0.0.0",
            "--client-tls",
            "self-signed",
            "--client-sslmode",
            "require",
        ];
        let config = ProxyConfig::load(&cli(&[&[STATIC][..], &password[..], &remote[..]].concat()))
            .expect("remote with TLS required");
        assert_eq!(config.client.auth, ClientAuthMethod::Password);
        assert_eq!(config.client.users_file, Some(PathBuf::from("u.txt")));
        Ok(())
    });
}

#[test]
fn peer_settings_need_the_secret_file_and_say_what_is_wrong() {
    Jail::expect_with(|_| {
        let off = ProxyConfig::load(&cli(&[STATIC])).expect("no peers");
        assert_eq!(off.peers, None);
        for (args, message) in [
            (
                &["--peers", "10.0.0.7:9540"][..],
                "--peers needs --peer-secret-file",
            ),
            (
                &["--peer-address", "0.0.0.0:9540"][..],
                "--peer-address needs --peer-secret-file",
            ),
            (
                &["--peer-secret-file", "s"][..],
                "peer_secret_file is only used with --peers or --peer-address",
            ),
            (
                &["--peers", "10.0.0.7", "--peer-secret-file", "s"][..],
                "--peers entry \"10.0.0.7\": needs a port",
            ),
            (
                &["--peer-address", "9540", "--peer-secret-file", "s"][..],
                "--peer-address \"9540\" is not an address",
            ),
            (
                &[
                    "--peers",
                    "dns:p:9540",
                    "--peer-secret-file",
                    "s",
                    "--peer-forward-timeout",
                    "0",
                ][..],
                "peer_forward_timeout = 0",
            ),
        ] {
            let error = ProxyConfig::load(&cli(&[&[STATIC][..], args].concat()))
                .expect_err(message)
                .to_string();
            assert!(error.contains(message), "{args:?}: {error}");
        }
        let config = ProxyConfig::load(&cli(&[
            STATIC,
            "--peer-address",
            "127.0.0.1:9540",
            "--peer-secret-file",
            "s",
        ]))
        .expect("a replica that only accepts forwarded cancels");
        let peers = config.peers.expect("peer settings");
        assert_eq!(peers.peers, None);
        assert_eq!(peers.forward_timeout, Duration::from_millis(500));
        Ok(())
    });
}
