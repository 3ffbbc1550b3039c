//! The codec of the peer port, no IO. A replica that gets a CancelRequest for a key it did
//! not issue sends every peer a request; the peer that owns the key answers that it does.
//!
//! Request, 68 bytes: the tag `PCR1`, the sender's clock as Unix milliseconds (UInt64), a
//! 16-byte random nonce, the cancel key (process id and secret, two Int32s), then
//! HMAC-SHA256 under the shared secret of the 36 bytes before it. A receiver refuses a
//! request whose MAC does not match (compared in constant time) or whose timestamp is more
//! than [`FRESHNESS_WINDOW`] away from its own clock; the nonce lets it refuse a copy of a
//! request it already took within that window ([`super::replay_guard`]).
//!
//! Reply, 37 bytes: the tag `PCA1`, a verdict byte (1: the key is mine and is sent to my
//! server; 0: not mine), then HMAC-SHA256 of the tag, the verdict and the request's nonce, so
//! an answer cannot be forged or taken from another request.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::peer_secret::PeerSecret;
use crate::protocol::CancelKey;

/// How far a request's timestamp may be from the receiver's clock. Replicas' clocks agree to
/// milliseconds under NTP; a captured request is useless after this.
pub const FRESHNESS_WINDOW: Duration = Duration::from_secs(30);

/// A request's length on the wire.
pub const REQUEST_LEN: usize = 68;
/// A reply's length on the wire.
pub const REPLY_LEN: usize = 37;
/// The random part of a request.
pub const NONCE_LEN: usize = 16;

const REQUEST_TAG: &[u8; 4] = b"PCR1";
const REPLY_TAG: &[u8; 4] = b"PCA1";
const MAC_LEN: usize = 32;
const SIGNED_REQUEST_LEN: usize = REQUEST_LEN - MAC_LEN;

/// A forwarded cancel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerRequest {
    /// The proxy-issued key the client sent.
    pub key: CancelKey,
    /// The sender's clock, Unix milliseconds.
    pub timestamp_ms: u64,
    /// Random, so that two requests for one key differ and a copy can be recognised.
    pub nonce: [u8; NONCE_LEN],
}

/// What the receiver of a request says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A live session of the receiver has the key; the cancel goes to its server.
    Owner,
    /// The receiver has no session with that key.
    NotOwner,
}

/// Why a peer message was refused. No variant carries message bytes or the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerMessageError {
    /// Fewer bytes than a whole message before the sender closed or went quiet.
    #[error("truncated peer message: {got} of {want} bytes")]
    Truncated {
        /// Bytes received.
        got: usize,
        /// Bytes a message has.
        want: usize,
    },
    /// Not a message of this protocol (another program, or another version).
    #[error("not a peer cancel message (unknown tag)")]
    UnknownTag,
    /// The MAC does not match: another secret, or altered bytes.
    #[error("peer message MAC does not match (another --peer-secret-file, or altered)")]
    BadMac,
    /// The timestamp is outside the freshness window: replayed late, or a clock far off.
    #[error("stale peer message: its timestamp is {skew_ms} ms from this replica's clock")]
    Stale {
        /// Receiver's clock minus the sender's, in milliseconds.
        skew_ms: i128,
    },
    /// A reply with a verdict byte other than 0 or 1.
    #[error("peer reply with an unknown verdict")]
    BadVerdict,
}

impl PeerMessageError {
    /// The refusal's reason as a fixed word, for logs.
    pub fn reason(&self) -> &'static str {
        match self {
            PeerMessageError::Truncated { .. } => "truncated",
            PeerMessageError::UnknownTag => "unknown_tag",
            PeerMessageError::BadMac => "bad_mac",
            PeerMessageError::Stale { .. } => "stale",
            PeerMessageError::BadVerdict => "bad_verdict",
        }
    }
}

fn mac(secret: &PeerSecret, parts: &[&[u8]]) -> Hmac<Sha256> {
    // HMAC takes keys of any length: this cannot fail for a loaded secret.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.key()) {
        Ok(mac) => mac,
        Err(_) => unreachable_key_length(),
    };
    for part in parts {
        mac.update(part);
    }
    mac
}

