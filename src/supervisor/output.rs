//! Output logs: per stream, a bounded head and a bounded tail ring addressed by byte offset, and
//! cursors that replay and follow them.
//!
//! Readers pull from the shared log with their own cursor, so replay and subscription are one
//! thing: there is no moment between "replay done" and "subscribed" for a byte to fall into. An
//! observer that falls behind the ring gets a gap for the bytes overwritten. A lossless reader
//! holds its position instead: the tasks that move the process's output into the log ask for
//! `room` before each read, and while a hold is a ring's length behind there is none, so the
//! process blocks on its write, as it would under ssh.
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;

use super::ring::Ring;
use super::ExitInfo;

/// Which stream of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    Stdout,
    Stderr,
    Pty,
}

/// One piece of what a reader gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    Data {
        stream: StreamKind,
        offset: u64,
        data: Bytes,
    },
    Gap {
        stream: StreamKind,
        offset: u64,
        len: u64,
    },
}

/// What a read found.
#[derive(Debug)]
pub enum Read {
    /// Bytes (or gaps) to deliver.
    Chunks(Vec<Chunk>),
    /// Caught up; more may come.
    Pending,
    /// Caught up, output closed and the process exited.
    Done(ExitInfo),
}

/// Sizes of one stream, as reported in `ProcessInfo`.
#[derive(Debug, Clone, Copy)]
pub struct StreamStats {
    pub kind: StreamKind,
    pub total: u64,
    pub head_len: u64,
    pub tail_offset: u64,
}

struct StreamLog {
    kind: StreamKind,
    head: Vec<u8>,
    head_cap: usize,
    /// Bytes at offsets `>= head_cap`, the last `tail_cap` of them.
    tail: Ring,
    total: u64,
    eof: bool,
}

impl StreamLog {
    fn tail_offset(&self) -> u64 {
        self.total - self.tail.len() as u64
    }

    fn append(&mut self, data: Bytes) {
        let mut data = data;
        if self.head.len() < self.head_cap {
            let n = data.len().min(self.head_cap - self.head.len());
            self.head.extend_from_slice(&data[..n]);
            self.total += n as u64;
            data = data.slice(n..);
        }
        if data.is_empty() {
            return;
        }
        self.total += data.len() as u64;
        self.tail.push(data);
    }

    fn append_slice(&mut self, mut data: &[u8]) {
        if self.head.len() < self.head_cap {
            let n = data.len().min(self.head_cap - self.head.len());
            self.head.extend_from_slice(&data[..n]);
            self.total += n as u64;
            data = &data[n..];
        }
        if data.is_empty() {
            return;
        }
        self.total += data.len() as u64;
        self.tail.push_slice(data);
    }

    /// What is at `offset`: up to `max` bytes, or the gap up to the next retained byte.
    fn read_at(&mut self, offset: u64, max: usize) -> Option<Chunk> {
        if offset >= self.total {
            return None;
        }
        let head_len = self.head.len() as u64;
        if offset < head_len {
            let end = head_len.min(offset + max as u64);
            return Some(Chunk::Data {
                stream: self.kind,
                offset,
                data: Bytes::copy_from_slice(&self.head[offset as usize..end as usize]),
            });
        }
        let tail_offset = self.tail_offset();
        if offset < tail_offset {
            return Some(Chunk::Gap {
                stream: self.kind,
                offset,
                len: tail_offset - offset,
            });
        }
        Some(Chunk::Data {
            stream: self.kind,
            offset,
            data: self.tail.read(offset, max),
        })
    }

    fn retained(&self) -> u64 {
        (self.head.len() + self.tail.len()) as u64
    }
}

struct Logs {
    streams: Vec<StreamLog>,
    /// Set when the leader exited and output was drained (or the drain timed out).
    exit: Option<ExitInfo>,
    /// After close, appends are dropped: a background child that outlived the drain.
    closed: bool,
    /// When the process last wrote anything (agents' idle detection).
    last_append: Option<std::time::Instant>,
    /// The positions of lossless readers, by hold id.
    holds: Vec<(u64, Vec<(StreamKind, u64)>)>,
    next_hold: u64,
    /// Output tasks waiting for room, and for how long the log has had one waiting.
    stalled: usize,
    stalled_since: Option<Instant>,
    stalled_before: Duration,
}

impl Logs {
    fn stream(&self, kind: StreamKind) -> Option<&StreamLog> {
        self.streams.iter().find(|s| s.kind == kind)
    }

