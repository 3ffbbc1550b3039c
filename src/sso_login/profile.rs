//! Which IAM Identity Center sign-in a profile asks for, read from `~/.aws/config` with
//! aws-config's own parser, so `sso-login` sees the same profiles, `AWS_CONFIG_FILE` and
//! `AWS_PROFILE` as the proxy's credential chain does.
//!
//! Two forms exist, as `aws configure sso` writes them and `aws sso login` reads them:
//!
//! - the `sso-session` form: the profile says `sso_session = NAME`, and a `[sso-session NAME]`
//!   section holds `sso_start_url`, `sso_region` and optionally `sso_registration_scopes`;
//! - the legacy form: `sso_start_url` and `sso_region` in the profile itself.
//!
//! A role profile (`role_arn` with `source_profile`) that is neither is followed to its source
//! profile, whose SSO session the credential chain would use.

use std::borrow::Cow;

use aws_config::profile::ProfileSet;
use aws_runtime::env_config::file::EnvConfigFiles;
use aws_types::os_shim_internal::{Env, Fs};

/// The sign-in a profile asks for: what the device authorization flow needs and what the
/// token cache file is named after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoProfile {
    /// The profile's name, for messages.
    pub profile: String,
    /// The `sso-session` name; `None` for the legacy form. The token cache file is named
    /// after it when present, else after the start URL.
    pub session_name: Option<String>,
    /// The AWS access portal URL the user signs in to.
    pub start_url: String,
    /// The region of IAM Identity Center (and so of the SSO OIDC endpoint).
    pub region: String,
    /// `sso_registration_scopes`, split on commas: `None` when the key is absent (always for
    /// the legacy form), which the registration cache key tells apart from an empty list.
    pub registration_scopes: Option<Vec<String>>,
}

/// Why a profile cannot be signed in to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    /// The config files exist but cannot be read or parsed.
    #[error("cannot read the AWS config files (~/.aws/config, ~/.aws/credentials): {0}")]
    Load(String),
    /// No profile of that name.
    #[error(
        "there is no profile `{name}` in ~/.aws/config ({}); name one with --profile, or create it with `aws configure sso --profile {name}`",
        found_list(.found, "profiles")
    )]
    NoSuchProfile {
        /// The profile asked for.
        name: String,
        /// The profiles that exist, sorted.
        found: Vec<String>,
    },
    /// The profile has neither form of SSO settings.
    #[error(
        "profile `{name}` is not an SSO profile: it has neither `sso_session` nor `sso_start_url`; add `sso_session = NAME` and an `[sso-session NAME]` section with sso_start_url and sso_region (or run `aws configure sso --profile {name}`)"
    )]
    NotSso {
        /// The profile.
        name: String,
    },
    /// `sso_session` names a section that does not exist.
    #[error(
        "profile `{profile}` says sso_session = {session}, but there is no `[sso-session {session}]` section in ~/.aws/config ({})",
        found_list(.found, "sso-sessions")
    )]
    NoSuchSession {
        /// The profile.
        profile: String,
        /// The session it names.
        session: String,
        /// The sso-session sections that exist, sorted.
        found: Vec<String>,
    },
    /// A required setting is missing.
    #[error("{section} is missing {}: add it to ~/.aws/config", .missing.join(" and "))]
    Missing {
        /// `profile X` or `[sso-session X]`.
        section: String,
        /// The missing keys (`sso_start_url`, `sso_region`).
        missing: Vec<&'static str>,
    },
}

/// "profiles found: a, b" or "no profiles found".
fn found_list(found: &[String], what: &str) -> String {
    if found.is_empty() {
        format!("no {what} found")
    } else {
        format!("{what} found: {}", found.join(", "))
    }
}

/// Reads the profile named `profile`, else `AWS_PROFILE`, else `default`, from the real
/// config files.
pub async fn load(profile: Option<&str>) -> Result<SsoProfile, ProfileError> {
    load_from(&Fs::real(), &Env::real(), profile).await
}

/// [`load`] over given files and environment (tests give in-memory ones).
pub async fn load_from(
    fs: &Fs,
    env: &Env,
    profile: Option<&str>,
) -> Result<SsoProfile, ProfileError> {
    let set = aws_config::profile::load(
        fs,
        env,
        &EnvConfigFiles::default(),
        profile.map(|name| Cow::Owned(name.to_owned())),
    )
    .await
    .map_err(|e| ProfileError::Load(e.to_string()))?;
    from_profile_set(&set)
}

