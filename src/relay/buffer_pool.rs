//! Relay buffers lent from one shared pool. A session holds a buffer only while bytes are in
//! flight: it takes one when a read is about to happen and gives it back as soon as the read
//! would wait with nothing buffered. So a thousand idle sessions hold no relay buffers at all
//! (the ≤ 64 KiB per idle session budget in `docs/benchmarks.md`), while a busy one reuses the same
//! buffer chunk after chunk with no allocation.

use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

/// Size of one relay buffer: four full TLS records, so a bulk COPY moves in large chunks
/// and each read or write system call carries up to 64 KiB.
pub const BUFFER_SIZE: usize = 64 * 1024;

/// Buffers kept for reuse at most (16 MiB); more than that are freed when given back, so a
/// burst of busy sessions does not pin its peak memory forever.
const POOL_LIMIT: usize = 256;

/// A set of spare buffers. The relay uses the process-wide `SHARED`; tests make their own.
pub struct BufferPool {
    spare: Mutex<Vec<Box<[u8]>>>,
}

/// The pool every session's relay borrows from.
pub static SHARED: BufferPool = BufferPool::new();

impl BufferPool {
    /// An empty pool.
    pub const fn new() -> BufferPool {
        BufferPool {
            spare: Mutex::new(Vec::new()),
        }
    }

    /// Takes a buffer, or allocates one when none is spare.
    pub fn take(&'static self) -> PooledBuffer {
        let reused = self.spare.lock().unwrap_or_else(|e| e.into_inner()).pop();
        PooledBuffer {
            buffer: Some(reused.unwrap_or_else(|| vec![0u8; BUFFER_SIZE].into_boxed_slice())),
            home: self,
        }
    }

    /// How many buffers are spare right now.
    #[cfg(test)]
    pub fn spare(&self) -> usize {
        self.spare.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn give_back(&self, buffer: Box<[u8]>) {
        let mut spare = self.spare.lock().unwrap_or_else(|e| e.into_inner());
        if spare.len() < POOL_LIMIT {
            spare.push(buffer);
        }
    }
}

impl Default for BufferPool {
    fn default() -> Self {
        BufferPool::new()
    }
}

/// A buffer of `BUFFER_SIZE` bytes on loan from a pool; dropping it gives it back.
pub struct PooledBuffer {
    buffer: Option<Box<[u8]>>,
    home: &'static BufferPool,
}

impl Deref for PooledBuffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.buffer.as_deref().unwrap_or_default()
    }
}

impl DerefMut for PooledBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.buffer.as_deref_mut().unwrap_or_default()
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        if let Some(buffer) = self.buffer.take() {
            self.home.give_back(buffer);
        }
    }
}

impl std::fmt::Debug for PooledBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledBuffer")
            .field("len", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_returned_buffer_is_lent_again() {
        static POOL: BufferPool = BufferPool::new();
        let mut first = POOL.take();
        assert_eq!(first.len(), BUFFER_SIZE);
        first[0] = 7;
        let address = first.as_ptr();
        drop(first);
        assert_eq!(POOL.spare(), 1);
        let again = POOL.take();
        assert_eq!(again.as_ptr(), address);
        assert_eq!(again[0], 7);
        assert_eq!(POOL.spare(), 0);
    }

    #[test]
    fn the_pool_keeps_at_most_its_limit() {
        static POOL: BufferPool = BufferPool::new();
        let loans: Vec<PooledBuffer> = (0..POOL_LIMIT + 3).map(|_| POOL.take()).collect();
        drop(loans);
        assert_eq!(POOL.spare(), POOL_LIMIT);
    }
}
