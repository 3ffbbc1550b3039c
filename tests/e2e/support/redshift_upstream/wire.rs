//! Message framing for the Redshift-flavoured upstream: every read is bounded and returns an
//! error instead of panicking, since what arrives here comes from the proxy under test.

use std::io::{Error, ErrorKind, Result};

use rustls::crypto::CryptoProvider;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Either side of a connection, plain or TLS.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}
/// A connection whose TLS state is decided at run time.
pub type Io = Box<dyn Stream>;

/// PostgreSQL's limits: startup packets up to 10 000 bytes; no message here comes near 1 MiB.
const MAX_STARTUP: usize = 10_000;
const MAX_MESSAGE: usize = 1 << 20;

/// SSLRequest, GSSENCRequest and CancelRequest codes, and protocol 3.0.
pub const SSL_REQUEST: u32 = 80_877_103;
pub const GSSENC_REQUEST: u32 = 80_877_104;
pub const CANCEL_REQUEST: u32 = 80_877_102;

/// A protocol error from the peer.
pub fn invalid(what: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidData, what.into())
}

/// One tagged message.
pub fn message(tag: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&(payload.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A ParameterStatus message.
pub fn parameter_status(name: &str, value: &str) -> Vec<u8> {
    let mut payload = name.as_bytes().to_vec();
    payload.push(0);
    payload.extend_from_slice(value.as_bytes());
    payload.push(0);
    message(b'S', &payload)
}

/// A FATAL ErrorResponse.
pub fn fatal(sqlstate: &str, text: &str) -> Vec<u8> {
    let payload = format!("SFATAL\0VFATAL\0C{sqlstate}\0M{text}\0\0");
    message(b'E', payload.as_bytes())
}

/// Writes and flushes.
pub async fn send<S: AsyncWrite + Unpin + ?Sized>(stream: &mut S, bytes: &[u8]) -> Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}

/// Reads one tagged message: (type, payload).
pub async fn read_message<S: AsyncRead + Unpin + ?Sized>(stream: &mut S) -> Result<(u8, Vec<u8>)> {
    let tag = stream.read_u8().await?;
    let len = stream.read_u32().await? as usize;
    if !(4..=MAX_MESSAGE).contains(&len) {
        return Err(invalid(format!(
            "message '{}' of length {len}",
            char::from(tag)
        )));
    }
    let mut payload = vec![0; len - 4];
    stream.read_exact(&mut payload).await?;
    Ok((tag, payload))
}

/// Reads an untagged first packet: (code, rest of the body).
pub async fn read_first_packet<S: AsyncRead + Unpin + ?Sized>(
    stream: &mut S,
) -> Result<(u32, Vec<u8>)> {
    let len = stream.read_u32().await? as usize;
    if !(8..=MAX_STARTUP).contains(&len) {
        return Err(invalid(format!("first packet of length {len}")));
    }
    let code = stream.read_u32().await?;
    let mut body = vec![0; len - 8];
    stream.read_exact(&mut body).await?;
    Ok((code, body))
}

/// The name/value pairs of a StartupMessage body (after the version), in order.
pub fn startup_params(body: &[u8]) -> Result<Vec<(String, String)>> {
    let fields = body
        .strip_suffix(&[0])
        .ok_or_else(|| invalid("StartupMessage without its terminator"))?;
    if fields.is_empty() {
        return Ok(Vec::new());
    }
    let fields: Vec<&[u8]> = fields
        .strip_suffix(&[0])
        .ok_or_else(|| invalid("StartupMessage field without NUL"))?
        .split(|&b| b == 0)
        .collect();
    if !fields.len().is_multiple_of(2) {
        return Err(invalid("StartupMessage name without a value"));
    }
    fields
        .chunks(2)
        .map(|pair| {
            let text = |b: &[u8]| {
                String::from_utf8(b.to_vec()).map_err(|_| invalid("StartupMessage not UTF-8"))
            };
            Ok((text(pair[0])?, text(pair[1])?))
        })
        .collect()
}

/// The name and value of a ParameterStatus payload.
pub fn parse_parameter_status(payload: &[u8]) -> Option<(&str, &str)> {
    let mut parts = payload.split(|&b| b == 0);
    let name = std::str::from_utf8(parts.next()?).ok()?;
    let value = std::str::from_utf8(parts.next()?).ok()?;
    Some((name, value))
}

/// Random bytes from the crypto provider the tests already use (salts, nonces).
pub fn random<const N: usize>() -> [u8; N] {
    let mut out = [0; N];
    CryptoProvider::get_default()
        .map(|p| p.secure_random)
        .unwrap_or(rustls::crypto::aws_lc_rs::default_provider().secure_random)
        .fill(&mut out)
        .expect("the system's random source works");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_params_read_pairs_in_order_and_refuse_broken_bodies() {
        let body = b"user\0alice\0database\0dev\0\0";
        assert_eq!(
            startup_params(body).expect("parses"),
            vec![
                ("user".to_owned(), "alice".to_owned()),
                ("database".to_owned(), "dev".to_owned())
            ]
        );
        assert_eq!(startup_params(b"\0").expect("empty"), vec![]);
        assert!(startup_params(b"user\0alice\0").is_err(), "no terminator");
        assert!(startup_params(b"user\0\0").is_err(), "no value");
        assert!(startup_params(b"user\0\xff\0\0").is_err(), "not UTF-8");
    }
}
