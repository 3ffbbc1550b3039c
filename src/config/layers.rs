//! The configuration layers, lowest first: built-in defaults < the `--config` file (TOML) <
//! `REDSHIFT_AUTH_PROXY_*` environment variables < command-line flags. A higher layer replaces
//! a value rather than appending to it, so `--upstream-ca` replaces the file's list.

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};

use super::cli::Cli;
use super::error::ConfigError;
use super::settings::{self, Settings};
use super::table::ENV_PREFIX;

/// The settings every layer agrees on for `cli`, with the file and the environment as the
/// process sees them.
pub(super) fn merge(cli: &Cli) -> Result<Settings, ConfigError> {
    Ok(figment(cli).extract()?)
}

/// The layered figment. The config file's own variable is read by clap, not merged.
fn figment(cli: &Cli) -> Figment {
    let mut figment = Figment::from(Serialized::defaults(settings::defaults()));
    if let Some(path) = &cli.config {
        figment = figment.merge(Toml::file_exact(path));
    }
    figment
        .merge(Env::prefixed(ENV_PREFIX).ignore(&["config"]))
        .merge(Serialized::defaults(cli))
}
