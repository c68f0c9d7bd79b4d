//! The tail ring of one output stream: the last `cap` bytes, kept as shared chunks so that
//! readers get them without a copy. Large writes become chunks as they are; small ones are
//! gathered into an open chunk, so a process writing a byte at a time costs no more than one
//! writing a page at a time.
use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

/// Writes at least this large are kept as they are; smaller ones are gathered. Also the size at
/// which the gathering chunk is sealed.
pub const LARGE: usize = 64 << 10;

/// The last `cap` bytes of a stream, from `start()` to `end`.
pub struct Ring {
    /// Sealed chunks with the offset of their first byte, oldest first, contiguous.
    chunks: VecDeque<(u64, Bytes)>,
    /// Bytes after the last sealed chunk, still growing.
    open: BytesMut,
    open_offset: u64,
    len: usize,
    cap: usize,
}

impl Ring {
    /// An empty ring whose first byte will be at `offset`.
    pub fn new(offset: u64, cap: usize) -> Ring {
        Ring {
            chunks: VecDeque::new(),
            open: BytesMut::new(),
            open_offset: offset,
            len: 0,
            cap: cap.max(1),
        }
    }

    /// The most bytes held.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The offset of the first byte held.
    #[cfg(test)]
    pub fn start(&self) -> u64 {
        self.chunks.front().map_or(self.open_offset, |c| c.0)
    }

    fn seal(&mut self) {
        if !self.open.is_empty() {
            let sealed = self.open.split().freeze();
            let offset = self.open_offset;
            self.open_offset += sealed.len() as u64;
            self.chunks.push_back((offset, sealed));
        }
    }

    /// Add bytes by copying them.
    pub fn push_slice(&mut self, data: &[u8]) {
        if data.len() >= LARGE {
            return self.push(Bytes::copy_from_slice(data));
        }
        if self.open.is_empty() {
            self.open.reserve(LARGE);
        }
        self.open.extend_from_slice(data);
        self.len += data.len();
        if self.open.len() >= LARGE {
            self.seal();
        }
        self.trim();
    }

    /// Add bytes without copying large ones.
    pub fn push(&mut self, data: Bytes) {
        if data.len() < LARGE {
            return self.push_slice(&data);
        }
        self.seal();
        self.len += data.len();
        self.chunks.push_back((self.open_offset, data.clone()));
        self.open_offset += data.len() as u64;
        self.trim();
    }

    fn trim(&mut self) {
        while self.len > self.cap {
            let excess = self.len - self.cap;
            match self.chunks.front_mut() {
                Some((_, c)) if c.len() <= excess => {
                    self.len -= c.len();
                    self.chunks.pop_front();
                }
                Some((offset, c)) => {
                    c.advance(excess);
                    *offset += excess as u64;
                    self.len -= excess;
                }
                None => {
                    self.open.advance(excess);
                    self.open_offset += excess as u64;
                    self.len -= excess;
                }
            }
        }
    }

    /// Up to `max` bytes from `offset` (which must be held), without a copy where it can.
    pub fn read(&self, offset: u64, max: usize) -> Bytes {
        if offset >= self.open_offset {
            let start = (offset - self.open_offset) as usize;
            let end = self.open.len().min(start + max);
            return Bytes::copy_from_slice(&self.open[start..end]);
        }
        let i = self
            .chunks
            .partition_point(|(o, c)| o + c.len() as u64 <= offset);
        let (o, c) = &self.chunks[i];
        let start = (offset - o) as usize;
        c.slice(start..c.len().min(start + max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(r: &Ring) -> Vec<u8> {
        let mut out = Vec::new();
        let mut off = r.start();
        while out.len() < r.len() {
            let b = r.read(off, 1000);
            off += b.len() as u64;
            out.extend_from_slice(&b);
        }
        out
    }

    #[test]
    fn keeps_the_last_cap_bytes_of_small_and_large_writes() {
        let mut r = Ring::new(10, 100_000);
        let mut all = Vec::new();
        for i in 0..50u32 {
            let piece: Vec<u8> = (0..(i * 997 % 70_000) + 1).map(|j| (i + j) as u8).collect();
            if i % 2 == 0 {
                r.push(Bytes::from(piece.clone()));
            } else {
                r.push_slice(&piece);
            }
            all.extend_from_slice(&piece);
        }
        assert_eq!(r.len(), 100_000);
        assert_eq!(r.start(), 10 + (all.len() - 100_000) as u64);
        assert_eq!(collect(&r), all[all.len() - 100_000..]);
    }

    #[test]
    fn a_tiny_ring_trims_inside_the_open_chunk() {
        let mut r = Ring::new(0, 4);
        r.push_slice(b"abcdef");
        r.push_slice(b"gh");
        assert_eq!((r.start(), r.len()), (4, 4));
        assert_eq!(&r.read(4, 10)[..], b"efgh");
        assert_eq!(&r.read(6, 10)[..], b"gh");
    }

    #[test]
    fn large_reads_share_the_chunk() {
        let mut r = Ring::new(0, 1 << 20);
        let big = Bytes::from(vec![7u8; LARGE * 2]);
        r.push(big.clone());
        let got = r.read(0, usize::MAX);
        assert_eq!(got.as_ptr(), big.as_ptr(), "no copy");
    }
}
