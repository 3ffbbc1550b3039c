//! Certificates made with rcgen when a test starts: a CA, a server certificate it signs for
//! `localhost`, an unrelated CA that must not be trusted, and a CA issuing client
//! certificates for `--client-auth cert`. Nothing is checked in.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A CA and one server certificate it signed, all as PEM.
pub struct TestPki {
    /// The CA certificate clients trust.
    pub ca_pem: String,
    /// The server certificate (leaf only).
    pub server_cert_pem: String,
    /// The server's private key (PKCS#8).
    pub server_key_pem: String,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params
}

/// A fresh self-signed CA certificate (PEM), for "wrong CA" tests.
pub fn unrelated_ca_pem() -> String {
    let key = KeyPair::generate().expect("key");
    ca_params("unrelated test CA")
        .self_signed(&key)
        .expect("self-signed CA")
        .pem()
}

impl TestPki {
    /// A CA and a server certificate valid for `names` (DNS names or IP addresses).
    pub fn generate(names: &[&str]) -> TestPki {
        let ca_key = KeyPair::generate().expect("CA key");
        let ca_params = ca_params("redshift-auth-proxy test CA");
        let ca_pem = ca_params.self_signed(&ca_key).expect("CA cert").pem();
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().expect("server key");
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .expect("server params");
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("localhost"),
        );
        let server_cert = params.signed_by(&server_key, &issuer).expect("server cert");
        TestPki {
            ca_pem,
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
        }
    }

    /// A rustls server configuration presenting the server certificate, for scripted upstreams.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(self.server_cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .expect("server cert PEM");
        let key = PrivateKeyDer::from_pem_slice(self.server_key_pem.as_bytes()).expect("key PEM");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
        Arc::new(config)
    }

    /// A rustls client configuration trusting only this CA, for direct connections.
    pub fn client_config(&self) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(cert.expect("CA PEM")).expect("CA added");
        }
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
    }
}

/// A CA that issues client certificates (for mutual TLS), kept whole so a test can issue
/// as many as it needs.
pub struct ClientCa {
    /// The CA certificate the proxy's `--client-ca` names.
    pub ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl ClientCa {
    /// A fresh CA called `name`.
    pub fn new(name: &str) -> ClientCa {
        let key = KeyPair::generate().expect("client CA key");
        let params = ca_params(name);
        let ca_pem = params.self_signed(&key).expect("client CA cert").pem();
        ClientCa {
            ca_pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A client certificate whose subject CN is `common_name`: (certificate PEM, PKCS#8 key PEM).
    pub fn issue(&self, common_name: &str) -> (String, String) {
        let key = KeyPair::generate().expect("client key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer).expect("client cert");
        (cert.pem(), key.serialize_pem())
    }
}
