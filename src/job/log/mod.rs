//! A job's output: one append-only log of chunks, read through cursors.
//!
//! The single writer (the reactor) appends under a short lock and never waits
//! for readers. Readers are positions in the combined output: each replays
//! from where it starts, at its own pace; a stalled reader holds nothing but
//! its position and the file it reads from.
//!
//! Output of one stream that arrives close together joins one chunk (up to
//! [`MAX_GROUP`] bytes, within [`GROUP_WINDOW`] of the chunk's first byte,
//! until a reader reaches it): a job that writes one byte at a time costs a
//! chunk per burst, not a chunk per byte. The memory budget counts that
//! bookkeeping along with the bytes; past it, the oldest chunks leave memory
//! and are read back from the log's file.
//!
//! Two kinds of log:
//! - **persistent** (a worker's jobs): every append is written through to the
//!   job's log file, created on the first append. When the log ends, its
//!   memory and its descriptor are let go: readers open the file.
//! - **private** (standalone jobs): in memory, spilled to an unlinked
//!   temporary file past the budget; the handle that owns the job owns it.
//!
//! The file is a sequence of records: a tag (the stream, 1 or 2, with
//! [`CONTINUES`] set when the record continues the previous record's chunk),
//! the time in µs, the length, the bytes. A crash can tear only the last
//! record, which readers ignore. A write that fails (a full disk) ends the
//! writing for good: the file keeps an exact prefix of the output, never a
//! gap, and the error is kept for the job's record.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::{Condvar, Mutex};

mod file;
mod reader;
#[cfg(test)]
mod tests;

use file::{spill_one, to_micros, write_through};
pub use reader::{LogReader, ReadTimeout};

/// Which output stream a chunk came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    pub(crate) fn tag(self) -> u8 {
        match self {
            Stream::Stdout => 1,
            Stream::Stderr => 2,
        }
    }

    pub(crate) fn from_tag(t: u8) -> Option<Stream> {
        match t {
            1 => Some(Stream::Stdout),
            2 => Some(Stream::Stderr),
            _ => None,
        }
    }
}

/// A piece of a job's output: adjacent output of one stream, read close together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Where it came from.
    pub stream: Stream,
    /// The bytes.
    pub data: Arc<[u8]>,
    /// Position of the first byte in the job's combined output (stdout and stderr together).
    pub offset: u64,
    /// When the supervisor read the chunk's first byte (to the microsecond).
    pub time: SystemTime,
}

/// Default bytes of log kept in memory per job, bookkeeping included, before
/// older chunks are read from disk.
pub const DEFAULT_MEMORY_BUDGET: usize = 1 << 20;

/// Size of a record header in the log file: tag (1), time in µs since the epoch (8), length (4).
pub(crate) const RECORD_HEADER: usize = 13;

/// Tag bit: the record continues the previous record's chunk.
pub(crate) const CONTINUES: u8 = 0x80;

/// A chunk grows to at most this many bytes...
pub(crate) const MAX_GROUP: usize = 64 * 1024;

/// ...from output read within this time of its first byte.
pub(crate) const GROUP_WINDOW: Duration = Duration::from_millis(10);

/// What a chunk in memory costs beyond its bytes and its slot: the shared
/// buffer's counts and the allocator's header and rounding.
const ARC_COST: usize = 32;

/// At most this many chunks per batch a reader takes at once (a batch of
/// chunks in memory costs only reference counts), and about this many bytes
/// of a batch read from the file: a reader behind holds little and reads on
/// without the lock, and a thousand of them churn the allocator less.
const BATCH: usize = 256;
const BATCH_BYTES: usize = 64 << 10;

/// Reads of the log file go through a buffer of this size.
const FILE_BLOCK: usize = 64 * 1024;

/// Entries of a log's index of its file (16 bytes each).
const INDEX_MAX: usize = 64;
const RECENT: usize = 32;

/// A sealed chunk in memory.
struct Entry {
    stream: Stream,
    offset: u64,
    time: SystemTime,
    data: Arc<[u8]>,
    /// Where its first record starts in the file, when it is there.
    file_pos: Option<u64>,
}

/// The chunk still growing.
struct Tail {
    stream: Stream,
    offset: u64,
    time: SystemTime,
    opened: Instant,
    buf: Vec<u8>,
    file_pos: Option<u64>,
}

