//! The command line: targets, `--config`, `--check`, the `hash-password` and `sso-login`
//! subcommands, and one flag per entry of the settings table. Flags that were not given stay
//! out of the top layer, so they never override the file or the environment.

use std::path::PathBuf;

use clap::{ArgMatches, Args, FromArgMatches, Parser};
use figment::value::Dict;
use serde::Serialize;

use super::settings;
use super::table::ENV_PREFIX;
use crate::target::TARGET_OPTIONS;

/// The environment variable that names the config file; clap reads it, since the file must be
/// known before the layers are merged.
const CONFIG_ENV: &str = respelled!(ENV_PREFIX, config, true);

/// The proxy's `--aws-profile` variable, which `sso-login --profile` defaults to, so the
/// sign-in is for the profile the proxy reads.
const AWS_PROFILE_ENV: &str = respelled!(ENV_PREFIX, aws_profile, true);

const ABOUT: &str = "A PostgreSQL wire-protocol proxy for Amazon Redshift: clients connect to \
localhost without a password and the proxy logs in to the cluster or workgroup with short-lived \
IAM database credentials, over verified TLS.";

const TARGET_FORMS: &str = "\
TARGETS
  A target is one cluster or workgroup with its own local port. Write it as
    an endpoint:   HOST[:PORT][/DATABASE][?option=value&...]
    a JDBC URL:    jdbc:redshift:iam://HOST:PORT/DB, jdbc:redshift://HOST:PORT/DB,
                   jdbc:redshift:iam://CLUSTER:REGION/DB,
                   jdbc:redshift:iam://redshift-serverless-WORKGROUP:REGION/DB
    or a [[target]] table in the --config file (endpoint = \"...\" plus options).
  Options (query string, JDBC property or [[target]] key):";

const EXAMPLES: &str = "\
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

/// The text after the flags: target forms, the target options (from the parser's own list),
/// examples and the client security rule.
fn after_help() -> String {
    let width = TARGET_OPTIONS
        .iter()
        .map(|option| option.name.len())
        .max()
        .unwrap_or(0);
    let mut text = TARGET_FORMS.to_owned();
    for option in TARGET_OPTIONS {
        text.push_str(&format!("\n    {:width$}  {}", option.name, option.meaning));
    }
    text.push_str("\n\n");
    text.push_str(EXAMPLES);
    text
}

/// The parsed command line. It is the top configuration layer as well as the choice between
/// serving, `--check` and `hash-password`.
#[derive(Debug, Clone, Default, Parser, Serialize)]
#[command(
    name = "redshift-auth-proxy",
    version,
    about = ABOUT,
    after_help = after_help(),
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
    pub(super) targets: Vec<String>,

    /// TOML configuration file with settings and [[target]] tables.
    /// Example: --config config/proxy.toml.
    #[arg(long, value_name = "FILE", env = CONFIG_ENV)]
    #[serde(skip)]
    pub(super) config: Option<PathBuf>,

    /// The settings table's flags that were given.
    #[command(flatten)]
    #[serde(flatten)]
    settings: FlagLayer,

    /// Test every target and exit: fetch credentials, connect, log in, run `select 1`, print
    /// one line per target; exit status 0 when all work, 1 otherwise. Example: --check.
    #[arg(long)]
    #[serde(skip)]
    pub check: bool,
}

/// Helper commands that run instead of the proxy.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Print a --client-users line for USER: reads the password from stdin (typed twice
    /// without echo on a terminal) and prints USER:SCRAM-SHA-256$... (the verifier alone
    /// without USER). Example: redshift-auth-proxy hash-password alice >> users.txt.
    HashPassword {
        /// The client user name the line is for.
        user: Option<String>,
    },
    /// Sign in to IAM Identity Center (SSO) for an AWS profile, as `aws sso login` does,
    /// without the AWS CLI: prints a page and a code to approve in a browser on any device,
    /// then writes the token to ~/.aws/sso/cache/ where the proxy, the AWS CLI and the SDKs
    /// read it. Example: redshift-auth-proxy sso-login --profile analytics.
    SsoLogin {
        /// The profile in ~/.aws/config with sso_session or sso_start_url; default the
        /// proxy's --aws-profile variable, else AWS_PROFILE, else `default`.
        #[arg(long, value_name = "NAME", env = AWS_PROFILE_ENV)]
        profile: Option<String>,
        /// Only print the page, as `aws sso login --no-browser` does. Without it the page is
        /// also opened (xdg-open, open on macOS) where there is a desktop to open it on.
        #[arg(long)]
        no_browser: bool,
    },
}

/// The flags of the settings table that were given, keyed by config key: the flags are
/// declared from the table at run time, so they are read as a map rather than as fields.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(transparent)]
struct FlagLayer(Dict);

impl FromArgMatches for FlagLayer {
    fn from_arg_matches(matches: &ArgMatches) -> Result<FlagLayer, clap::Error> {
        settings::flag_layer(matches).map(FlagLayer)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        self.0.extend(settings::flag_layer(matches)?);
        Ok(())
    }
}

impl Args for FlagLayer {
    fn augment_args(command: clap::Command) -> clap::Command {
        settings::flags(command)
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        settings::flags(command)
    }
}
