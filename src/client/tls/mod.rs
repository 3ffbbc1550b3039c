//! TLS toward clients: the rustls server configuration a client gets after SSLRequest, from
//! PEM files (`--client-tls-cert`, `--client-tls-key`) or a certificate generated at start-up
//! (`--client-tls self-signed`), with `--client-ca` verifying client certificates for
//! `--client-auth cert`. Certificates are rotated without a restart: the configuration sits
//! behind a lock that `reload` swaps, and a failed reload keeps the one in use.
//! (`tls.rs` is the upstream side.)

mod end_point;
mod self_signed;
mod watch;

pub use end_point::tls_server_end_point;
pub use self_signed::{SelfSigned, fingerprint};
pub use watch::{POLL_INTERVAL, watch};

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, server::danger::ClientCertVerifier};
use serde::{Deserialize, Serialize};
use tokio_rustls::TlsAcceptor;

use crate::net::crypto::{CaFileError, crypto_provider, read_pem_certificates};
use crate::protocol::startup::ALPN_PROTOCOL;

/// `--client-tls`: whether the proxy makes its own certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ClientTlsMode {
    /// No generated certificate (client TLS only with `--client-tls-cert`/`--client-tls-key`).
    #[default]
    Off,
    /// Generate a certificate at start-up and log its SHA-256 fingerprint.
    SelfSigned,
}

/// Where the certificate presented to clients comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientTlsSource {
    /// PEM files, watched for changes.
    Files {
        /// The certificate chain, leaf first.
        cert: PathBuf,
        /// Its private key (PKCS#8, PKCS#1 or SEC1).
        key: PathBuf,
    },
    /// A certificate generated at start-up for these names (DNS names or IP addresses).
    SelfSigned {
        /// Its subject alternative names.
        names: Vec<String>,
    },
}

/// The client TLS settings as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTlsSettings {
    /// The certificate.
    pub source: ClientTlsSource,
    /// CA bundle for client certificates (`--client-auth cert`); clients without one can
    /// still complete the handshake and are refused with a readable message afterwards.
    pub client_ca: Option<PathBuf>,
}

/// Client TLS settings that cannot be turned into a configuration. Messages name the file.
#[derive(Debug, thiserror::Error)]
pub enum ClientTlsError {
    /// The certificate file cannot be read or holds no certificate.
    #[error("cannot read the client TLS certificate {path}: {why}")]
    Certificate {
        /// `--client-tls-cert`.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The key file cannot be read or holds no key.
    #[error("cannot read the client TLS key {path}: {why}")]
    Key {
        /// `--client-tls-key`.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The client CA file cannot be used.
    #[error("--client-ca: {0}")]
    ClientCa(#[from] CaFileError),
    /// The certificate cannot be generated.
    #[error("cannot generate the self-signed client TLS certificate: {0}")]
    Generate(String),
    /// rustls refused the combination (a key that does not match the certificate, …).
    #[error("the client TLS certificate and key cannot be used together: {0}")]
    Rustls(rustls::Error),
}

/// The live client TLS configuration. `handshake` hands out the configuration in use;
/// `reload` builds a new one from the files and swaps it in only if it works, so sessions
/// already open keep theirs and a bad file never takes TLS down.
#[derive(Debug)]
pub struct ClientTls {
    settings: ClientTlsSettings,
    /// The certificate made at start-up (kept so a reload can re-read the client CA).
    generated: Option<SelfSigned>,
    current: RwLock<Loaded>,
}

#[derive(Debug, Clone)]
struct Loaded {
    handshake: Handshake,
    fingerprint: String,
}

/// What one client handshake uses: the configuration, and the channel-binding data of the
/// certificate it serves. Taken together from `ClientTls::handshake`, so a reload between
/// the handshake and SCRAM cannot make a session bind to a certificate it never served.
#[derive(Debug, Clone)]
pub struct Handshake {
    config: Arc<ServerConfig>,
    end_point: Option<Arc<[u8]>>,
}

impl Handshake {
    /// An acceptor for an SSLRequest handshake.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.clone())
    }

    /// The configuration, for a handshake whose first bytes were already read (direct TLS).
    pub fn config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }

    /// The `tls-server-end-point` data of the certificate served (`None` when its
    /// signature algorithm names no hash, so `SCRAM-SHA-256-PLUS` is not offered).
    pub fn end_point(&self) -> Option<Arc<[u8]>> {
        self.end_point.clone()
    }
}

impl ClientTls {
    /// Loads the files (or generates the certificate) and builds the first configuration.
    pub fn load(settings: ClientTlsSettings) -> Result<ClientTls, ClientTlsError> {
        let generated = match &settings.source {
            ClientTlsSource::SelfSigned { names } => Some(SelfSigned::generate(names)?),
            ClientTlsSource::Files { .. } => None,
        };
        let loaded = build(&settings, generated.as_ref())?;
        Ok(ClientTls {
            settings,
            generated,
            current: RwLock::new(loaded),
        })
    }

    /// The configuration in use now, for one handshake.
    pub fn handshake(&self) -> Handshake {
        self.read().handshake
    }

    /// The SHA-256 fingerprint (`AB:CD:…`) of the certificate served now.
    pub fn fingerprint(&self) -> String {
        self.read().fingerprint
    }

    /// True for `--client-tls self-signed`.
    pub fn is_self_signed(&self) -> bool {
        self.generated.is_some()
    }

