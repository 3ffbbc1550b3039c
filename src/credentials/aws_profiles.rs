//! What `~/.aws/config` and `~/.aws/credentials` say, read once with aws-config's own profile
//! parser, so a failed credential chain can be explained in the files' terms: which profile was
//! selected, which profiles exist, which profile a role profile takes its keys from and which
//! profile signs in with SSO. aws-config turns a missing profile or `source_profile` into a
//! "not loaded" with only a sentence left of its typed `ProfileFileError`, and the chain then
//! goes on to instance metadata; the parsed files still say what is missing.

use std::borrow::Cow;
use std::collections::BTreeMap;

use aws_config::profile::ProfileSet;
use aws_types::os_shim_internal::{Env, Fs};

/// The facts about one profile the messages need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileFacts {
    /// `source_profile`: where a role profile takes its keys from.
    pub source_profile: Option<String>,
    /// `role_arn`: the role the profile assumes.
    pub role_arn: Option<String>,
    /// Whether the profile signs in with IAM Identity Center (`sso_session` or
    /// `sso_start_url`).
    pub sso: bool,
}

/// The profiles of the shared files and the one the chain reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsProfiles {
    selected: String,
    profiles: BTreeMap<String, ProfileFacts>,
}

/// Why a profile the chain needs is not in the files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MissingProfile {
    /// The selected profile (`--aws-profile`, `AWS_PROFILE`) itself.
    Selected {
        /// Its name.
        profile: String,
    },
    /// The `source_profile` a role profile names.
    Source {
        /// The role profile.
        profile: String,
        /// The `source_profile` it names.
        source_profile: String,
    },
}

impl AwsProfiles {
    /// Reads the files the SDK reads (`AWS_CONFIG_FILE`, `AWS_SHARED_CREDENTIALS_FILE`, else
    /// `~/.aws/…`), with `profile` (`--aws-profile`) over `AWS_PROFILE` and `default`. Files
    /// that do not exist or do not parse give no profiles: the chain reports those itself.
    pub async fn load(profile: Option<&str>) -> AwsProfiles {
        AwsProfiles::load_from(&Fs::real(), &Env::real(), profile).await
    }

    pub(super) async fn load_from(fs: &Fs, env: &Env, profile: Option<&str>) -> AwsProfiles {
        let selected_override = profile.map(|p| Cow::Owned(p.to_owned()));
        match aws_config::profile::load(fs, env, &Default::default(), selected_override).await {
            Ok(set) => AwsProfiles::from_set(&set),
            Err(error) => {
                tracing::debug!(error = %error, "the AWS profile files could not be read");
                AwsProfiles::unread(profile)
            }
        }
    }

    /// No files read: `selected` (or `default`) and no profiles, for clients built from a
    /// ready SDK configuration.
    pub fn unread(selected: Option<&str>) -> AwsProfiles {
        AwsProfiles {
            selected: selected.unwrap_or("default").to_owned(),
            profiles: BTreeMap::new(),
        }
    }

    fn from_set(set: &ProfileSet) -> AwsProfiles {
        let profiles = set
            .profiles()
            .filter_map(|name| {
                let profile = set.get_profile(name)?;
                let facts = ProfileFacts {
                    source_profile: profile.get("source_profile").map(str::to_owned),
                    role_arn: profile.get("role_arn").map(str::to_owned),
                    sso: profile.get("sso_session").is_some()
                        || profile.get("sso_start_url").is_some(),
                };
                Some((name.to_owned(), facts))
            })
            .collect();
        AwsProfiles {
            selected: set.selected_profile().to_owned(),
            profiles,
        }
    }

    /// The profile the chain reads.
    pub fn selected(&self) -> &str {
        &self.selected
    }

