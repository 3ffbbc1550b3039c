//! The machinery behind the settings table: from one entry per setting, `settings!` makes
//! the command-line flag, the config-file key, the environment variable, the built-in default,
//! the `--help` line and the typed field that validation reads, so no two of them can drift.
//!
//! An entry is its help text as doc comments, then `key: kind = "default", "VALUE_NAME";`:
//! - `value<T> = "default"`: one value with a default, written the way the environment
//!   would give it;
//! - `optional<T>`: one value or nothing, optionally `unset "what nothing means"` for `--help`;
//! - `duration = "default"`: a duration (`10s`, `500ms`, a bare number of seconds), checked in
//!   validation so the message can name the setting;
//! - `list<T>`: a repeatable flag, a list in the file, one value in the environment;
//! - `switch`: a flag without a value, `true`/`false` in the file and environment.

use std::convert::Infallible;

use figment::value::{Tag, Value};
use serde::{Deserialize, Deserializer, Serialize};

/// Every environment variable of a setting starts with this.
pub(super) const ENV_PREFIX: &str = "REDSHIFT_AUTH_PROXY_";

/// One layered setting as users meet it. The table is public data so that documentation can
/// be checked against what the proxy actually reads rather than against another copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettingDoc {
    /// The key in the `--config` file, e.g. `connect_timeout`.
    pub key: &'static str,
    /// The command-line flag, e.g. `--connect-timeout`.
    pub flag: &'static str,
    /// The environment variable, e.g. `REDSHIFT_AUTH_PROXY_CONNECT_TIMEOUT`.
    pub env: &'static str,
    /// The placeholder `--help` shows for the value; `None` for switches, which take none.
    pub value_name: Option<&'static str>,
    /// The value used when no layer sets one, or what leaving it unset means (`one per CPU`).
    pub default: Option<&'static str>,
    /// What the setting is for, with an example; `--help` shows it.
    pub help: &'static str,
}

impl SettingDoc {
    /// The `--help` line: the help text, then the default and the environment variable in
    /// clap's bracket style, since clap itself never sees either.
    pub(super) fn help_line(&self) -> String {
        let mut line = self.help.to_owned();
        if let Some(default) = self.default {
            line.push_str(&format!(" [default: {default}]"));
        }
        line.push_str(&format!(" [env: {}]", self.env));
        line
    }

    /// The clap argument of this setting, before its kind adds the action and value parser.
    /// It has no clap default: a flag that was not given must not override lower layers.
    pub(super) fn arg(&'static self) -> clap::Arg {
        clap::Arg::new(self.key)
            .long(self.flag.trim_start_matches('-'))
            .value_name(self.value_name)
            .help(self.help_line())
    }
}

/// Respells a setting key at compile time: `prefix` followed by the key with `_` turned into
/// `-` (flags), or upper-cased (environment variables).
pub(super) const fn respell<const N: usize>(prefix: &str, key: &str, upper: bool) -> [u8; N] {
    let (prefix, key) = (prefix.as_bytes(), key.as_bytes());
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = if i < prefix.len() {
            prefix[i]
        } else if upper {
            key[i - prefix.len()].to_ascii_uppercase()
        } else if key[i - prefix.len()] == b'_' {
            b'-'
        } else {
            key[i - prefix.len()]
        };
        i += 1;
    }
    out
}

/// `respell` as a `&'static str`, usable in constants.
macro_rules! respelled {
    ($prefix:expr, $key:ident, $upper:literal) => {{
        const KEY: &str = stringify!($key);
        const BYTES: [u8; $prefix.len() + KEY.len()] =
            $crate::config::table::respell($prefix, KEY, $upper);
        match std::str::from_utf8(&BYTES) {
            Ok(text) => text,
            Err(_) => panic!("setting keys are ASCII"),
        }
    }};
}

/// `Some` of the one token given, `None` for none: for the optional parts of an entry.
macro_rules! some_or_none {
    () => {
        None
    };
    ($value:expr) => {
        Some($value)
    };
}

