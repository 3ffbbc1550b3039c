//! MD5 password answers: what Redshift asks of IAM temporary passwords by default.

/// `"md5" + hex(md5(hex(md5(password ‖ user)) ‖ salt))`, where `user` is the name sent in the
/// StartupMessage (for IAM logins the `IAM:`-prefixed name AWS returned).
pub fn md5_password(user: &[u8], password: &[u8], salt: [u8; 4]) -> String {
    postgres_protocol::authentication::md5_hash(user, password, salt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn design_vector() {
        assert_eq!(
            md5_password(b"IAM:alice", b"TempPass123", [1, 2, 3, 4]),
            "md5bd73dbbdb244bd9c681d20e7371957b2"
        );
    }
}
