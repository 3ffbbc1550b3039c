//! The `tls-server-end-point` channel-binding data (RFC 5929 section 4) of the certificate
//! the proxy serves, for `SCRAM-SHA-256-PLUS`: the hash of the certificate's DER, with the
//! hash function of its signature algorithm, except that MD5 and SHA-1 become SHA-256. This
//! is what PostgreSQL's `be_tls_get_certificate_hash` computes and what libpq compares.
//!
//! It is computed once per loaded certificate, next to the configuration that serves it, so
//! a session binds to the certificate its own handshake used even if the files are reloaded
//! meanwhile.

use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};

use crate::client::der::{OID, SEQUENCE, expect};

/// The hash functions a signature algorithm can name here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hash {
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

/// The signature algorithms (OID contents) whose hash is known, RSA PKCS#1 v1.5 and ECDSA:
/// the ones rustls can serve. RSASSA-PSS (the hash sits in its parameters) and EdDSA (no
/// separate hash) are left out, as OpenSSL and so PostgreSQL and libpq leave them out.
const ALGORITHMS: &[(&[u8], Hash)] = &[
    // md5WithRSAEncryption, sha1WithRSAEncryption, ecdsa-with-SHA1: SHA-256 (RFC 5929 4.1).
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x04],
        Hash::Sha256,
    ),
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05],
        Hash::Sha256,
    ),
    (&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01], Hash::Sha256),
    // sha224/256/384/512WithRSAEncryption.
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0e],
        Hash::Sha224,
    ),
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b],
        Hash::Sha256,
    ),
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c],
        Hash::Sha384,
    ),
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d],
        Hash::Sha512,
    ),
    // ecdsa-with-SHA224/256/384/512.
    (
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x01],
        Hash::Sha224,
    ),
    (
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02],
        Hash::Sha256,
    ),
    (
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03],
        Hash::Sha384,
    ),
    (
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04],
        Hash::Sha512,
    ),
];

/// The channel-binding data of the certificate `der`, or `None` when its signature
/// algorithm names no hash (Ed25519, RSASSA-PSS) or the DER cannot be read: the proxy then
/// does not offer `SCRAM-SHA-256-PLUS` on connections served with it.
pub fn tls_server_end_point(der: &[u8]) -> Option<Vec<u8>> {
    let hash = signature_hash(der)?;
    Some(match hash {
        Hash::Sha224 => Sha224::digest(der).to_vec(),
        Hash::Sha256 => Sha256::digest(der).to_vec(),
        Hash::Sha384 => Sha384::digest(der).to_vec(),
        Hash::Sha512 => Sha512::digest(der).to_vec(),
    })
}

/// Certificate → (tbsCertificate, signatureAlgorithm → algorithm OID).
fn signature_hash(der: &[u8]) -> Option<Hash> {
    let (certificate, _) = expect(der, SEQUENCE)?;
    let (_tbs, rest) = expect(certificate, SEQUENCE)?;
    let (algorithm, _) = expect(rest, SEQUENCE)?;
    let (oid, _) = expect(algorithm, OID)?;
    ALGORITHMS
        .iter()
        .find(|(known, _)| *known == oid)
        .map(|&(_, hash)| hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair, SignatureAlgorithm};

    fn cert(algorithm: &'static SignatureAlgorithm) -> Vec<u8> {
        let key = KeyPair::generate_for(algorithm).unwrap();
        CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .der()
            .to_vec()
    }

    #[test]
    fn the_hash_follows_the_signature_algorithm() {
        let p256 = cert(&rcgen::PKCS_ECDSA_P256_SHA256);
        assert_eq!(
            tls_server_end_point(&p256).unwrap(),
            Sha256::digest(&p256).to_vec()
        );
        let p384 = cert(&rcgen::PKCS_ECDSA_P384_SHA384);
        let data = tls_server_end_point(&p384).unwrap();
        assert_eq!(data.len(), 48);
        assert_eq!(data, Sha384::digest(&p384).to_vec());
    }

    #[test]
    fn eddsa_and_garbage_have_no_binding_data() {
        assert_eq!(tls_server_end_point(&cert(&rcgen::PKCS_ED25519)), None);
        let p256 = cert(&rcgen::PKCS_ECDSA_P256_SHA256);
        for cut in 0..p256.len() / 2 {
            assert_eq!(tls_server_end_point(&p256[..cut]), None);
        }
        assert_eq!(tls_server_end_point(b""), None);
    }

    #[test]
    fn md5_and_sha1_signatures_are_hashed_with_sha256() {
        // Only the outer signatureAlgorithm is read: a hand-made shell with sha1WithRSA.
        let mut shell = vec![0x30, 0x00, 0x30, 0x0d, 0x06, 0x09];
        shell.extend_from_slice(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05]);
        shell.extend_from_slice(&[0x05, 0x00]);
        let mut der = vec![0x30, shell.len() as u8];
        der.extend_from_slice(&shell);
        assert_eq!(
            tls_server_end_point(&der).unwrap(),
            Sha256::digest(&der).to_vec()
        );
    }
}