struct Inner {
    /// Sealed chunks in memory, oldest first.
    entries: VecDeque<Entry>,
    tail: Option<Tail>,
    /// Sum over `entries` of their bytes plus `ARC_COST`.
    entry_bytes: usize,
    /// Bytes appended so far (`u64::MAX` for a restored log: its file says).
    total: u64,
    /// The file written to: a persistent log's own while it runs, or a
    /// private log's spill file.
    file: Option<Arc<File>>,
    /// Where the next record goes.
    file_len: u64,
    /// Output bytes `[0, covered)` can be read from the file.
    covered: u64,
    /// Why the file stopped being written, if it did.
    failed: Option<String>,
    /// This log created its file (its directory is synced when it ends).
    created: bool,
    /// A sparse index of chunk starts in the file, (output offset, file
    /// position), at least `index_step` bytes apart; at most `INDEX_MAX`
    /// entries (the step doubles when full). Where a reader that fell behind
    /// starts looking.
    index: Vec<(u64, u64)>,
    index_step: u64,
    /// The last `RECENT` chunk starts in the file, where a reader that just
    /// fell behind the memory starts looking.
    recent: VecDeque<(u64, u64)>,
    /// Nothing more is appended (see `Log::finish_writing`).
    closed_for_writing: bool,
    closed: bool,
    /// Tasks of readers polled by an async runtime ([`LogReader::poll_chunk`])
    /// that found nothing new, woken (and forgotten) on the next append or on
    /// close. Keyed by reader, so a reader polled again replaces its waker
    /// instead of adding one.
    wakers: HashMap<u64, Waker>,
}

impl Inner {
    /// The wakers to wake once the lock is let go (none, usually: the
    /// blocking readers pay one test of an empty map).
    fn take_wakers(&mut self) -> Option<HashMap<u64, Waker>> {
        (!self.wakers.is_empty()).then(|| std::mem::take(&mut self.wakers))
    }
}

impl Inner {
    /// Memory held, bookkeeping included.
    fn used(&self) -> usize {
        self.entry_bytes
            + self.entries.capacity() * std::mem::size_of::<Entry>()
            + self.tail.as_ref().map_or(0, |t| t.buf.capacity())
            + (self.index.capacity() + self.recent.capacity()) * std::mem::size_of::<(u64, u64)>()
    }

    /// The nearest chunk start in the file at or before `pos`, if known.
    fn chunk_before(&self, pos: u64) -> Option<(u64, u64)> {
        let i = self.recent.partition_point(|(o, _)| *o <= pos);
        if i > 0 {
            return Some(self.recent[i - 1]);
        }
        let i = self.index.partition_point(|(o, _)| *o <= pos);
        i.checked_sub(1).map(|i| self.index[i])
    }

    /// A chunk starts at `offset`, at `file_pos` in the file.
    fn note_chunk(&mut self, offset: u64, file_pos: u64) {
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back((offset, file_pos));
        if self
            .index
            .last()
            .is_some_and(|(o, _)| offset < o + self.index_step)
        {
            return;
        }
        if self.index.len() == INDEX_MAX {
            let mut i = 0;
            self.index.retain(|_| {
                i += 1;
                i % 2 == 1
            });
            self.index_step *= 2;
        }
        self.index.push((offset, file_pos));
    }

    /// The output offset of the oldest byte still in memory.
    fn mem_start(&self) -> u64 {
        self.entries
            .front()
            .map(|e| e.offset)
            .or(self.tail.as_ref().map(|t| t.offset))
            .unwrap_or(self.total)
    }

    /// Ends the growing chunk: later output starts a new one.
    fn seal_tail(&mut self) {
        if let Some(t) = self.tail.take() {
            let data: Arc<[u8]> = t.buf.into();
            self.entry_bytes += data.len() + ARC_COST;
            self.entries.push_back(Entry {
                stream: t.stream,
                offset: t.offset,
                time: t.time,
                data,
                file_pos: t.file_pos,
            });
        }
    }

    fn pop_front(&mut self) -> Option<Entry> {
        let e = self.entries.pop_front()?;
        self.entry_bytes -= e.data.len() + ARC_COST;
        Some(e)
    }

    fn shrink(&mut self) {
        let cap = self.entries.capacity();
        if cap > 64 && cap > 4 * self.entries.len() {
            self.entries.shrink_to(2 * self.entries.len());
        }
    }
}

/// The log of one job. Cheap to share (`Arc`).
pub(crate) struct Log {
    inner: Mutex<Inner>,
    cond: Condvar,
    budget: usize,
    /// A persistent log's file.
    path: Option<PathBuf>,
}

impl Log {
    fn with(budget: usize, path: Option<PathBuf>) -> Log {
        Log {
            inner: Mutex::new(Inner {
                entries: VecDeque::new(),
                tail: None,
                entry_bytes: 0,
                total: 0,
                file: None,
                file_len: 0,
                covered: 0,
                failed: None,
                created: false,
                index: Vec::new(),
                index_step: 64 * 1024,
                recent: VecDeque::new(),
                closed_for_writing: false,
                closed: false,
                wakers: HashMap::new(),
            }),
            cond: Condvar::new(),
            budget,
            path,
        }
    }

    /// A private log: in memory, spilled to a temporary file past `budget` bytes.
    pub(crate) fn new(budget: usize) -> Log {
        Log::with(budget, None)
    }

    /// A log written through to `path` (created on the first append).
    pub(crate) fn persistent(budget: usize, path: PathBuf) -> Log {
        Log::with(budget, Some(path))
    }

