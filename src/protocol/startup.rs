//! The untagged packets a client may send first: StartupMessage, SSLRequest, GSSENCRequest
//! and CancelRequest. Parsed here with the server's own limits (`ProcessStartupPacket` in
//! PostgreSQL's `backend_startup.c`) so a hostile first packet is refused before any work.

use super::sqlstate;
use std::fmt;

/// PostgreSQL caps a startup packet at 10 000 bytes (`MAX_STARTUP_PACKET_LENGTH`); larger
/// ones are refused so a client cannot make the proxy buffer arbitrary amounts.
pub const MAX_STARTUP_PACKET_LEN: usize = 10_000;
/// The smallest packet that can hold a length and a code.
pub const MIN_STARTUP_PACKET_LEN: usize = 8;

/// Protocol 3.0 as a StartupMessage carries it.
pub const PROTOCOL_3_0: u32 = 196_608;
/// The request code of an SSLRequest.
pub const SSL_REQUEST_CODE: u32 = 80_877_103;
/// The request code of a GSSENCRequest.
pub const GSSENC_REQUEST_CODE: u32 = 80_877_104;
/// The request code of a CancelRequest.
pub const CANCEL_REQUEST_CODE: u32 = 80_877_102;

/// The first byte of a TLS handshake record (content type 22): a client that opens with it
/// wants direct TLS (libpq 17's `sslnegotiation=direct`). No startup packet can begin with
/// it: its length would be over 369 MB, far above `MAX_STARTUP_PACKET_LEN`.
pub const TLS_HANDSHAKE_RECORD: u8 = 0x16;
/// The ALPN protocol name PostgreSQL 17 and libpq 17 negotiate, required for direct TLS so
/// a TLS connection meant for another protocol is not taken for a PostgreSQL one.
pub const ALPN_PROTOCOL: &[u8] = b"postgresql";

/// The identity of a backend as BackendKeyData gives it, which a CancelRequest must name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CancelKey {
    /// The backend's process id.
    pub process_id: i32,
    /// The secret that proves the canceller saw the session's BackendKeyData.
    pub secret_key: i32,
}

impl CancelKey {
    /// The key in a BackendKeyData payload (or a CancelRequest's body): two Int32s, process
    /// id then secret. `None` when the payload is too short to hold them.
    pub fn from_payload(payload: &[u8]) -> Option<CancelKey> {
        let process_id = payload.get(..4)?.try_into().ok().map(i32::from_be_bytes)?;
        let secret_key = payload.get(4..8)?.try_into().ok().map(i32::from_be_bytes)?;
        Some(CancelKey {
            process_id,
            secret_key,
        })
    }

    /// The key as a BackendKeyData payload or a CancelRequest body: process id then secret.
    pub fn to_payload(self) -> [u8; 8] {
        let mut out = [0u8; 8];
        out[..4].copy_from_slice(&self.process_id.to_be_bytes());
        out[4..].copy_from_slice(&self.secret_key.to_be_bytes());
        out
    }
}

/// The payload length of a protocol 3.0 BackendKeyData: two Int32s.
pub const BACKEND_KEY_DATA_PAYLOAD_LEN: usize = 8;

/// Why a greeting's BackendKeyData could not be replaced. Either means the bytes were not
/// the complete messages a login collects, so the greeting must not reach the client: it
/// could carry the server's own key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendKeyError {
    /// A message's length field runs past the buffer or is below 4.
    #[error("the greeting is not a sequence of complete messages at byte {offset}")]
    Framing {
        /// Where the broken message starts.
        offset: usize,
    },
    /// A BackendKeyData whose payload is not two Int32s (protocol 3.2 keys are longer; the
    /// proxy asks the server for 3.0).
    #[error("a BackendKeyData of {len} payload bytes, not {BACKEND_KEY_DATA_PAYLOAD_LEN}")]
    Length {
        /// The payload length found.
        len: usize,
    },
}

