//! The properties of the pure protocol codec (`src/protocol/`) that hostile input must never
//! break, written once and checked by two drivers: the cargo-fuzz targets in `fuzz/` (whose
//! package compiles this file as its library, `protocol_checks`) and the proptest mirrors in
//! `tests/e2e/protocol_properties.rs`. Each function takes raw bytes, runs the parser on them and
//! panics if a property fails; a panic inside the parser itself fails the same way.
//!
//! - first packets (`packet_len`, `parse_first_packet`): every input is either a packet or a
//!   typed `StartupError` whose message can be printed; a packet that parses is re-encoded to
//!   exactly the bytes it came from, so the parser neither invents nor drops anything;
//! - authentication requests (`parse_auth_request`): the same, plus the decoded fields are
//!   the bytes at their places in the payload;
//! - the frame walker: the headers it reports, its error and its boundary state do not
//!   depend on how the stream is cut into chunks, and agree with a plain sequential reading
//!   of the stream written here;
//! - what a client sends for `--client-auth scram` ([`client_auth`]): the SASLInitialResponse,
//!   the SCRAM client-first and client-final messages, and the users file.
//!
//! It depends on nothing but the library (and `base64` and `postgres-protocol`, which the
//! library uses too) and no other support module, so the fuzz package can compile it on its
//! own.

mod client_auth;

pub use client_auth::{
    check_scram_client_input, check_scram_client_messages, check_scram_round_trip, check_users_file,
};

use redshift_auth_proxy::protocol::auth_request::{AuthRequest, parse_auth_request};
use redshift_auth_proxy::protocol::frame::{BadFrameLength, FrameHeader, FrameWalker};
use redshift_auth_proxy::protocol::startup::{
    self, CANCEL_REQUEST_CODE, FirstPacket, GSSENC_REQUEST_CODE, MAX_STARTUP_PACKET_LEN,
    MIN_STARTUP_PACKET_LEN, SSL_REQUEST_CODE, StartupError, StartupParams,
};

/// Encodes a StartupMessage for protocol 3.`params.minor_version`, length field included.
pub fn encode_startup(params: &StartupParams) -> Vec<u8> {
    let mut out = vec![0; 4];
    out.extend_from_slice(&(0x0003_0000u32 | u32::from(params.minor_version)).to_be_bytes());
    for (name, value) in &params.params {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(value.as_bytes());
        out.push(0);
    }
    out.push(0);
    let len = out.len() as u32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    out
}

/// `data` as a first packet, as the session sees it: the length field checked on its own,
/// then the whole packet parsed. Also parses `data` as the body of a packet whose length
/// field is right, so the body parser is reached without guessing a length.
pub fn check_startup_packet(data: &[u8]) {
    check_first_packet(data);
    if data.len() + 4 <= MAX_STARTUP_PACKET_LEN {
        let mut framed = ((data.len() + 4) as u32).to_be_bytes().to_vec();
        framed.extend_from_slice(data);
        check_first_packet(&framed);
    }
}

fn check_first_packet(data: &[u8]) {
    let length_field: Option<[u8; 4]> = data.get(..4).and_then(|b| b.try_into().ok());
    if let Some(field) = length_field {
        let declared = u32::from_be_bytes(field);
        match startup::packet_len(field) {
            Ok(len) => {
                assert_eq!(len, declared as usize);
                assert!((MIN_STARTUP_PACKET_LEN..=MAX_STARTUP_PACKET_LEN).contains(&len));
            }
            Err(StartupError::TooShort(n)) => {
                assert_eq!(n, declared);
                assert!((n as usize) < MIN_STARTUP_PACKET_LEN);
            }
            Err(StartupError::TooLong(n)) => {
                assert_eq!(n, declared);
                assert!(n as usize > MAX_STARTUP_PACKET_LEN);
            }
            Err(other) => panic!("packet_len gave {other:?} for {declared}"),
        }
    }
    match startup::parse_first_packet(data) {
        Ok(packet) => {
            let declared = u32::from_be_bytes(length_field.expect("a packet has a length"));
            assert_eq!(
                declared as usize,
                data.len(),
                "length field is the packet size"
            );
            let code = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
            match packet {
                FirstPacket::SslRequest => {
                    assert_eq!((code, data.len()), (SSL_REQUEST_CODE, 8));
                }
                FirstPacket::GssEncRequest => {
                    assert_eq!((code, data.len()), (GSSENC_REQUEST_CODE, 8));
                }
                FirstPacket::Cancel(key) => {
                    assert_eq!(code, CANCEL_REQUEST_CODE);
                    assert_eq!(&startup::encode_cancel_request(key)[..], data);
                }
                FirstPacket::Startup(params) => {
                    assert_eq!(code >> 16, 3, "only protocol 3 starts a session");
                    assert!(params.params.iter().all(|(name, _)| !name.is_empty()));
                    assert_eq!(encode_startup(&params), data, "re-encodes to its input");
                }
            }
        }
        Err(error) => {
            // Every refusal can be shown to the client and names a SQLSTATE.
            assert!(!error.to_string().is_empty());
            let sqlstate = error.sqlstate();
            assert!(sqlstate == "08P01" || sqlstate == "0A000", "{sqlstate}");
        }
    }
}