    /// A finished log read from `path` (after a restart). Nothing is read or
    /// opened now: readers open the file. A torn last record is ignored.
    pub(crate) fn restored(path: PathBuf) -> Log {
        let log = Log::with(0, Some(path));
        {
            let mut g = log.inner.lock();
            g.total = u64::MAX;
            g.covered = u64::MAX;
            g.closed_for_writing = true;
            g.closed = true;
        }
        log
    }

    /// Appends output. Never blocks on readers. A failed write to the file
    /// is kept for [`Log::store_error`]; the output stays readable from memory.
    pub(crate) fn append(&self, stream: Stream, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let now = Instant::now();
        let time = to_micros(SystemTime::now());
        let mut g = self.inner.lock();
        if g.closed_for_writing {
            return;
        }
        let joins = g.tail.as_ref().is_some_and(|t| {
            t.stream == stream
                && now < t.opened + GROUP_WINDOW
                && t.buf.len() + data.len() <= MAX_GROUP
        });
        if !joins {
            g.seal_tail();
        }
        let file_pos = match &self.path {
            Some(path) => write_through(&mut g, path, stream, time, data, joins),
            None => None,
        };
        let offset = g.total;
        g.total += data.len() as u64;
        if joins {
            g.tail
                .as_mut()
                .expect("joins a tail")
                .buf
                .extend_from_slice(data);
        } else if data.len() >= MAX_GROUP {
            g.entry_bytes += data.len() + ARC_COST;
            g.entries.push_back(Entry {
                stream,
                offset,
                time,
                data: data.into(),
                file_pos,
            });
        } else {
            g.tail = Some(Tail {
                stream,
                offset,
                time,
                opened: now,
                buf: data.to_vec(),
                file_pos,
            });
        }
        if g.used() > self.budget {
            self.spill(&mut g);
        }
        let wakers = g.take_wakers();
        drop(g);
        self.cond.notify_all();
        wakers.into_iter().flatten().for_each(|(_, w)| w.wake());
    }

    /// Lets the oldest chunks go until memory is within the budget. A
    /// persistent log has them in its file already; a private one writes them
    /// to its spill file first.
    fn spill(&self, g: &mut Inner) {
        while g.used() > self.budget {
            if g.entries.is_empty() {
                if g.tail.is_none() {
                    break;
                }
                g.seal_tail();
            }
            let e = g.pop_front().expect("not empty");
            if self.path.is_none() && g.failed.is_none() && e.offset == g.covered {
                if let Err(err) = spill_one(g, &e) {
                    g.failed = Some(format!("write the spill file: {err}"));
                }
            }
            // The room of the chunks let go counts against the budget too:
            // give it back as they go, or a list of many tiny chunks would
            // be emptied for its room alone.
            g.shrink();
        }
        g.shrink();
    }

    /// Ends the writing: the growing chunk is sealed, and a persistent log's
    /// file is synced (with its directory, when this log created it) and its
    /// descriptor let go (readers open the file). Nothing is appended after.
    pub(crate) fn finish_writing(&self) {
        let mut g = self.inner.lock();
        g.seal_tail();
        if let Some(path) = &self.path {
            if let Some(f) = g.file.take() {
                let synced = f
                    .sync_data()
                    .and_then(|()| match (g.created, path.parent()) {
                        (true, Some(dir)) => File::open(dir)?.sync_all(),
                        _ => Ok(()),
                    });
                if let Err(e) = synced {
                    g.failed
                        .get_or_insert_with(|| format!("sync {}: {e}", path.display()));
                }
            }
        }
        g.closed_for_writing = true;
    }

    /// Marks the end of output: followers stop once they have read
    /// everything. A persistent log lets go of the memory its file holds.
    pub(crate) fn close(&self) {
        self.finish_writing();
        let mut g = self.inner.lock();
        if g.closed {
            return;
        }
        g.closed = true;
        if self.path.is_some() {
            // What the file has leaves memory; what it lacks (a failed
            // write) stays for this log's readers.
            while g
                .entries
                .front()
                .is_some_and(|e| e.offset + e.data.len() as u64 <= g.covered)
            {
                g.pop_front();
            }
            g.entries.shrink_to_fit();
            // Nor does a finished job keep an index: its readers read the
            // file from the start (or scan it for an offset).
            g.index = Vec::new();
            g.recent = VecDeque::new();
        }
        let wakers = g.take_wakers();
        drop(g);
        self.cond.notify_all();
        wakers.into_iter().flatten().for_each(|(_, w)| w.wake());
    }

    /// Why the log's file stopped being written (the output from then on
    /// is not in it), if it did.
    pub(crate) fn store_error(&self) -> Option<String> {
        let g = self.inner.lock();
        g.failed
            .as_ref()
            .map(|e| format!("output from byte {} on was not stored: {e}", g.covered))
    }

    #[cfg(test)]
    pub(crate) fn is_closed(&self) -> bool {
        self.inner.lock().closed
    }
}
