//! SCRAM-SHA-256 toward PostgreSQL-compatible upstreams, with the server's final signature
//! verified so an impostor that does not know the password cannot complete the login.

use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

use super::AuthError;

/// The mechanism the proxy uses. Channel binding (`-PLUS`) is not offered: the gs2 header
/// says "n" (client does not support it), which servers accept whether or not they offer PLUS.
pub const MECHANISM: &str = "SCRAM-SHA-256";

/// One SCRAM exchange in progress.
pub struct ScramClient {
    inner: ScramSha256,
}

impl ScramClient {
    /// Picks SCRAM-SHA-256 from the offered list and returns the client-first-message.
    pub fn start(
        mechanisms: &[String],
        password: &[u8],
    ) -> Result<(ScramClient, Vec<u8>), AuthError> {
        if !mechanisms.iter().any(|m| m == MECHANISM) {
            return Err(AuthError::NoScramMechanism(mechanisms.to_vec()));
        }
        let inner = ScramSha256::new(password, ChannelBinding::unsupported());
        let first = inner.message().to_vec();
        Ok((ScramClient { inner }, first))
    }

    /// Takes the server-first-message and returns the client-final-message.
    pub fn server_first(&mut self, data: &[u8]) -> Result<Vec<u8>, AuthError> {
        self.inner.update(data).map_err(AuthError::Scram)?;
        Ok(self.inner.message().to_vec())
    }

    /// Verifies the server-final-message's signature.
    pub fn server_final(&mut self, data: &[u8]) -> Result<(), AuthError> {
        self.inner.finish(data).map_err(AuthError::Scram)
    }
}