/// The selected profile's SSO settings.
fn from_profile_set(set: &ProfileSet) -> Result<SsoProfile, ProfileError> {
    let mut name = set.selected_profile();
    let mut profile = set.get_profile(name);
    // A role profile whose keys come from an SSO profile (`source_profile`): sign in for
    // that one, as the credential chain will use its session. A few hops at most, so a
    // cycle ends.
    for _ in 0..MAX_SOURCE_HOPS {
        let Some(current) = profile else { break };
        if is_sso(current) {
            break;
        }
        let Some(source) = current.get("source_profile").filter(|s| *s != name) else {
            break;
        };
        name = source;
        profile = set.get_profile(name);
    }
    let Some(profile) = profile else {
        return Err(ProfileError::NoSuchProfile {
            name: name.to_owned(),
            found: sorted(set.profiles()),
        });
    };
    if let Some(session_name) = profile.get("sso_session") {
        let Some(session) = set.sso_session(session_name) else {
            return Err(ProfileError::NoSuchSession {
                profile: name.to_owned(),
                session: session_name.to_owned(),
                found: sorted(set.sso_sessions()),
            });
        };
        let (start_url, region) = required(
            format!("[sso-session {session_name}]"),
            session.get("sso_start_url"),
            session.get("sso_region"),
        )?;
        return Ok(SsoProfile {
            profile: name.to_owned(),
            session_name: Some(session_name.to_owned()),
            start_url,
            region,
            registration_scopes: session.get("sso_registration_scopes").map(parse_scopes),
        });
    }
    if !is_sso(profile) {
        return Err(ProfileError::NotSso {
            name: name.to_owned(),
        });
    }
    let (start_url, region) = required(
        format!("profile `{name}`"),
        profile.get("sso_start_url"),
        profile.get("sso_region"),
    )?;
    Ok(SsoProfile {
        profile: name.to_owned(),
        session_name: None,
        start_url,
        region,
        registration_scopes: None,
    })
}

/// How many `source_profile` links are followed to an SSO profile.
const MAX_SOURCE_HOPS: usize = 4;

/// Whether a profile has SSO settings of either form.
fn is_sso(profile: &aws_config::profile::Profile) -> bool {
    ["sso_session", "sso_start_url", "sso_region"]
        .iter()
        .any(|key| profile.get(key).is_some())
}

/// Both values, or which are missing (an empty value counts as missing).
fn required(
    section: String,
    start_url: Option<&str>,
    region: Option<&str>,
) -> Result<(String, String), ProfileError> {
    let start_url = start_url.filter(|v| !v.is_empty());
    let region = region.filter(|v| !v.is_empty());
    match (start_url, region) {
        (Some(start_url), Some(region)) => Ok((start_url.to_owned(), region.to_owned())),
        _ => {
            let mut missing = Vec::new();
            if start_url.is_none() {
                missing.push("sso_start_url");
            }
            if region.is_none() {
                missing.push("sso_region");
            }
            Err(ProfileError::Missing { section, missing })
        }
    }
}

/// `sso_registration_scopes` as the AWS CLI reads it: split on commas, each trimmed, empty
/// ones dropped.
pub fn parse_scopes(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|scope| !scope.is_empty())
        .map(str::to_owned)
        .collect()
}

fn sorted<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut names: Vec<String> = names.map(str::to_owned).collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "\
[default]
region = us-west-2

[profile analytics]
sso_session = corp
sso_account_id = 123456789012
sso_role_name = RedshiftAnalyst

[sso-session corp]
sso_start_url = https://example.awsapps.com/start
sso_region = eu-west-1
sso_registration_scopes = sso:account:access, ,extra:scope

[profile legacy]
sso_start_url = https://legacy.awsapps.com/start
sso_region = us-east-1
sso_account_id = 123456789012
sso_role_name = RedshiftAnalyst

[profile keys]
aws_access_key_id = AKIDEXAMPLE

[profile dangling]
sso_session = missing

[profile half]
sso_start_url = https://half.awsapps.com/start

[profile unscoped]
sso_session = bare

[sso-session bare]
sso_start_url = https://bare.awsapps.com/start
sso_region = us-east-2

[sso-session broken]
sso_region = us-east-2

[profile uses-broken]
sso_session = broken

[profile deployer]
role_arn = arn:aws:iam::123456789012:role/deployer
source_profile = analytics

[profile chained]
role_arn = arn:aws:iam::123456789012:role/other
source_profile = deployer

[profile loop-a]
source_profile = loop-b

[profile loop-b]
source_profile = loop-a