/// HMAC-SHA256 accepts every key length; this is the branch the type system cannot rule out.
#[cold]
fn unreachable_key_length() -> Hmac<Sha256> {
    // A fixed key that no peer shares: every MAC made with it fails verification.
    match Hmac::<Sha256>::new_from_slice(&[0u8; 1]) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC-SHA256 accepts a one-byte key"),
    }
}

impl PeerRequest {
    /// The request's bytes, signed with `secret`.
    pub fn encode(&self, secret: &PeerSecret) -> [u8; REQUEST_LEN] {
        let mut out = [0u8; REQUEST_LEN];
        out[..4].copy_from_slice(REQUEST_TAG);
        out[4..12].copy_from_slice(&self.timestamp_ms.to_be_bytes());
        out[12..28].copy_from_slice(&self.nonce);
        out[28..36].copy_from_slice(&self.key.to_payload());
        let tag = mac(secret, &[&out[..SIGNED_REQUEST_LEN]])
            .finalize()
            .into_bytes();
        out[SIGNED_REQUEST_LEN..].copy_from_slice(&tag);
        out
    }

    /// Checks and reads a request received when the receiver's clock said `now_ms`: the
    /// length, the tag, the MAC, then the timestamp.
    pub fn decode(
        bytes: &[u8],
        secret: &PeerSecret,
        now_ms: u64,
    ) -> Result<PeerRequest, PeerMessageError> {
        if bytes.len() < REQUEST_LEN {
            return Err(PeerMessageError::Truncated {
                got: bytes.len(),
                want: REQUEST_LEN,
            });
        }
        let bytes = &bytes[..REQUEST_LEN];
        if &bytes[..4] != REQUEST_TAG {
            return Err(PeerMessageError::UnknownTag);
        }
        mac(secret, &[&bytes[..SIGNED_REQUEST_LEN]])
            .verify_slice(&bytes[SIGNED_REQUEST_LEN..])
            .map_err(|_| PeerMessageError::BadMac)?;
        let timestamp_ms = u64::from_be_bytes(array(&bytes[4..12]));
        let skew_ms = i128::from(now_ms) - i128::from(timestamp_ms);
        if skew_ms.unsigned_abs() > FRESHNESS_WINDOW.as_millis() {
            return Err(PeerMessageError::Stale { skew_ms });
        }
        let key = CancelKey::from_payload(&bytes[28..36]).ok_or(PeerMessageError::Truncated {
            got: bytes.len(),
            want: REQUEST_LEN,
        })?;
        Ok(PeerRequest {
            key,
            timestamp_ms,
            nonce: array(&bytes[12..28]),
        })
    }
}

fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

impl Verdict {
    fn byte(self) -> u8 {
        match self {
            Verdict::Owner => 1,
            Verdict::NotOwner => 0,
        }
    }

    /// The reply to the request with `nonce`, signed with `secret`.
    pub fn encode(self, nonce: &[u8; NONCE_LEN], secret: &PeerSecret) -> [u8; REPLY_LEN] {
        let mut out = [0u8; REPLY_LEN];
        out[..4].copy_from_slice(REPLY_TAG);
        out[4] = self.byte();
        let tag = mac(secret, &[&out[..5], nonce]).finalize().into_bytes();
        out[5..].copy_from_slice(&tag);
        out
    }

