//! The subject's common name (CN) of a client certificate, which `--client-auth cert` takes
//! as the user name (as PostgreSQL's `cert` method does). A small DER walk over the few
//! fields before the subject: the certificate has already been verified by rustls, so this
//! only has to find the name, and it refuses anything it does not understand instead of
//! guessing.

use crate::client::der::{INTEGER, OID, SEQUENCE, SET, VERSION, element, expect};

/// Attribute type 2.5.4.3, commonName.
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// Why no user name could be taken from a certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertNameError {
    /// The DER does not have the shape of an X.509 certificate.
    #[error("the client certificate could not be read")]
    Malformed,
    /// The subject has no CN.
    #[error("the client certificate's subject has no common name (CN)")]
    NoCommonName,
    /// The subject has several CNs, so the user is ambiguous.
    #[error("the client certificate's subject has more than one common name (CN)")]
    SeveralCommonNames,
    /// The CN is in a string type other than UTF8String, PrintableString or IA5String.
    #[error("the client certificate's common name (CN) is not a UTF-8, printable or IA5 string")]
    StringType,
}

/// The CN of the certificate `der` (the end-entity certificate as the client sent it).
pub fn common_name(der: &[u8]) -> Result<String, CertNameError> {
    let subject = subject(der).ok_or(CertNameError::Malformed)?;
    let mut found: Option<String> = None;
    let mut rdns = subject;
    while !rdns.is_empty() {
        let (rdn, rest) = expect(rdns, SET).ok_or(CertNameError::Malformed)?;
        rdns = rest;
        let mut attributes = rdn;
        while !attributes.is_empty() {
            let (attribute, rest) = expect(attributes, SEQUENCE).ok_or(CertNameError::Malformed)?;
            attributes = rest;
            let (oid, value) = expect(attribute, OID).ok_or(CertNameError::Malformed)?;
            if oid != COMMON_NAME {
                continue;
            }
            if found.is_some() {
                return Err(CertNameError::SeveralCommonNames);
            }
            let (tag, text, _) = element(value).ok_or(CertNameError::Malformed)?;
            found = Some(string_value(tag, text)?);
        }
    }
    found.ok_or(CertNameError::NoCommonName)
}

/// The contents of the subject Name: Certificate → TBSCertificate → (version), serial,
/// signature algorithm, issuer, validity, subject.
fn subject(der: &[u8]) -> Option<&[u8]> {
    let (certificate, _) = expect(der, SEQUENCE)?;
    let (tbs, _) = expect(certificate, SEQUENCE)?;
    let mut rest = tbs;
    if let Some((VERSION, _, after)) = element(rest) {
        rest = after;
    }
    let (_serial, rest) = expect(rest, INTEGER)?;
    let (_algorithm, rest) = expect(rest, SEQUENCE)?;
    let (_issuer, rest) = expect(rest, SEQUENCE)?;
    let (_validity, rest) = expect(rest, SEQUENCE)?;
    let (subject, _) = expect(rest, SEQUENCE)?;
    Some(subject)
}

fn string_value(tag: u8, bytes: &[u8]) -> Result<String, CertNameError> {
    match tag {
        // UTF8String, PrintableString, IA5String
        0x0c | 0x13 | 0x16 => std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| CertNameError::Malformed),
        _ => Err(CertNameError::StringType),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair};

    fn cert_with(names: &[(DnType, &str)]) -> Vec<u8> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (kind, value) in names {
            params.distinguished_name.push(kind.clone(), *value);
        }
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn finds_the_common_name_among_other_attributes() {
        let der = cert_with(&[
            (DnType::OrganizationName, "Example"),
            (DnType::CommonName, "alice"),
            (DnType::CountryName, "DE"),
        ]);
        assert_eq!(common_name(&der).unwrap(), "alice");
        let der = cert_with(&[(DnType::CommonName, "bøb")]);
        assert_eq!(common_name(&der).unwrap(), "bøb");
    }

    #[test]
    fn no_common_name() {
        let der = cert_with(&[(DnType::OrganizationName, "Example")]);
        assert_eq!(common_name(&der), Err(CertNameError::NoCommonName));
    }

    #[test]
    fn garbage_and_truncation_are_refused_without_panicking() {
        let der = cert_with(&[(DnType::CommonName, "alice")]);
        for cut in 0..der.len() {
            let _ = common_name(&der[..cut]);
        }
        assert_eq!(common_name(&[]), Err(CertNameError::Malformed));
        assert_eq!(
            common_name(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]),
            Err(CertNameError::Malformed)
        );
    }
}
