//! The decompressor's memory: the last 64 KiB of plain output, which every LZ4 block the
//! server sends may refer back into (the server compresses with `LZ4_compress_fast_continue`,
//! so each block's dictionary is the stream decoded so far). lz4_flex takes one contiguous
//! dictionary, so the window is kept contiguous: output is appended after it and, when the
//! buffer is full, the last 64 KiB are moved to the front. The buffer holds the window plus
//! one block (80 KiB): room for a second block would halve the moves (about 0.1 CPU second
//! per GB of output, memmove's speed) but brings an idle session to the edge of its 100 KiB.

use std::ops::Range;

use lz4_flex::block::{DecompressError, decompress_into_with_dict};

/// How far back a block may refer: LZ4's offsets are 16 bits.
pub const WINDOW: usize = 64 * 1024;

/// The most plain bytes one `'m'` block may decompress to.
pub const MAX_BLOCK_OUTPUT: usize = 16 * 1024;

/// The buffer: the window and room for one block after it (80 KiB per compressed session).
pub const CAPACITY: usize = WINDOW + MAX_BLOCK_OUTPUT;

/// The last `WINDOW` bytes of decompressed output, contiguous at `buf[len - WINDOW..len]`.
pub struct History {
    buf: Box<[u8]>,
    len: usize,
}

impl History {
    /// An empty history. The buffer is zeroed memory the allocator maps lazily, so a
    /// compressed session that has not received anything yet costs almost nothing.
    pub fn new() -> History {
        History {
            buf: vec![0u8; CAPACITY].into_boxed_slice(),
            len: 0,
        }
    }

    /// Forgets everything: after `'z'` or `'k'` the server starts a fresh stream.
    pub fn reset(&mut self) {
        self.len = 0;
    }

    /// The bytes a block may refer to.
    fn window(&self) -> &[u8] {
        &self.buf[self.len.saturating_sub(WINDOW)..self.len]
    }

    /// Makes room for `n` more bytes after `len` by moving the window to the front.
    fn make_room(&mut self, n: usize) {
        debug_assert!(n <= CAPACITY - WINDOW);
        if self.len + n > CAPACITY {
            let keep = self.len.min(WINDOW);
            self.buf.copy_within(self.len - keep..self.len, 0);
            self.len = keep;
        }
    }

    /// Decompresses `block` into `out` (at most `MAX_BLOCK_OUTPUT` bytes of it are used) and
    /// remembers the output; returns its length.
    pub fn decompress_into(
        &mut self,
        block: &[u8],
        out: &mut [u8],
    ) -> Result<usize, DecompressError> {
        let limit = out.len().min(MAX_BLOCK_OUTPUT);
        let n = decompress_into_with_dict(block, &mut out[..limit], self.window())?;
        self.make_room(n);
        self.buf[self.len..self.len + n].copy_from_slice(&out[..n]);
        self.len += n;
        Ok(n)
    }

    /// Decompresses `block` into the history itself, for a reader whose buffer has less room
    /// than a block; returns where the output is, to be handed out with [`History::bytes`].
    pub fn decompress_in_place(&mut self, block: &[u8]) -> Result<Range<usize>, DecompressError> {
        self.make_room(MAX_BLOCK_OUTPUT);
        let start = self.len;
        let (before, after) = self.buf.split_at_mut(start);
        let dictionary = &before[start.saturating_sub(WINDOW)..];
        let n = decompress_into_with_dict(block, &mut after[..MAX_BLOCK_OUTPUT], dictionary)?;
        self.len += n;
        Ok(start..start + n)
    }

    /// Output decompressed in place; valid until the next decompression.
    pub fn bytes(&self, range: Range<usize>) -> &[u8] {
        &self.buf[range]
    }
}

impl Default for History {
    fn default() -> Self {
        History::new()
    }
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History").field("len", &self.len).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lz4_flex::block::compress_with_dict;

    /// Text that repeats at long distances, so blocks refer far back.
    fn sample(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| b"0123456789abcdefghij,\n"[(i * 7 + i / 5000) % 22])
            .collect()
    }

    #[test]
    fn blocks_continue_across_many_window_moves() {
        let plain = sample(400_000);
        let mut history = History::new();
        let mut decoded = Vec::new();
        let mut out = vec![0u8; MAX_BLOCK_OUTPUT];
        for (i, chunk) in plain.chunks(MAX_BLOCK_OUTPUT - 3).enumerate() {
            let start = decoded.len();
            let dictionary = &plain[start.saturating_sub(WINDOW)..start];
            let block = compress_with_dict(chunk, dictionary);
            if i % 2 == 0 {
                let n = history.decompress_into(&block, &mut out).expect("decodes");
                decoded.extend_from_slice(&out[..n]);
            } else {
                let range = history.decompress_in_place(&block).expect("decodes");
                decoded.extend_from_slice(history.bytes(range));
            }
        }
        assert_eq!(decoded, plain);
    }

    #[test]
    fn a_reference_before_the_history_is_refused() {
        let plain = sample(30_000);
        let block = compress_with_dict(&plain[20_000..], &plain[..20_000]);
        let mut history = History::new();
        let mut out = vec![0u8; MAX_BLOCK_OUTPUT * 2];
        assert!(matches!(
            history.decompress_into(&block, &mut out),
            Err(DecompressError::OffsetOutOfBounds)
        ));
    }

    #[test]
    fn output_over_a_block_is_refused_even_with_room() {
        let block = lz4_flex::block::compress(&vec![b'x'; MAX_BLOCK_OUTPUT + 1]);
        let mut history = History::new();
        let mut out = vec![0u8; MAX_BLOCK_OUTPUT * 2];
        assert!(matches!(
            history.decompress_into(&block, &mut out),
            Err(DecompressError::OutputTooSmall { .. })
        ));
        assert!(matches!(
            history.decompress_in_place(&block),
            Err(DecompressError::OutputTooSmall { .. })
        ));
    }
}
