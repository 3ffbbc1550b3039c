//! The TLS pieces both sides share: one crypto provider for every handshake (the client
//! listener's and the server connection's) and the reading of PEM certificate files, so
//! `--upstream-ca` and `--client-ca` accept the same files and fail with the same message.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The crypto provider used for every TLS connection: aws-lc-rs, the one the AWS SDK builds
/// anyway, so the binary carries a single crypto library.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A CA file that cannot be read, holds no certificate, or holds one rustls cannot use; the
/// message names the file so the user knows which flag to fix.
#[derive(Debug, thiserror::Error)]
#[error("cannot read CA certificates from {path}: {why}")]
pub struct CaFileError {
    /// The file named by `--upstream-ca` or `--client-ca`.
    pub path: PathBuf,
    /// What was wrong with it.
    pub why: String,
}

impl CaFileError {
    /// The error for `path`, with the reason as text.
    pub fn new(path: &Path, why: impl ToString) -> CaFileError {
        CaFileError {
            path: path.to_owned(),
            why: why.to_string(),
        }
    }
}

/// Reads every certificate in a PEM file, refusing a file that holds none (a common mistake
/// is pointing at a key or a DER file).
pub fn read_pem_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, CaFileError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| CaFileError::new(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CaFileError::new(path, e))?;
    if certs.is_empty() {
        return Err(CaFileError::new(
            path,
            "no PEM CERTIFICATE block in the file",
        ));
    }
    Ok(certs)
}
