//! Property tests of the pure protocol codec, the `cargo test` mirror of the fuzz targets in
//! `fuzz/`. Both check the properties written once in `support/protocol_checks.rs`:
//!
//! - first packets: `packet_len` and `parse_first_packet` never panic; every input is a
//!   packet or a typed error with a SQLSTATE; a packet that parses re-encodes to its bytes;
//!   every proper prefix of a valid StartupMessage is refused;
//! - authentication requests: `parse_auth_request` never panics, decodes exactly the bytes
//!   sent, and refuses every truncated digest request and SASL list;
//! - the frame walker: the headers, error and boundary state do not depend on where the
//!   stream is cut, and match a plain sequential reading and the messages a stream was built
//!   from;
//! - the upstream SCRAM client: whatever the server sends, a typed error or a well-formed
//!   answer, and never a login on a signature the proxy did not compute;
//! - the decompressor of Redshift's compressed stream: a valid stream decodes to its plain
//!   bytes however its blocks, input and output buffer are cut; any bytes give the same
//!   outcome however they are cut, and never a panic.
//!
//! The fuzzers search deeper (scripts/fuzz); these run in a few seconds in a debug build so
//! every `cargo test` exercises the same properties with both random and well-formed input.

use crate::support::protocol_checks::{
    check_auth_request, check_frame_walker, check_frame_walker_input, check_lz4_garbage,
    check_lz4_roundtrip, check_lz4_stream, check_startup_packet, encode_startup, split,
    walk_chunks, walk_model,
};
use bytes::BytesMut;
use proptest::collection::vec;
use proptest::prelude::*;
use redshift_auth_proxy::credentials::Secret;
use redshift_auth_proxy::protocol::AuthRequest;
use redshift_auth_proxy::protocol::auth_request::parse_auth_request;
use redshift_auth_proxy::protocol::frame::FrameHeader;
use redshift_auth_proxy::protocol::startup::{
    self, CANCEL_REQUEST_CODE, FirstPacket, GSSENC_REQUEST_CODE, MAX_STARTUP_PACKET_LEN,
    SSL_REQUEST_CODE, StartupError, StartupParams,
};
use redshift_auth_proxy::upstream::auth::{AuthStep, PasswordAuthenticator};

/// Bytes that are mostly the ones the parsers care about: NUL, small numbers, ASCII, and the
/// starts of valid and invalid UTF-8 sequences.
fn interesting_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        4 => Just(0u8),
        2 => 1u8..16,
        4 => b'a'..=b'z',
        1 => prop::sample::select(vec![0x80u8, 0xc3, 0xe2, 0xf0, 0xfe, 0xff]),
        2 => any::<u8>(),
    ]
}

/// A first packet's code: protocol 3.x, a request code, an old or unknown version, anything.
fn first_packet_code() -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => (0u32..4).prop_map(|minor| 0x0003_0000 | minor),
        1 => Just(SSL_REQUEST_CODE),
        1 => Just(GSSENC_REQUEST_CODE),
        1 => Just(CANCEL_REQUEST_CODE),
        1 => Just(0x0002_0000u32),
        1 => any::<u32>(),
    ]
}

/// Parameter names as drivers send them (never empty, never a NUL).
fn param_name() -> impl Strategy<Value = String> {
    "[a-z_.]{1,12}"
}

/// Any value without a NUL, including multi-byte characters and the empty string.
fn param_value() -> impl Strategy<Value = String> {
    "[^\u{0}]{0,16}"
}