    /// Bytes of `kind` that may be appended now without overwriting anything a hold has not read;
    /// `None` when no hold follows it.
    fn room(&self, kind: StreamKind) -> Option<usize> {
        let s = self.stream(kind)?;
        let lowest = self
            .holds
            .iter()
            .flat_map(|(_, positions)| positions.iter())
            .filter(|(k, _)| *k == kind)
            .map(|(_, pos)| *pos)
            .min()?;
        // After n more bytes the tail starts at max(head_cap, total + n - tail_cap); the head
        // never moves, so a reader still in it needs the tail from head_cap on.
        let keep_from = lowest.max(s.head_cap as u64);
        let room = (s.tail.cap() as u64 + keep_from).saturating_sub(s.total);
        Some(room.min(usize::MAX as u64) as usize)
    }

    fn stalled_time(&self) -> Duration {
        self.stalled_before + self.stalled_since.map_or(Duration::ZERO, |t| t.elapsed())
    }
}

/// The output of one process and the signals readers and writers wait on.
pub struct Output {
    logs: Mutex<Logs>,
    changed: watch::Sender<u64>,
    /// Bumped when a hold moves or goes: output tasks waiting for room look again.
    freed: watch::Sender<u64>,
}

/// A reader's position in each stream it follows.
#[derive(Debug, Clone)]
pub struct Cursor {
    positions: Vec<(StreamKind, u64)>,
    next: usize,
    /// The hold this cursor's reads advance, for a lossless reader.
    hold: Option<u64>,
}

impl Cursor {
    /// Where it is in each stream it follows.
    pub fn positions(&self) -> &[(StreamKind, u64)] {
        &self.positions
    }

    /// Follow `streams` (all of the process's when empty) from `offset` in each.
    pub fn new(streams: &[StreamKind], offset: u64) -> Self {
        Cursor {
            positions: streams.iter().map(|s| (*s, offset)).collect(),
            next: 0,
            hold: None,
        }
    }
}

/// A lossless reader's hold on an output log; released when dropped.
pub struct Hold<'a> {
    output: &'a Output,
    id: u64,
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        self.output.lock().holds.retain(|(id, _)| *id != self.id);
        self.output.freed.send_modify(|v| *v = v.wrapping_add(1));
    }
}

/// An output task's wait for room: counted as a stall until dropped.
struct Stall<'a>(&'a Output);

impl<'a> Stall<'a> {
    fn begin(output: &'a Output) -> Self {
        let mut logs = output.lock();
        logs.stalled += 1;
        if logs.stalled == 1 {
            logs.stalled_since = Some(Instant::now());
        }
        Stall(output)
    }
}

impl Drop for Stall<'_> {
    fn drop(&mut self) {
        let mut logs = self.0.lock();
        logs.stalled -= 1;
        if logs.stalled == 0 {
            if let Some(t) = logs.stalled_since.take() {
                logs.stalled_before += t.elapsed();
            }
        }
    }
}

impl Output {
    /// Logs for these streams with the given bounds.
    pub fn new(kinds: &[StreamKind], head_cap: usize, tail_cap: usize) -> Self {
        let streams = kinds
            .iter()
            .map(|&kind| StreamLog {
                kind,
                head: Vec::new(),
                head_cap,
                tail: Ring::new(head_cap as u64, tail_cap),
                total: 0,
                eof: false,
            })
            .collect();
        Output {
            logs: Mutex::new(Logs {
                streams,
                exit: None,
                closed: false,
                last_append: None,
                holds: Vec::new(),
                next_hold: 0,
                stalled: 0,
                stalled_since: None,
                stalled_before: Duration::ZERO,
            }),
            changed: watch::Sender::new(0),
            freed: watch::Sender::new(0),
        }
    }

    /// Make `cursor` a lossless reader's: until its hold is released, nothing it has not read is
    /// overwritten; `room` makes the output tasks wait instead. Done when the reader is set up,
    /// before any await, so no byte can be overwritten between the call that asked for a
    /// lossless reader and its first read. `release_on_drop` gives the guard that releases it.
    pub fn hold(&self, cursor: &mut Cursor) {
        if cursor.hold.is_some() {
            return;
        }
        let mut logs = self.lock();
        logs.next_hold += 1;
        let id = logs.next_hold;
        logs.holds.push((id, cursor.positions.clone()));
        cursor.hold = Some(id);
    }

