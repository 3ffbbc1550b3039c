//! The two JSON files `aws sso login` keeps in `~/.aws/sso/cache/`, with the field names and
//! date format the AWS CLI v2 writes (`SSOTokenFetcher` in its `awscli/botocore/utils.py`,
//! dates through `_sso_json_dumps` in `awscli/customizations/sso/utils.py`, i.e.
//! `%Y-%m-%dT%H:%M:%SZ` in UTC), and how they reach the disk: mode 0600 in a 0700
//! directory, written to a temporary file and renamed, so a reader never sees half a token.
//!
//! - The token file: `startUrl`, `region`, `accessToken`, `expiresAt`, then the client
//!   registration it was obtained with (`clientId`, `clientSecret`, `registrationExpiresAt`)
//!   and `refreshToken` when the service gave one. The SDKs' `sso-session` token providers
//!   read the registration and refresh token to renew the token without a new sign-in.
//! - The client registration file: `clientId`, `clientSecret`, `expiresAt`, and `scopes`
//!   when there are any. The CLI reuses it until 15 minutes before it expires, and so does
//!   `sso-login`; one written for the authorization code flow (`grantTypes` listing
//!   `authorization_code`) is left to the CLI, as the CLI's device flow does.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use serde::{Deserialize, Serialize};

use crate::credentials::Secret;

/// A registration this close to its end is registered anew (the CLI's `_EXPIRY_WINDOW`).
pub const REGISTRATION_EXPIRY_WINDOW: Duration = Duration::from_secs(15 * 60);

/// The token cache directory under a home directory.
pub fn cache_dir(home: &Path) -> PathBuf {
    home.join(".aws").join("sso").join("cache")
}

/// A client registration from SSO OIDC `RegisterClient`.
#[derive(Debug)]
pub struct Registration {
    /// The client id.
    pub client_id: String,
    /// The client secret, needed with the id for every later call.
    pub client_secret: Secret,
    /// When the secret stops working (`clientSecretExpiresAt`).
    pub expires_at: SystemTime,
    /// The scopes it was registered with, if any.
    pub scopes: Option<Vec<String>>,
}

/// A token from SSO OIDC `CreateToken`, with what the cache file records beside it.
#[derive(Debug)]
pub struct CachedToken<'a> {
    /// The access portal URL.
    pub start_url: &'a str,
    /// The IAM Identity Center region.
    pub region: &'a str,
    /// The bearer token the SSO portal accepts.
    pub access_token: Secret,
    /// When it stops working.
    pub expires_at: SystemTime,
    /// The registration it was obtained with.
    pub registration: &'a Registration,
    /// The refresh token, when the service gave one.
    pub refresh_token: Option<Secret>,
}

#[derive(Serialize)]
struct TokenFile<'a> {
    #[serde(rename = "startUrl")]
    start_url: &'a str,
    region: &'a str,
    #[serde(rename = "accessToken")]
    access_token: &'a str,
    #[serde(rename = "expiresAt")]
    expires_at: String,
    #[serde(rename = "clientId")]
    client_id: &'a str,
    #[serde(rename = "clientSecret")]
    client_secret: &'a str,
    #[serde(rename = "registrationExpiresAt")]
    registration_expires_at: String,
    #[serde(rename = "refreshToken", skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
}

#[derive(Serialize, Deserialize)]
struct RegistrationFile {
    #[serde(rename = "clientId")]
    client_id: String,
    #[serde(rename = "clientSecret")]
    client_secret: String,
    #[serde(rename = "expiresAt")]
    expires_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scopes: Option<Vec<String>>,
    #[serde(rename = "grantTypes", default, skip_serializing)]
    grant_types: Option<Vec<String>>,
}

/// The token file's contents (a secret: it holds the token).
pub fn token_json(token: &CachedToken<'_>) -> Secret {
    let file = TokenFile {
        start_url: token.start_url,
        region: token.region,
        access_token: token.access_token.expose(),
        expires_at: format_utc(token.expires_at),
        client_id: &token.registration.client_id,
        client_secret: token.registration.client_secret.expose(),
        registration_expires_at: format_utc(token.registration.expires_at),
        refresh_token: token.refresh_token.as_ref().map(Secret::expose),
    };
    Secret::new(json_text(&file))
}

/// The registration file's contents (a secret: it holds the client secret).
pub fn registration_json(registration: &Registration) -> Secret {
    let file = RegistrationFile {
        client_id: registration.client_id.clone(),
        client_secret: registration.client_secret.expose().to_owned(),
        expires_at: format_utc(registration.expires_at),
        scopes: registration.scopes.clone().filter(|s| !s.is_empty()),
        grant_types: None,
    };
    Secret::new(json_text(&file))
}

fn json_text(value: &impl Serialize) -> String {
    // Serialising strings and a list of strings into a String cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

/// A cached registration that may still be used at `now`: it parses, is for the device
/// flow and has more than [`REGISTRATION_EXPIRY_WINDOW`] left. Anything else is `None`, and
/// the caller registers anew, as the CLI does.
pub fn usable_registration(text: &str, now: SystemTime) -> Option<Registration> {
    let file: RegistrationFile = serde_json::from_str(text).ok()?;
    let for_auth_code = file
        .grant_types
        .as_ref()
        .is_some_and(|grants| grants.iter().any(|g| g == "authorization_code"));
    if for_auth_code {
        return None;
    }
    let expires_at = parse_utc(&file.expires_at)?;
    if expires_at < now + REGISTRATION_EXPIRY_WINDOW {
        return None;
    }
    Some(Registration {
        client_id: file.client_id,
        client_secret: Secret::new(file.client_secret),
        expires_at,
        scopes: file.scopes,
    })
}

/// `YYYY-MM-DDTHH:MM:SSZ` in UTC, whole seconds, as the CLI writes dates.
pub fn format_utc(time: SystemTime) -> String {
    let seconds = match time.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    };
    DateTime::from_secs(seconds)
        .fmt(Format::DateTime)
        .unwrap_or_default()
}

