//! The upstream's own login to the tests' PostgreSQL: TLS (the server takes TCP logins over
//! TLS only), a StartupMessage as the mapped role, and PostgreSQL's authentication answered
//! here (SCRAM-SHA-256, MD5 or cleartext, with postgres-protocol's client code), up to
//! ReadyForQuery. What PostgreSQL sent after AuthenticationOk is kept for the greeting.

use std::io::Result;
use std::sync::Arc;

use bytes::BytesMut;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use postgres_protocol::message::frontend;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::wire::{self, Io, invalid};

/// Where and as whom the upstream logs in.
pub struct Backend {
    /// PostgreSQL's TCP port on 127.0.0.1.
    pub port: u16,
    /// Trusts the CA that signed PostgreSQL's `localhost` certificate.
    pub tls: Arc<rustls::ClientConfig>,
    /// The role every session runs as.
    pub role: String,
    /// Its password.
    pub password: String,
}

/// How a login ended.
pub enum Login {
    /// Logged in: the connection and every message after AuthenticationOk up to and
    /// including ReadyForQuery.
    Ready(Io, Vec<(u8, Vec<u8>)>),
    /// PostgreSQL refused: its ErrorResponse payload.
    Refused(Vec<u8>),
}

impl Backend {
    /// Logs in with `params` (the client's, stripped), `user` replaced by the mapped role.
    pub async fn login(&self, params: &[(String, String)]) -> Result<Login> {
        let mut server = self.connect().await?;
        let mut startup: Vec<(&str, &str)> = vec![("user", &self.role)];
        startup.extend(
            params
                .iter()
                .filter(|(name, _)| name != "user")
                .map(|(n, v)| (n.as_str(), v.as_str())),
        );
        let mut buf = BytesMut::new();
        frontend::startup_message(startup, &mut buf)?;
        wire::send(&mut server, &buf).await?;
        let mut scram: Option<ScramSha256> = None;
        loop {
            let (tag, payload) = wire::read_message(&mut server).await?;
            match tag {
                b'E' => return Ok(Login::Refused(payload)),
                b'R' => {
                    let code = payload
                        .get(..4)
                        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                        .ok_or_else(|| invalid("short authentication request"))?;
                    if code == 0 {
                        break;
                    }
                    let answer = self.answer(code, &payload[4..], &mut scram)?;
                    wire::send(&mut server, &answer).await?;
                }
                other => {
                    return Err(invalid(format!(
                        "'{}' from PostgreSQL during login",
                        char::from(other)
                    )));
                }
            }
        }
        let mut greeting = Vec::new();
        loop {
            let (tag, payload) = wire::read_message(&mut server).await?;
            if tag == b'E' {
                return Ok(Login::Refused(payload));
            }
            greeting.push((tag, payload));
            if tag == b'Z' {
                return Ok(Login::Ready(server, greeting));
            }
        }
    }

    /// TCP, SSLRequest, `S`, TLS for `localhost`.
    async fn connect(&self) -> Result<Io> {
        let mut tcp = TcpStream::connect(("127.0.0.1", self.port)).await?;
        let mut buf = BytesMut::new();
        frontend::ssl_request(&mut buf);
        wire::send(&mut tcp, &buf).await?;
        let mut answer = [0u8; 1];
        tokio::io::AsyncReadExt::read_exact(&mut tcp, &mut answer).await?;
        if answer != *b"S" {
            return Err(invalid("PostgreSQL refused TLS"));
        }
        let name = ServerName::try_from("localhost").map_err(|e| invalid(e.to_string()))?;
        let tls = TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await?;
        Ok(Box::new(tls))
    }

    /// The answer to authentication request `code` with `data` (after the code).
    fn answer(&self, code: u32, data: &[u8], scram: &mut Option<ScramSha256>) -> Result<Vec<u8>> {
        let mut buf = BytesMut::new();
        let password = self.password.as_bytes();
        match code {
            3 => frontend::password_message(password, &mut buf)?,
            5 => {
                let salt: [u8; 4] = data
                    .get(..4)
                    .and_then(|s| s.try_into().ok())
                    .ok_or_else(|| invalid("MD5 request without salt"))?;
                let hash = md5_hash(self.role.as_bytes(), password, salt);
                frontend::password_message(hash.as_bytes(), &mut buf)?;
            }
            10 => {
                let client = ScramSha256::new(password, ChannelBinding::unsupported());
                frontend::sasl_initial_response(SCRAM_SHA_256, client.message(), &mut buf)?;
                *scram = Some(client);
            }
            11 => {
                let client = scram
                    .as_mut()
                    .ok_or_else(|| invalid("SASLContinue first"))?;
                client.update(data)?;
                frontend::sasl_response(client.message(), &mut buf)?;
            }
            12 => {
                let mut client = scram.take().ok_or_else(|| invalid("SASLFinal first"))?;
                client.finish(data)?;
                return Ok(Vec::new());
            }
            other => return Err(invalid(format!("authentication code {other}"))),
        }
        Ok(buf.to_vec())
    }
}
