//! The upstream's side of a Redshift password login: the challenge it sends and the check of
//! the client's answer, for Redshift's SHA-256 digest (code 13) and MD5 (code 5). The formulas
//! are docs/architecture.md's ("Facts the code depends on"), written here again so the proxy's
//! own code is not what checks the proxy.

use md5::Md5;
use sha2::{Digest, Sha256};

use super::wire::{self, Io};

/// How the upstream asks a user for the password, as Redshift does per user: MD5 for
/// password users and IAM temporary passwords, the digest for users stored as `sha256|…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// AuthenticationMD5Password (5), a 4-byte salt; answered with `'p'`.
    Md5,
    /// Redshift's extensible digest (13), algorithm 0 (SHA-256); answered with `'d'`.
    Digest,
}

/// `SHA256(SHA256(password ‖ salt) ‖ server_nonce ‖ client_nonce)`.
pub fn digest(password: &[u8], salt: &[u8], server_nonce: &[u8], client_nonce: &[u8]) -> [u8; 32] {
    let inner = Sha256::new()
        .chain_update(password)
        .chain_update(salt)
        .finalize();
    Sha256::new()
        .chain_update(inner)
        .chain_update(server_nonce)
        .chain_update(client_nonce)
        .finalize()
        .into()
}

/// `"md5" + hex(md5(hex(md5(password ‖ user)) ‖ salt))`.
pub fn md5_answer(user: &str, password: &str, salt: [u8; 4]) -> String {
    let first = hex(&Md5::new()
        .chain_update(password)
        .chain_update(user)
        .finalize());
    let second = Md5::new().chain_update(first).chain_update(salt).finalize();
    format!("md5{}", hex(&second))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The digest request: Int32 13, Int32 algorithm 0, then the salt and the server nonce, each
/// with its Int32 length.
pub fn digest_request(salt: &[u8], server_nonce: &[u8]) -> Vec<u8> {
    let mut payload = 13u32.to_be_bytes().to_vec();
    payload.extend_from_slice(&0u32.to_be_bytes());
    for field in [salt, server_nonce] {
        payload.extend_from_slice(&(field.len() as u32).to_be_bytes());
        payload.extend_from_slice(field);
    }
    wire::message(b'R', &payload)
}

/// Splits a `'d'` payload into (digest, client nonce): Int32 length and bytes, twice, and
/// nothing after.
pub fn parse_digest_reply(payload: &[u8]) -> Option<(&[u8], &[u8])> {
    let (digest, rest) = length_prefixed(payload)?;
    let (nonce, rest) = length_prefixed(rest)?;
    rest.is_empty().then_some((digest, nonce))
}

fn length_prefixed(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let field = bytes.get(4..4usize.checked_add(len)?)?;
    Some((field, &bytes[4 + len..]))
}

/// Sends `method`'s challenge to `user`, reads the answer and checks it against `password`
/// (`None`: an unknown user, asked all the same, as a server does, and refused).
pub async fn challenge(
    client: &mut Io,
    method: Method,
    user: &str,
    password: Option<&str>,
) -> std::io::Result<bool> {
    match method {
        Method::Md5 => {
            let salt: [u8; 4] = wire::random();
            let mut payload = 5u32.to_be_bytes().to_vec();
            payload.extend_from_slice(&salt);
            wire::send(client, &wire::message(b'R', &payload)).await?;
            let (tag, answer) = wire::read_message(client).await?;
            let sent = answer.strip_suffix(&[0]).unwrap_or(&answer);
            Ok(tag == b'p'
                && password.is_some_and(|p| md5_answer(user, p, salt).as_bytes() == sent))
        }
        Method::Digest => {
            let salt: [u8; 8] = wire::random();
            let server_nonce: [u8; 16] = wire::random();
            wire::send(client, &digest_request(&salt, &server_nonce)).await?;
            let (tag, answer) = wire::read_message(client).await?;
            let Some((sent, client_nonce)) = parse_digest_reply(&answer) else {
                return Ok(false);
            };
            Ok(tag == b'd'
                && password.is_some_and(|p| {
                    digest(p.as_bytes(), &salt, &server_nonce, client_nonce) == sent
                }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// The digest vector of docs/architecture.md.
    #[test]
    fn digest_matches_the_documented_vector() {
        let salt = unhex("a1b2c3d4e5f60718");
        let nonce = unhex("00112233445566778899aabbccddeeff");
        let inner = Sha256::new()
            .chain_update("My_sha256_PaSsWoRd")
            .chain_update(&salt)
            .finalize();
        assert_eq!(
            hex(&inner),
            "283cef05ba2341e204c98a276c847cace1298538e94ce0a82f6682c3e23895cb"
        );
        assert_eq!(
            hex(&digest(
                b"My_sha256_PaSsWoRd",
                &salt,
                &nonce,
                b"1700000000000"
            )),
            "ed4b5102701a0b3a754860fba3bbcab498a2b072d4d5975c1973dd55b681161c"
        );
        let request = digest_request(&salt, &nonce);
        assert_eq!(
            hex(&request),
            "520000002c0000000d0000000000000008a1b2c3d4e5f607180000001000112233445566778899aabbccddeeff"
        );
    }

    /// The MD5 vector of docs/architecture.md.
    #[test]
    fn md5_matches_the_documented_vector() {
        assert_eq!(
            md5_answer("IAM:alice", "TempPass123", [1, 2, 3, 4]),
            "md5bd73dbbdb244bd9c681d20e7371957b2"
        );
    }

    #[test]
    fn a_digest_reply_is_two_length_prefixed_fields_and_nothing_else() {
        let mut reply = 2u32.to_be_bytes().to_vec();
        reply.extend_from_slice(b"ab");
        reply.extend_from_slice(&3u32.to_be_bytes());
        reply.extend_from_slice(b"123");
        assert_eq!(parse_digest_reply(&reply), Some((&b"ab"[..], &b"123"[..])));
        reply.push(0);
        assert_eq!(parse_digest_reply(&reply), None, "trailing byte");
        assert_eq!(parse_digest_reply(&reply[..6]), None, "truncated");
        assert_eq!(
            parse_digest_reply(&u32::MAX.to_be_bytes()),
            None,
            "huge length"
        );
    }
}
