//! The server side of SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (RFC 5802, 7677 and 5929) as
//! PostgreSQL speaks it (`auth-scram.c`), for `--client-auth scram`. Pure: it turns the
//! client's messages into the server's answers and leaves the IO to the caller.
//!
//! The proxy checks the client's proof against a stored verifier and never sees a password.
//! An unknown user gets a salt derived from its name (as PostgreSQL's mock authentication
//! does) and an exchange that fails only at the end, exactly like a wrong password, so the
//! answers do not tell which users exist.
//!
//! Over client TLS, `SCRAM-SHA-256-PLUS` is offered with `tls-server-end-point` binding: the
//! client mixes the hash of the certificate it was served into the proof, so a man in the
//! middle who terminates TLS with another certificate cannot relay the exchange. The GS2
//! header rules are PostgreSQL's: `p=` only with -PLUS; `y` ("I could bind, but you did not
//! offer it") is refused where -PLUS was offered, since the offer must have been stripped.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::users::ScramVerifier;
use crate::protocol::scram::{constant_time_eq, hmac_sha256, sha256};

/// The mechanism without channel binding, always offered.
pub const MECHANISM: &str = "SCRAM-SHA-256";
/// The mechanism with channel binding, offered over client TLS.
pub const MECHANISM_PLUS: &str = "SCRAM-SHA-256-PLUS";
/// The one channel-binding type PostgreSQL (and the proxy) supports.
const CHANNEL_BINDING_TYPE: &str = "tls-server-end-point";

/// Why an exchange did not end in a verified client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramFailure {
    /// A message that does not follow RFC 5802 (sent as 08P01).
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The client asked for something the proxy does not offer (sent as 08P01).
    #[error("{0}")]
    Unsupported(&'static str),
    /// The client sent `y` where -PLUS was offered: something between them removed the offer
    /// (sent as 28000, as PostgreSQL does).
    #[error(
        "SCRAM channel binding negotiation error: the client supports SCRAM channel binding but thinks the server does not; however, this proxy does support channel binding"
    )]
    BindingNegotiation,
    /// The binding data is not that of the certificate this connection was served: another
    /// TLS session sits between client and proxy (sent as 28000, as PostgreSQL does).
    #[error("SCRAM channel binding check failed")]
    BindingMismatch,
    /// The proof does not verify, or the user is unknown (sent as 28P01).
    #[error("the client's proof does not match the stored verifier")]
    WrongProof,
}

enum State {
    /// Waiting for the client-first-message.
    First,
    /// Waiting for the client-final-message.
    Final {
        gs2_header: String,
        client_first_bare: String,
        server_first: String,
        nonce: String,
    },
    Done,
}

/// One SCRAM-SHA-256(-PLUS) exchange with one client.
pub struct ScramServer {
    verifier: ScramVerifier,
    /// False for an unknown user: the exchange runs on a made-up verifier and fails.
    known: bool,
    server_nonce: String,
    /// The `tls-server-end-point` data of this connection; `Some` offers -PLUS.
    end_point: Option<Vec<u8>>,
    /// The client selected -PLUS.
    plus: bool,
    state: State,
}

impl ScramServer {
    /// An exchange against `verifier`, or against `mock` (which always fails) when the user
    /// is unknown. `server_nonce` must be fresh random printable text without commas.
    pub fn new(
        verifier: Option<&ScramVerifier>,
        mock: ScramVerifier,
        server_nonce: String,
    ) -> ScramServer {
        let (verifier, known) = match verifier {
            Some(v) => (v.clone(), true),
            None => (mock, false),
        };
        ScramServer {
            verifier,
            known,
            server_nonce,
            end_point: None,
            plus: false,
            state: State::First,
        }
    }

    /// Offers SCRAM-SHA-256-PLUS bound to `end_point`, the `tls-server-end-point` data of
    /// the certificate this connection's TLS handshake served.
    pub fn with_tls_server_end_point(mut self, end_point: Vec<u8>) -> ScramServer {
        self.end_point = Some(end_point);
        self
    }

