//! The secret every replica shares, read from `--peer-secret-file`: it keys the HMAC of
//! forwarded cancels, so nothing outside the deployment can use the peer port. It is kept in
//! memory wiped on drop and never printed.

use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// Fewer bytes than this could be guessed offline from one captured message.
pub const MIN_SECRET_LEN: usize = 16;

/// The shared key of peer messages.
#[derive(Clone)]
pub struct PeerSecret(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for PeerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerSecret(<redacted>)")
    }
}

/// Why the secret file cannot be used; the message names the file and the fix, never the
/// content.
#[derive(Debug, thiserror::Error)]
pub enum PeerSecretError {
    /// The file cannot be read.
    #[error("cannot read --peer-secret-file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file holds too little to be a secret.
    #[error(
        "--peer-secret-file {path} holds {len} bytes: a peer secret needs at least {MIN_SECRET_LEN} (make one with `openssl rand -hex 32`)"
    )]
    TooShort {
        /// The file.
        path: PathBuf,
        /// Its length without the trailing newline.
        len: usize,
    },
}

impl PeerSecret {
    /// Reads the file. A trailing newline (as `echo` or `openssl rand -hex 32 > file` leave)
    /// is not part of the secret, so every way of writing the same value gives the same key.
    pub fn load(path: &Path) -> Result<PeerSecret, PeerSecretError> {
        let bytes =
            Zeroizing::new(std::fs::read(path).map_err(|source| PeerSecretError::Read {
                path: path.to_owned(),
                source,
            })?);
        let mut end = bytes.len();
        while end > 0 && matches!(bytes[end - 1], b'\n' | b'\r') {
            end -= 1;
        }
        PeerSecret::from_bytes(&bytes[..end]).map_err(|len| PeerSecretError::TooShort {
            path: path.to_owned(),
            len,
        })
    }

    /// A secret from its bytes; the length as the error when it is too short.
    pub fn from_bytes(bytes: &[u8]) -> Result<PeerSecret, usize> {
        if bytes.len() < MIN_SECRET_LEN {
            return Err(bytes.len());
        }
        Ok(PeerSecret(Zeroizing::new(bytes.to_vec())))
    }

    /// The key bytes, for the HMAC.
    pub(super) fn key(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trailing_newline_is_dropped_and_short_secrets_are_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("secret");
        std::fs::write(&path, "0123456789abcdef0123\n").expect("write");
        let secret = PeerSecret::load(&path).expect("loads");
        assert_eq!(secret.key(), b"0123456789abcdef0123");
        assert!(!format!("{secret:?}").contains("0123"));
        std::fs::write(&path, "short\r\n").expect("write");
        let error = PeerSecret::load(&path).expect_err("too short").to_string();
        assert!(error.contains("holds 5 bytes"), "{error}");
        assert!(!error.contains("short\""), "{error}");
        let missing = PeerSecret::load(&dir.path().join("none")).expect_err("missing");
        assert!(
            missing
                .to_string()
                .contains("cannot read --peer-secret-file")
        );
    }
}