/// Replaces the key of every BackendKeyData (`'K'`) message in `greeting`, a sequence of
/// complete backend messages, with `key`, in place; every other byte is left as it is.
/// Returns the key the server had sent (the last one, as a login keeps), or `None` when the
/// greeting held no BackendKeyData. The proxy issues its own keys so a client never learns
/// the server's: a CancelRequest then has to come through the proxy's registry, and a
/// forged or stale key reaches no server.
pub fn replace_backend_key(
    greeting: &mut [u8],
    key: CancelKey,
) -> Result<Option<CancelKey>, BackendKeyError> {
    let mut replaced = None;
    let mut offset = 0;
    while offset < greeting.len() {
        let broken = BackendKeyError::Framing { offset };
        let length = greeting
            .get(offset + 1..offset + 5)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
            .ok_or(broken.clone())? as usize;
        let end = (offset + 1)
            .checked_add(length)
            .filter(|&end| length >= 4 && end <= greeting.len())
            .ok_or(broken)?;
        if greeting[offset] == b'K' {
            let payload = &mut greeting[offset + 5..end];
            if payload.len() != BACKEND_KEY_DATA_PAYLOAD_LEN {
                return Err(BackendKeyError::Length { len: payload.len() });
            }
            replaced = CancelKey::from_payload(payload);
            payload.copy_from_slice(&key.to_payload());
        }
        offset = end;
    }
    Ok(replaced)
}

/// What the client asked for with its first packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstPacket {
    /// A StartupMessage for protocol 3: the session goes on.
    Startup(StartupParams),
    /// The client wants TLS before its StartupMessage.
    SslRequest,
    /// The client wants GSSAPI encryption before its StartupMessage.
    GssEncRequest,
    /// Cancel the query running on another session, then close.
    Cancel(CancelKey),
}

/// The parameters of a StartupMessage in the order the client sent them, plus the minor
/// protocol version it asked for (servers answer a minor above 0 with NegotiateProtocolVersion).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StartupParams {
    /// The minor protocol version requested (`3.x`).
    pub minor_version: u16,
    /// Name/value pairs as sent; `user`, `database`, `options`, driver-specific ones, ….
    pub params: Vec<(String, String)>,
}

impl StartupParams {
    /// The value of parameter `name`, if the client sent it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Why a first packet was refused. Every message tells a person what their client did wrong;
/// the session sends it as an ErrorResponse with [`StartupError::sqlstate`] and closes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartupError {
    /// The length field is below the smallest packet.
    #[error(
        "invalid length of startup packet: {0} bytes (at least 8): the client is not speaking the PostgreSQL protocol"
    )]
    TooShort(u32),
    /// The length field is over the server's limit.
    #[error(
        "invalid length of startup packet: {0} bytes (at most 10000): send fewer or shorter startup parameters"
    )]
    TooLong(u32),
    /// The packet ended before its length field said it would (the client closed part way).
    #[error("incomplete startup packet: expected {expected} bytes, got {got}")]
    Truncated {
        /// The length field.
        expected: usize,
        /// The bytes received.
        got: usize,
    },
    /// Protocol 1 or 2: libpq before PostgreSQL 7.4.
    #[error(
        "unsupported frontend protocol {major}.{minor}: the proxy speaks protocol 3.0; upgrade the client or its driver"
    )]
    OldProtocol {
        /// Major version requested.
        major: u16,
        /// Minor version requested.
        minor: u16,
    },
    /// A major version or request code nobody defined.
    #[error(
        "unsupported frontend protocol or request code {major}.{minor}: the proxy speaks protocol 3.0"
    )]
    UnknownProtocol {
        /// High 16 bits of the code.
        major: u16,
        /// Low 16 bits of the code.
        minor: u16,
    },
    /// A request whose fixed length does not match.
    #[error("invalid length {len} for {what}: expected {expected}")]
    WrongRequestLength {
        /// Which request.
        what: &'static str,
        /// Its length field.
        len: usize,
        /// The length it must have.
        expected: usize,
    },
    /// A parameter name or value without its NUL, or a list without the final NUL.
    #[error("invalid startup packet layout: {0}")]
    MissingTerminator(&'static str),
    /// A parameter name or value that is not UTF-8.
    #[error("invalid startup packet: parameter {0} is not valid UTF-8")]
    NotUtf8(ParamPart),
}

