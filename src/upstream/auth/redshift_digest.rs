//! Redshift's own salted SHA-256 challenge (authentication code 13), used for users whose
//! password is stored as `sha256|…`. PostgreSQL has no such method, so nothing else answers it.

use sha2::{Digest, Sha256};
use std::time::{SystemTime, UNIX_EPOCH};

/// The digest and the client nonce to send, with the nonce taken from the clock in
/// milliseconds as Redshift's drivers do.
pub fn redshift_digest(password: &[u8], salt: &[u8], server_nonce: &[u8]) -> ([u8; 32], String) {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let client_nonce = millis.to_string();
    let digest = redshift_digest_with_nonce(password, salt, server_nonce, client_nonce.as_bytes());
    (digest, client_nonce)
}

/// `SHA256(SHA256(password ‖ salt) ‖ server_nonce ‖ client_nonce)`.
pub fn redshift_digest_with_nonce(
    password: &[u8],
    salt: &[u8],
    server_nonce: &[u8],
    client_nonce: &[u8],
) -> [u8; 32] {
    let inner = Sha256::new()
        .chain_update(password)
        .chain_update(salt)
        .finalize();
    Sha256::new()
        .chain_update(inner)
        .chain_update(server_nonce)
        .chain_update(client_nonce)
        .finalize()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn design_vector() {
        let salt = [0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6, 0x07, 0x18];
        let nonce: Vec<u8> = (0..16u8).map(|i| i * 0x11).collect();
        let digest =
            redshift_digest_with_nonce(b"My_sha256_PaSsWoRd", &salt, &nonce, b"1700000000000");
        assert_eq!(
            hex(&digest),
            "ed4b5102701a0b3a754860fba3bbcab498a2b072d4d5975c1973dd55b681161c"
        );
    }

    #[test]
    fn nonce_is_decimal_milliseconds() {
        let (_, nonce) = redshift_digest(b"p", b"s", b"n");
        assert!(nonce.len() >= 13 && nonce.bytes().all(|b| b.is_ascii_digit()));
    }
}