fn framed(code: u32, body: &[u8]) -> Vec<u8> {
    let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// A message stream built from (tag, payload length) pairs.
fn messages(spec: &[(u8, usize)]) -> Vec<u8> {
    let mut out = Vec::new();
    for &(tag, len) in spec {
        out.push(tag);
        out.extend_from_slice(&(len as u32 + 4).to_be_bytes());
        out.extend((0..len).map(|i| i as u8));
    }
    out
}

#[test]
fn packet_len_accepts_exactly_8_to_10000() {
    for len in (0u32..=20_000).chain([u32::MAX, 0x7fff_ffff, 0x8000_0000]) {
        let result = startup::packet_len(len.to_be_bytes());
        match len {
            0..=7 => assert_eq!(result, Err(StartupError::TooShort(len))),
            8..=10_000 => assert_eq!(result, Ok(len as usize)),
            _ => assert_eq!(result, Err(StartupError::TooLong(len))),
        }
        check_startup_packet(&len.to_be_bytes());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn first_packets_of_random_bytes(data in vec(any::<u8>(), 0..40)) {
        check_startup_packet(&data);
    }

    #[test]
    fn first_packets_with_plausible_headers(
        code in first_packet_code(),
        body in vec(interesting_byte(), 0..48),
    ) {
        // Framed right, and with the length field off by a little either way.
        let packet = framed(code, &body);
        check_startup_packet(&packet);
        check_startup_packet(&packet[..packet.len() - 1]);
        let mut longer = packet.clone();
        longer.push(0);
        check_startup_packet(&longer);
    }

    #[test]
    fn auth_requests_of_random_bytes(data in vec(any::<u8>(), 0..40)) {
        check_auth_request(&data);
    }

    #[test]
    fn auth_requests_with_known_codes(
        code in prop_oneof![
            prop::sample::select(vec![0u32, 3, 5, 10, 11, 12, 13, 14]),
            any::<u32>(),
        ],
        body in vec(interesting_byte(), 0..48),
    ) {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(&body);
        check_auth_request(&payload);
    }

    #[test]
    fn frame_walker_on_random_bytes_cut_anywhere(
        stream in vec(interesting_byte(), 0..200),
        cuts in vec(0usize..24, 0..16),
    ) {
        check_frame_walker(&stream, &cuts);
    }

    #[test]
    fn frame_walker_on_fuzzer_encoded_input(data in vec(any::<u8>(), 0..200)) {
        check_frame_walker_input(&data);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn valid_startup_messages_round_trip_and_every_prefix_is_refused(
        minor in 0u16..3,
        params in vec((param_name(), param_value()), 0..6),
    ) {
        let params = StartupParams { minor_version: minor, params };
        let packet = encode_startup(&params);
        prop_assume!(packet.len() <= MAX_STARTUP_PACKET_LEN);
        prop_assert_eq!(
            startup::parse_first_packet(&packet),
            Ok(FirstPacket::Startup(params.clone()))
        );
        check_startup_packet(&packet);
        for cut in 8..packet.len() {
            // The bytes stop short of the length field: truncated.
            prop_assert!(matches!(
                startup::parse_first_packet(&packet[..cut]),
                Err(StartupError::Truncated { .. })
            ), "cut at {}", cut);
            // The length field fixed up to the shorter body: the layout is broken.
            let mut shorter = packet[..cut].to_vec();
            shorter[..4].copy_from_slice(&(cut as u32).to_be_bytes());
            prop_assert!(matches!(
                startup::parse_first_packet(&shorter),
                Err(StartupError::MissingTerminator(_))
            ), "length fixed up at {}", cut);
        }
    }

    #[test]
    fn digest_requests_round_trip_and_every_truncation_is_refused(
        algorithm in any::<u32>(),
        salt in vec(any::<u8>(), 0..20),
        nonce in vec(any::<u8>(), 0..40),
    ) {
        let mut payload = 13u32.to_be_bytes().to_vec();
        payload.extend_from_slice(&algorithm.to_be_bytes());
        payload.extend_from_slice(&(salt.len() as u32).to_be_bytes());
        payload.extend_from_slice(&salt);
        payload.extend_from_slice(&(nonce.len() as u32).to_be_bytes());
        payload.extend_from_slice(&nonce);
        check_auth_request(&payload);
        prop_assert!(parse_auth_request(&payload).is_ok());
        for cut in 0..payload.len() {
            prop_assert!(parse_auth_request(&payload[..cut]).is_err(), "cut at {}", cut);
            check_auth_request(&payload[..cut]);
        }
    }

    #[test]
    fn sasl_lists_round_trip_and_every_truncation_is_refused(
        mechanisms in vec("[A-Z0-9-]{1,20}", 0..4),
    ) {
        let mut payload = 10u32.to_be_bytes().to_vec();
        for name in &mechanisms {
            payload.extend_from_slice(name.as_bytes());
            payload.push(0);
        }
        payload.push(0);
        check_auth_request(&payload);
        for cut in 0..payload.len() {
            prop_assert!(parse_auth_request(&payload[..cut]).is_err(), "cut at {}", cut);
        }
    }

    #[test]
    fn frame_walker_finds_every_message_however_the_stream_is_cut(
        spec in vec((any::<u8>(), 0usize..300), 0..20),
        cuts in vec(0usize..400, 0..12),
        keep in any::<prop::sample::Index>(),
    ) {
        let stream = messages(&spec);
        let expected: Vec<FrameHeader> = spec
            .iter()
            .map(|&(tag, len)| FrameHeader { tag, len: len as u32 + 4 })
            .collect();
        let walk = walk_chunks(split(&stream, &cuts));
        prop_assert_eq!(&walk.headers, &expected);
        prop_assert_eq!(walk.error, None);
        prop_assert_eq!(walk.at_boundary, Some(true));
        check_frame_walker(&stream, &cuts);

        // Stopped part way, the stream is at a boundary only where a message ends.
        let end = keep.index(stream.len() + 1);
        let prefix = &stream[..end];
        let walk = walk_chunks(split(prefix, &cuts));
        let mut ends = vec![0usize];
        for &(_, len) in &spec {
            ends.push(ends.last().unwrap() + 5 + len);
        }
        prop_assert_eq!(walk.at_boundary, Some(ends.contains(&end)));
        prop_assert_eq!(walk_model(prefix), walk);
    }

    #[test]
    fn a_corrupt_length_stops_the_walk_at_the_same_header_however_cut(
        before in vec((any::<u8>(), 0usize..100), 0..8),
        bad_len in 0u32..4,
        after in vec(any::<u8>(), 0..40),
        cuts in vec(0usize..200, 0..12),
    ) {
        let mut stream = messages(&before);
        stream.push(b'Q');
        stream.extend_from_slice(&bad_len.to_be_bytes());
        stream.extend_from_slice(&after);
        let walk = walk_chunks(split(&stream, &cuts));
        prop_assert_eq!(walk.headers.len(), before.len());
        let error = walk.error.expect("the corrupt header is reported");
        prop_assert_eq!((error.tag, error.len), (b'Q', bad_len));
        check_frame_walker(&stream, &cuts);
    }
}

/// The client nonce at the end of the SASLInitialResponse the authenticator wrote.
fn sasl_client_nonce(out: &[u8]) -> String {
    let at = out
        .windows(3)
        .rposition(|w| w == b",r=")
        .expect("the client-first-message carries a nonce");
    String::from_utf8(out[at + 3..].to_vec()).expect("the nonce is ASCII")
}

/// A SCRAM exchange started with the server, up to the point it sends server-first.
fn scram_started() -> (PasswordAuthenticator, String) {
    let mut auth = PasswordAuthenticator::new("u", Secret::new("a-password"));
    let mut out = BytesMut::new();
    let sasl = AuthRequest::Sasl {
        mechanisms: vec!["SCRAM-SHA-256".to_owned()],
    };
    assert_eq!(auth.answer(&sasl, &mut out).unwrap(), AuthStep::Reply);
    let nonce = sasl_client_nonce(&out);
    (auth, nonce)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Whatever a hostile or broken server sends in SCRAM, the proxy's client answers with a
    /// typed error or a well-formed message, and never accepts a server signature it did not
    /// compute.
    #[test]
    fn scram_server_messages_of_random_bytes(
        first in vec(any::<u8>(), 0..80),
        last in vec(any::<u8>(), 0..80),
    ) {
        let (mut auth, _) = scram_started();
        let mut out = BytesMut::new();
        let continued = auth.answer(&AuthRequest::SaslContinue { data: first }, &mut out);
        let finished = auth.answer(&AuthRequest::SaslFinal { data: last }, &mut out);
        prop_assert!(continued.is_err() || finished.is_err());
    }

    #[test]
    fn scram_server_first_with_plausible_fields(
        extend in prop::bool::weighted(0.9),
        server_nonce in "[!-+--~]{0,12}",
        salt in vec(any::<u8>(), 0..24),
        iterations in prop_oneof![1u32..40, Just(0u32), Just(1_000_001u32), 1_000_001u32..=u32::MAX],
        extra in prop::sample::select(vec!["", ",m=ext", ",x=y", ","]),
        signature in vec(any::<u8>(), 0..40),
    ) {
        let (mut auth, client_nonce) = scram_started();
        let nonce = if extend { format!("{client_nonce}{server_nonce}") } else { server_nonce.clone() };
        let salt_b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &salt);
        let server_first = format!("r={nonce},s={salt_b64},i={iterations}{extra}");
        let mut out = BytesMut::new();
        let continued = auth.answer(
            &AuthRequest::SaslContinue { data: server_first.into_bytes() },
            &mut out,
        );
        let acceptable = extend
            && !server_nonce.is_empty()
            && (1..=1_000_000).contains(&iterations);
        prop_assert_eq!(continued.is_ok(), acceptable);
        if acceptable {
            let client_final = std::str::from_utf8(&out[5..]).unwrap().to_owned();
            let expected_prefix = format!("c=biws,r={nonce},p=");
            prop_assert!(client_final.starts_with(&expected_prefix));
            // A signature the proxy did not compute is refused.
            let forged = format!(
                "v={}",
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &signature)
            );
            let finished = auth.answer(&AuthRequest::SaslFinal { data: forged.into_bytes() }, &mut out);
            prop_assert!(finished.is_err(), "a forged signature was accepted");
        }
    }
}

/// A result row's text: words and numbers that repeat, as real results do, so blocks refer
/// back into the history.
fn row_payload() -> impl Strategy<Value = Vec<u8>> {
    vec(
        prop_oneof![
            Just(&b"2026-12-06 12:00:00+00\t"[..]),
            Just(&b"customer-"[..]),
            Just(&b"0.25\t"[..]),
            Just(&b"\x00\x00\x00\x04"[..]),
            Just(&b"eu-west-1"[..]),
        ],
        0..60,
    )
    .prop_flat_map(|words| {
        let text = words.concat();
        (Just(text), vec(any::<u8>(), 0..8))
    })
    .prop_map(|(mut text, noise)| {
        text.extend(noise);
        text
    })
}

/// The lz4_stream fuzzer's first find: a one-byte block (`04`, a token whose match is cut
/// off) that LZ4 decodes to nothing, read through a 1-byte output buffer, left the decoder
/// waiting to drain nothing. The input is kept in fuzz/corpus/lz4_stream/ too.
#[test]
fn lz4_stream_fuzzer_find_an_empty_block_through_a_small_buffer() {
    check_lz4_stream(&[
        0x6d, 0x7a, 0x2d, 0x00, 0x6b, 0x40, 0x00, 0x6d, 0x00, 0x00, 0x00, 0x05, 0x04, 0x00, 0x00,
        0x0b,
    ]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Any cut of a valid compressed stream, its blocks and the output gives the plain stream.
    #[test]
    fn lz4_stream_decodes_to_the_plain_stream_however_cut(
        payloads in vec(row_payload(), 1..300),
        cuts in vec(1usize..=16 * 1024, 0..6),
        pieces in vec(0usize..20_000, 0..10),
        out_size in 1usize..70_000,
    ) {
        check_lz4_roundtrip(&payloads, &cuts, &pieces, out_size);
    }

    /// Garbage after the acknowledgement: the same outcome however it is cut, never a panic.
    #[test]
    fn lz4_stream_garbage_gives_the_same_outcome_however_cut(
        garbage in vec(interesting_byte(), 0..3000),
        pieces in vec(0usize..600, 0..10),
        out_size in 1usize..20_000,
    ) {
        check_lz4_garbage(&garbage, &pieces, out_size);
    }

    #[test]
    fn lz4_stream_on_fuzzer_encoded_input(data in vec(any::<u8>(), 0..3000)) {
        check_lz4_stream(&data);
    }
}
