//! The server side of SCRAM-SHA-256 (RFC 5802 and 7677) as PostgreSQL speaks it, for
//! `--client-auth scram`. Pure: it turns the client's messages into the server's answers
//! and leaves the IO to the caller.
//!
//! The proxy checks the client's proof against a stored verifier and never sees a password.
//! An unknown user gets a salt derived from its name (as PostgreSQL's mock authentication
//! does) and an exchange that fails only at the end, exactly like a wrong password, so the
//! answers do not tell which users exist. Channel binding (`SCRAM-SHA-256-PLUS`) is not
//! offered; clients that merely prefer it (libpq's default) go on without it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::users::ScramVerifier;
use crate::protocol::scram::{constant_time_eq, hmac_sha256, sha256};

/// The only mechanism offered.
pub const MECHANISM: &str = "SCRAM-SHA-256";

/// Why an exchange did not end in a verified client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramFailure {
    /// A message that does not follow RFC 5802 (sent as 08P01).
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The client asked for something the proxy does not offer (sent as 08P01).
    #[error("{0}")]
    Unsupported(&'static str),
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

/// One SCRAM-SHA-256 exchange with one client.
pub struct ScramServer {
    verifier: ScramVerifier,
    /// False for an unknown user: the exchange runs on a made-up verifier and fails.
    known: bool,
    server_nonce: String,
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
            state: State::First,
        }
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
        match cbind_flag {
            "n" | "y" => {}
            flag if flag.starts_with("p=") => {
                return Err(ScramFailure::Unsupported(
                    "the client requires channel binding, which the proxy does not offer: connect with channel_binding=prefer or disable",
                ));
            }
            _ => return Err(ScramFailure::Malformed("unknown channel-binding flag")),
        }
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
        if STANDARD.decode(binding).ok().as_deref() != Some(gs2_header.as_bytes()) {
            return Err(ScramFailure::Malformed(
                "the channel-binding attribute does not repeat the GS2 header",
            ));
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
}
