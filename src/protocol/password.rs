//! The cleartext password exchange of `--client-auth password`: AuthenticationCleartextPassword
//! (`'R'`, code 3) toward the client and its PasswordMessage (`'p'`, the password and a NUL)
//! back. Every Redshift driver answers it, including the Redshift JDBC driver, which has no
//! SCRAM; PostgreSQL's `recv_password_packet` in `src/backend/libpq/auth.c` reads it the same
//! way.

/// AuthenticationCleartextPassword: `'R'`, length 8, code 3.
pub const AUTHENTICATION_CLEARTEXT_PASSWORD: [u8; 9] = [b'R', 0, 0, 0, 8, 0, 0, 0, 3];

/// A PasswordMessage that does not hold one NUL-terminated password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid password packet size: send the password followed by one NUL byte")]
pub struct BadPasswordMessage;

/// The password in a PasswordMessage's payload: everything before the terminating NUL, which
/// must be the last byte, as PostgreSQL requires.
pub fn parse_password_message(payload: &[u8]) -> Result<&[u8], BadPasswordMessage> {
    match payload.iter().position(|&b| b == 0) {
        Some(nul) if nul + 1 == payload.len() => Ok(&payload[..nul]),
        _ => Err(BadPasswordMessage),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{AuthRequest, parse_auth_request};

    #[test]
    fn the_request_is_code_3() {
        assert_eq!(
            parse_auth_request(&AUTHENTICATION_CLEARTEXT_PASSWORD[5..]),
            Ok(AuthRequest::Cleartext)
        );
    }

    #[test]
    fn the_password_is_what_comes_before_the_last_nul() {
        assert_eq!(parse_password_message(b"s3cret\0"), Ok(&b"s3cret"[..]));
        assert_eq!(parse_password_message(b"\0"), Ok(&b""[..]));
        assert_eq!(parse_password_message(b"s3cret"), Err(BadPasswordMessage));
        assert_eq!(
            parse_password_message(b"s3\0cret\0"),
            Err(BadPasswordMessage)
        );
        assert_eq!(parse_password_message(b""), Err(BadPasswordMessage));
    }
}