    /// The guard that releases `cursor`'s hold, if it has one, when dropped.
    pub fn release_on_drop(&self, cursor: &Cursor) -> Option<Hold<'_>> {
        cursor.hold.map(|id| Hold { output: self, id })
    }

    /// Wait until bytes of `kind` may be appended without overwriting what a lossless reader has
    /// not read, and say how many (at most `want`). Without holds that is `want` at once. Waits
    /// for a useful amount (a quarter of the ring, at most 64 KiB) rather than reading a few bytes
    /// at a time behind a slow reader.
    pub async fn room(&self, kind: StreamKind, want: usize) -> usize {
        let mut freed = self.freed.subscribe();
        let mut stall = None;
        loop {
            freed.borrow_and_update();
            {
                let logs = self.lock();
                let Some(room) = logs.room(kind) else {
                    return want;
                };
                let enough = logs
                    .stream(kind)
                    .map_or(1, |s| (s.tail.cap() / 4).clamp(1, 64 << 10));
                if room >= enough.min(want) {
                    return room.min(want);
                }
            }
            if stall.is_none() {
                stall = Some(Stall::begin(self));
            }
            if freed.changed().await.is_err() {
                return want;
            }
        }
    }

    /// How long, in all, output tasks have waited for a lossless reader: the drain after exit
    /// does not count that time.
    pub fn stalled_time(&self) -> Duration {
        self.lock().stalled_time()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Logs> {
        self.logs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// The streams this process has.
    pub fn kinds(&self) -> Vec<StreamKind> {
        self.lock().streams.iter().map(|s| s.kind).collect()
    }

    /// Record bytes written by the process (copied). Dropped once the output is closed.
    pub fn append(&self, kind: StreamKind, data: &[u8]) {
        self.record(kind, |s| s.append_slice(data));
    }

    /// Record bytes written by the process, kept without a copy when large.
    pub fn append_bytes(&self, kind: StreamKind, data: Bytes) {
        self.record(kind, |s| s.append(data));
    }

    fn record(&self, kind: StreamKind, add: impl FnOnce(&mut StreamLog)) {
        {
            let mut logs = self.lock();
            if logs.closed {
                return;
            }
            if let Some(s) = logs.streams.iter_mut().find(|s| s.kind == kind) {
                add(s);
            }
            logs.last_append = Some(std::time::Instant::now());
        }
        self.bump();
    }

    /// When the process last wrote output; `None` before its first byte.
    pub fn last_activity(&self) -> Option<std::time::Instant> {
        self.lock().last_append
    }

    /// The stream reached end of file.
    pub fn eof(&self, kind: StreamKind) {
        if let Some(s) = self.lock().streams.iter_mut().find(|s| s.kind == kind) {
            s.eof = true;
        }
        self.bump();
    }

    /// Whether every stream reached end of file.
    pub fn all_eof(&self) -> bool {
        self.lock().streams.iter().all(|s| s.eof)
    }

    /// The process exited and its output is final.
    pub fn finish(&self, exit: ExitInfo) {
        {
            let mut logs = self.lock();
            logs.closed = true;
            logs.exit = Some(exit);
        }
        self.bump();
    }

    /// The exit, once output is final.
    pub fn exit(&self) -> Option<ExitInfo> {
        self.lock().exit.clone()
    }

    /// A receiver that changes whenever output or exit changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Sizes of every stream.
    pub fn stats(&self) -> Vec<StreamStats> {
        self.lock()
            .streams
            .iter()
            .map(|s| StreamStats {
                kind: s.kind,
                total: s.total,
                head_len: s.head.len() as u64,
                tail_offset: s.tail_offset(),
            })
            .collect()
    }

    /// Bytes held in memory.
    pub fn retained_bytes(&self) -> u64 {
        self.lock().streams.iter().map(StreamLog::retained).sum()
    }

    /// A cursor at `total - back` of each stream: the most recent `back` bytes.
    pub fn cursor_from_end(&self, streams: &[StreamKind], back: u64) -> Cursor {
        let logs = self.lock();
        Cursor {
            positions: streams
                .iter()
                .map(|&k| {
                    let total = logs.stream(k).map_or(0, |s| s.total);
                    (k, total.saturating_sub(back))
                })
                .collect(),
            next: 0,
            hold: None,
        }
    }

    /// Read what is available from the cursor, at most `max` data bytes, taking the streams in
    /// turn so a busy one cannot starve the other.
    pub fn read(&self, cursor: &mut Cursor, max: usize) -> Read {
        let mut logs = self.lock();
        let mut chunks = Vec::new();
        let mut budget = max;
        let n = cursor.positions.len();
        for i in 0..n {
            let idx = (cursor.next + i) % n;
            let (kind, pos) = cursor.positions[idx];
            let Some(stream) = logs.streams.iter_mut().find(|s| s.kind == kind) else {
                continue;
            };
            let mut pos = pos;
            while budget > 0 {
                match stream.read_at(pos, budget) {
                    None => break,
                    Some(chunk) => {
                        match &chunk {
                            Chunk::Data { data, .. } => {
                                pos += data.len() as u64;
                                budget -= data.len();
                            }
                            Chunk::Gap { len, .. } => pos += len,
                        }
                        chunks.push(chunk);
                    }
                }
            }
            cursor.positions[idx].1 = pos;
        }
        cursor.next = (cursor.next + 1) % n.max(1);
        if let Some(id) = cursor.hold.filter(|_| !chunks.is_empty()) {
            if let Some((_, positions)) = logs.holds.iter_mut().find(|(h, _)| *h == id) {
                positions.clone_from(&cursor.positions);
                drop(logs);
                self.freed.send_modify(|v| *v = v.wrapping_add(1));
                return Read::Chunks(chunks);
            }
        }
        if !chunks.is_empty() {
            return Read::Chunks(chunks);
        }
        match &logs.exit {
            Some(exit) => Read::Done(exit.clone()),
            None => Read::Pending,
        }
    }

    /// The bytes of `[from, to)` of a stream that are still retained, and how many are not.
    pub fn slice(&self, kind: StreamKind, from: u64, to: u64) -> (Vec<u8>, u64) {
        let mut logs = self.lock();
        let Some(stream) = logs.streams.iter_mut().find(|s| s.kind == kind) else {
            return (Vec::new(), 0);
        };
        let to = to.min(stream.total);
        let mut out = Vec::new();
        let mut lost = 0;
        let mut pos = from;
        while pos < to {
            match stream.read_at(pos, (to - pos) as usize) {
                Some(Chunk::Data { data, .. }) => {
                    pos += data.len() as u64;
                    out.extend_from_slice(&data);
                }
                Some(Chunk::Gap { len, .. }) => {
                    let len = len.min(to - pos);
                    pos += len;
                    lost += len;
                }
                None => break,
            }
        }
        (out, lost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(out: &Output, cursor: &mut Cursor) -> Vec<Chunk> {
        let mut all = Vec::new();
        while let Read::Chunks(c) = out.read(cursor, 7) {
            all.extend(c);
        }
        all
    }

    fn bytes(chunks: &[Chunk]) -> Vec<u8> {
        chunks
            .iter()
            .filter_map(|c| match c {
                Chunk::Data { data, .. } => Some(data.clone()),
                Chunk::Gap { .. } => None,
            })
            .flatten()
            .collect()
    }

    #[test]
    fn small_output_is_replayed_whole_from_any_offset() {
        let out = Output::new(&[StreamKind::Stdout], 4, 8);
        out.append(StreamKind::Stdout, b"hello world");
        let mut c = Cursor::new(&[StreamKind::Stdout], 0);
        assert_eq!(bytes(&drain(&out, &mut c)), b"hello world");
        let mut c = Cursor::new(&[StreamKind::Stdout], 6);
        assert_eq!(bytes(&drain(&out, &mut c)), b"world");
    }

    #[test]
    fn overrun_ring_reports_the_exact_gap() {
        let out = Output::new(&[StreamKind::Stdout], 4, 8);
        let data: Vec<u8> = (0..100u8).collect();
        for piece in data.chunks(3) {
            out.append(StreamKind::Stdout, piece);
        }
        let mut c = Cursor::new(&[StreamKind::Stdout], 0);
        let chunks = drain(&out, &mut c);
        assert!(chunks.contains(&Chunk::Gap {
            stream: StreamKind::Stdout,
            offset: 4,
            len: 88
        }));
        let got = bytes(&chunks);
        assert_eq!(&got[..4], &data[..4]);
        assert_eq!(&got[4..], &data[92..]);
        assert_eq!(out.slice(StreamKind::Stdout, 0, 100).1, 88);
    }

    #[test]
    fn a_reader_behind_the_ring_skips_without_blocking_the_writer() {
        let out = Output::new(&[StreamKind::Stdout], 0, 10);
        let mut c = Cursor::new(&[StreamKind::Stdout], 0);
        out.append(StreamKind::Stdout, b"0123456789");
        out.append(StreamKind::Stdout, b"abcdefghij");
        let chunks = drain(&out, &mut c);
        assert_eq!(
            chunks[0],
            Chunk::Gap {
                stream: StreamKind::Stdout,
                offset: 0,
                len: 10
            }
        );
        assert_eq!(bytes(&chunks), b"abcdefghij");
    }

    #[test]
    fn streams_are_read_in_turn() {
        let out = Output::new(&[StreamKind::Stdout, StreamKind::Stderr], 1 << 10, 1 << 10);
        out.append(StreamKind::Stdout, &[b'o'; 20]);
        out.append(StreamKind::Stderr, &[b'e'; 20]);
        let mut c = Cursor::new(&[StreamKind::Stdout, StreamKind::Stderr], 0);
        let Read::Chunks(first) = out.read(&mut c, 7) else {
            panic!()
        };
        let Read::Chunks(second) = out.read(&mut c, 7) else {
            panic!()
        };
        let kind = |c: &Chunk| match c {
            Chunk::Data { stream, .. } | Chunk::Gap { stream, .. } => *stream,
        };
        assert_eq!(kind(&first[0]), StreamKind::Stdout);
        assert_eq!(kind(&second[0]), StreamKind::Stderr);
    }
}