/// `data` as the payload of an `'R'` message (after its type and length).
pub fn check_auth_request(data: &[u8]) {
    let code = data
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let _ = AuthRequest::method_name(code.unwrap_or(u32::MAX));
    match parse_auth_request(data) {
        Ok(request) => {
            let code = code.expect("a request has a code");
            let body = &data[4..];
            match request {
                AuthRequest::Ok => assert_eq!(code, 0),
                AuthRequest::Cleartext => assert_eq!(code, 3),
                AuthRequest::Md5 { salt } => {
                    assert_eq!(code, 5);
                    assert_eq!(&salt[..], &body[..4]);
                }
                AuthRequest::Sasl { mechanisms } => {
                    assert_eq!(code, 10);
                    let mut list = Vec::new();
                    for name in &mechanisms {
                        assert!(!name.is_empty());
                        list.extend_from_slice(name.as_bytes());
                        list.push(0);
                    }
                    list.push(0);
                    assert!(body.starts_with(&list), "mechanisms are the list sent");
                }
                AuthRequest::SaslContinue { data } => {
                    assert_eq!(code, 11);
                    assert_eq!(data, body);
                }
                AuthRequest::SaslFinal { data } => {
                    assert_eq!(code, 12);
                    assert_eq!(data, body);
                }
                AuthRequest::RedshiftDigest {
                    algorithm,
                    salt,
                    server_nonce,
                } => {
                    assert_eq!(code, 13);
                    let mut fields = algorithm.to_be_bytes().to_vec();
                    fields.extend_from_slice(&(salt.len() as u32).to_be_bytes());
                    fields.extend_from_slice(&salt);
                    fields.extend_from_slice(&(server_nonce.len() as u32).to_be_bytes());
                    fields.extend_from_slice(&server_nonce);
                    assert!(
                        body.starts_with(&fields),
                        "digest fields are the bytes sent"
                    );
                }
                AuthRequest::RedshiftIdpToken => assert_eq!(code, 14),
                AuthRequest::Other(other) => {
                    assert_eq!(other, code);
                    assert!(![0, 3, 5, 10, 11, 12, 13, 14].contains(&other));
                }
            }
        }
        Err(error) => {
            assert!(!error.to_string().is_empty());
            match code {
                Some(code) => assert_eq!(error.code, code, "the error names the code"),
                None => assert_eq!(error.code, u32::MAX),
            }
        }
    }
}

/// What walking a stream produced: every header, then the error that stopped it (if any)
/// and whether the walk ended on a message boundary (only meaningful without an error).
#[derive(Debug, PartialEq, Eq)]
pub struct Walk {
    /// Headers in stream order.
    pub headers: Vec<FrameHeader>,
    /// The corrupt header that stopped the walk.
    pub error: Option<BadFrameLength>,
    /// `at_boundary()` after the last chunk, when no error stopped the walk.
    pub at_boundary: Option<bool>,
}

/// Walks `chunks` in order with one walker, stopping at the first error as the relay does.
pub fn walk_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Walk {
    let mut walker = FrameWalker::new();
    let mut headers = Vec::new();
    for chunk in chunks {
        if let Err(error) = walker.walk(chunk, |h| headers.push(h)) {
            return Walk {
                headers,
                error: Some(error),
                at_boundary: None,
            };
        }
    }
    Walk {
        headers,
        error: None,
        at_boundary: Some(walker.at_boundary()),
    }
}

/// The plain reading of a stream: header, skip payload, repeat; written here without the
/// walker's chunk state so the two can be compared.
pub fn walk_model(stream: &[u8]) -> Walk {
    let mut headers = Vec::new();
    let mut pos = 0usize;
    while stream.len().saturating_sub(pos) >= 5 {
        let tag = stream[pos];
        let len = u32::from_be_bytes([
            stream[pos + 1],
            stream[pos + 2],
            stream[pos + 3],
            stream[pos + 4],
        ]);
        if len < 4 {
            return Walk {
                headers,
                error: Some(BadFrameLength { tag, len }),
                at_boundary: None,
            };
        }
        headers.push(FrameHeader { tag, len });
        pos += 1 + len as usize;
    }
    Walk {
        headers,
        error: None,
        at_boundary: Some(pos == stream.len()),
    }
}

/// Cuts `stream` into consecutive chunks of the given lengths (clamped to what is left; the
/// rest is the last chunk). Lengths of 0 give empty chunks, which must change nothing.
pub fn split<'a>(stream: &'a [u8], lengths: &[usize]) -> Vec<&'a [u8]> {
    let mut chunks = Vec::with_capacity(lengths.len() + 1);
    let mut rest = stream;
    for &len in lengths {
        let (head, tail) = rest.split_at(len.min(rest.len()));
        chunks.push(head);
        rest = tail;
    }
    chunks.push(rest);
    chunks
}

/// The walker fed `stream` cut at `lengths` agrees with the walker fed the whole stream at
/// once and with the model; every header parsed alone agrees too.
pub fn check_frame_walker(stream: &[u8], lengths: &[usize]) {
    let whole = walk_chunks([stream]);
    let model = walk_model(stream);
    assert_eq!(whole, model, "one chunk against the model");
    let chunked = walk_chunks(split(stream, lengths));
    assert_eq!(chunked, whole, "cut at {lengths:?}");
    match FrameHeader::parse(stream) {
        None => assert!(stream.len() < 5),
        Some(Ok(header)) => assert_eq!(whole.headers.first(), Some(&header)),
        Some(Err(error)) => assert_eq!(whole.error, Some(error)),
    }
}

/// The fuzzers' encoding of a cut stream: the first byte is the number of cuts (mod 16),
/// the next that many bytes are chunk lengths, the rest is the stream.
pub fn check_frame_walker_input(data: &[u8]) {
    let Some((&count, rest)) = data.split_first() else {
        check_frame_walker(&[], &[]);
        return;
    };
    let count = usize::from(count % 16).min(rest.len());
    let (cuts, stream) = rest.split_at(count);
    let lengths: Vec<usize> = cuts.iter().map(|&b| usize::from(b)).collect();
    check_frame_walker(stream, &lengths);
}
