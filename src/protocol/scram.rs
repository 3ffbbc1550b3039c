//! The SCRAM-SHA-256 arithmetic both sides of the proxy share (RFC 5802 section 3, with
//! SHA-256 as RFC 7677 says): the proxy is a SCRAM client toward the server
//! (`upstream::auth::scram`), and checks its own clients' passwords against SCRAM verifiers
//! (`client::auth`), and the two must agree on every byte of it.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// HMAC-SHA-256 of `data` under `key`.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length, so this cannot fail; an empty MAC would fail any check.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().into()
        }
        Err(_) => [0; 32],
    }
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// `Hi(password, salt, i)`: PBKDF2 with HMAC-SHA-256 and one output block. This is the
/// deliberately slow part of SCRAM (4096 rounds by PostgreSQL's default),
/// which is why the client keeps what it derives from it (`auth::scram`).
pub fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> Zeroizing<[u8; 32]> {
    let mut block = Zeroizing::new(Vec::with_capacity(salt.len() + 4));
    block.extend_from_slice(salt);
    block.extend_from_slice(&1u32.to_be_bytes());
    let mut u = Zeroizing::new(hmac_sha256(password, &block));
    let mut result = Zeroizing::new(*u);
    for _ in 1..iterations {
        *u = hmac_sha256(password, &u[..]);
        for (r, x) in result.iter_mut().zip(u.iter()) {
            *r ^= x;
        }
    }
    result
}

/// The two keys a client derives from the salted password: `ClientKey` proves it knows the
/// password, `ServerKey` checks the server knows it too.
pub struct ScramKeys {
    /// `HMAC(SaltedPassword, "Client Key")`.
    pub client_key: Zeroizing<[u8; 32]>,
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: Zeroizing<[u8; 32]>,
}

impl ScramKeys {
    /// Derives both keys from a salted password.
    pub fn derive(salted_password: &[u8; 32]) -> ScramKeys {
        ScramKeys {
            client_key: Zeroizing::new(hmac_sha256(salted_password, b"Client Key")),
            server_key: Zeroizing::new(hmac_sha256(salted_password, b"Server Key")),
        }
    }

    /// `ClientProof = ClientKey XOR HMAC(H(ClientKey), AuthMessage)`.
    pub fn client_proof(&self, auth_message: &[u8]) -> [u8; 32] {
        let stored_key = sha256(&self.client_key[..]);
        let mut proof = hmac_sha256(&stored_key, auth_message);
        for (p, k) in proof.iter_mut().zip(self.client_key.iter()) {
            *p ^= k;
        }
        proof
    }

    /// `ServerSignature = HMAC(ServerKey, AuthMessage)`.
    pub fn server_signature(&self, auth_message: &[u8]) -> [u8; 32] {
        hmac_sha256(&self.server_key[..], auth_message)
    }
}

impl std::fmt::Debug for ScramKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScramKeys(<redacted>)")
    }
}

/// SASLprep (RFC 4013) as PostgreSQL applies it to passwords: a password that is not UTF-8,
/// or that SASLprep refuses, is used as it is.
pub fn normalize_password(password: &[u8]) -> Vec<u8> {
    match std::str::from_utf8(password).map(stringprep::saslprep) {
        Ok(Ok(prepared)) => prepared.into_owned().into_bytes(),
        _ => password.to_vec(),
    }
}

/// `StoredKey = H(ClientKey)` for a cleartext password, as a verifier stores it: how a
/// server that keeps only verifiers checks a password sent in the clear.
pub fn stored_key(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let salted = salted_password(&normalize_password(password), salt, iterations);
    sha256(&ScramKeys::derive(&salted).client_key[..])
}

/// Compares without an early exit, so the time taken says nothing about where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_postgresql() {
        assert_eq!(normalize_password(b"pencil"), b"pencil");
        assert_eq!(normalize_password("I\u{00AD}X".as_bytes()), b"IX"); // soft hyphen maps to nothing
        assert_eq!(normalize_password(b"\xff\xfe"), b"\xff\xfe"); // not UTF-8: as it is
        assert_eq!(
            normalize_password("a\u{0007}b".as_bytes()),
            "a\u{0007}b".as_bytes()
        ); // refused: as it is
    }

    #[test]
    fn the_stored_key_of_a_cleartext_password_matches_a_postgres_verifier() {
        // A verifier as PostgreSQL (and `hash-password`) writes it:
        // SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>, base64.
        use base64::Engine;
        use base64::engine::general_purpose::STANDARD;
        let verifier = postgres_protocol::password::scram_sha_256("pencil".as_bytes());
        let (head, keys) = verifier
            .split_once('$')
            .expect("scheme")
            .1
            .split_once('$')
            .expect("keys");
        let (iterations, salt) = head.split_once(':').expect("salt");
        let salt = STANDARD.decode(salt).expect("base64 salt");
        let stored = STANDARD
            .decode(keys.split_once(':').expect("stored").0)
            .expect("base64");
        let iterations: u32 = iterations.parse().expect("rounds");
        assert_eq!(stored_key(b"pencil", &salt, iterations)[..], stored[..]);
        assert_ne!(stored_key(b"pencil!", &salt, iterations)[..], stored[..]);
    }

    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    /// RFC 7677 section 3: user "user", password "pencil". The keys below are the stored and
    /// server keys PostgreSQL would keep for it (the same verifier `client_auth` tests use).
    #[test]
    fn derives_the_rfc_7677_keys_and_proof() {
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let keys = ScramKeys::derive(&salted_password(b"pencil", &salt, 4096));
        assert_eq!(
            STANDARD.encode(sha256(&keys.client_key[..])),
            "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
        );
        assert_eq!(
            STANDARD.encode(&keys.server_key[..]),
            "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
        );
        let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,\
            r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,\
            c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        assert_eq!(
            STANDARD.encode(keys.client_proof(auth_message.as_bytes())),
            "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert_eq!(
            STANDARD.encode(keys.server_signature(auth_message.as_bytes())),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    #[test]
    fn one_iteration_is_one_hmac() {
        let expected = hmac_sha256(b"pw", b"salt\x00\x00\x00\x01");
        assert_eq!(*salted_password(b"pw", b"salt", 1), expected);
    }

    #[test]
    fn compares_lengths_and_bytes() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn keys_do_not_print() {
        let keys = ScramKeys::derive(&[1; 32]);
        assert_eq!(format!("{keys:?}"), "ScramKeys(<redacted>)");
    }
}
