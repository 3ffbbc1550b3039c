//! Tagged message headers (`type byte, Int32 length including itself`) and a walker that
//! follows them through a byte stream chunk by chunk without copying or allocating, so the
//! relay can count messages while forwarding its read buffer whole.

/// The header of one tagged message; `len` counts the length field itself but not the tag,
/// exactly as it travels on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The message type byte, e.g. `b'Q'` or `b'D'`.
    pub tag: u8,
    /// The length field as sent: payload length + 4.
    pub len: u32,
}

/// Bytes in a tagged message header.
pub const HEADER_LEN: usize = 5;

impl FrameHeader {
    /// Reads a header from the first five bytes of `buf`, or `None` when fewer are there.
    /// A length below 4 cannot be framed and is reported so the caller can close.
    pub fn parse(buf: &[u8]) -> Option<Result<FrameHeader, BadFrameLength>> {
        let bytes: [u8; HEADER_LEN] = buf.get(..HEADER_LEN)?.try_into().ok()?;
        let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        if len < 4 {
            return Some(Err(BadFrameLength { tag: bytes[0], len }));
        }
        Some(Ok(FrameHeader { tag: bytes[0], len }))
    }

    /// Payload bytes that follow the header.
    pub fn payload_len(self) -> usize {
        self.len as usize - 4
    }
}

/// A message whose length field is smaller than the field itself: the stream is corrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("message '{}' has length {len}, below the minimum of 4: the stream is corrupt", char::from(*tag))]
pub struct BadFrameLength {
    /// The type byte of the broken message.
    pub tag: u8,
    /// The length it claimed.
    pub len: u32,
}

/// Follows message boundaries across arbitrary chunk splits. It keeps only the bytes still
/// owed to the current message and up to four bytes of a header split between two reads, so
/// walking costs a few comparisons per message and never touches payload bytes.
#[derive(Debug, Default, Clone)]
pub struct FrameWalker {
    /// Payload bytes of the current message not yet seen.
    remaining: u64,
    /// A header cut by a chunk boundary, collected until complete.
    partial: [u8; HEADER_LEN],
    partial_len: usize,
}

impl FrameWalker {
    /// A walker positioned at a message boundary.
    pub fn new() -> FrameWalker {
        FrameWalker::default()
    }

    /// True when the bytes seen so far end exactly on a message boundary.
    pub fn at_boundary(&self) -> bool {
        self.remaining == 0 && self.partial_len == 0
    }

    /// Walks `chunk`, calling `on_header` for every header that completes inside it.
    pub fn walk(
        &mut self,
        chunk: &[u8],
        mut on_header: impl FnMut(FrameHeader),
    ) -> Result<(), BadFrameLength> {
        let mut pos = 0usize;
        while pos < chunk.len() {
            if self.remaining > 0 {
                let left = (chunk.len() - pos) as u64;
                let skip = self.remaining.min(left);
                self.remaining -= skip;
                pos += skip as usize;
                continue;
            }
            let header = if self.partial_len > 0 {
                let take = (HEADER_LEN - self.partial_len).min(chunk.len() - pos);
                self.partial[self.partial_len..self.partial_len + take]
                    .copy_from_slice(&chunk[pos..pos + take]);
                self.partial_len += take;
                pos += take;
                if self.partial_len < HEADER_LEN {
                    return Ok(());
                }
                self.partial_len = 0;
                FrameHeader::parse(&self.partial)
            } else if chunk.len() - pos >= HEADER_LEN {
                let header = FrameHeader::parse(&chunk[pos..]);
                pos += HEADER_LEN;
                header
            } else {
                let take = chunk.len() - pos;
                self.partial[..take].copy_from_slice(&chunk[pos..]);
                self.partial_len = take;
                return Ok(());
            };
            // A complete header was collected above, so `parse` always has its five bytes.
            let Some(header) = header else {
                return Ok(());
            };
            let header = header?;
            self.remaining = header.payload_len() as u64;
            on_header(header);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(tag: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        out.extend_from_slice(&(payload.len() as u32 + 4).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn stream() -> Vec<u8> {
        let mut s = Vec::new();
        s.extend(message(b'Q', b"select 1\0"));
        s.extend(message(b'D', &[7; 300]));
        s.extend(message(b'Z', b"I"));
        s.extend(message(b'S', b""));
        s
    }

    #[test]
    fn finds_every_header_in_one_chunk() {
        let mut tags = Vec::new();
        let mut walker = FrameWalker::new();
        walker.walk(&stream(), |h| tags.push(h.tag)).unwrap();
        assert_eq!(tags, b"QDZS");
        assert!(walker.at_boundary());
    }

    #[test]
    fn finds_every_header_at_every_split() {
        let s = stream();
        for split in 0..=s.len() {
            for second in split..=s.len() {
                let mut tags = Vec::new();
                let mut walker = FrameWalker::new();
                walker.walk(&s[..split], |h| tags.push(h.tag)).unwrap();
                walker
                    .walk(&s[split..second], |h| tags.push(h.tag))
                    .unwrap();
                walker.walk(&s[second..], |h| tags.push(h.tag)).unwrap();
                assert_eq!(tags, b"QDZS", "split at {split}/{second}");
                assert!(walker.at_boundary());
            }
        }
    }

    #[test]
    fn byte_by_byte() {
        let s = stream();
        let mut tags = Vec::new();
        let mut walker = FrameWalker::new();
        for b in &s {
            walker
                .walk(std::slice::from_ref(b), |h| tags.push(h.tag))
                .unwrap();
        }
        assert_eq!(tags, b"QDZS");
    }

    #[test]
    fn length_below_four_is_an_error() {
        let mut walker = FrameWalker::new();
        let err = walker.walk(&[b'Q', 0, 0, 0, 3], |_| {}).unwrap_err();
        assert_eq!(err.len, 3);
    }

    #[test]
    fn mid_message_is_not_a_boundary() {
        let mut walker = FrameWalker::new();
        walker.walk(&message(b'D', b"abc")[..6], |_| {}).unwrap();
        assert!(!walker.at_boundary());
    }
}
