//! A password that cannot be printed by accident and does not outlive its use in memory.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

/// A temporary database password (or any other secret). `Debug` and `Display` print
/// `<redacted>`, so a secret that ends up in a log line, an error or a panic shows nothing.
/// Its bytes are overwritten when it is dropped, so a password that has expired or been
/// refused does not linger in freed heap memory (core dumps, swap, a later read of reused
/// memory).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value. The `String` is taken over, not copied, so no unwiped copy is
    /// left behind by the wrapping itself.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Zeroize for Secret {
    /// Overwrites the whole buffer (its spare capacity too) and leaves the secret empty.
    fn zeroize(&mut self) {
        self.0.zeroize();
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl ZeroizeOnDrop for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "<redacted> <redacted>");
        assert_eq!(format!("{:#?}", Some(&s)), "Some(\n    <redacted>,\n)");
        assert_eq!(s.expose(), "hunter2");
        // Inside other types' derived Debug output too.
        let credentials = crate::credentials::DbCredentials {
            user: "IAM:alice".to_owned(),
            password: s.clone(),
            expires_at: None,
            origin: crate::credentials::Origin::Fetched,
        };
        let text = format!("{credentials:?} {credentials:#?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
    }

    #[test]
    #[allow(unsafe_code)]
    fn wiped_in_place_as_on_drop() {
        let mut value = String::with_capacity(64);
        value.push_str("correct horse battery staple");
        let mut s = Secret::new(value);
        let (ptr, capacity) = (s.0.as_ptr(), s.0.capacity());
        // What `drop` does, on a secret that is still alive so its buffer can be inspected.
        s.zeroize();
        assert_eq!(s.expose(), "");
        assert_eq!(
            (s.0.as_ptr(), s.0.capacity()),
            (ptr, capacity),
            "wiped in place, not reallocated"
        );
        // SAFETY: `s` is alive and its buffer was neither freed nor reallocated (same
        // capacity), so `ptr..ptr + capacity` is still its allocation; `zeroize` wrote every
        // byte of it, so all of it is initialised.
        let buffer = unsafe { std::slice::from_raw_parts(ptr, capacity) };
        assert!(buffer.iter().all(|&b| b == 0), "{buffer:?}");
    }

    #[test]
    fn zeroized_on_drop_by_type() {
        fn wiped_on_drop<T: ZeroizeOnDrop>() {}
        wiped_on_drop::<Secret>();
    }
}
