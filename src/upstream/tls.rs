//! rustls client configuration for the upstream connection: which roots are trusted and how
//! strictly the server's certificate is checked (`sslmode`), plus the messages that explain
//! a failed handshake in terms of the flags that fix it.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use serde::{Deserialize, Serialize};

use crate::net::crypto::{CaFileError, crypto_provider, read_pem_certificates};

/// How the upstream's certificate is checked, named as libpq names it so users can carry
/// their habits over. `verify-full` is the default because anything weaker lets a network
/// attacker collect the temporary database password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// No TLS at all: only for local development against a server without TLS.
    Disable,
    /// TLS without certificate checks: encrypts, but does not authenticate the server.
    Require,
    /// The chain must lead to a trusted root; the host name is not checked.
    VerifyCa,
    /// The chain must lead to a trusted root and name the host we dialled.
    #[default]
    VerifyFull,
}

impl SslMode {
    /// The spelling users write, for messages and `--help`.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An `sslmode` value that is not one of the four the proxy knows.
#[derive(Debug, thiserror::Error)]
#[error("unknown sslmode '{0}': write one of verify-full, verify-ca, require, disable")]
pub struct UnknownSslMode(pub String);

impl FromStr for SslMode {
    type Err = UnknownSslMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "disable" => Ok(SslMode::Disable),
            "require" => Ok(SslMode::Require),
            "verify-ca" | "verify_ca" => Ok(SslMode::VerifyCa),
            "verify-full" | "verify_full" => Ok(SslMode::VerifyFull),
            _ => Err(UnknownSslMode(s.to_owned())),
        }
    }
}

/// Where the trusted roots for upstream certificates come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamRoots {
    /// Mozilla's roots compiled in (webpki-roots): they include the Amazon roots Redshift's
    /// certificates chain to, and work in scratch containers without a CA bundle.
    #[default]
    Webpki,
    /// The operating system's store, for companies that add their own roots there.
    Native,
}

/// The upstream TLS settings that are the same for every target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamTrust {
    /// The base set of roots.
    pub roots: UpstreamRoots,
    /// Extra PEM bundles (`--upstream-ca`) added to the base set.
    pub ca_files: Vec<PathBuf>,
}

/// A TLS setting that cannot be turned into a configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// A CA file that cannot be read or holds no certificate.
    #[error(transparent)]
    CaFile(#[from] CaFileError),
    /// No root at all could be loaded, so nothing would verify.
    #[error("no trusted root certificates: {0}")]
    NoRoots(String),
    /// rustls refused the protocol versions (not expected with the default provider).
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Builds the client configuration for `mode`, or `None` for `disable` (plain TCP).
pub fn upstream_client_config(
    mode: SslMode,
    trust: &UpstreamTrust,
) -> Result<Option<Arc<ClientConfig>>, TlsConfigError> {
    let provider = crypto_provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let config = match mode {
        SslMode::Disable => return Ok(None),
        SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate {
                algorithms: provider.signature_verification_algorithms,
            }))
            .with_no_client_auth(),
        SslMode::VerifyCa => {
            let webpki = WebPkiServerVerifier::builder_with_provider(
                Arc::new(load_roots(trust)?),
                provider.clone(),
            )
            .build()
            .map_err(|e| TlsConfigError::NoRoots(e.to_string()))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly { webpki }))
                .with_no_client_auth()
        }
        SslMode::VerifyFull => builder
            .with_root_certificates(load_roots(trust)?)
            .with_no_client_auth(),
    };
    Ok(Some(Arc::new(with_resumption(config))))
}

/// Session tickets kept per configuration, so across every upstream connection of a target.
const RESUMPTION_SESSIONS: usize = 256;

