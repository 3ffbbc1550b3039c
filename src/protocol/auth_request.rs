//! The server's authentication requests (`'R'` messages). Parsed here rather than with
//! postgres-protocol because its backend parser rejects Redshift's codes 13 and 14.

/// One `'R'` message from the server, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthRequest {
    /// Code 0: the login succeeded.
    Ok,
    /// Code 3: send the password in clear (inside TLS).
    Cleartext,
    /// Code 5: send `md5(md5(password ‖ user) ‖ salt)`.
    Md5 {
        /// The four salt bytes.
        salt: [u8; 4],
    },
    /// Code 10: start SASL with one of the listed mechanisms.
    Sasl {
        /// Mechanism names, e.g. `SCRAM-SHA-256`, `SCRAM-SHA-256-PLUS`.
        mechanisms: Vec<String>,
    },
    /// Code 11: the server's SASL challenge.
    SaslContinue {
        /// Mechanism-specific data (SCRAM server-first-message).
        data: Vec<u8>,
    },
    /// Code 12: the server's SASL outcome.
    SaslFinal {
        /// Mechanism-specific data (SCRAM server-final-message).
        data: Vec<u8>,
    },
    /// Code 13: Redshift's salted SHA-256 digest challenge.
    RedshiftDigest {
        /// 0 is SHA-256; other numbers name algorithms the proxy does not implement.
        algorithm: u32,
        /// The salt stored with the user's password hash.
        salt: Vec<u8>,
        /// A per-login nonce chosen by the server.
        server_nonce: Vec<u8>,
    },
    /// Code 14: Redshift's native identity-provider token.
    RedshiftIdpToken,
    /// Any other code (Kerberos, GSS, SSPI, …): named in the error the user sees.
    Other(u32),
}

impl AuthRequest {
    /// Human name of a request code, for errors such as "server asked for GSSAPI".
    pub fn method_name(code: u32) -> &'static str {
        match code {
            0 => "ok",
            2 => "Kerberos V5",
            3 => "cleartext password",
            5 => "MD5 password",
            7 | 8 => "GSSAPI",
            9 => "SSPI",
            10..=12 => "SASL",
            13 => "Redshift SHA-256 digest",
            14 => "Redshift identity-provider token",
            _ => "unknown",
        }
    }
}

/// An `'R'` message that does not have the layout its code requires.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed authentication request (code {code}) from the server: {why}")]
pub struct AuthRequestError {
    /// The request code, when it could be read.
    pub code: u32,
    /// What was wrong.
    pub why: &'static str,
}

/// Reads big-endian fields off the front of a payload.
struct Fields<'a> {
    buf: &'a [u8],
    code: u32,
}

impl<'a> Fields<'a> {
    fn bytes(&mut self, n: usize, why: &'static str) -> Result<&'a [u8], AuthRequestError> {
        if self.buf.len() < n {
            return Err(AuthRequestError {
                code: self.code,
                why,
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn u32(&mut self, why: &'static str) -> Result<u32, AuthRequestError> {
        let b = self.bytes(4, why)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn length_prefixed(&mut self, why: &'static str) -> Result<&'a [u8], AuthRequestError> {
        let len = self.u32(why)? as usize;
        self.bytes(len, why)
    }
}

/// Parses the payload of an `'R'` message (everything after the length field).
pub fn parse_auth_request(payload: &[u8]) -> Result<AuthRequest, AuthRequestError> {
    let mut fields = Fields {
        buf: payload,
        code: u32::MAX,
    };
    let code = fields.u32("shorter than its code")?;
    fields.code = code;
    Ok(match code {
        0 => AuthRequest::Ok,
        3 => AuthRequest::Cleartext,
        5 => {
            let salt = fields.bytes(4, "MD5 salt is shorter than 4 bytes")?;
            AuthRequest::Md5 {
                salt: [salt[0], salt[1], salt[2], salt[3]],
            }
        }
        10 => {
            let mut mechanisms = Vec::new();
            let mut rest = fields.buf;
            loop {
                let nul = rest.iter().position(|&b| b == 0).ok_or(AuthRequestError {
                    code,
                    why: "SASL mechanism list is not NUL-terminated",
                })?;
                if nul == 0 {
                    break;
                }
                let name = std::str::from_utf8(&rest[..nul]).map_err(|_| AuthRequestError {
                    code,
                    why: "SASL mechanism name is not UTF-8",
                })?;
                mechanisms.push(name.to_owned());
                rest = &rest[nul + 1..];
            }
            AuthRequest::Sasl { mechanisms }
        }
        11 => AuthRequest::SaslContinue {
            data: fields.buf.to_vec(),
        },
        12 => AuthRequest::SaslFinal {
            data: fields.buf.to_vec(),
        },
        13 => {
            let algorithm = fields.u32("digest request lacks its algorithm")?;
            let salt = fields.length_prefixed("digest request's salt is truncated")?;
            let server_nonce = fields.length_prefixed("digest request's nonce is truncated")?;
            AuthRequest::RedshiftDigest {
                algorithm,
                salt: salt.to_vec(),
                server_nonce: server_nonce.to_vec(),
            }
        }
        14 => AuthRequest::RedshiftIdpToken,
        other => AuthRequest::Other(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn redshift_digest_request_from_design_vector() {
        // 52 0000002c | 0000000d 00000000 00000008 a1b2c3d4e5f60718 00000010 0011…eeff
        let message = hex(concat!(
            "520000002c0000000d0000000000000008a1b2c3d4e5f60718",
            "0000001000112233445566778899aabbccddeeff"
        ));
        assert_eq!(message.len(), 0x2c + 1);
        let request = parse_auth_request(&message[5..]).unwrap();
        assert_eq!(
            request,
            AuthRequest::RedshiftDigest {
                algorithm: 0,
                salt: hex("a1b2c3d4e5f60718"),
                server_nonce: hex("00112233445566778899aabbccddeeff"),
            }
        );
    }

    #[test]
    fn codes() {
        assert_eq!(parse_auth_request(&[0, 0, 0, 0]).unwrap(), AuthRequest::Ok);
        assert_eq!(
            parse_auth_request(&[0, 0, 0, 3]).unwrap(),
            AuthRequest::Cleartext
        );
        assert_eq!(
            parse_auth_request(&[0, 0, 0, 5, 1, 2, 3, 4]).unwrap(),
            AuthRequest::Md5 { salt: [1, 2, 3, 4] }
        );
        assert_eq!(
            parse_auth_request(b"\0\0\0\x0aSCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0").unwrap(),
            AuthRequest::Sasl {
                mechanisms: vec!["SCRAM-SHA-256-PLUS".into(), "SCRAM-SHA-256".into()]
            }
        );
        assert_eq!(
            parse_auth_request(&[0, 0, 0, 14]).unwrap(),
            AuthRequest::RedshiftIdpToken
        );
        assert_eq!(
            parse_auth_request(&[0, 0, 0, 7]).unwrap(),
            AuthRequest::Other(7)
        );
    }

    #[test]
    fn malformed() {
        for payload in [
            &[0u8, 0][..],
            &[0, 0, 0, 5, 1, 2],
            &[0, 0, 0, 10, b'S'],
            &[0, 0, 0, 13, 0, 0, 0, 0, 0, 0, 0, 9, 1],
            &[0, 0, 0, 13, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 2, 1],
        ] {
            assert!(parse_auth_request(payload).is_err(), "{payload:?}");
        }
    }
}