/// The field type validation reads for each kind.
macro_rules! merged_type {
    (value<$ty:ty>) => { $ty };
    (optional<$ty:ty>) => { Option<$ty> };
    (duration) => { $crate::config::table::DurationText };
    (list<$ty:ty>) => { $crate::config::table::OneOrMany<$ty> };
    (switch) => { bool };
}

/// The built-in default layer's value for each kind; a `value` or `duration` entry without a
/// default matches no rule, so it cannot compile.
macro_rules! default_value {
    (value = $default:literal) => {
        Some($crate::config::table::text_value($default))
    };
    (duration = $default:literal) => {
        Some($crate::config::table::text_value($default))
    };
    (optional) => {
        None
    };
    (list) => {
        Some($crate::config::table::empty_list())
    };
    (switch) => {
        Some(figment::value::Value::from(false))
    };
}

/// Completes the clap argument for each kind.
macro_rules! kind_arg {
    (value<$ty:ty>, $arg:expr) => {
        $arg.action(clap::ArgAction::Set)
            .value_parser(clap::value_parser!($ty))
    };
    (optional<$ty:ty>, $arg:expr) => {
        $arg.action(clap::ArgAction::Set)
            .value_parser(clap::value_parser!($ty))
    };
    (duration, $arg:expr) => {
        $arg.action(clap::ArgAction::Set)
            .value_parser(clap::value_parser!(String))
    };
    (list<$ty:ty>, $arg:expr) => {
        $arg.action(clap::ArgAction::Append)
            .value_parser(clap::value_parser!($ty))
    };
    (switch, $arg:expr) => {
        $arg.action(clap::ArgAction::SetTrue)
    };
}

/// The flag's value as the top configuration layer sees it; `None` when the flag was not
/// given, so the lower layers keep theirs.
macro_rules! flag_value {
    (value<$ty:ty>, $matches:expr, $id:expr) => {
        $crate::config::table::one::<$ty>($matches, $id)
    };
    (optional<$ty:ty>, $matches:expr, $id:expr) => {
        $crate::config::table::one::<$ty>($matches, $id)
    };
    (duration, $matches:expr, $id:expr) => {
        $crate::config::table::one::<String>($matches, $id)
    };
    (list<$ty:ty>, $matches:expr, $id:expr) => {
        $crate::config::table::many::<$ty>($matches, $id)
    };
    (switch, $matches:expr, $id:expr) => {
        $crate::config::table::switch($matches, $id)
    };
}

/// Declares every layered setting once; see the module comment for the entry syntax.
macro_rules! settings {
    ($(
        $(#[doc = $doc:literal])+
        $key:ident: $kind:ident $(<$ty:ty>)?
            $(= $default:literal)? $(unset $unset:literal)? $(, $value_name:literal)?;
    )*) => {
        /// Every layered setting, in `--help` order.
        pub const SETTINGS: &[SettingDoc] = &[$(
            SettingDoc {
                key: stringify!($key),
                flag: respelled!("--", $key, false),
                env: respelled!($crate::config::table::ENV_PREFIX, $key, true),
                value_name: some_or_none!($($value_name)?),
                default: some_or_none!($($default)? $($unset)?),
                help: concat!($($doc),+).trim_ascii(),
            },
        )*];

        /// Each setting's place in [`SETTINGS`].
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy)]
        enum Position {
            $($key,)*
        }

        /// The merged layers before validation; the field names are the config-file keys.
        #[derive(Debug, serde::Deserialize)]
        pub(super) struct Settings {
            $(pub(super) $key: merged_type!($kind $(<$ty>)?),)*
            /// Positional targets from the command line.
            #[serde(default)]
            pub(super) targets: Vec<String>,
            /// `[[target]]` tables from the config file.
            #[serde(default)]
            pub(super) target: Vec<std::collections::BTreeMap<String, figment::value::Value>>,
        }

        /// The built-in defaults, the lowest layer.
        pub(super) fn defaults() -> figment::value::Dict {
            let mut layer = figment::value::Dict::new();
            $(
                if let Some(value) = default_value!($kind $(= $default)?) {
                    layer.insert(stringify!($key).to_owned(), value);
                }
            )*
            layer
        }

        /// Adds one flag per setting to the command line.
        pub(super) fn flags(command: clap::Command) -> clap::Command {
            command $(.arg(kind_arg!(
                $kind $(<$ty>)?,
                SETTINGS[Position::$key as usize].arg()
            )))*
        }

        /// The flags that were given, as the top configuration layer.
        pub(super) fn flag_layer(
            matches: &clap::ArgMatches,
        ) -> Result<figment::value::Dict, clap::Error> {
            let mut layer = figment::value::Dict::new();
            $(
                if let Some(value) = flag_value!($kind $(<$ty>)?, matches, stringify!($key))? {
                    layer.insert(stringify!($key).to_owned(), value);
                }
            )*
            Ok(layer)
        }
    };
}