    /// Checks and reads the reply to the request with `nonce`.
    pub fn decode(
        bytes: &[u8],
        nonce: &[u8; NONCE_LEN],
        secret: &PeerSecret,
    ) -> Result<Verdict, PeerMessageError> {
        if bytes.len() < REPLY_LEN {
            return Err(PeerMessageError::Truncated {
                got: bytes.len(),
                want: REPLY_LEN,
            });
        }
        if &bytes[..4] != REPLY_TAG {
            return Err(PeerMessageError::UnknownTag);
        }
        mac(secret, &[&bytes[..5], nonce])
            .verify_slice(&bytes[5..REPLY_LEN])
            .map_err(|_| PeerMessageError::BadMac)?;
        match bytes[4] {
            1 => Ok(Verdict::Owner),
            0 => Ok(Verdict::NotOwner),
            _ => Err(PeerMessageError::BadVerdict),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> PeerSecret {
        PeerSecret::from_bytes(b"correct horse battery staple").expect("long enough")
    }

    const NOW: u64 = 1_700_000_000_000;

    fn request() -> PeerRequest {
        PeerRequest {
            key: CancelKey {
                process_id: 0x1234_5678,
                secret_key: -2,
            },
            timestamp_ms: NOW,
            nonce: *b"0123456789abcdef",
        }
    }

    /// The bytes and MAC computed outside this code:
    /// `printf 'PCR1\x00\x00\x01\x8b\xcf\xe5\x68\x000123456789abcdef\x12\x34\x56\x78\xff\xff\xff\xfe'
    ///  | openssl dgst -sha256 -mac HMAC -macopt key:'correct horse battery staple'`.
    #[test]
    fn a_request_has_the_documented_layout_and_mac() {
        let bytes = request().encode(&secret());
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            concat!(
                "50435231",
                "0000018bcfe56800",
                "30313233343536373839616263646566",
                "12345678fffffffe",
                "6e73c21041b08886102dc89e6cb9195abb511fb4d5f548ff2a4b7580d84c22f0"
            )
        );
    }

    #[test]
    fn requests_and_replies_round_trip() {
        let bytes = request().encode(&secret());
        assert_eq!(
            PeerRequest::decode(&bytes, &secret(), NOW + 1_000),
            Ok(request())
        );
        for verdict in [Verdict::Owner, Verdict::NotOwner] {
            let reply = verdict.encode(&request().nonce, &secret());
            assert_eq!(
                Verdict::decode(&reply, &request().nonce, &secret()),
                Ok(verdict)
            );
        }
    }

    #[test]
    fn truncated_and_foreign_messages_are_refused() {
        let bytes = request().encode(&secret());
        for len in [0, 4, 36, REQUEST_LEN - 1] {
            assert_eq!(
                PeerRequest::decode(&bytes[..len], &secret(), NOW),
                Err(PeerMessageError::Truncated {
                    got: len,
                    want: REQUEST_LEN
                })
            );
        }
        // A PostgreSQL StartupMessage sent to the peer port by mistake.
        let mut startup = [0u8; REQUEST_LEN];
        startup[..8].copy_from_slice(&[0, 0, 0, 68, 0, 3, 0, 0]);
        assert_eq!(
            PeerRequest::decode(&startup, &secret(), NOW),
            Err(PeerMessageError::UnknownTag)
        );
        let reply = Verdict::Owner.encode(&request().nonce, &secret());
        assert!(matches!(
            Verdict::decode(&reply[..REPLY_LEN - 1], &request().nonce, &secret()),
            Err(PeerMessageError::Truncated { .. })
        ));
    }

    #[test]
    fn a_bad_mac_is_refused_whatever_byte_differs() {
        let bytes = request().encode(&secret());
        let other = PeerSecret::from_bytes(b"another secret of 16+ bytes").expect("long");
        assert_eq!(
            PeerRequest::decode(&bytes, &other, NOW),
            Err(PeerMessageError::BadMac)
        );
        for i in 4..REQUEST_LEN {
            let mut altered = bytes;
            altered[i] ^= 0x01;
            assert_eq!(
                PeerRequest::decode(&altered, &secret(), NOW),
                Err(PeerMessageError::BadMac),
                "byte {i}"
            );
        }
        // A reply is bound to its request's nonce.
        let reply = Verdict::Owner.encode(&request().nonce, &secret());
        assert_eq!(
            Verdict::decode(&reply, b"fedcba9876543210", &secret()),
            Err(PeerMessageError::BadMac)
        );
        let mut flipped = reply;
        flipped[4] = 0;
        assert_eq!(
            Verdict::decode(&flipped, &request().nonce, &secret()),
            Err(PeerMessageError::BadMac)
        );
    }

    #[test]
    fn stale_and_future_timestamps_are_refused_at_the_window() {
        let bytes = request().encode(&secret());
        let window = FRESHNESS_WINDOW.as_millis() as u64;
        assert!(PeerRequest::decode(&bytes, &secret(), NOW + window).is_ok());
        assert!(PeerRequest::decode(&bytes, &secret(), NOW - window).is_ok());
        assert_eq!(
            PeerRequest::decode(&bytes, &secret(), NOW + window + 1),
            Err(PeerMessageError::Stale {
                skew_ms: i128::from(window) + 1
            })
        );
        assert!(matches!(
            PeerRequest::decode(&bytes, &secret(), NOW - window - 1),
            Err(PeerMessageError::Stale { .. })
        ));
    }
}
