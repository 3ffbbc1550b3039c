//! The users file for `--client-auth scram`: one `user:SCRAM-SHA-256$<iter>:<salt>$<storedkey>:<serverkey>`
//! line per client, the verifier exactly as PostgreSQL stores it in `pg_authid`, so an
//! existing hash can be copied over and no password is ever kept by the proxy.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::protocol::scram::{ScramKeys, normalize_password, salted_password, sha256};

/// The scheme prefix of a PostgreSQL SCRAM verifier.
const SCHEME: &str = "SCRAM-SHA-256";

/// One user's SCRAM-SHA-256 verifier: what the server needs to check a proof without
/// knowing the password. `Debug` shows only the iteration count: the keys are as good as a
/// password hash and stay out of logs.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    /// PBKDF2 iterations the client must run.
    pub iterations: u32,
    /// The salt the client hashes the password with.
    pub salt: Vec<u8>,
    /// `H(ClientKey)`: what a client's proof must reproduce.
    pub stored_key: [u8; 32],
    /// `HMAC(SaltedPassword, "Server Key")`: signs the server's final message.
    pub server_key: [u8; 32],
}

impl fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramVerifier")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// Why a verifier string is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifierError {
    /// Not `SCRAM-SHA-256$<iter>:<salt>$<storedkey>:<serverkey>`.
    #[error(
        "not a SCRAM-SHA-256 verifier: expected SCRAM-SHA-256$<iterations>:<salt>$<storedkey>:<serverkey> (make one with `redshift-auth-proxy hash-password USER`)"
    )]
    Layout,
    /// The iteration count is not a positive number.
    #[error("the iteration count is not a positive number")]
    Iterations,
    /// A field is not base64, or a key is not 32 bytes.
    #[error("the {0} is not valid base64 of the right length")]
    Field(&'static str),
}

impl ScramVerifier {
    /// The verifier PostgreSQL would store for `password` with this salt and iteration count
    /// (SASLprep applied): for tests and tools that need one with known parameters, where
    /// [`hash_password`] picks a random salt for a users file.
    pub fn from_password(password: &[u8], salt: &[u8], iterations: u32) -> ScramVerifier {
        let salted = salted_password(&normalize_password(password), salt, iterations);
        let keys = ScramKeys::derive(&salted);
        ScramVerifier {
            iterations,
            salt: salt.to_vec(),
            stored_key: sha256(&keys.client_key[..]),
            server_key: *keys.server_key,
        }
    }

    /// Parses PostgreSQL's text form.
    pub fn parse(text: &str) -> Result<ScramVerifier, VerifierError> {
        let rest = text
            .strip_prefix(SCHEME)
            .and_then(|r| r.strip_prefix('$'))
            .ok_or(VerifierError::Layout)?;
        let (params, keys) = rest.split_once('$').ok_or(VerifierError::Layout)?;
        let (iterations, salt) = params.split_once(':').ok_or(VerifierError::Layout)?;
        let (stored_key, server_key) = keys.split_once(':').ok_or(VerifierError::Layout)?;
        let iterations: u32 = iterations
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .ok_or(VerifierError::Iterations)?;
        let salt = STANDARD
            .decode(salt)
            .ok()
            .filter(|s| !s.is_empty())
            .ok_or(VerifierError::Field("salt"))?;
        let key = |text: &str, name: &'static str| -> Result<[u8; 32], VerifierError> {
            STANDARD
                .decode(text)
                .ok()
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                .ok_or(VerifierError::Field(name))
        };
        Ok(ScramVerifier {
            iterations,
            salt,
            stored_key: key(stored_key, "stored key")?,
            server_key: key(server_key, "server key")?,
        })
    }
}

/// A new verifier for `password` with a random salt and PostgreSQL's default 4096
/// iterations (SASLprep applied as PostgreSQL and libpq do), in PostgreSQL's text form.
pub fn hash_password(password: &str) -> String {
    postgres_protocol::password::scram_sha_256(password.as_bytes())
}

/// A user name a users-file line can carry.
pub fn check_user_name(user: &str) -> Result<(), UserNameError> {
    if user.is_empty() {
        return Err(UserNameError::Empty);
    }
    if user.contains(':') || user.chars().any(char::is_control) {
        return Err(UserNameError::Character);
    }
    Ok(())
}

/// A user name that cannot be written as the first field of a users-file line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserNameError {
    /// Nothing before the colon.
    #[error("the user name is empty")]
    Empty,
    /// A colon ends the name; control characters cannot be typed in a connection string.
    #[error("a user name cannot contain ':' or control characters")]
    Character,
}

/// The clients `--client-auth scram` lets in, by the user name of their StartupMessage.
#[derive(Debug, Clone, Default)]
pub struct ScramUsers {
    users: HashMap<String, ScramVerifier>,
}