/// A default written as text, read exactly as figment reads an environment variable, so the
/// default `--help` shows is also what `REDSHIFT_AUTH_PROXY_<KEY>=<default>` would set.
pub(super) fn text_value(text: &str) -> Value {
    text.parse()
        .unwrap_or_else(|never: Infallible| match never {})
}

/// The default of a list: empty.
pub(super) fn empty_list() -> Value {
    Value::Array(Tag::Default, Vec::new())
}

/// A single-valued flag's value, if given.
pub(super) fn one<T: Serialize + Clone + Send + Sync + 'static>(
    matches: &clap::ArgMatches,
    id: &str,
) -> Result<Option<Value>, clap::Error> {
    matches
        .try_get_one::<T>(id)
        .map_err(internal)?
        .map(layer_value)
        .transpose()
}

/// A repeatable flag's values, if given at all.
pub(super) fn many<T: Serialize + Clone + Send + Sync + 'static>(
    matches: &clap::ArgMatches,
    id: &str,
) -> Result<Option<Value>, clap::Error> {
    matches
        .try_get_many::<T>(id)
        .map_err(internal)?
        .map(|values| layer_value(values.collect::<Vec<_>>()))
        .transpose()
}

/// `true` when a switch was given; nothing otherwise, so a `true` from a lower layer stays.
pub(super) fn switch(matches: &clap::ArgMatches, id: &str) -> Result<Option<Value>, clap::Error> {
    let given = matches.try_get_one::<bool>(id).map_err(internal)?;
    Ok(given.copied().unwrap_or(false).then(|| Value::from(true)))
}

/// A parsed flag value as a figment value (addresses and paths become strings, as they are
/// written in the file).
fn layer_value<T: Serialize>(value: T) -> Result<Value, clap::Error> {
    Value::serialize(value).map_err(|e| clap::Error::raw(clap::error::ErrorKind::InvalidValue, e))
}

/// A mismatch between an argument and how it is read: a bug in the table machinery, reported
/// as a clap error rather than a panic.
fn internal(error: clap::parser::MatchesError) -> clap::Error {
    clap::Error::raw(clap::error::ErrorKind::InvalidValue, error)
}

/// A duration as written: a number of seconds or text with a unit. It stays text until
/// validation, so the refusal can name the setting it came from.
#[derive(Debug, Clone)]
pub(super) struct DurationText(pub(super) String);

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<DurationText, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(f64),
            Text(String),
        }
        Ok(DurationText(match Raw::deserialize(deserializer)? {
            Raw::Number(n) => format!("{n}s"),
            Raw::Text(s) => s,
        }))
    }
}

/// A list that may also be written as one value: an environment variable holds one string,
/// while the file may give a list.
#[derive(Debug, Clone)]
pub(super) struct OneOrMany<T>(pub(super) Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<OneOrMany<T>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw<T> {
            One(T),
            Many(Vec<T>),
        }
        Ok(OneOrMany(match Raw::deserialize(deserializer)? {
            Raw::One(value) => vec![value],
            Raw::Many(values) => values,
        }))
    }
}