    /// Every profile name in the files, sorted, comma-separated, or `none` when there is none.
    pub fn names(&self) -> String {
        if self.profiles.is_empty() {
            return "none".to_owned();
        }
        self.profiles
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The profiles the chain walks: the selected one, then each `source_profile` of a role
    /// profile, as far as they exist (a loop ends the walk).
    fn walk(&self) -> Vec<(&str, &ProfileFacts)> {
        let mut walked: Vec<(&str, &ProfileFacts)> = Vec::new();
        let mut name = self.selected.as_str();
        while let Some((key, facts)) = self.profiles.get_key_value(name) {
            if walked.iter().any(|(seen, _)| *seen == key) {
                break;
            }
            walked.push((key.as_str(), facts));
            match (&facts.role_arn, &facts.source_profile) {
                (Some(_), Some(source)) => name = source,
                _ => break,
            }
        }
        walked
    }

    /// The first profile the chain needs that the files do not have. A missing `default` is
    /// not one: the SDK then treats the files as empty and goes on to the next link. Nor is
    /// any profile when the files have none (or were not read): that is the "no AWS
    /// credentials found" case, whose message says how to create one.
    pub fn missing(&self) -> Option<MissingProfile> {
        if self.profiles.is_empty() {
            return None;
        }
        if !self.profiles.contains_key(&self.selected) {
            return (self.selected != "default").then(|| MissingProfile::Selected {
                profile: self.selected.clone(),
            });
        }
        let (last, facts) = *self.walk().last()?;
        match (&facts.role_arn, &facts.source_profile) {
            (Some(_), Some(source)) if !self.profiles.contains_key(source) => {
                Some(MissingProfile::Source {
                    profile: last.to_owned(),
                    source_profile: source.clone(),
                })
            }
            _ => None,
        }
    }

    /// The profile of the chain that signs in with SSO (the selected one, or the
    /// `source_profile` a role profile takes its keys from), if any.
    pub fn sso_profile(&self) -> Option<&str> {
        self.walk()
            .into_iter()
            .find(|(_, facts)| facts.sso)
            .map(|(name, _)| name)
    }

    /// The `role_arn` of the first role profile of the chain.
    pub fn role_arn(&self) -> Option<&str> {
        self.walk()
            .into_iter()
            .find_map(|(_, facts)| facts.role_arn.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "\
[default]
region = us-east-1

[profile work]
sso_session = corp
sso_account_id = 123456789012
sso_role_name = Analyst

[sso-session corp]
sso_start_url = https://corp.awsapps.com/start
sso_region = us-east-1

[profile deploy]
role_arn = arn:aws:iam::123456789012:role/deploy
source_profile = work

[profile broken]
role_arn = arn:aws:iam::123456789012:role/deploy
source_profile = ghost

[profile loop-a]
role_arn = arn:aws:iam::123456789012:role/a
source_profile = loop-b

[profile loop-b]
role_arn = arn:aws:iam::123456789012:role/b
source_profile = loop-a
";

    const CREDENTIALS: &str = "\
[static]
aws_access_key_id = AKIDSTATIC
aws_secret_access_key = secret
";

    async fn profiles(selected: Option<&str>, aws_profile: Option<&str>) -> AwsProfiles {
        let home = tempfile::tempdir().expect("home");
        let aws = home.path().join(".aws");
        std::fs::create_dir(&aws).expect(".aws");
        std::fs::write(aws.join("config"), CONFIG).expect("config");
        std::fs::write(aws.join("credentials"), CREDENTIALS).expect("credentials");
        let home_text = home.path().display().to_string();
        let mut vars = vec![("HOME", home_text.as_str())];
        if let Some(p) = aws_profile {
            vars.push(("AWS_PROFILE", p));
        }
        AwsProfiles::load_from(&Fs::real(), &Env::from_slice(&vars), selected).await
    }

    #[tokio::test]
    async fn both_files_are_read_and_the_selected_profile_is_known() {
        let p = profiles(None, None).await;
        assert_eq!(p.selected(), "default");
        assert_eq!(
            p.names(),
            "broken, default, deploy, loop-a, loop-b, static, work"
        );
        assert_eq!(p.missing(), None);
        assert_eq!(profiles(None, Some("static")).await.selected(), "static");
        // --aws-profile wins over AWS_PROFILE.
        assert_eq!(
            profiles(Some("work"), Some("static")).await.selected(),
            "work"
        );
    }

    #[tokio::test]
    async fn a_missing_profile_is_named_but_a_missing_default_is_not() {
        let p = profiles(Some("nope"), None).await;
        assert_eq!(
            p.missing(),
            Some(MissingProfile::Selected {
                profile: "nope".to_owned()
            })
        );
        let empty = AwsProfiles::load_from(
            &Fs::real(),
            &Env::from_slice(&[("HOME", "/nonexistent-home-for-test")]),
            None,
        )
        .await;
        assert_eq!(empty.missing(), None);
        assert_eq!(empty.names(), "none");
        assert_eq!(AwsProfiles::unread(Some("nope")).missing(), None);
    }

    #[tokio::test]
    async fn a_missing_source_profile_is_named_with_the_profile_naming_it() {
        let p = profiles(Some("broken"), None).await;
        assert_eq!(
            p.missing(),
            Some(MissingProfile::Source {
                profile: "broken".to_owned(),
                source_profile: "ghost".to_owned()
            })
        );
        assert_eq!(profiles(Some("loop-a"), None).await.missing(), None);
    }

    #[tokio::test]
    async fn the_sso_profile_and_role_of_a_chain_are_found() {
        let p = profiles(Some("deploy"), None).await;
        assert_eq!(p.sso_profile(), Some("work"));
        assert_eq!(p.role_arn(), Some("arn:aws:iam::123456789012:role/deploy"));
        let p = profiles(Some("static"), None).await;
        assert_eq!(p.sso_profile(), None);
        assert_eq!(p.role_arn(), None);
    }
}