[profile lost]
source_profile = nowhere
";

    async fn read(
        profile: Option<&str>,
        aws_profile: Option<&str>,
    ) -> Result<SsoProfile, ProfileError> {
        let fs = Fs::from_slice(&[("/home/me/.aws/config", CONFIG)]);
        let mut vars = vec![("HOME", "/home/me")];
        if let Some(name) = aws_profile {
            vars.push(("AWS_PROFILE", name));
        }
        load_from(&fs, &Env::from_slice(&vars), profile).await
    }

    #[tokio::test]
    async fn the_sso_session_form_takes_url_region_and_scopes_from_the_session() {
        let profile = read(Some("analytics"), None).await.unwrap();
        assert_eq!(
            profile,
            SsoProfile {
                profile: "analytics".to_owned(),
                session_name: Some("corp".to_owned()),
                start_url: "https://example.awsapps.com/start".to_owned(),
                region: "eu-west-1".to_owned(),
                registration_scopes: Some(vec![
                    "sso:account:access".to_owned(),
                    "extra:scope".to_owned()
                ]),
            }
        );
        let bare = read(Some("unscoped"), None).await.unwrap();
        assert_eq!(bare.session_name.as_deref(), Some("bare"));
        assert_eq!(bare.registration_scopes, None);
    }

    #[tokio::test]
    async fn the_legacy_form_takes_url_and_region_from_the_profile() {
        let profile = read(Some("legacy"), None).await.unwrap();
        assert_eq!(profile.session_name, None);
        assert_eq!(profile.start_url, "https://legacy.awsapps.com/start");
        assert_eq!(profile.region, "us-east-1");
        assert_eq!(profile.registration_scopes, None);
    }

    #[tokio::test]
    async fn aws_profile_picks_the_profile_when_none_is_named() {
        let profile = read(None, Some("legacy")).await.unwrap();
        assert_eq!(profile.profile, "legacy");
        let named = read(Some("analytics"), Some("legacy")).await.unwrap();
        assert_eq!(named.profile, "analytics");
        // Without either, `default`, which here has no SSO settings.
        assert_eq!(
            read(None, None).await.unwrap_err(),
            ProfileError::NotSso {
                name: "default".to_owned()
            }
        );
    }

    #[tokio::test]
    async fn each_mistake_has_its_own_message() {
        let error = read(Some("nope"), None).await.unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("no profile `nope`")
                && text.contains(
                    "profiles found: analytics, chained, dangling, default, deployer, half, keys, legacy, loop-a, loop-b, lost, unscoped, uses-broken"
                ),
            "{text}"
        );

        let text = read(Some("keys"), None).await.unwrap_err().to_string();
        assert!(text.contains("`keys` is not an SSO profile"), "{text}");

        let text = read(Some("dangling"), None).await.unwrap_err().to_string();
        assert!(
            text.contains("no `[sso-session missing]` section")
                && text.contains("sso-sessions found: bare, broken, corp"),
            "{text}"
        );

        let text = read(Some("half"), None).await.unwrap_err().to_string();
        assert_eq!(
            text,
            "profile `half` is missing sso_region: add it to ~/.aws/config"
        );

        let text = read(Some("uses-broken"), None)
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(
            text,
            "[sso-session broken] is missing sso_start_url: add it to ~/.aws/config"
        );
    }

    #[tokio::test]
    async fn a_role_profile_signs_in_for_its_sso_source_profile() {
        for role in ["deployer", "chained"] {
            let profile = read(Some(role), None).await.unwrap();
            assert_eq!(profile.profile, "analytics", "{role}");
            assert_eq!(profile.session_name.as_deref(), Some("corp"));
        }
        let text = read(Some("loop-a"), None).await.unwrap_err().to_string();
        assert!(text.contains("is not an SSO profile"), "{text}");
        let text = read(Some("lost"), None).await.unwrap_err().to_string();
        assert!(text.contains("there is no profile `nowhere`"), "{text}");
    }

    #[tokio::test]
    async fn no_config_file_lists_no_profiles() {
        let fs = Fs::from_slice(&[]);
        let env = Env::from_slice(&[("HOME", "/home/me")]);
        let text = load_from(&fs, &env, Some("analytics"))
            .await
            .unwrap_err()
            .to_string();
        assert!(text.contains("(no profiles found)"), "{text}");
    }

    #[test]
    fn scopes_are_split_trimmed_and_empty_ones_dropped() {
        assert_eq!(parse_scopes(" a ,b,, c"), vec!["a", "b", "c"]);
        assert!(parse_scopes(" , ").is_empty());
    }
}
