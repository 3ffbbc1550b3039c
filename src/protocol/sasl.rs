//! The SASL messages of a login the proxy itself checks (`--client-auth scram`): the three
//! authentication requests it sends to the client (`'R'` codes 10, 11 and 12) and the
//! client's answers (`'p'`), whose layout depends on the step, so the caller says which one
//! it expects.

use bytes::{BufMut, BytesMut};

/// AuthenticationSASL: the mechanisms the server offers.
const SASL: u32 = 10;
/// AuthenticationSASLContinue: the server-first-message.
const SASL_CONTINUE: u32 = 11;
/// AuthenticationSASLFinal: the server-final-message.
const SASL_FINAL: u32 = 12;

/// A `'p'` message that is not a well-formed SASL answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslMessageError {
    /// The mechanism name has no terminating NUL.
    #[error("malformed SASLInitialResponse: the mechanism name is not terminated")]
    UnterminatedMechanism,
    /// The mechanism name is not UTF-8.
    #[error("malformed SASLInitialResponse: the mechanism name is not UTF-8")]
    MechanismNotUtf8,
    /// The data length field is missing, negative or disagrees with the message.
    #[error("malformed SASLInitialResponse: its data length does not match the message")]
    DataLength,
}

/// Appends AuthenticationSASL offering `mechanisms`.
pub fn authentication_sasl(mechanisms: &[&str], out: &mut BytesMut) {
    let start = begin(out, SASL);
    for mechanism in mechanisms {
        out.extend_from_slice(mechanism.as_bytes());
        out.put_u8(0);
    }
    out.put_u8(0);
    finish(out, start);
}

/// Appends AuthenticationSASLContinue carrying `data` (the server-first-message).
pub fn authentication_sasl_continue(data: &[u8], out: &mut BytesMut) {
    let start = begin(out, SASL_CONTINUE);
    out.extend_from_slice(data);
    finish(out, start);
}

/// Appends AuthenticationSASLFinal carrying `data` (the server-final-message).
pub fn authentication_sasl_final(data: &[u8], out: &mut BytesMut) {
    let start = begin(out, SASL_FINAL);
    out.extend_from_slice(data);
    finish(out, start);
}

/// The payload of a SASLInitialResponse: the mechanism the client chose and its first
/// message (empty when the client sent length -1).
pub fn parse_sasl_initial_response(payload: &[u8]) -> Result<(&str, &[u8]), SaslMessageError> {
    let nul = payload
        .iter()
        .position(|&b| b == 0)
        .ok_or(SaslMessageError::UnterminatedMechanism)?;
    let mechanism =
        std::str::from_utf8(&payload[..nul]).map_err(|_| SaslMessageError::MechanismNotUtf8)?;
    let rest = &payload[nul + 1..];
    let length: [u8; 4] = rest
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or(SaslMessageError::DataLength)?;
    let length = i32::from_be_bytes(length);
    let data = &rest[4..];
    match length {
        -1 if data.is_empty() => Ok((mechanism, &[])),
        n if n >= 0 && n as usize == data.len() => Ok((mechanism, data)),
        _ => Err(SaslMessageError::DataLength),
    }
}

fn begin(out: &mut BytesMut, code: u32) -> usize {
    let start = out.len();
    out.put_u8(b'R');
    out.put_u32(0);
    out.put_u32(code);
    start
}

fn finish(out: &mut BytesMut, start: usize) {
    let len = (out.len() - start - 1) as u32;
    out[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{AuthRequest, parse_auth_request};

    #[test]
    fn requests_parse_back_as_the_upstream_side_reads_them() {
        let mut out = BytesMut::new();
        authentication_sasl(&["SCRAM-SHA-256"], &mut out);
        assert_eq!(&out[..5], &[b'R', 0, 0, 0, 23]);
        assert_eq!(
            parse_auth_request(&out[5..]).unwrap(),
            AuthRequest::Sasl {
                mechanisms: vec!["SCRAM-SHA-256".to_owned()]
            }
        );
        out.clear();
        authentication_sasl_continue(b"r=abc,s=c2FsdA==,i=4096", &mut out);
        assert_eq!(&out[5..9], &[0, 0, 0, 11]);
        assert_eq!(&out[9..], b"r=abc,s=c2FsdA==,i=4096");
        out.clear();
        authentication_sasl_final(b"v=sig", &mut out);
        assert_eq!(&out[..9], &[b'R', 0, 0, 0, 13, 0, 0, 0, 12]);
    }

    #[test]
    fn initial_response() {
        let mut payload = b"SCRAM-SHA-256\0".to_vec();
        payload.extend_from_slice(&5i32.to_be_bytes());
        payload.extend_from_slice(b"n,,n=");
        assert_eq!(
            parse_sasl_initial_response(&payload).unwrap(),
            ("SCRAM-SHA-256", &b"n,,n="[..])
        );
        let mut none = b"X\0".to_vec();
        none.extend_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(parse_sasl_initial_response(&none).unwrap(), ("X", &[][..]));
        for bad in [
            &b"SCRAM-SHA-256"[..],
            b"SCRAM\0\0\0",
            b"SCRAM\0\0\0\0\x09abc",
            b"SCRAM\0\xff\xff\xff\xfeab",
        ] {
            assert!(parse_sasl_initial_response(bad).is_err(), "{bad:?}");
        }
    }
}