/// Keeps the tickets a server issues (TLS 1.3 tickets, TLS 1.2 session ids and tickets) in
/// memory and offers them on the next connection to the same server name, so a server that
/// issues them skips the certificate exchange and its checks. One configuration serves every
/// connection of a target (see [`crate::upstream::UpstreamEndpoint::tls`]), which is what
/// makes the cache shared. Whether a handshake was resumed is logged at debug level.
fn with_resumption(mut config: ClientConfig) -> ClientConfig {
    config.resumption = rustls::client::Resumption::in_memory_sessions(RESUMPTION_SESSIONS);
    config
}

fn load_roots(trust: &UpstreamTrust) -> Result<RootCertStore, TlsConfigError> {
    let mut store = RootCertStore::empty();
    match trust.roots {
        UpstreamRoots::Webpki => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        UpstreamRoots::Native => {
            let loaded = rustls_native_certs::load_native_certs();
            let (added, _ignored) = store.add_parsable_certificates(loaded.certs);
            if added == 0 && trust.ca_files.is_empty() {
                let why = loaded
                    .errors
                    .first()
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "the store is empty".to_owned());
                return Err(TlsConfigError::NoRoots(format!(
                    "the operating system store gave none ({why}): install ca-certificates, or use --upstream-roots webpki or --upstream-ca FILE"
                )));
            }
        }
    }
    for path in &trust.ca_files {
        for cert in read_pem_certificates(path)? {
            store.add(cert).map_err(|e| CaFileError::new(path, e))?;
        }
    }
    Ok(store)
}

/// `sslmode=verify-ca`: the chain must verify, but the name may differ (for connecting by IP
/// address or through an SSH tunnel).
#[derive(Debug)]
struct ChainOnly {
    webpki: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// `sslmode=require`: encryption without authentication, as libpq's `require` without a root
/// file. Handshake signatures are still checked so the session keys are sound.
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Explains a failed upstream handshake: which check failed and which flag fixes it.
pub fn describe_handshake_error(error: &io::Error, host: &str, mode: SslMode) -> String {
    let rustls_error = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(rustls::Error::InvalidCertificate(cert_error)) => match cert_error {
            CertificateError::UnknownIssuer => format!(
                "the server's certificate is not trusted (unknown issuer; sslmode={mode}): pass the CA that signed it with --upstream-ca FILE, or use --upstream-roots native if it is in the system store"
            ),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!(
                    "the server's certificate does not name host \"{host}\" (sslmode={mode}): connect with a name the certificate lists, or use sslmode=verify-ca to check only the chain"
                )
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the server's certificate has expired: renew it on the server".to_owned()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the server's certificate is not valid yet: check the clocks of this machine and the server".to_owned()
            }
            other => format!(
                "the server's certificate was rejected ({other:?}; sslmode={mode}): check --upstream-ca and sslmode"
            ),
        },
        Some(other) => format!("TLS handshake with the server failed: {other}"),
        None => format!("TLS handshake with the server failed: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_spellings() {
        for (text, mode) in [
            ("disable", SslMode::Disable),
            ("require", SslMode::Require),
            ("verify-ca", SslMode::VerifyCa),
            ("VERIFY-FULL", SslMode::VerifyFull),
        ] {
            assert_eq!(text.parse::<SslMode>().unwrap(), mode);
        }
        assert!(
            "prefer"
                .parse::<SslMode>()
                .unwrap_err()
                .to_string()
                .contains("verify-full")
        );
    }

    #[test]
    fn configs_build_for_every_mode() {
        let trust = UpstreamTrust::default();
        assert!(
            upstream_client_config(SslMode::Disable, &trust)
                .unwrap()
                .is_none()
        );
        for mode in [SslMode::Require, SslMode::VerifyCa, SslMode::VerifyFull] {
            assert!(upstream_client_config(mode, &trust).unwrap().is_some());
        }
    }

    #[test]
    fn missing_ca_file_is_named() {
        let trust = UpstreamTrust {
            roots: UpstreamRoots::Webpki,
            ca_files: vec![PathBuf::from("/nonexistent/ca.pem")],
        };
        let err = upstream_client_config(SslMode::VerifyFull, &trust).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"));
    }
}
