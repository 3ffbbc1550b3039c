//! Encoders for the few messages the proxy writes that postgres-protocol has no encoder for:
//! backend messages toward the client and Redshift's digest reply toward the server.

use bytes::{BufMut, BytesMut};

/// The single byte that accepts an SSLRequest: the client starts its TLS handshake next.
pub const ACCEPT_ENCRYPTION: u8 = b'S';

/// The single byte that refuses an SSLRequest or GSSENCRequest, after which libpq goes on in
/// plain text with its StartupMessage.
pub const REFUSE_ENCRYPTION: u8 = b'N';

/// Appends NegotiateProtocolVersion (`'v'`): the newest protocol version the proxy speaks and
/// the `_pq_.*` options it did not honour, as a 3.0 server answers a newer client. The field
/// holds the whole version number (196608 for 3.0), as PostgreSQL's
/// `SendNegotiateProtocolVersion` writes it and libpq reads it, although the protocol
/// documentation calls it the "newest minor protocol version".
pub fn negotiate_protocol_version(newest_version: u32, unrecognized: &[&str], out: &mut BytesMut) {
    let start = out.len();
    out.put_u8(b'v');
    out.put_u32(0);
    out.put_u32(newest_version);
    out.put_u32(unrecognized.len() as u32);
    for name in unrecognized {
        out.extend_from_slice(name.as_bytes());
        out.put_u8(0);
    }
    patch_len(out, start);
}

/// Appends Redshift's digest reply (`'d'`): `Int32 len, digest, Int32 len, client nonce`.
pub fn redshift_digest_reply(digest: &[u8], client_nonce: &[u8], out: &mut BytesMut) {
    let start = out.len();
    out.put_u8(b'd');
    out.put_u32(0);
    out.put_u32(digest.len() as u32);
    out.extend_from_slice(digest);
    out.put_u32(client_nonce.len() as u32);
    out.extend_from_slice(client_nonce);
    patch_len(out, start);
}

/// Writes the length of the tagged message starting at `start` into its length field.
fn patch_len(out: &mut BytesMut, start: usize) {
    let len = (out.len() - start - 1) as u32;
    out[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_reply_layout() {
        let mut out = BytesMut::new();
        redshift_digest_reply(&[0xaa; 32], b"1700000000000", &mut out);
        assert_eq!(out.len(), 1 + 0x39);
        assert_eq!(&out[..9], &[b'd', 0, 0, 0, 0x39, 0, 0, 0, 0x20]);
        assert_eq!(&out[41..45], &[0, 0, 0, 13]);
        assert_eq!(&out[45..], b"1700000000000");
    }

    #[test]
    fn negotiate_layout() {
        let mut out = BytesMut::new();
        negotiate_protocol_version(196_608, &["_pq_.compression"], &mut out);
        assert_eq!(out[0], b'v');
        assert_eq!(&out[5..13], &[0, 3, 0, 0, 0, 0, 0, 1]);
        assert_eq!(&out[13..], b"_pq_.compression\0");
    }
}
