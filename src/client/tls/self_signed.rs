//! `--client-tls self-signed`: a certificate made at start-up, so clients whose drivers
//! insist on TLS (Redshift's JDBC driver, redshift_connector) work without a PKI. Nobody can
//! verify it against a CA; its SHA-256 fingerprint is logged so a client can pin it.

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

use super::ClientTlsError;

/// A generated certificate and its key.
#[derive(Debug)]
pub struct SelfSigned {
    /// The certificate (DER).
    pub cert: CertificateDer<'static>,
    /// Its private key (PKCS#8 DER).
    pub key: PrivateKeyDer<'static>,
}

impl SelfSigned {
    /// A fresh key pair and a certificate naming `names` (DNS names or IP addresses).
    pub fn generate(names: &[String]) -> Result<SelfSigned, ClientTlsError> {
        let generated = rcgen::generate_simple_self_signed(names.to_vec())
            .map_err(|e| ClientTlsError::Generate(e.to_string()))?;
        let key = PrivatePkcs8KeyDer::from(generated.signing_key.serialize_der());
        Ok(SelfSigned {
            cert: generated.cert.der().clone(),
            key: PrivateKeyDer::Pkcs8(key),
        })
    }
}

/// The SHA-256 fingerprint of a certificate as `openssl x509 -fingerprint -sha256` prints
/// it: upper-case hex pairs joined by colons.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let digest = Sha256::digest(cert.as_ref());
    let mut out = String::with_capacity(digest.len() * 3);
    for (i, byte) in digest.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push_str(&format!("{byte:02X}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_format() {
        // SHA-256 of the three bytes "abc".
        let cert = CertificateDer::from(b"abc".to_vec());
        assert_eq!(
            fingerprint(&cert),
            "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
        );
    }

    #[test]
    fn generates_distinct_certificates() {
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let a = SelfSigned::generate(&names).unwrap();
        let b = SelfSigned::generate(&names).unwrap();
        assert_ne!(fingerprint(&a.cert), fingerprint(&b.cert));
    }
}
