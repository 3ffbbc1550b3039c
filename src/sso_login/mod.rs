//! `redshift-auth-proxy sso-login [--profile NAME]`: signs in to IAM Identity Center as
//! `aws sso login` does, for machines without the AWS CLI. It reads the profile's SSO
//! settings ([`profile`]), runs the device authorization flow ([`device_flow`]) and writes
//! the token where the AWS CLI writes it ([`cache_key`], [`cache_file`]), so the proxy's
//! credential chain, the AWS CLI and the other SDKs all use the same sign-in.

pub mod cache_file;
pub mod cache_key;
pub mod device_flow;
pub mod profile;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use cache_file::{CachedToken, Registration};
use device_flow::{Authorization, FlowError, OidcClient};
use profile::{ProfileError, SsoProfile};

/// What the command was asked to do.
#[derive(Debug, Clone, Default)]
pub struct SsoLoginOptions {
    /// The profile; `AWS_PROFILE`, else `default`, when `None`.
    pub profile: Option<String>,
    /// Open the verification page with `xdg-open` (`open` on macOS) as well as printing it.
    pub open_browser: bool,
}

/// Whether this process can show a browser: always on macOS, and elsewhere when a graphical
/// session is set (`DISPLAY` or `WAYLAND_DISPLAY`). On a server or over plain SSH there is none,
/// and the page is only printed, for the user to open on any device.
pub fn has_desktop() -> bool {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    cfg!(target_os = "macos") || set("DISPLAY") || set("WAYLAND_DISPLAY")
}

/// A finished sign-in.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// The profile signed in for.
    pub profile: String,
    /// The token cache file written.
    pub token_file: PathBuf,
    /// When the token stops working.
    pub expires_at: SystemTime,
}

/// Why no token was written; each message says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum SsoLoginError {
    /// The profile cannot be signed in to.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// Without a home directory there is no `~/.aws/sso/cache` that the SDKs would read.
    #[error(
        "HOME is not set: the token goes to $HOME/.aws/sso/cache, where the AWS SDKs look for it"
    )]
    NoHome,
    /// The user refused on the verification page.
    #[error(
        "{flow}: no token was written; run `redshift-auth-proxy sso-login --profile {profile}` again and choose Allow, signed in as a user assigned to {start_url}"
    )]
    Denied {
        /// The profile.
        profile: String,
        /// The access portal.
        start_url: String,
        /// What the service said.
        flow: FlowError,
    },
    /// Nobody approved the code in time.
    #[error(
        "the sign-in code {user_code} expired before it was approved: no token was written; run `redshift-auth-proxy sso-login --profile {profile}` again and approve the code within {}",
        minutes(*.lifetime)
    )]
    Expired {
        /// The profile.
        profile: String,
        /// The code that expired.
        user_code: String,
        /// How long it was valid.
        lifetime: std::time::Duration,
    },
    /// A call to IAM Identity Center failed.
    #[error("IAM Identity Center (SSO OIDC, region {region}): {flow}")]
    Service {
        /// The sso_region.
        region: String,
        /// The call and its error.
        flow: FlowError,
    },
    /// The cache file could not be written.
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Signs in for `options.profile` and writes the token cache file, talking to the user on
/// `prompt` (stderr in the binary).
pub async fn run(
    options: &SsoLoginOptions,
    prompt: &mut (dyn Write + Send),
) -> Result<SignedIn, SsoLoginError> {
    let home = std::env::var_os("HOME")
        .filter(|home| !home.is_empty())
        .ok_or(SsoLoginError::NoHome)?;
    let profile = profile::load(options.profile.as_deref()).await?;
    let dir = cache_file::cache_dir(Path::new(&home));
    let client = OidcClient::new(&profile.region, options.profile.as_deref()).await;
    let service_error = |flow| SsoLoginError::Service {
        region: profile.region.clone(),
        flow,
    };

    let (mut registration, mut cached) = match cached_registration(&dir, &profile) {
        Some(registration) => (registration, true),
        None => (register(&client, &dir, &profile).await?, false),
    };
    let authorization = loop {
        match client.start(&registration, &profile.start_url).await {
            Ok(authorization) => break authorization,
            // A cached registration the service no longer knows: register anew, once.
            Err(FlowError::Call {
                invalid_client: true,
                ..
            }) if cached => {
                registration = register(&client, &dir, &profile).await?;
                cached = false;
            }
            Err(flow) => return Err(service_error(flow)),
        }
    };

    let token = client
        .wait_for_token(&registration, &authorization, |authorization| {
            tell_user(prompt, &profile, authorization, options.open_browser)
        })
        .await
        .map_err(|flow| match flow {
            FlowError::Denied(_) => SsoLoginError::Denied {
                profile: profile.profile.clone(),
                start_url: profile.start_url.clone(),
                flow,
            },
            FlowError::Expired => SsoLoginError::Expired {
                profile: profile.profile.clone(),
                user_code: authorization.user_code.clone(),
                lifetime: authorization.expires_in,
            },
            flow => service_error(flow),
        })?;

    let contents = cache_file::token_json(&CachedToken {
        start_url: &profile.start_url,
        region: &profile.region,
        access_token: token.access_token,
        expires_at: token.expires_at,
        registration: &registration,
        refresh_token: token.refresh_token,
    });
    let token_file = write(&dir, &cache_key::token_file_name(&profile), &contents)?;
    Ok(SignedIn {
        profile: profile.profile,
        token_file,
        expires_at: token.expires_at,
    })
}

