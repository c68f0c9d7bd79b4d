//! The tail ring of one output stream: the last `cap` bytes, kept as shared chunks so that
//! readers get them without a copy. Large writes become chunks as they are; small ones are
//! gathered into an open chunk, so a process writing a byte at a time costs no more than one
//! writing a page at a time. A reader that reaches the open chunk seals what is there (when it
//! is worth sharing) and shares it too; small chunks next to each other are handed out joined.
use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

/// Writes at least this large are kept as they are; smaller ones are gathered. Also the size at
/// which the gathering chunk is sealed, and of the allocations it gathers into.
pub const LARGE: usize = 64 << 10;

/// A read that reaches the open chunk seals it and shares it when at least this much is there to
/// read, and copies it out otherwise: so the ring holds at most one chunk per `SHARE` bytes
/// whatever the pattern of writes and reads.
pub const SHARE: usize = 4 << 10;

/// `read` joins chunks shorter than this that follow each other into one piece (a copy of
/// small pieces, in place of one event per piece), up to `JOINED` bytes.
pub const SMALL: usize = 16 << 10;
pub const JOINED: usize = 256 << 10;

/// The last `cap` bytes of a stream, from `start()` to `end`.
pub struct Ring {
    /// Sealed chunks with the offset of their first byte, oldest first, contiguous.
    chunks: VecDeque<(u64, Bytes)>,
    /// Bytes after the last sealed chunk, still growing, in an allocation of `LARGE` that later
    /// small writes fill up after a seal.
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

