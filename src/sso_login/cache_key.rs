//! The names of the files in `~/.aws/sso/cache/`, computed as the AWS CLI v2 computes them
//! (`BaseSSOTokenFetcher._token_cache_key` and `_registration_cache_key` in its
//! `awscli/botocore/utils.py`), so the CLI, the SDKs and the proxy find each other's files:
//!
//! - the token: SHA-1 hex of the `sso-session` name, or of the start URL for the legacy form;
//! - the client registration: SHA-1 hex of Python's `json.dumps` of `{"tool": "botocore",
//!   "startUrl", "region", "scopes", "session_name"}` with sorted keys, byte for byte.

use sha1::{Digest, Sha1};

use super::profile::SsoProfile;

/// The token cache file name (`<sha1 hex>.json`) for `profile`.
pub fn token_file_name(profile: &SsoProfile) -> String {
    let key = profile
        .session_name
        .as_deref()
        .unwrap_or(&profile.start_url);
    format!("{}.json", sha1_hex(key.as_bytes()))
}

/// The client registration cache file name (`<sha1 hex>.json`) for `profile`.
pub fn registration_file_name(profile: &SsoProfile) -> String {
    format!(
        "{}.json",
        sha1_hex(registration_key_text(profile).as_bytes())
    )
}

/// What the CLI hashes for the registration: `json.dumps(args, sort_keys=True)` with Python's
/// default separators (`", "`, `": "`) and ASCII-only escaping.
fn registration_key_text(profile: &SsoProfile) -> String {
    let scopes = match &profile.registration_scopes {
        None => "null".to_owned(),
        Some(scopes) => {
            let items: Vec<String> = scopes.iter().map(|s| python_json_string(s)).collect();
            format!("[{}]", items.join(", "))
        }
    };
    let session_name = profile
        .session_name
        .as_deref()
        .map_or_else(|| "null".to_owned(), python_json_string);
    format!(
        "{{\"region\": {}, \"scopes\": {scopes}, \"session_name\": {session_name}, \"startUrl\": {}, \"tool\": \"botocore\"}}",
        python_json_string(&profile.region),
        python_json_string(&profile.start_url),
    )
}

/// A JSON string as Python's `json.dumps` writes it with `ensure_ascii=True`: printable ASCII
/// as is, `"` and `\` escaped, the short escapes for `\n \r \t \b \f`, and every other
/// character as `\uXXXX` in lower-case hex (UTF-16 surrogate pairs above U+FFFF).
fn python_json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
    out
}

fn sha1_hex(bytes: &[u8]) -> String {
    Sha1::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(
        session_name: Option<&str>,
        start_url: &str,
        region: &str,
        scopes: Option<&[&str]>,
    ) -> SsoProfile {
        SsoProfile {
            profile: "p".to_owned(),
            session_name: session_name.map(str::to_owned),
            start_url: start_url.to_owned(),
            region: region.to_owned(),
            registration_scopes: scopes.map(|s| s.iter().map(|v| (*v).to_owned()).collect()),
        }
    }

    // The expected names were computed outside this code:
    //   printf %s corp | sha1sum
    //   printf %s https://legacy.awsapps.com/start | sha1sum
    #[test]
    fn the_token_file_is_named_after_the_session_else_the_start_url() {
        let session = profile(
            Some("corp"),
            "https://example.awsapps.com/start",
            "eu-west-1",
            None,
        );
        assert_eq!(
            token_file_name(&session),
            "ee0bfd2552fbd840c02cc48b6e823320543c450f.json"
        );
        let legacy = profile(None, "https://legacy.awsapps.com/start", "us-east-1", None);
        assert_eq!(
            token_file_name(&legacy),
            "79e435d7a515078e81c9dffc35f38d5687ebd3a7.json"
        );
    }

    // The expected texts and names were computed with CPython 3:
    //   args = {'tool': 'botocore', 'startUrl': URL, 'region': R, 'scopes': S, 'session_name': N}
    //   s = json.dumps(args, sort_keys=True); hashlib.sha1(s.encode()).hexdigest()
    #[test]
    fn the_registration_file_is_named_as_the_cli_names_it() {
        let session = profile(
            Some("corp"),
            "https://example.awsapps.com/start",
            "eu-west-1",
            Some(&["sso:account:access", "extra:scope"]),
        );
        assert_eq!(
            registration_key_text(&session),
            r#"{"region": "eu-west-1", "scopes": ["sso:account:access", "extra:scope"], "session_name": "corp", "startUrl": "https://example.awsapps.com/start", "tool": "botocore"}"#
        );
        assert_eq!(
            registration_file_name(&session),
            "43335bf96af2552e46add4eceb60dd90e97617fe.json"
        );

        let legacy = profile(None, "https://legacy.awsapps.com/start", "us-east-1", None);
        assert_eq!(
            registration_key_text(&legacy),
            r#"{"region": "us-east-1", "scopes": null, "session_name": null, "startUrl": "https://legacy.awsapps.com/start", "tool": "botocore"}"#
        );
        assert_eq!(
            registration_file_name(&legacy),
            "e20952a21ad8c4e9f17c0a6776c9c4cbbded53d0.json"
        );
    }

    #[test]
    fn escaping_matches_python_for_quotes_controls_and_non_ascii() {
        let odd = profile(
            Some("s\u{e9}\u{1f600}"),
            "https://x.example/start?q=\"a\"\\b\n\u{7f}",
            "us-east-1",
            Some(&[]),
        );
        assert_eq!(
            registration_key_text(&odd),
            r#"{"region": "us-east-1", "scopes": [], "session_name": "s\u00e9\ud83d\ude00", "startUrl": "https://x.example/start?q=\"a\"\\b\n\u007f", "tool": "botocore"}"#
        );
        assert_eq!(
            registration_file_name(&odd),
            "d89690a7741022cff3938ab9249816e5810438d9.json"
        );
        assert_eq!(
            python_json_string("\u{8}\u{c}\t\r\u{1}"),
            r#""\b\f\t\r\u0001""#
        );
    }
}