    /// The mechanisms to offer in AuthenticationSASL, -PLUS first as PostgreSQL lists them.
    pub fn mechanisms(&self) -> &'static [&'static str] {
        if self.end_point.is_some() {
            &[MECHANISM_PLUS, MECHANISM]
        } else {
            &[MECHANISM]
        }
    }

    /// Takes the mechanism of the client's SASLInitialResponse; false for one not offered
    /// (-PLUS on plain text included).
    pub fn select_mechanism(&mut self, mechanism: &str) -> bool {
        match mechanism {
            MECHANISM_PLUS if self.end_point.is_some() => self.plus = true,
            MECHANISM => self.plus = false,
            _ => return false,
        }
        true
    }

    /// Takes the client-first-message and returns the server-first-message.
    pub fn client_first(&mut self, data: &[u8]) -> Result<String, ScramFailure> {
        if !matches!(self.state, State::First) {
            return Err(ScramFailure::Malformed("unexpected client-first-message"));
        }
        self.state = State::Done;
        let text = std::str::from_utf8(data)
            .map_err(|_| ScramFailure::Malformed("the message is not UTF-8"))?;
        let (cbind_flag, rest) = text
            .split_once(',')
            .ok_or(ScramFailure::Malformed("no GS2 header"))?;
        self.check_gs2_flag(cbind_flag)?;
        let (authzid, client_first_bare) = rest
            .split_once(',')
            .ok_or(ScramFailure::Malformed("no GS2 header"))?;
        if !authzid.is_empty() {
            return Err(ScramFailure::Unsupported(
                "SCRAM authorization identities are not supported",
            ));
        }
        let gs2_header = &text[..text.len() - client_first_bare.len()];
        let mut attributes = client_first_bare.split(',');
        match attributes.next() {
            Some(user) if user.starts_with("n=") => {}
            Some(ext) if ext.starts_with("m=") => {
                return Err(ScramFailure::Unsupported(
                    "mandatory SCRAM extensions are not supported",
                ));
            }
            _ => return Err(ScramFailure::Malformed("no user name attribute")),
        }
        let client_nonce = attributes
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(ScramFailure::Malformed("no nonce attribute"))?;
        if client_nonce.is_empty() || !client_nonce.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(ScramFailure::Malformed(
                "the nonce is empty or not printable",
            ));
        }
        let nonce = format!("{client_nonce}{}", self.server_nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            STANDARD.encode(&self.verifier.salt),
            self.verifier.iterations
        );
        self.state = State::Final {
            gs2_header: gs2_header.to_owned(),
            client_first_bare: client_first_bare.to_owned(),
            server_first: server_first.clone(),
            nonce,
        };
        Ok(server_first)
    }

    /// The GS2 channel-binding flag against the mechanism chosen and the offer made, as
    /// PostgreSQL's `read_client_first_message` checks it.
    fn check_gs2_flag(&self, flag: &str) -> Result<(), ScramFailure> {
        match (flag.strip_prefix("p="), flag) {
            (Some(_), _) if !self.plus => Err(ScramFailure::Malformed(
                "the client selected SCRAM-SHA-256 without channel binding, but the SCRAM message includes channel binding data",
            )),
            (Some(CHANNEL_BINDING_TYPE), _) => Ok(()),
            (Some(_), _) => Err(ScramFailure::Unsupported(
                "unsupported SCRAM channel-binding type: the proxy supports tls-server-end-point",
            )),
            (None, "n" | "y") if self.plus => Err(ScramFailure::Malformed(
                "the client selected SCRAM-SHA-256-PLUS, but the SCRAM message does not include channel binding data",
            )),
            (None, "y") if self.end_point.is_some() => Err(ScramFailure::BindingNegotiation),
            (None, "n" | "y") => Ok(()),
            (None, _) => Err(ScramFailure::Malformed("unknown channel-binding flag")),
        }
    }

    /// Takes the client-final-message; returns the server-final-message when the proof
    /// verifies.
    pub fn client_final(&mut self, data: &[u8]) -> Result<String, ScramFailure> {
        let State::Final {
            gs2_header,
            client_first_bare,
            server_first,
            nonce,
        } = std::mem::replace(&mut self.state, State::Done)
        else {
            return Err(ScramFailure::Malformed("unexpected client-final-message"));
        };
        let text = std::str::from_utf8(data)
            .map_err(|_| ScramFailure::Malformed("the message is not UTF-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(ScramFailure::Malformed("no proof attribute"))?;
        let mut attributes = without_proof.split(',');
        let binding = attributes
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or(ScramFailure::Malformed("no channel-binding attribute"))?;
        // c= is base64 of the GS2 header, followed with -PLUS by the binding data of this
        // connection's certificate. Compared as text, as PostgreSQL does, in constant time.
        let mut expected = gs2_header.into_bytes();
        match (self.plus, &self.end_point) {
            (true, Some(end_point)) => expected.extend_from_slice(end_point),
            (true, None) => return Err(ScramFailure::BindingMismatch),
            (false, _) => {}
        }
        if !constant_time_eq(binding.as_bytes(), STANDARD.encode(&expected).as_bytes()) {
            return Err(if self.plus {
                ScramFailure::BindingMismatch
            } else {
                ScramFailure::Malformed(
                    "the channel-binding attribute does not repeat the GS2 header",
                )
            });
        }
        let final_nonce = attributes
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(ScramFailure::Malformed("no nonce attribute"))?;
        if final_nonce != nonce {
            return Err(ScramFailure::Malformed("the nonce does not match"));
        }
        let proof: [u8; 32] = STANDARD
            .decode(proof)
            .ok()
            .and_then(|p| p.try_into().ok())
            .ok_or(ScramFailure::Malformed(
                "the proof is not 32 bytes of base64",
            ))?;

        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let client_signature = hmac_sha256(&self.verifier.stored_key, auth_message.as_bytes());
        let mut client_key = proof;
        for (key, signature) in client_key.iter_mut().zip(client_signature) {
            *key ^= signature;
        }
        let stored_key = sha256(&client_key);
        if !(constant_time_eq(&stored_key, &self.verifier.stored_key) && self.known) {
            return Err(ScramFailure::WrongProof);
        }
        let server_signature = hmac_sha256(&self.verifier.server_key, auth_message.as_bytes());
        Ok(format!("v={}", STANDARD.encode(server_signature)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::auth::users::hash_password;
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

    /// RFC 7677 section 3's example exchange, the verifier's keys computed by Python's hashlib.
    const RFC7677: &str = "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";

    fn mock() -> ScramVerifier {
        ScramVerifier {
            iterations: 4096,
            salt: vec![7; 16],
            stored_key: [0; 32],
            server_key: [0; 32],
        }
    }

    #[test]
    fn rfc_7677_example() {
        let verifier = ScramVerifier::parse(RFC7677).unwrap();
        let mut server = ScramServer::new(
            Some(&verifier),
            mock(),
            "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".to_owned(),
        );
        let first = server
            .client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
            .unwrap();
        assert_eq!(
            first,
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let last = server
            .client_final(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        assert_eq!(last, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    /// Runs postgres-protocol's client (tokio-postgres's) against the server.
    fn exchange(stored: &str, password: &str, known: bool) -> Result<(), ScramFailure> {
        let verifier = ScramVerifier::parse(stored).unwrap();
        let mut server = ScramServer::new(
            known.then_some(&verifier),
            mock(),
            "c2VydmVyLW5vbmNlLTE4Ynl0".to_owned(),
        );
        let mut client = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
        let first = server.client_first(client.message())?;
        client.update(first.as_bytes()).unwrap();
        let last = server.client_final(client.message())?;
        client
            .finish(last.as_bytes())
            .expect("client verifies the server");
        Ok(())
    }

    #[test]
    fn a_real_client_with_the_right_password_passes() {
        let stored = hash_password("correct horse Ω");
        exchange(&stored, "correct horse Ω", true).unwrap();
    }

    #[test]
    fn a_wrong_password_and_an_unknown_user_fail_alike() {
        let stored = hash_password("correct horse");
        assert_eq!(
            exchange(&stored, "wrong", true),
            Err(ScramFailure::WrongProof)
        );
        assert_eq!(
            exchange(&stored, "correct horse", false),
            Err(ScramFailure::WrongProof)
        );
    }

    #[test]
    fn malformed_and_unsupported_messages() {
        let verifier = ScramVerifier::parse(RFC7677).unwrap();
        let fresh = || ScramServer::new(Some(&verifier), mock(), "abc".to_owned());
        for bad in [
            &b"x,,n=,r=abc"[..],
            b"n,,r=abc",
            b"n,,n=,r=",
            b"n,,n=",
            b"\xff",
            b"p=tls-server-end-point,,n=,r=abc",
            b"n,a=alice,n=,r=abc",
            b"n,,m=ext,n=,r=abc",
        ] {
            assert!(fresh().client_first(bad).is_err(), "{bad:?}");
        }
        let mut server = fresh();
        server.client_first(b"n,,n=,r=xyz").unwrap();
        assert!(matches!(
            server.client_final(b"c=biws,r=xyzabc"),
            Err(ScramFailure::Malformed(_))
        ));
        let mut server = fresh();
        server.client_first(b"n,,n=,r=xyz").unwrap();
        assert!(matches!(
            server.client_final(b"c=biws,r=other,p=AAAA"),
            Err(ScramFailure::Malformed(_))
        ));
        let mut server = fresh();
        server.client_first(b"y,,n=,r=xyz").unwrap();
        assert!(matches!(
            server.client_final(b"c=biws,r=xyzabc,p=AAAA"),
            Err(ScramFailure::Malformed(_))
        ));
    }

    const END_POINT: [u8; 32] = [0xab; 32];

    /// postgres-protocol's client with `binding`, against a server offering -PLUS with
    /// `END_POINT` when `offer` is true. `mechanism` is the one the client selects.
    fn bound_exchange(
        offer: bool,
        mechanism: &str,
        binding: ChannelBinding,
    ) -> Result<(), ScramFailure> {
        let stored = hash_password("pw");
        let verifier = ScramVerifier::parse(&stored).unwrap();
        let mut server = ScramServer::new(Some(&verifier), mock(), "c2VydmVy".to_owned());
        if offer {
            server = server.with_tls_server_end_point(END_POINT.to_vec());
        }
        if !server.select_mechanism(mechanism) {
            return Err(ScramFailure::Unsupported("not offered"));
        }
        let mut client = ScramSha256::new(b"pw", binding);
        let first = server.client_first(client.message())?;
        client.update(first.as_bytes()).unwrap();
        let last = server.client_final(client.message())?;
        client.finish(last.as_bytes()).expect("client verifies");
        Ok(())
    }

    #[test]
    fn plus_is_offered_first_only_with_binding_data() {
        let verifier = ScramVerifier::parse(RFC7677).unwrap();
        let plain = ScramServer::new(Some(&verifier), mock(), "abc".to_owned());
        assert_eq!(plain.mechanisms(), &[MECHANISM]);
        let tls = ScramServer::new(Some(&verifier), mock(), "abc".to_owned())
            .with_tls_server_end_point(END_POINT.to_vec());
        assert_eq!(tls.mechanisms(), &[MECHANISM_PLUS, MECHANISM]);
        let mut plain = plain;
        assert!(!plain.select_mechanism(MECHANISM_PLUS), "-PLUS without TLS");
        assert!(!plain.select_mechanism("SCRAM-SHA-1"));
        assert!(plain.select_mechanism(MECHANISM));
    }

    #[test]
    fn the_right_binding_data_passes_and_tampered_data_is_a_binding_failure() {
        let right = ChannelBinding::tls_server_end_point(END_POINT.to_vec());
        assert_eq!(bound_exchange(true, MECHANISM_PLUS, right), Ok(()));
        let mut tampered = END_POINT.to_vec();
        tampered[31] ^= 1;
        let tampered = ChannelBinding::tls_server_end_point(tampered);
        assert_eq!(
            bound_exchange(true, MECHANISM_PLUS, tampered),
            Err(ScramFailure::BindingMismatch)
        );
        // Another certificate's hash (a man in the middle's): the same failure.
        let other = ChannelBinding::tls_server_end_point(vec![0xcd; 48]);
        assert_eq!(
            bound_exchange(true, MECHANISM_PLUS, other),
            Err(ScramFailure::BindingMismatch)
        );
    }

    #[test]
    fn gs2_flags_follow_postgresql() {
        // n: plain SCRAM, offered or not.
        assert_eq!(
            bound_exchange(true, MECHANISM, ChannelBinding::unsupported()),
            Ok(())
        );
        assert_eq!(
            bound_exchange(false, MECHANISM, ChannelBinding::unsupported()),
            Ok(())
        );
        // y: refused where -PLUS was offered (the offer was stripped), fine where it was not.
        assert_eq!(
            bound_exchange(true, MECHANISM, ChannelBinding::unrequested()),
            Err(ScramFailure::BindingNegotiation)
        );
        assert_eq!(
            bound_exchange(false, MECHANISM, ChannelBinding::unrequested()),
            Ok(())
        );
        // p= with plain SCRAM-SHA-256: refused, with or without an offer.
        for offer in [true, false] {
            let binding = ChannelBinding::tls_server_end_point(END_POINT.to_vec());
            assert!(matches!(
                bound_exchange(offer, MECHANISM, binding),
                Err(ScramFailure::Malformed(_))
            ));
        }
        // -PLUS chosen, then n or y: refused.
        for binding in [ChannelBinding::unsupported(), ChannelBinding::unrequested()] {
            assert!(matches!(
                bound_exchange(true, MECHANISM_PLUS, binding),
                Err(ScramFailure::Malformed(_))
            ));
        }
        // Another binding type.
        let verifier = ScramVerifier::parse(RFC7677).unwrap();
        let mut server = ScramServer::new(Some(&verifier), mock(), "abc".to_owned())
            .with_tls_server_end_point(END_POINT.to_vec());
        assert!(server.select_mechanism(MECHANISM_PLUS));
        assert!(matches!(
            server.client_first(b"p=tls-unique,,n=,r=xyz"),
            Err(ScramFailure::Unsupported(_))
        ));
    }

    #[test]
    fn the_binding_attribute_must_carry_the_header_and_the_data() {
        let verifier = ScramVerifier::parse(RFC7677).unwrap();
        let plus = || {
            let mut server = ScramServer::new(Some(&verifier), mock(), "abc".to_owned())
                .with_tls_server_end_point(END_POINT.to_vec());
            assert!(server.select_mechanism(MECHANISM_PLUS));
            server
                .client_first(b"p=tls-server-end-point,,n=,r=xyz")
                .unwrap();
            server
        };
        let proof = STANDARD.encode([0u8; 32]);
        // The header alone (what a client bound to nothing would send): a binding failure.
        let header_only = STANDARD.encode("p=tls-server-end-point,,");
        assert_eq!(
            plus().client_final(format!("c={header_only},r=xyzabc,p={proof}").as_bytes()),
            Err(ScramFailure::BindingMismatch)
        );
        // The right binding, a wrong proof: the password failure, so the binding passed.
        let mut input = b"p=tls-server-end-point,,".to_vec();
        input.extend_from_slice(&END_POINT);
        let right = STANDARD.encode(&input);
        assert_eq!(
            plus().client_final(format!("c={right},r=xyzabc,p={proof}").as_bytes()),
            Err(ScramFailure::WrongProof)
        );
        // Without -PLUS, c= must be "biws" after n and "eSws" after y.
        let mut server = ScramServer::new(Some(&verifier), mock(), "abc".to_owned());
        server.client_first(b"n,,n=,r=xyz").unwrap();
        assert!(matches!(
            server.client_final(format!("c=eSws,r=xyzabc,p={proof}").as_bytes()),
            Err(ScramFailure::Malformed(_))
        ));
        let mut server = ScramServer::new(Some(&verifier), mock(), "abc".to_owned());
        server.client_first(b"y,,n=,r=xyz").unwrap();
        assert_eq!(
            server.client_final(format!("c=eSws,r=xyzabc,p={proof}").as_bytes()),
            Err(ScramFailure::WrongProof)
        );
    }
}