impl StartupError {
    /// The SQLSTATE of the ErrorResponse that refuses the packet, as PostgreSQL's
    /// `ProcessStartupPacket` chooses it: a protocol version it does not speak is
    /// `0A000` (feature_not_supported, "unsupported frontend protocol"); everything else is a
    /// malformed packet, `08P01` (protocol_violation).
    pub fn sqlstate(&self) -> &'static str {
        match self {
            StartupError::OldProtocol { .. } | StartupError::UnknownProtocol { .. } => {
                sqlstate::FEATURE_NOT_SUPPORTED
            }
            _ => sqlstate::PROTOCOL_VIOLATION,
        }
    }
}

/// Which half of a parameter was broken, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamPart {
    /// The name at this position (counted from 1).
    Name(usize),
    /// The value of this (UTF-8) parameter.
    Value(String),
}

impl fmt::Display for ParamPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamPart::Name(n) => write!(f, "name #{n}"),
            ParamPart::Value(name) => write!(f, "'{name}' value"),
        }
    }
}

/// Checks the length field of a first packet and returns the packet's total size (length
/// field included), so the caller knows how much to read before parsing.
pub fn packet_len(length_field: [u8; 4]) -> Result<usize, StartupError> {
    let len = u32::from_be_bytes(length_field);
    if (len as usize) < MIN_STARTUP_PACKET_LEN {
        return Err(StartupError::TooShort(len));
    }
    if len as usize > MAX_STARTUP_PACKET_LEN {
        return Err(StartupError::TooLong(len));
    }
    Ok(len as usize)
}

/// Parses a whole first packet, length field included.
pub fn parse_first_packet(packet: &[u8]) -> Result<FirstPacket, StartupError> {
    let header: [u8; 4] =
        packet
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or(StartupError::Truncated {
                expected: MIN_STARTUP_PACKET_LEN,
                got: packet.len(),
            })?;
    let len = packet_len(header)?;
    if packet.len() != len {
        return Err(StartupError::Truncated {
            expected: len,
            got: packet.len(),
        });
    }
    let code = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
    let body = &packet[8..];
    let fixed = |what: &'static str, expected: usize| {
        if len == expected {
            Ok(())
        } else {
            Err(StartupError::WrongRequestLength {
                what,
                len,
                expected,
            })
        }
    };
    match code {
        SSL_REQUEST_CODE => fixed("SSLRequest", 8).map(|()| FirstPacket::SslRequest),
        GSSENC_REQUEST_CODE => fixed("GSSENCRequest", 8).map(|()| FirstPacket::GssEncRequest),
        CANCEL_REQUEST_CODE => {
            fixed("CancelRequest", 16)?;
            CancelKey::from_payload(body)
                .map(FirstPacket::Cancel)
                .ok_or(StartupError::Truncated {
                    expected: 16,
                    got: packet.len(),
                })
        }
        _ => {
            let major = (code >> 16) as u16;
            let minor = (code & 0xffff) as u16;
            match major {
                3 => parse_params(body, minor).map(FirstPacket::Startup),
                1 | 2 => Err(StartupError::OldProtocol { major, minor }),
                _ => Err(StartupError::UnknownProtocol { major, minor }),
            }
        }
    }
}

fn parse_params(mut body: &[u8], minor_version: u16) -> Result<StartupParams, StartupError> {
    let mut params = Vec::new();
    loop {
        let (name, rest) = split_cstr(body).ok_or(StartupError::MissingTerminator(
            "the parameter list does not end with a NUL byte",
        ))?;
        if name.is_empty() {
            if !rest.is_empty() {
                return Err(StartupError::MissingTerminator(
                    "bytes follow the parameter list's final NUL",
                ));
            }
            return Ok(StartupParams {
                minor_version,
                params,
            });
        }
        let name = std::str::from_utf8(name)
            .map_err(|_| StartupError::NotUtf8(ParamPart::Name(params.len() + 1)))?;
        let (value, rest) = split_cstr(rest).ok_or(StartupError::MissingTerminator(
            "a parameter value does not end with a NUL byte",
        ))?;
        let value = std::str::from_utf8(value)
            .map_err(|_| StartupError::NotUtf8(ParamPart::Value(name.to_owned())))?;
        params.push((name.to_owned(), value.to_owned()));
        body = rest;
    }
}