/// An RFC 3339 date, or the `…UTC` form older CLI versions wrote (`%Z` of a UTC time).
pub fn parse_utc(text: &str) -> Option<SystemTime> {
    let text = match text.strip_suffix("UTC") {
        Some(stem) => format!("{stem}Z"),
        None => text.to_owned(),
    };
    let date = DateTime::from_str(&text, Format::DateTime).ok()?;
    SystemTime::try_from(date).ok()
}

/// Writes `contents` to `dir/name` so that no reader sees a partial file: into a temporary
/// file of mode 0600 beside it, synced, then renamed over the old one. `dir` and its missing
/// parents are created with mode 0700.
pub fn write_private(dir: &Path, name: &str, contents: &Secret) -> std::io::Result<PathBuf> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let path = dir.join(name);
    let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    // A file left by a run of the same process id that was killed mid-write.
    match std::fs::remove_file(&temporary) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(contents.expose().as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, &path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(e);
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn registration(expires_at: SystemTime) -> Registration {
        Registration {
            client_id: "client-1".to_owned(),
            client_secret: Secret::new("client-secret-1"),
            expires_at,
            scopes: Some(vec!["sso:account:access".to_owned()]),
        }
    }

    #[test]
    fn dates_are_utc_whole_seconds_with_a_z() {
        // 2024-02-29T12:34:56Z is 1709210096 (date -u -d 2024-02-29T12:34:56Z +%s).
        assert_eq!(format_utc(at(1_709_210_096)), "2024-02-29T12:34:56Z");
        assert_eq!(
            format_utc(at(1_709_210_096) + Duration::from_millis(999)),
            "2024-02-29T12:34:56Z"
        );
        assert_eq!(parse_utc("2024-02-29T12:34:56Z"), Some(at(1_709_210_096)));
        assert_eq!(parse_utc("2024-02-29T12:34:56UTC"), Some(at(1_709_210_096)));
        assert_eq!(parse_utc("yesterday"), None);
    }

    #[test]
    fn the_token_file_has_the_clis_fields() {
        let registration = registration(at(1_709_210_096));
        let token = CachedToken {
            start_url: "https://example.awsapps.com/start",
            region: "eu-west-1",
            access_token: Secret::new("access-1"),
            expires_at: at(1_700_000_000),
            registration: &registration,
            refresh_token: Some(Secret::new("refresh-1")),
        };
        let text = token_json(&token);
        assert_eq!(
            text.expose(),
            r#"{"startUrl":"https://example.awsapps.com/start","region":"eu-west-1","accessToken":"access-1","expiresAt":"2023-11-14T22:13:20Z","clientId":"client-1","clientSecret":"client-secret-1","registrationExpiresAt":"2024-02-29T12:34:56Z","refreshToken":"refresh-1"}"#
        );
        let without_refresh = CachedToken {
            refresh_token: None,
            ..token
        };
        assert!(
            !token_json(&without_refresh)
                .expose()
                .contains("refreshToken")
        );
    }

    #[test]
    fn the_registration_file_has_the_clis_fields_and_reads_back() {
        let now = at(1_700_000_000);
        let fresh = registration(now + Duration::from_secs(90 * 86_400));
        let text = registration_json(&fresh);
        assert_eq!(
            text.expose(),
            r#"{"clientId":"client-1","clientSecret":"client-secret-1","expiresAt":"2024-02-12T22:13:20Z","scopes":["sso:account:access"]}"#
        );
        let back = usable_registration(text.expose(), now).expect("usable");
        assert_eq!(back.client_id, "client-1");
        assert_eq!(back.client_secret.expose(), "client-secret-1");
        assert_eq!(back.expires_at, fresh.expires_at);
        assert_eq!(back.scopes, fresh.scopes);

        let unscoped = Registration {
            scopes: None,
            ..registration(now)
        };
        assert!(!registration_json(&unscoped).expose().contains("scopes"));
    }

    #[test]
    fn stale_or_foreign_registrations_are_not_reused() {
        let now = at(1_700_000_000);
        let expiring = registration(now + Duration::from_secs(14 * 60));
        assert!(usable_registration(registration_json(&expiring).expose(), now).is_none());
        let enough = registration(now + Duration::from_secs(16 * 60));
        assert!(usable_registration(registration_json(&enough).expose(), now).is_some());

        let auth_code = r#"{"clientId":"c","clientSecret":"s","expiresAt":"2030-01-01T00:00:00Z","scopes":["sso:account:access"],"grantTypes":["authorization_code","refresh_token"]}"#;
        assert!(usable_registration(auth_code, now).is_none());
        let device = r#"{"clientId":"c","clientSecret":"s","expiresAt":"2030-01-01T00:00:00UTC"}"#;
        assert!(usable_registration(device, now).is_some());
        assert!(usable_registration("{not json", now).is_none());
        assert!(usable_registration(r#"{"clientId":"c"}"#, now).is_none());
    }

    #[test]
    fn files_are_private_and_replaced_whole() {
        let home = tempfile::tempdir().unwrap();
        let dir = cache_dir(home.path());
        let path = write_private(&dir, "a.json", &Secret::new("first")).unwrap();
        assert_eq!(path, dir.join("a.json"));
        write_private(&dir, "a.json", &Secret::new("second")).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "second");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&home.path().join(".aws")), 0o700);
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["a.json"], "no temporary file is left");
    }
}