    /// The files a change of which should trigger a reload.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        if let ClientTlsSource::Files { cert, key } = &self.settings.source {
            files.push(cert.clone());
            files.push(key.clone());
        }
        files.extend(self.settings.client_ca.iter().cloned());
        files
    }

    /// Builds a configuration from the files as they are now and swaps it in; on an error
    /// the configuration in use stays. Returns the new certificate's fingerprint.
    pub fn reload(&self) -> Result<String, ClientTlsError> {
        let loaded = build(&self.settings, self.generated.as_ref())?;
        let fingerprint = loaded.fingerprint.clone();
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = loaded;
        Ok(fingerprint)
    }

    fn read(&self) -> Loaded {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

fn build(
    settings: &ClientTlsSettings,
    generated: Option<&SelfSigned>,
) -> Result<Loaded, ClientTlsError> {
    let (chain, key) = match (&settings.source, generated) {
        (_, Some(generated)) => (vec![generated.cert.clone()], generated.key.clone_key()),
        (ClientTlsSource::Files { cert, key }, None) => (read_chain(cert)?, read_key(key)?),
        (ClientTlsSource::SelfSigned { .. }, None) => {
            return Err(ClientTlsError::Generate(
                "no generated certificate".to_owned(),
            ));
        }
    };
    let fingerprint = fingerprint(&chain[0]);
    let end_point = tls_server_end_point(&chain[0]).map(Arc::from);
    let provider = crypto_provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(ClientTlsError::Rustls)?;
    let builder = match &settings.client_ca {
        Some(path) => builder.with_client_cert_verifier(client_verifier(path)?),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(ClientTlsError::Rustls)?;
    // libpq 17 sends ALPN `postgresql` on every handshake, and direct TLS requires it (as
    // PostgreSQL 17 does). Clients that send no ALPN at all (older libpq, JDBC) are
    // unaffected; one that offers only other protocols is refused by rustls.
    config.alpn_protocols = vec![ALPN_PROTOCOL.to_vec()];
    Ok(Loaded {
        handshake: Handshake {
            config: Arc::new(config),
            end_point,
        },
        fingerprint,
    })
}

/// Verifies client certificates against the CA file but lets clients without one finish
/// the handshake, so they get a PostgreSQL error that says what is missing instead of a
/// bare TLS alert.
fn client_verifier(path: &Path) -> Result<Arc<dyn ClientCertVerifier>, ClientTlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_pem_certificates(path)? {
        roots.add(cert).map_err(|e| CaFileError::new(path, e))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), crypto_provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| ClientTlsError::ClientCa(CaFileError::new(path, e)))
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, ClientTlsError> {
    let error = |why: String| ClientTlsError::Certificate {
        path: path.to_owned(),
        why,
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(e.to_string()))?;
    if chain.is_empty() {
        return Err(error("no PEM CERTIFICATE block in the file".to_owned()));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, ClientTlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| ClientTlsError::Key {
        path: path.to_owned(),
        why: match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "no PEM PRIVATE KEY block in the file".to_owned()
            }
            other => other.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair};

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    #[test]
    fn files_load_reload_and_a_bad_reload_keeps_the_old_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_pair(dir.path(), "one.example");
        let tls = ClientTls::load(ClientTlsSettings {
            source: ClientTlsSource::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            client_ca: None,
        })
        .unwrap();
        let first = tls.fingerprint();
        assert_eq!(first.len(), 32 * 3 - 1);
        assert_eq!(tls.watched_files(), vec![cert.clone(), key.clone()]);
        let first_handshake = tls.handshake();
        let first_der = std::fs::read(&cert).unwrap();
        let first_der = CertificateDer::from_pem_slice(&first_der).unwrap();
        assert_eq!(
            first_handshake.end_point().as_deref(),
            tls_server_end_point(&first_der).as_deref()
        );
        assert_eq!(
            first_handshake.config().alpn_protocols,
            vec![b"postgresql".to_vec()]
        );

        write_pair(dir.path(), "two.example");
        let second = tls.reload().unwrap();
        assert_ne!(first, second);
        assert_eq!(tls.fingerprint(), second);
        // A session whose handshake used the first certificate keeps binding to it.
        assert_ne!(tls.handshake().end_point(), first_handshake.end_point());
        assert_eq!(
            first_handshake.end_point().as_deref(),
            tls_server_end_point(&first_der).as_deref()
        );

        // A key from another pair: refused, the second certificate stays.
        let other = tempfile::tempdir().unwrap();
        let (_, other_key) = write_pair(other.path(), "three.example");
        std::fs::copy(&other_key, &key).unwrap();
        let err = tls.reload().unwrap_err();
        assert!(err.to_string().contains("cannot be used together"), "{err}");
        assert_eq!(tls.fingerprint(), second);

        std::fs::write(&cert, "not a certificate").unwrap();
        let err = tls.reload().unwrap_err();
        assert!(err.to_string().contains("cert.pem"), "{err}");
        assert_eq!(tls.fingerprint(), second);
    }

    #[test]
    fn missing_files_are_named() {
        let err = ClientTls::load(ClientTlsSettings {
            source: ClientTlsSource::Files {
                cert: PathBuf::from("/nonexistent/cert.pem"),
                key: PathBuf::from("/nonexistent/key.pem"),
            },
            client_ca: None,
        })
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
    }

    #[test]
    fn self_signed_has_a_fingerprint() {
        let tls = ClientTls::load(ClientTlsSettings {
            source: ClientTlsSource::SelfSigned {
                names: vec!["localhost".to_owned()],
            },
            client_ca: None,
        })
        .unwrap();
        assert!(tls.is_self_signed());
        assert!(tls.watched_files().is_empty());
        assert_eq!(tls.reload().unwrap(), tls.fingerprint());
    }
}