    /// Sealed chunks held.
    #[cfg(test)]
    fn chunk_count(&self) -> usize {
        self.chunks.len()
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
        if self.open.capacity() - self.open.len() < data.len() {
            // The allocation is full (or shared with a sealed chunk up to its end): seal what
            // is gathered and gather into a new one.
            self.seal();
            self.open = BytesMut::with_capacity(LARGE);
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

    /// Up to `max` bytes from `offset` (which must be held), without a copy where it can: the
    /// open chunk is sealed when `SHARE` bytes or more of it are read; pieces shorter than
    /// `SMALL` are joined with the small chunks after them.
    pub fn read(&mut self, offset: u64, max: usize) -> Bytes {
        if offset >= self.open_offset {
            let start = (offset - self.open_offset) as usize;
            if self.open.len() - start < SHARE || max < SHARE {
                let end = self.open.len().min(start.saturating_add(max));
                return Bytes::copy_from_slice(&self.open[start..end]);
            }
            self.seal();
        }
        let i = self
            .chunks
            .partition_point(|(o, c)| o + c.len() as u64 <= offset);
        let (o, c) = &self.chunks[i];
        let start = (offset - o) as usize;
        let first = c.slice(start..c.len().min(start.saturating_add(max)));
        if first.len() >= SMALL || first.len() == max {
            return first;
        }
        self.join(first, i + 1, max.min(JOINED))
    }

    /// `first` and the small chunks from `i` on, while they fit in `max`.
    fn join(&self, first: Bytes, i: usize, max: usize) -> Bytes {
        let next_fits = |len: usize, c: &Bytes| c.len() < SMALL && len + c.len() <= max;
        match self.chunks.get(i) {
            Some((_, c)) if next_fits(first.len(), c) => {}
            _ => return first,
        }
        let mut joined = BytesMut::with_capacity(max.min(JOINED));
        joined.extend_from_slice(&first);
        for (_, c) in self.chunks.range(i..) {
            if !next_fits(joined.len(), c) {
                break;
            }
            joined.extend_from_slice(c);
        }
        joined.freeze()
    }
}

/// The largest block `Blocks` allocates.
pub const BLOCK_MAX: usize = 1 << 20;
/// Blocks kept for reuse, oldest first: enough for a ring of several MiB of full blocks.
const RETIRED_MAX: usize = 16;

/// The allocations one stream's reads go into. Reads fill a block from the front and each is
/// split off and handed to the ring without a copy; a block whose every piece the ring has let
/// go of is used again instead of freed, so a busy stream does not make the allocator hand
/// fresh pages (and take them back) for every read. Blocks start at `LARGE` and double, up to
/// `BLOCK_MAX`, as a stream fills them, so a quiet process holds one small block.
#[derive(Default)]
pub struct Blocks {
    current: BytesMut,
    /// The size of `current`'s allocation; 0 before the first.
    size: usize,
    /// Used-up blocks (an empty handle on each, with its size), oldest first.
    retired: VecDeque<(BytesMut, usize)>,
}

impl Blocks {
    /// The buffer to read into: empty, with room for at least `LARGE` bytes. Split what was
    /// read off it (`split().freeze()`), or `clear()` it to read into the same room again.
    pub fn buffer(&mut self) -> &mut BytesMut {
        if self.current.capacity() - self.current.len() < LARGE {
            self.next_block();
        }
        &mut self.current
    }

    fn next_block(&mut self) {
        let mut used = std::mem::take(&mut self.current);
        used.clear();
        let grown = if self.size == 0 {
            LARGE
        } else {
            (self.size * 2).min(BLOCK_MAX)
        };
        if self.size > 0 {
            self.retired.push_back((used, self.size));
        }
        // The oldest goes out of the ring first: once it is free, use it again (or drop it when
        // the stream has grown past its size).
        while let Some((b, size)) = self.retired.front_mut() {
            if !b.try_reclaim(*size) {
                break;
            }
            let (b, size) = self.retired.pop_front().expect("front");
            if size >= grown {
                self.current = b;
                self.size = size;
                return;
            }
        }
        if self.retired.len() > RETIRED_MAX {
            self.retired.pop_front();
        }
        self.current = BytesMut::with_capacity(grown);
        self.size = grown;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(r: &mut Ring) -> Vec<u8> {
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
        assert_eq!(collect(&mut r), all[all.len() - 100_000..]);
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

    #[test]
    fn a_read_of_the_open_chunk_shares_it_and_writes_go_on_after_it() {
        let mut r = Ring::new(0, 1 << 20);
        r.push_slice(&[1; SHARE]);
        let first = r.read(0, usize::MAX);
        assert_eq!(first.len(), SHARE);
        // The next small write goes into the same allocation, right after the shared bytes.
        r.push_slice(&[2; SHARE]);
        let second = r.read(SHARE as u64, usize::MAX);
        assert_eq!(&second[..], &[2; SHARE][..]);
        assert_eq!(
            second.as_ptr(),
            first.as_ptr().wrapping_add(SHARE),
            "no copy"
        );
        // A read from the middle of a chunk that was shared gets the rest of it.
        assert_eq!(
            &r.read(SHARE as u64 + 10, usize::MAX)[..],
            &[2; SHARE - 10][..]
        );
        assert_eq!(r.len(), 2 * SHARE);
        assert_eq!(collect(&mut r), [[1; SHARE], [2; SHARE]].concat());
    }

    #[test]
    fn a_short_read_of_the_open_chunk_copies_and_leaves_it_open() {
        let mut r = Ring::new(0, 1 << 20);
        r.push_slice(b"abc");
        assert_eq!(&r.read(0, 100)[..], b"abc");
        assert_eq!(&r.read(1, 100)[..], b"bc");
        r.push_slice(b"def");
        assert_eq!(&r.read(0, 100)[..], b"abcdef");
        assert_eq!(r.chunk_count(), 0, "still one open chunk");
    }

    #[test]
    fn reads_that_keep_up_with_small_writes_leave_a_chunk_per_share_at_most() {
        let mut r = Ring::new(0, 1 << 20);
        let mut off = 0u64;
        let mut all = Vec::new();
        for i in 0..10_000u32 {
            let piece = [(i % 251) as u8; 100];
            r.push_slice(&piece);
            all.extend_from_slice(&piece);
            let got = r.read(off, usize::MAX);
            off += got.len() as u64;
        }
        // Reads of less than SHARE copy; caught up, each read takes one write.
        assert_eq!(off, 1_000_000);
        assert!(
            r.chunk_count() <= all.len() / SHARE + 1,
            "{}",
            r.chunk_count()
        );
        let mut r2 = Ring::new(0, 1 << 20);
        for piece in all.chunks(SHARE + 7) {
            r2.push_slice(piece);
            let got = r2.read(
                r2.start() + r2.len() as u64 - piece.len() as u64,
                usize::MAX,
            );
            assert_eq!(&got[..], piece);
        }
        assert_eq!(collect(&mut r2), all);
    }

    #[test]
    fn small_chunks_in_a_row_are_read_as_one_piece() {
        let mut r = Ring::new(0, 1 << 20);
        let mut all = Vec::new();
        // Each write is read as it comes (so sealed on its own), then a reader from 0 gets
        // them joined.
        for i in 0..40u32 {
            let piece = vec![i as u8; SHARE + i as usize];
            r.push_slice(&piece);
            all.extend_from_slice(&piece);
            r.read(all.len() as u64 - piece.len() as u64, usize::MAX);
        }
        assert!(r.chunk_count() >= 40);
        let first = r.read(0, usize::MAX);
        assert!(
            first.len() > SMALL && first.len() <= JOINED,
            "{}",
            first.len()
        );
        assert_eq!(&first[..], &all[..first.len()]);
        // `max` bounds the joined piece; a piece that would pass it is left for the next read.
        let capped = r.read(0, 3 * SHARE);
        assert_eq!(&capped[..], &all[..capped.len()]);
        assert!(
            capped.len() <= 3 * SHARE && capped.len() > SHARE,
            "{}",
            capped.len()
        );
        // A large chunk is never copied into a joined piece.
        r.push(Bytes::from(vec![9u8; LARGE]));
        let mut off = 0u64;
        let mut got = Vec::new();
        while off < all.len() as u64 + LARGE as u64 {
            let b = r.read(off, usize::MAX);
            off += b.len() as u64;
            got.extend_from_slice(&b);
        }
        assert_eq!(&got[..all.len()], &all[..]);
        assert_eq!(&got[all.len()..], &[9u8; LARGE][..]);
    }

    #[test]
    fn blocks_grow_and_are_used_again_once_the_ring_lets_go() {
        let mut blocks = Blocks::default();
        let mut ring = Ring::new(0, 4 * BLOCK_MAX);
        let first = blocks.buffer().as_ptr();
        assert_eq!(blocks.buffer().capacity(), LARGE);
        // Read a full block at a time into the ring: the blocks double up to BLOCK_MAX.
        let mut sizes = Vec::new();
        let mut starts = Vec::new();
        for _ in 0..40 {
            let buf = blocks.buffer();
            let n = buf.capacity();
            starts.push(buf.as_ptr());
            sizes.push(n);
            buf.resize(n, 1);
            ring.push(buf.split().freeze());
        }
        assert_eq!(
            &sizes[..5],
            &[LARGE, 2 * LARGE, 4 * LARGE, 8 * LARGE, BLOCK_MAX]
        );
        assert!(sizes[4..].iter().all(|&n| n == BLOCK_MAX));
        assert_eq!(starts[0], first);
        // The ring holds four blocks' worth; the ones it let go of were used again.
        let distinct: std::collections::HashSet<_> = starts[4..].iter().collect();
        assert!(
            distinct.len() <= 7,
            "{} blocks for 36 reads",
            distinct.len()
        );
        assert_eq!(ring.len(), 4 * BLOCK_MAX);
    }

    #[test]
    fn a_block_still_read_from_is_not_reused() {
        let mut blocks = Blocks::default();
        let buf = blocks.buffer();
        buf.resize(LARGE, 7);
        let kept = buf.split().freeze();
        for _ in 0..RETIRED_MAX + 3 {
            let buf = blocks.buffer();
            let n = buf.capacity();
            buf.resize(n, 0);
            drop(buf.split());
        }
        assert!(kept.iter().all(|&b| b == 7), "never written over");
    }

    #[test]
    fn a_cleared_read_is_read_into_again() {
        let mut blocks = Blocks::default();
        let buf = blocks.buffer();
        buf.extend_from_slice(b"abc");
        let at = buf.as_ptr();
        buf.clear();
        assert_eq!(blocks.buffer().as_ptr(), at);
        let buf = blocks.buffer();
        buf.resize(LARGE / 2, 1);
        let a = buf.split().freeze();
        // Less than LARGE is left after the split: the next read goes into a new block.
        assert_ne!(blocks.buffer().as_ptr(), a.as_ptr().wrapping_add(a.len()));
    }
}
