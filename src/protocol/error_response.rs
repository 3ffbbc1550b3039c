//! ErrorResponse and NoticeResponse bodies: built for failures the proxy owns, and read for
//! the SQLSTATE of upstream errors so logs and metrics can name them.

use bytes::{BufMut, BytesMut};

/// How bad an error is; FATAL ends the session, which is what every proxy-owned error does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The session ends.
    Fatal,
    /// The current command fails.
    Error,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Fatal => "FATAL",
            Severity::Error => "ERROR",
        }
    }
}

/// An ErrorResponse the proxy sends on its own behalf. Messages must tell the user what to
/// fix and must never carry a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    /// FATAL or ERROR.
    pub severity: Severity,
    /// Five-character SQLSTATE, e.g. `08001`.
    pub code: &'static str,
    /// The primary message.
    pub message: String,
    /// Optional detail (`D` field).
    pub detail: Option<String>,
    /// Optional hint (`H` field): what to do about it.
    pub hint: Option<String>,
}

impl ErrorResponse {
    /// A FATAL error with a code and message.
    pub fn fatal(code: &'static str, message: impl Into<String>) -> ErrorResponse {
        ErrorResponse {
            severity: Severity::Fatal,
            code,
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    /// Adds a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> ErrorResponse {
        self.hint = Some(hint.into());
        self
    }

    /// Appends the whole `'E'` message to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        let start = out.len();
        out.put_u8(b'E');
        out.put_u32(0);
        let mut field = |tag: u8, value: &str| {
            out.put_u8(tag);
            // A NUL inside a field would end it early on the client; drop any.
            out.extend(value.bytes().filter(|&b| b != 0));
            out.put_u8(0);
        };
        field(b'S', self.severity.as_str());
        field(b'V', self.severity.as_str());
        field(b'C', self.code);
        field(b'M', &self.message);
        if let Some(detail) = &self.detail {
            field(b'D', detail);
        }
        if let Some(hint) = &self.hint {
            field(b'H', hint);
        }
        out.put_u8(0);
        let len = (out.len() - start - 1) as u32;
        out[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
    }
}

/// Reads one field (`C` for SQLSTATE, `M` for the message, …) out of an ErrorResponse or
/// NoticeResponse payload, for logging what the upstream said.
pub fn field(payload: &[u8], tag: u8) -> Option<&str> {
    let mut rest = payload;
    while let Some((&t, tail)) = rest.split_first() {
        if t == 0 {
            return None;
        }
        let nul = tail.iter().position(|&b| b == 0)?;
        if t == tag {
            return std::str::from_utf8(&tail[..nul]).ok();
        }
        rest = &tail[nul + 1..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_and_reads_back() {
        let mut out = BytesMut::new();
        ErrorResponse::fatal("08P01", "bad\0 packet")
            .with_hint("fix it")
            .encode(&mut out);
        assert_eq!(out[0], b'E');
        let len = u32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize;
        assert_eq!(len + 1, out.len());
        let payload = &out[5..];
        assert_eq!(field(payload, b'C'), Some("08P01"));
        assert_eq!(field(payload, b'M'), Some("bad packet"));
        assert_eq!(field(payload, b'H'), Some("fix it"));
        assert_eq!(field(payload, b'S'), Some("FATAL"));
        assert_eq!(field(payload, b'D'), None);
    }
}