/// A users file that cannot be used; names the file and the line, never the verifier.
#[derive(Debug, thiserror::Error)]
pub enum UsersFileError {
    /// The file cannot be read.
    #[error("cannot read the client users file {path}: {source}")]
    Read {
        /// The file (`--client-users`).
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A line is not `user:verifier`.
    #[error("client users file {path}, line {line}: {why}")]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        why: String,
    },
    /// No user at all: every client would be refused.
    #[error(
        "client users file {0} holds no user: add lines made with `redshift-auth-proxy hash-password USER`"
    )]
    Empty(PathBuf),
}

impl ScramUsers {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<ScramUsers, UsersFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| UsersFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        let users = ScramUsers::parse(&text).map_err(|(line, why)| UsersFileError::Line {
            path: path.to_owned(),
            line,
            why,
        })?;
        if users.users.is_empty() {
            return Err(UsersFileError::Empty(path.to_owned()));
        }
        Ok(users)
    }

    /// Parses the file's text: `user:verifier` lines; blank lines and lines starting with
    /// `#` are skipped. A bad line is reported as (line number, why).
    pub fn parse(text: &str) -> Result<ScramUsers, (usize, String)> {
        let mut users = HashMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let number = index + 1;
            let (user, verifier) = line.split_once(':').ok_or_else(|| {
                (
                    number,
                    "expected user:SCRAM-SHA-256$<iterations>:<salt>$<storedkey>:<serverkey>"
                        .to_owned(),
                )
            })?;
            check_user_name(user).map_err(|e| (number, e.to_string()))?;
            let verifier = ScramVerifier::parse(verifier)
                .map_err(|e| (number, format!("user {user}: {e}")))?;
            if users.insert(user.to_owned(), verifier).is_some() {
                return Err((number, format!("user {user} is listed twice")));
            }
        }
        Ok(ScramUsers { users })
    }

    /// The verifier of `user`, if the file lists it.
    pub fn get(&self, user: &str) -> Option<&ScramVerifier> {
        self.users.get(user)
    }

    /// How many users the file lists.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// True when no user is listed.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A verifier made the way `hash-password` makes one.
    fn sample() -> String {
        hash_password("pencil")
    }

    #[test]
    fn parses_what_hash_password_makes() {
        let text = sample();
        let verifier = ScramVerifier::parse(&text).unwrap();
        assert_eq!(verifier.iterations, 4096);
        assert_eq!(verifier.salt.len(), 16);
        assert_eq!(
            format!("{verifier:?}"),
            "ScramVerifier { iterations: 4096, .. }"
        );
    }

    /// RFC 7677's example (password `pencil`), with its keys computed by Python's hashlib.
    const RFC7677: &str = "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";

    #[test]
    fn parses_postgresql_text_form() {
        let verifier = ScramVerifier::parse(RFC7677).unwrap();
        assert_eq!(verifier.iterations, 4096);
        assert_eq!(STANDARD.encode(&verifier.salt), "W22ZaJ0SNY7soEsUEjb6gQ==");
        assert_eq!(
            STANDARD.encode(verifier.stored_key),
            "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
        );
    }

    #[test]
    fn refuses_broken_verifiers() {
        let good = sample();
        for bad in [
            "md5abcdef",
            "SCRAM-SHA-256$0:c2FsdA==$AAAA:AAAA",
            "SCRAM-SHA-256$4096:c2FsdA==$AAAA:AAAA",
            "SCRAM-SHA-256$4096:!!!$AAAA:AAAA",
            "SCRAM-SHA-256$4096:c2FsdA==",
        ] {
            assert!(ScramVerifier::parse(bad).is_err(), "{bad}");
        }
        assert!(ScramVerifier::parse(&good).is_ok());
    }

    #[test]
    fn users_file_lines() {
        let text = format!("# clients\n\nalice:{}\n  bob:{}  \n", sample(), sample());
        let users = ScramUsers::parse(&text).unwrap();
        assert_eq!(users.len(), 2);
        assert!(users.get("alice").is_some());
        assert!(users.get("bob").is_some());
        assert!(users.get("carol").is_none());

        let (line, why) = ScramUsers::parse(&format!("alice:{}\nbob\n", sample())).unwrap_err();
        assert_eq!(line, 2);
        assert!(why.contains("expected user:"), "{why}");
        let (line, why) =
            ScramUsers::parse(&format!("alice:{}\nalice:{}\n", sample(), sample())).unwrap_err();
        assert_eq!((line, why.contains("twice")), (2, true));
        let (_, why) = ScramUsers::parse("carol:md5abc\n").unwrap_err();
        assert!(why.starts_with("user carol:"), "{why}");
        assert!(!why.contains("md5abc"), "the verifier is not echoed: {why}");
    }

    #[test]
    fn user_names() {
        assert!(check_user_name("alice").is_ok());
        assert!(check_user_name("").is_err());
        assert!(check_user_name("a:b").is_err());
        assert!(check_user_name("a\nb").is_err());
    }
}