/// The registration the CLI (or an earlier run) cached for this profile, if still usable.
fn cached_registration(dir: &Path, profile: &SsoProfile) -> Option<Registration> {
    let path = dir.join(cache_key::registration_file_name(profile));
    let text = std::fs::read_to_string(path).ok()?;
    cache_file::usable_registration(&text, SystemTime::now())
}

/// Registers a client and caches the registration where the CLI would.
async fn register(
    client: &OidcClient,
    dir: &Path,
    profile: &SsoProfile,
) -> Result<Registration, SsoLoginError> {
    let name = client_name(profile, SystemTime::now());
    let registration = client
        .register(&name, profile.registration_scopes.as_deref())
        .await
        .map_err(|flow| SsoLoginError::Service {
            region: profile.region.clone(),
            flow,
        })?;
    let contents = cache_file::registration_json(&registration);
    write(dir, &cache_key::registration_file_name(profile), &contents)?;
    Ok(registration)
}

fn write(
    dir: &Path,
    name: &str,
    contents: &crate::credentials::Secret,
) -> Result<PathBuf, SsoLoginError> {
    cache_file::write_private(dir, name, contents).map_err(|source| SsoLoginError::Write {
        path: dir.join(name),
        source,
    })
}

/// The client name shown in IAM Identity Center: the tool and the sso-session, or the time
/// of registration for the legacy form (as the CLI names its `botocore-client-…`).
fn client_name(profile: &SsoProfile, now: SystemTime) -> String {
    match &profile.session_name {
        Some(session) => format!("redshift-auth-proxy-{session}"),
        None => format!(
            "redshift-auth-proxy-{}",
            now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
        ),
    }
}

/// Tells the user where to approve the sign-in, and opens a browser when asked to.
fn tell_user(
    prompt: &mut (dyn Write + Send),
    profile: &SsoProfile,
    authorization: &Authorization,
    open_browser: bool,
) {
    // The prompt is best effort: a closed stderr must not stop a sign-in that may still
    // be approved from another device.
    let _ = write!(
        prompt,
        "To sign in to IAM Identity Center for profile `{}` ({}), open this page in a browser on any device:\n\n    {}\n\nand check that it shows the code {} (or open {} and type the code).\nWaiting for approval; the code expires in {}.\n",
        profile.profile,
        profile.start_url,
        authorization.verification_uri_complete,
        authorization.user_code,
        authorization.verification_uri,
        minutes(authorization.expires_in),
    );
    if open_browser && let Err(why) = open_in_browser(&authorization.verification_uri_complete) {
        let _ = writeln!(
            prompt,
            "Could not open a browser ({why}); open the page above yourself."
        );
    }
    let _ = prompt.flush();
}

/// "10 minutes", "1 minute": a code's lifetime, rounded up.
fn minutes(lifetime: std::time::Duration) -> String {
    match lifetime.as_secs().div_ceil(60) {
        1 => "1 minute".to_owned(),
        n => format!("{n} minutes"),
    }
}

/// Hands the URL to the desktop's opener, without a shell.
fn open_in_browser(url: &str) -> std::io::Result<()> {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let mut child = std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| std::io::Error::new(e.kind(), format!("{opener}: {e}")))?;
    // Reaped in the background: the opener may outlive the wait for approval.
    std::thread::spawn(move || child.wait());
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn client_names_say_which_tool_and_session() {
        let mut profile = SsoProfile {
            profile: "p".to_owned(),
            session_name: Some("corp".to_owned()),
            start_url: "https://example.awsapps.com/start".to_owned(),
            region: "us-east-1".to_owned(),
            registration_scopes: None,
        };
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(client_name(&profile, now), "redshift-auth-proxy-corp");
        profile.session_name = None;
        assert_eq!(client_name(&profile, now), "redshift-auth-proxy-1700000000");
    }

    #[test]
    fn lifetimes_read_in_whole_minutes() {
        assert_eq!(minutes(Duration::from_secs(600)), "10 minutes");
        assert_eq!(minutes(Duration::from_secs(599)), "10 minutes");
        assert_eq!(minutes(Duration::from_secs(2)), "1 minute");
    }
}