/// Splits at the first NUL: the string before it and what follows it.
fn split_cstr(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let nul = buf.iter().position(|&b| b == 0)?;
    Some((&buf[..nul], &buf[nul + 1..]))
}

/// Encodes a CancelRequest packet, to forward a client's cancel to the upstream.
pub fn encode_cancel_request(key: CancelKey) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..4].copy_from_slice(&16u32.to_be_bytes());
    out[4..8].copy_from_slice(&CANCEL_REQUEST_CODE.to_be_bytes());
    out[8..12].copy_from_slice(&key.process_id.to_be_bytes());
    out[12..].copy_from_slice(&key.secret_key.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend_message(tag: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        out.extend_from_slice(&((payload.len() + 4) as u32).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn backend_key_data_is_replaced_and_nothing_else_changes() {
        let server = CancelKey {
            process_id: 4242,
            secret_key: -7,
        };
        let proxy = CancelKey {
            process_id: 99,
            secret_key: 0x1234_5678,
        };
        let parts = [
            backend_message(b'R', &0u32.to_be_bytes()),
            backend_message(b'S', b"server_version\08.0.2\0"),
            // A K inside another message's payload must not be taken for a message.
            backend_message(b'N', b"SK\0\0\0\x0c\0"),
            backend_message(b'K', &server.to_payload()),
            backend_message(b'Z', b"I"),
        ];
        let mut greeting = parts.concat();
        assert_eq!(replace_backend_key(&mut greeting, proxy), Ok(Some(server)));
        let mut want = parts.clone();
        want[3] = backend_message(b'K', &proxy.to_payload());
        assert_eq!(greeting, want.concat());
        let server_bytes = server.to_payload();
        assert!(
            !greeting.windows(8).any(|w| w == server_bytes),
            "the server's key is gone"
        );
    }

    #[test]
    fn a_greeting_without_backend_key_data_is_untouched() {
        let original = [
            backend_message(b'R', &0u32.to_be_bytes()),
            backend_message(b'Z', b"I"),
        ]
        .concat();
        let mut greeting = original.clone();
        let key = CancelKey {
            process_id: 1,
            secret_key: 2,
        };
        assert_eq!(replace_backend_key(&mut greeting, key), Ok(None));
        assert_eq!(greeting, original);
        assert_eq!(replace_backend_key(&mut [], key), Ok(None));
    }

    #[test]
    fn malformed_greetings_are_refused() {
        let key = CancelKey {
            process_id: 1,
            secret_key: 2,
        };
        // A 3.2-style long secret cannot be replaced by a 3.0 key.
        let mut long = backend_message(b'K', &[7u8; 36]);
        assert_eq!(
            replace_backend_key(&mut long, key),
            Err(BackendKeyError::Length { len: 36 })
        );
        // A length past the end, a length below 4, a truncated header.
        let mut past = backend_message(b'K', &[0u8; 8]);
        past.truncate(10);
        assert_eq!(
            replace_backend_key(&mut past, key),
            Err(BackendKeyError::Framing { offset: 0 })
        );
        let mut short = [b'Z', 0, 0, 0, 3];
        assert_eq!(
            replace_backend_key(&mut short, key),
            Err(BackendKeyError::Framing { offset: 0 })
        );
        let mut header = [backend_message(b'Z', b"I"), vec![b'K', 0]].concat();
        assert_eq!(
            replace_backend_key(&mut header, key),
            Err(BackendKeyError::Framing { offset: 6 })
        );
    }

    #[test]
    fn cancel_keys_round_trip_through_payloads() {
        let key = CancelKey {
            process_id: i32::MIN,
            secret_key: -1,
        };
        assert_eq!(CancelKey::from_payload(&key.to_payload()), Some(key));
        assert_eq!(&encode_cancel_request(key)[8..], &key.to_payload());
    }

    fn packet(code: u32, body: &[u8]) -> Vec<u8> {
        let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(&code.to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn startup_message_keeps_parameters_in_order() {
        let p = packet(
            PROTOCOL_3_0,
            b"user\0alice\0database\0dev\0application_name\0psql\0\0",
        );
        let FirstPacket::Startup(params) = parse_first_packet(&p).unwrap() else {
            panic!("not a startup")
        };
        assert_eq!(params.get("user"), Some("alice"));
        assert_eq!(params.get("database"), Some("dev"));
        assert_eq!(params.params.len(), 3);
        assert_eq!(params.minor_version, 0);
    }

    #[test]
    fn requests() {
        assert_eq!(
            parse_first_packet(&packet(SSL_REQUEST_CODE, b"")).unwrap(),
            FirstPacket::SslRequest
        );
        assert_eq!(
            parse_first_packet(&packet(GSSENC_REQUEST_CODE, b"")).unwrap(),
            FirstPacket::GssEncRequest
        );
        let key = CancelKey {
            process_id: 42,
            secret_key: -7,
        };
        let encoded = encode_cancel_request(key);
        assert_eq!(
            parse_first_packet(&encoded).unwrap(),
            FirstPacket::Cancel(key)
        );
    }

    #[test]
    fn refusals() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![0, 0, 0, 7, 0, 0, 0], "at least 8"),
            (vec![0, 0, 0, 0], "at least 8"),
            (vec![0, 0, 0, 3], "at least 8"),
            (10_001u32.to_be_bytes().to_vec(), "at most 10000"),
            (0x7fff_ffffu32.to_be_bytes().to_vec(), "at most 10000"),
            (packet(0x0002_0000, b"user\0a\0\0"), "protocol 2.0"),
            (packet(0x0009_0000, b""), "9.0"),
            (packet(PROTOCOL_3_0, b"user\0alice"), "NUL"),
            (packet(PROTOCOL_3_0, b"user\0alice\0"), "NUL"),
            (packet(PROTOCOL_3_0, b"user"), "NUL"),
            (packet(PROTOCOL_3_0, b"us\xffer\0a\0\0"), "name #1"),
            (packet(PROTOCOL_3_0, b"user\0\xfe\0\0"), "'user' value"),
            (packet(PROTOCOL_3_0, b"user\0a\0\0junk"), "final NUL"),
            (packet(SSL_REQUEST_CODE, b"x"), "SSLRequest"),
            (packet(CANCEL_REQUEST_CODE, b"1234"), "CancelRequest"),
        ];
        for (bytes, want) in cases {
            let err = match bytes.len() {
                4 => packet_len(bytes[..4].try_into().unwrap()).unwrap_err(),
                _ => parse_first_packet(&bytes).unwrap_err(),
            };
            assert!(
                err.to_string().contains(want),
                "{bytes:?}: '{err}' lacks '{want}'"
            );
        }
    }

    #[test]
    fn truncated_packet() {
        let mut p = packet(PROTOCOL_3_0, b"user\0a\0\0");
        p.pop();
        let err = parse_first_packet(&p).unwrap_err();
        assert!(matches!(err, StartupError::Truncated { .. }));
        assert!(err.to_string().starts_with("incomplete startup packet"));
        assert_eq!(err.sqlstate(), "08P01");
    }

    #[test]
    fn unsupported_protocols_are_feature_not_supported() {
        // PostgreSQL answers a version it does not speak with 0A000, not 08P01.
        for code in [0x0002_0000, 0x0001_0000, 0x0004_0000, 0x04d2_1631] {
            let err = parse_first_packet(&packet(code, b"user\0a\0\0")).unwrap_err();
            assert_eq!(err.sqlstate(), "0A000", "{err}");
        }
        let malformed = [
            packet_len([0, 0, 0, 7]).unwrap_err(),
            packet_len([0, 0, 0x27, 0x11]).unwrap_err(),
            parse_first_packet(&packet(PROTOCOL_3_0, b"user\0a\0")).unwrap_err(),
            parse_first_packet(&packet(PROTOCOL_3_0, b"\xff\0a\0\0")).unwrap_err(),
            parse_first_packet(&packet(CANCEL_REQUEST_CODE, b"")).unwrap_err(),
        ];
        for err in malformed {
            assert_eq!(err.sqlstate(), "08P01", "{err}");
        }
    }
}
