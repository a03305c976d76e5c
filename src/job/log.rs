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
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::{Condvar, Mutex};

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

fn to_micros(t: SystemTime) -> SystemTime {
    let us = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64;
    SystemTime::UNIX_EPOCH + Duration::from_micros(us)
}

fn header(tag: u8, time: SystemTime, len: usize) -> [u8; RECORD_HEADER] {
    let micros = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64;
    let mut h = [0u8; RECORD_HEADER];
    h[0] = tag;
    h[1..9].copy_from_slice(&micros.to_le_bytes());
    h[9..13].copy_from_slice(&(len as u32).to_le_bytes());
    h
}

/// Writes one record at the end of the file; on failure, cuts the file back
/// to its last whole record.
fn write_record(g: &mut Inner, tag: u8, time: SystemTime, data: &[u8]) -> std::io::Result<u64> {
    let f = g.file.as_ref().expect("the file is open");
    // One write per record keeps a torn record detectable at the tail only.
    let mut rec = Vec::with_capacity(RECORD_HEADER + data.len());
    rec.extend_from_slice(&header(tag, time, data.len()));
    rec.extend_from_slice(data);
    if let Err(e) = f.write_all_at(&rec, g.file_len) {
        let _ = f.set_len(g.file_len);
        return Err(e);
    }
    let pos = g.file_len;
    g.file_len += rec.len() as u64;
    g.covered += data.len() as u64;
    Ok(pos)
}

/// A persistent log's append: one record in its file (created now if need be).
fn write_through(
    g: &mut Inner,
    path: &Path,
    stream: Stream,
    time: SystemTime,
    data: &[u8],
    joins: bool,
) -> Option<u64> {
    if g.failed.is_some() || g.covered != g.total {
        return None;
    }
    if g.file.is_none() {
        match OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
        {
            Ok(f) => {
                g.file = Some(Arc::new(f));
                g.created = true;
            }
            Err(e) => {
                g.failed = Some(format!("create {}: {e}", path.display()));
                return None;
            }
        }
    }
    let tag = stream.tag() | if joins { CONTINUES } else { 0 };
    let offset = g.total;
    match write_record(g, tag, time, data) {
        Ok(pos) => {
            if !joins {
                g.note_chunk(offset, pos);
            }
            Some(pos)
        }
        Err(e) => {
            g.failed = Some(format!("write {}: {e}", path.display()));
            None
        }
    }
}

/// A private log's spill: the chunk as one record in the temporary file.
fn spill_one(g: &mut Inner, e: &Entry) -> std::io::Result<()> {
    if g.file.is_none() {
        g.file = Some(Arc::new(tempfile::tempfile()?));
    }
    let pos = write_record(g, e.stream.tag(), e.time, &e.data)?;
    g.note_chunk(e.offset, pos);
    Ok(())
}

/// Why [`LogReader::next_timeout`] returned no chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadTimeout {
    /// Nothing arrived in time; the job may still write more.
    TimedOut,
    /// The log has ended: the job's output is complete and all of it was read.
    Ended,
}

/// [`LogReader::next_inner`] found nothing new: its deadline passed, or a
/// polled reader's waker was left with the log.
struct NotYet;

/// How [`LogReader::next_inner`] waits when it has caught up with a log
/// that may grow.
#[derive(Clone, Copy)]
enum Wait<'a> {
    /// Until the log grows or ends.
    Block,
    /// Until then, or this instant.
    Until(Instant),
    /// Not at all: the waker is left with the log, to be woken when it grows
    /// or ends.
    Task(&'a Waker),
}

/// A cursor into a job's log: a blocking iterator of [`Chunk`]s.
///
/// Every reader sees every byte, in order, from its start position. By
/// default it starts at the beginning and follows the log until the job's
/// output ends; [`offset`](LogReader::offset) starts elsewhere and
/// [`snapshot`](LogReader::snapshot) stops at what is there now. A reader of
/// a worker's job holds the job's log file open while it lives, so it reads
/// on even if the job is removed.
///
/// ```no_run
/// let job = jobcell::Sandbox::new().spawn(jobcell::Command::new("echo").arg("hi"))?;
/// let text: Vec<u8> = job.logs().flat_map(|c| c.data.to_vec()).collect();
/// assert_eq!(text, b"hi\n");
/// # Ok::<(), jobcell::Error>(())
/// ```
pub struct LogReader {
    log: Arc<Log>,
    /// The next byte to return.
    pos: u64,
    /// Stop here (a snapshot), or follow when None.
    until: Option<u64>,
    follow: bool,
    /// This reader's hold on the log file.
    file: Option<Arc<File>>,
    /// A chunk's start in the file at or before `pos`: (output offset, file position).
    resume: (u64, u64),
    /// The last record read from the file was a large one (see `Blocks`).
    big_records: bool,
    /// Output before this offset is in the file for good (as last seen under
    /// the lock): read without taking the lock again.
    file_limit: u64,
    /// Chunks taken at once and not yet returned: a reader takes all that is
    /// ready under one lock, so a thousand followers do not queue on the lock
    /// once per chunk (the writer needs it too).
    batch: VecDeque<Chunk>,
    /// This reader's slot among the log's wakers, once it has been polled.
    waker_key: Option<u64>,
}

impl LogReader {
    pub(crate) fn new(log: Arc<Log>) -> LogReader {
        let (file, closed) = {
            let g = log.inner.lock();
            (g.file.clone(), g.closed)
        };
        // A finished job's log is only in its file: hold it now, so that the
        // job's removal cannot take it away from under this reader.
        let file = file.or_else(|| match (&log.path, closed) {
            (Some(p), true) => File::open(p).ok().map(Arc::new),
            _ => None,
        });
        LogReader {
            log,
            pos: 0,
            until: None,
            follow: true,
            file,
            resume: (0, 0),
            file_limit: 0,
            big_records: false,
            batch: VecDeque::new(),
            waker_key: None,
        }
    }

    /// Starts at byte `offset` of the combined output (a chunk that spans it
    /// is cut), whether or not the job has written that far yet.
    ///
    /// ```no_run
    /// # let job = jobcell::Sandbox::new().spawn(&jobcell::Command::new("true"))?;
    /// for chunk in job.logs().offset(1024) { /* ... */ }
    /// # Ok::<(), jobcell::Error>(())
    /// ```
    pub fn offset(mut self, offset: u64) -> LogReader {
        self.pos = offset;
        if self.resume.0 > offset {
            self.resume = (0, 0);
        }
        self.batch.clear();
        self
    }

    /// Reads only what the log holds now, then ends, even if the job still runs.
    ///
    /// ```no_run
    /// # let job = jobcell::Sandbox::new().spawn(&jobcell::Command::new("true"))?;
    /// let so_far: usize = job.logs().snapshot().map(|c| c.data.len()).sum();
    /// # Ok::<(), jobcell::Error>(())
    /// ```
    pub fn snapshot(mut self) -> LogReader {
        let mut g = self.log.inner.lock();
        // What is there now ends a chunk.
        g.seal_tail();
        self.until = Some(g.total);
        drop(g);
        self.follow = false;
        self
    }

    /// Waits at most `timeout` for the next chunk.
    ///
    /// ```no_run
    /// # let job = jobcell::Sandbox::new().spawn(&jobcell::Command::new("true"))?;
    /// use jobcell::ReadTimeout;
    /// let mut logs = job.logs();
    /// match logs.next_timeout(std::time::Duration::from_millis(100)) {
    ///     Ok(chunk) => println!("{} bytes", chunk.data.len()),
    ///     Err(ReadTimeout::Ended) => println!("no more output"),
    ///     Err(ReadTimeout::TimedOut) => println!("nothing yet"),
    /// }
    /// # Ok::<(), jobcell::Error>(())
    /// ```
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Chunk, ReadTimeout> {
        match self.next_inner(Wait::Until(Instant::now() + timeout)) {
            Ok(Some(c)) => Ok(c),
            Ok(None) => Err(ReadTimeout::Ended),
            Err(NotYet) => Err(ReadTimeout::TimedOut),
        }
    }

    /// The next chunk for a task of an async runtime: `Ready(Some(chunk))`,
    /// `Ready(None)` once the output has ended (or the snapshot is read), or
    /// `Pending`, after which the task is woken when the job writes more or
    /// its output ends. jobcell runs no runtime of its own: any executor can
    /// drive this, and a thousand pending readers cost a thousand wakers,
    /// not a thread each.
    ///
    /// Output that is only in the log's file is read back inside this call
    /// (positional reads of at most a batch, usually from the page cache).
    ///
    /// ```
    /// use std::future::poll_fn;
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     // A minimal executor: jobcell needs none of its own.
    /// #     use std::task::{Context, Poll, Wake};
    /// #     struct Thread(std::thread::Thread);
    /// #     impl Wake for Thread { fn wake(self: std::sync::Arc<Self>) { self.0.unpark() } }
    /// #     let waker = std::sync::Arc::new(Thread(std::thread::current())).into();
    /// #     let mut cx = Context::from_waker(&waker);
    /// #     let mut f = std::pin::pin!(f);
    /// #     loop { if let Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } std::thread::park(); }
    /// # }
    /// # fn main() -> Result<(), jobcell::Error> {
    /// # if !cfg!(target_os = "linux") { return Ok(()); }
    /// # let job = match jobcell::Sandbox::new().spawn(jobcell::Command::new("echo").arg("hi")) {
    /// #     Ok(j) => j, Err(_) => return Ok(()), // no cells on this host
    /// # };
    /// let mut logs = job.logs();
    /// let text = block_on(async {
    ///     let mut text = Vec::new();
    ///     while let Some(chunk) = poll_fn(|cx| logs.poll_chunk(cx)).await {
    ///         text.extend_from_slice(&chunk.data);
    ///     }
    ///     text
    /// });
    /// assert_eq!(text, b"hi\n");
    /// # Ok(()) }
    /// ```
    pub fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Chunk>> {
        match self.next_inner(Wait::Task(cx.waker())) {
            Ok(c) => Poll::Ready(c),
            Err(NotYet) => Poll::Pending,
        }
    }

    fn next_inner(&mut self, wait: Wait<'_>) -> Result<Option<Chunk>, NotYet> {
        loop {
            if let Some(c) = self.batch.pop_front() {
                return Ok(Some(c));
            }
            let end = self.until.unwrap_or(u64::MAX);
            if self.pos >= end {
                return Ok(None);
            }
            // Behind: the file has it, and nobody else need know.
            if self.pos < self.file_limit
                && self.file.is_some()
                && self.read_own_file(self.file_limit.min(end))
            {
                continue;
            }
            // Borrowed, not cloned: a thousand readers bumping the count on
            // the lock's cache line would slow the writer.
            let log = &self.log;
            let mut g = log.inner.lock();
            if self.file.is_none() {
                self.file = g.file.clone();
            }
            let mem_start = g.mem_start();
            if self.pos < mem_start {
                let limit = g.covered.min(mem_start).min(end);
                self.file_limit = g.covered.min(mem_start);
                if self.pos >= limit {
                    // Neither in memory nor in the file: lost with a failed write.
                    self.pos = mem_start;
                    continue;
                }
                // Start from the nearest chunk the index knows, if nearer.
                if let Some((o, fp)) = g.chunk_before(self.pos) {
                    if o > self.resume.0 {
                        self.resume = (o, fp);
                    }
                }
                drop(g);
                if self.file.is_none() {
                    self.file = log
                        .path
                        .as_ref()
                        .and_then(|p| File::open(p).ok())
                        .map(Arc::new);
                }
                let read = self.read_own_file(limit);
                if !read {
                    if limit == u64::MAX {
                        return Ok(None); // a restored log's end
                    }
                    self.pos = limit;
                }
                continue;
            }
            if self.pos < g.total {
                let mut i = g
                    .entries
                    .partition_point(|e| e.offset + e.data.len() as u64 <= self.pos);
                if i == g.entries.len() {
                    // Within the growing chunk: a reader's arrival ends it,
                    // so that every reader sees the same chunks.
                    g.seal_tail();
                    i = g
                        .entries
                        .partition_point(|e| e.offset + e.data.len() as u64 <= self.pos);
                }
                let mut bytes = 0;
                for e in g.entries.range(i..).take(BATCH) {
                    if e.offset >= end || bytes >= BATCH_BYTES {
                        break;
                    }
                    let data = if self.pos > e.offset {
                        Arc::from(&e.data[(self.pos - e.offset) as usize..])
                    } else {
                        e.data.clone()
                    };
                    bytes += data.len();
                    self.batch.push_back(Chunk {
                        stream: e.stream,
                        offset: self.pos,
                        time: e.time,
                        data,
                    });
                    self.pos = e.offset + e.data.len() as u64;
                    if let Some(fp) = e.file_pos {
                        self.resume = (e.offset, fp);
                    }
                }
                continue;
            }
            if g.closed || !self.follow {
                return Ok(None);
            }
            match wait {
                Wait::Block => log.cond.wait(&mut g),
                Wait::Until(d) => {
                    if log.cond.wait_until(&mut g, d).timed_out() && self.pos >= g.total {
                        return Err(NotYet);
                    }
                }
                Wait::Task(waker) => {
                    static KEYS: AtomicU64 = AtomicU64::new(0);
                    let key = *self
                        .waker_key
                        .get_or_insert_with(|| KEYS.fetch_add(1, Ordering::Relaxed));
                    match g.wakers.get_mut(&key) {
                        Some(w) => w.clone_from(waker),
                        None => {
                            g.wakers.insert(key, waker.clone());
                        }
                    }
                    return Err(NotYet);
                }
            }
        }
    }

    /// `read_file` on this reader's file (taken out meanwhile rather than
    /// cloned: a thousand readers bumping one count would contend for it).
    fn read_own_file(&mut self, limit: u64) -> bool {
        let Some(f) = self.file.take() else {
            return false;
        };
        let read = self.read_file(&f, limit);
        self.file = Some(f);
        read
    }

    /// Reads chunks from the file, from the resume point, up to output offset
    /// `limit` (or the file's end). Returns whether any chunk was taken.
    fn read_file(&mut self, file: &File, limit: u64) -> bool {
        let want = self.pos;
        let (mut off, mut fp) = self.resume;
        if off > want {
            (off, fp) = (0, 0);
        }
        let mut blocks = Blocks::new(file, self.big_records);
        // The chunk being put together: stream, offset, time, file position,
        // and its bytes from `want` on, record by record.
        type Group = (Stream, u64, SystemTime, u64, Vec<Arc<[u8]>>);
        let mut group: Option<Group> = None;
        let mut taken = 0usize;
        let mut bytes = 0usize;
        loop {
            let mut h = [0u8; RECORD_HEADER];
            let mut record = if off >= limit || !blocks.read_at(fp, &mut h) {
                None
            } else {
                let micros = u64::from_le_bytes(h[1..9].try_into().expect("8 bytes"));
                let len = u32::from_le_bytes(h[9..13].try_into().expect("4 bytes")) as u64;
                Stream::from_tag(h[0] & !CONTINUES).map(|s| (s, h[0] & CONTINUES != 0, micros, len))
            };
            // The record's bytes, when they are wanted; a torn record ends the file.
            let mut data = None;
            if let Some((_, _, _, len)) = record {
                let take = len.min(limit - off);
                if off + take > want {
                    let skip = want.saturating_sub(off);
                    data = blocks.read_shared(fp + RECORD_HEADER as u64 + skip, take - skip);
                    if data.is_none() {
                        record = None;
                    }
                } else if !blocks.skip(fp + RECORD_HEADER as u64 + len, len) {
                    record = None;
                }
            }
            let starts_group = match record {
                None => true,
                Some((_, cont, ..)) => !cont || group.is_none(),
            };
            if starts_group {
                if let Some((stream, g_off, time, g_fp, mut pieces)) = group.take() {
                    if !pieces.is_empty() {
                        let data: Arc<[u8]> = match pieces.len() {
                            1 => pieces.pop().expect("one piece"),
                            _ => pieces.concat().into(),
                        };
                        let start = g_off.max(want);
                        self.pos = start + data.len() as u64;
                        bytes += data.len();
                        taken += 1;
                        self.batch.push_back(Chunk {
                            stream,
                            offset: start,
                            time,
                            data,
                        });
                    }
                    self.resume = match record {
                        Some(_) => (off, fp),
                        None => (g_off, g_fp),
                    };
                }
                if record.is_none() || taken >= BATCH || bytes >= BATCH_BYTES {
                    break;
                }
            }
            let (stream, _, micros, len) = record.expect("a record");
            if starts_group {
                let time = SystemTime::UNIX_EPOCH + Duration::from_micros(micros);
                group = Some((stream, off, time, fp, Vec::new()));
            }
            if let Some(d) = data.filter(|d| !d.is_empty()) {
                group.as_mut().expect("a group").4.push(d);
            }
            off += len.min(limit - off);
            fp += RECORD_HEADER as u64 + len;
        }
        self.big_records = blocks.after_big;
        taken > 0
    }
}

/// Buffered positional reads of a log file.
struct Blocks<'a> {
    file: &'a File,
    buf: Vec<u8>,
    start: u64,
    /// The last record's bytes were read on their own: the next header
    /// is read without a block of what follows it.
    after_big: bool,
}

impl<'a> Blocks<'a> {
    fn new(file: &'a File, after_big: bool) -> Blocks<'a> {
        Blocks {
            file,
            buf: Vec::new(),
            start: 0,
            after_big,
        }
    }

    /// Skips a record's `len` bytes ending at `end`: whether the file has them.
    fn skip(&mut self, end: u64, len: u64) -> bool {
        if len as usize >= FILE_BLOCK / 2 {
            self.after_big = true;
        }
        self.has(end)
    }

    /// Whether the file reaches `end` (reads what it must to tell).
    fn has(&mut self, end: u64) -> bool {
        if end <= self.start + self.buf.len() as u64 && end >= self.start {
            return true;
        }
        let mut b = [0u8; 1];
        end == 0 || self.file.read_at(&mut b, end - 1).is_ok_and(|n| n == 1)
    }

    /// `len` bytes from `pos` in a buffer of their own (what chunks share);
    /// `None` at the file's end. Large ones are read straight into it.
    fn read_shared(&mut self, pos: u64, len: u64) -> Option<Arc<[u8]>> {
        let len = len as usize;
        // Collected from a sized iterator: allocated once, in place.
        let mut data: Arc<[u8]> = std::iter::repeat_n(0u8, len).collect();
        let out = Arc::get_mut(&mut data).expect("not shared yet");
        let cached_end = self.start + self.buf.len() as u64;
        if len < FILE_BLOCK / 2 {
            return self.read_at(pos, out).then_some(data);
        }
        // What the buffer holds of it, then the rest straight from the file.
        let mut done = 0;
        if pos >= self.start && pos < cached_end {
            let from = (pos - self.start) as usize;
            done = (self.buf.len() - from).min(len);
            out[..done].copy_from_slice(&self.buf[from..from + done]);
        }
        self.after_big = true;
        self.file
            .read_exact_at(&mut out[done..], pos + done as u64)
            .is_ok()
            .then_some(data)
    }

    /// Fills `out` from `pos`; false at the file's end.
    fn read_at(&mut self, pos: u64, out: &mut [u8]) -> bool {
        let end = pos + out.len() as u64;
        if pos < self.start || end > self.start + self.buf.len() as u64 {
            // After a large record the next one is likely large too: read
            // its header alone rather than a block that would be read again.
            let block = match std::mem::take(&mut self.after_big) {
                true => out.len().max(RECORD_HEADER),
                false => FILE_BLOCK.max(out.len()),
            };
            self.buf.resize(block, 0);
            let mut n = 0;
            while n < block {
                match self.file.read_at(&mut self.buf[n..], pos + n as u64) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            self.buf.truncate(n);
            self.start = pos;
            if n < out.len() {
                return false;
            }
        }
        let from = (pos - self.start) as usize;
        out.copy_from_slice(&self.buf[from..from + out.len()]);
        true
    }
}

impl Drop for LogReader {
    fn drop(&mut self) {
        // Only a polled reader can have left a waker with the log.
        if let Some(key) = self.waker_key {
            self.log.inner.lock().wakers.remove(&key);
        }
    }
}

impl Iterator for LogReader {
    type Item = Chunk;

    fn next(&mut self) -> Option<Chunk> {
        self.next_inner(Wait::Block).ok().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn collect(r: LogReader) -> Vec<u8> {
        r.flat_map(|c| c.data.to_vec()).collect()
    }

    #[test]
    fn replay_offsets_and_snapshots() {
        let log = Arc::new(Log::new(1 << 20));
        log.append(Stream::Stdout, b"hello ");
        log.append(Stream::Stderr, b"world");
        let snap = LogReader::new(log.clone()).snapshot();
        log.append(Stream::Stdout, b"!");
        assert_eq!(collect(snap), b"hello world");
        log.close();
        assert_eq!(collect(LogReader::new(log.clone())), b"hello world!");
        assert_eq!(collect(LogReader::new(log.clone()).offset(3)), b"lo world!");
        assert_eq!(collect(LogReader::new(log.clone()).offset(6)), b"world!");
        assert_eq!(collect(LogReader::new(log.clone()).offset(100)), b"");
        let streams: Vec<Stream> = LogReader::new(log).map(|c| c.stream).collect();
        assert_eq!(streams, [Stream::Stdout, Stream::Stderr, Stream::Stdout]);
    }

    #[test]
    fn adjacent_output_of_a_stream_coalesces() {
        let log = Arc::new(Log::new(1 << 20));
        for _ in 0..1000 {
            log.append(Stream::Stdout, b"x");
        }
        log.append(Stream::Stderr, b"e");
        log.append(Stream::Stdout, b"y");
        log.close();
        let chunks: Vec<Chunk> = LogReader::new(log).collect();
        // Written within the window: one chunk per run of a stream.
        assert!(chunks.len() <= 4, "{} chunks", chunks.len());
        let offsets: Vec<u64> = chunks.iter().map(|c| c.offset).collect();
        let mut at = 0;
        for c in &chunks {
            assert_eq!(c.offset, at, "{offsets:?}");
            at += c.data.len() as u64;
        }
        assert_eq!(at, 1002);
    }

    #[test]
    fn bookkeeping_counts_against_the_budget() {
        let log = Arc::new(Log::new(64 << 10));
        for i in 0..200_000u32 {
            // Alternating streams: nothing can coalesce.
            let s = if i % 2 == 0 {
                Stream::Stdout
            } else {
                Stream::Stderr
            };
            log.append(s, b"z");
            if i % 1000 == 0 {
                assert!(log.inner.lock().used() <= 64 << 10);
            }
        }
        log.close();
        assert_eq!(collect(LogReader::new(log.clone())).len(), 200_000);
        let streams: Vec<Stream> = LogReader::new(log)
            .offset(199_998)
            .map(|c| c.stream)
            .collect();
        assert_eq!(streams, [Stream::Stdout, Stream::Stderr]);
    }

    #[test]
    fn spills_past_budget_and_reads_back() {
        let log = Arc::new(Log::new(4096));
        let mut expect = Vec::new();
        for i in 0..500u32 {
            let chunk = vec![i as u8; 37 + (i as usize % 50)];
            let s = if i % 3 == 0 {
                Stream::Stderr
            } else {
                Stream::Stdout
            };
            log.append(s, &chunk);
            expect.extend_from_slice(&chunk);
        }
        log.close();
        assert!(log.inner.lock().used() <= 4096 + MAX_GROUP);
        assert_eq!(collect(LogReader::new(log.clone())), expect);
        for at in [0usize, 1, 1000, 10_000, expect.len() - 1] {
            let got: Vec<Chunk> = LogReader::new(log.clone()).offset(at as u64).collect();
            assert_eq!(got.first().map(|c| c.offset), Some(at as u64));
            let bytes: Vec<u8> = got.iter().flat_map(|c| c.data.to_vec()).collect();
            assert_eq!(bytes, expect[at..]);
        }
    }

    #[test]
    fn offset_before_the_output_exists() {
        let log = Arc::new(Log::new(1 << 20));
        let readers: Vec<_> = [0u64, 2, 5, 9]
            .into_iter()
            .map(|n| {
                let r = LogReader::new(log.clone()).offset(n);
                (n, std::thread::spawn(move || collect(r)))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(20));
        log.append(Stream::Stdout, b"0123");
        std::thread::sleep(Duration::from_millis(20));
        log.append(Stream::Stdout, b"4567");
        log.close();
        for (n, t) in readers {
            assert_eq!(
                t.join().unwrap(),
                &b"01234567"[(n as usize).min(8)..],
                "{n}"
            );
        }
    }

    fn persistent_roundtrip(budget: usize) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let log = Arc::new(Log::persistent(budget, path.clone()));
        let mut want = Vec::new();
        for i in 0..300u32 {
            let s = if i % 7 == 0 {
                Stream::Stderr
            } else {
                Stream::Stdout
            };
            let d = format!("line {i}\n");
            log.append(s, d.as_bytes());
            want.push((s, d));
        }
        let live: Vec<Chunk> = LogReader::new(log.clone()).snapshot().collect();
        log.append(Stream::Stdout, b"end");
        log.close();
        assert!(
            log.inner.lock().file.is_none(),
            "a finished log holds no descriptor"
        );
        assert_eq!(log.inner.lock().used(), 0, "nor memory");
        let before: Vec<Chunk> = LogReader::new(log.clone()).collect();
        assert_eq!(before[..live.len()], live[..]);
        let back = Arc::new(Log::restored(path.clone()));
        let after: Vec<Chunk> = LogReader::new(back.clone()).collect();
        assert_eq!(
            before, after,
            "the same chunks, offsets and times after a restart"
        );
        let out: Vec<u8> = after.iter().flat_map(|c| c.data.to_vec()).collect();
        let mut expect: Vec<u8> = want.iter().flat_map(|(_, d)| d.bytes()).collect();
        expect.extend_from_slice(b"end");
        assert_eq!(out, expect);
        // A torn record at the end (writer killed mid-write) is ignored.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(&[1, 0, 0, 0]).unwrap();
        let back = Arc::new(Log::restored(path));
        assert!(back.is_closed());
        assert_eq!(collect(LogReader::new(back.clone())), expect);
        assert_eq!(collect(LogReader::new(back).offset(10)), expect[10..]);
    }

    #[test]
    fn persistent_log_roundtrip_and_torn_tail() {
        persistent_roundtrip(1 << 20);
        persistent_roundtrip(300);
    }

    #[test]
    fn a_failed_write_leaves_an_exact_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let log = Arc::new(Log::persistent(1 << 20, path.clone()));
        log.append(Stream::Stdout, b"kept ");
        // The file's descriptor now refuses writes, as a full disk would.
        {
            let mut g = log.inner.lock();
            g.file = Some(Arc::new(File::open(&path).unwrap()));
        }
        log.append(Stream::Stderr, b"lost ");
        log.append(Stream::Stdout, b"also lost");
        assert!(log.store_error().unwrap().contains("from byte 5"));
        assert_eq!(
            collect(LogReader::new(log.clone()).snapshot()),
            b"kept lost also lost"
        );
        log.close();
        assert_eq!(collect(LogReader::new(log.clone())), b"kept lost also lost");
        let back = Arc::new(Log::restored(path));
        assert_eq!(collect(LogReader::new(back)), b"kept ");
    }

    use proptest::prelude::*;

    fn check_chunks(chunks: &[Chunk], from: u64) -> Vec<u8> {
        let mut at = from;
        let mut out = Vec::new();
        for c in chunks {
            assert_eq!(c.offset, at, "chunks are contiguous");
            assert!(!c.data.is_empty());
            at += c.data.len() as u64;
            out.extend_from_slice(&c.data);
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Whatever the appends, budget and kind of log: every reader gets
        /// exactly the bytes from its offset in contiguous chunks, a replay
        /// sees the same chunks as a restart, and a file cut anywhere
        /// restores an exact prefix.
        #[test]
        fn readers_and_restarts_agree(
            appends in proptest::collection::vec((any::<bool>(), 1usize..3000), 1..120),
            budget in prop_oneof![Just(200usize), Just(4096), Just(1 << 20)],
            persistent in any::<bool>(),
            offsets in proptest::collection::vec(0u64..200_000, 3),
            cut in 0u64..400_000,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("log");
            let log = Arc::new(if persistent {
                Log::persistent(budget, path.clone())
            } else {
                Log::new(budget)
            });
            let mut want = Vec::new();
            let mut follower = LogReader::new(log.clone());
            let mut followed = Vec::new();
            // The same, driven as a task: polled until it has nothing yet.
            let mut cx = Context::from_waker(Waker::noop());
            let mut task = LogReader::new(log.clone());
            let mut tasked = Vec::new();
            for (i, (err, len)) in appends.iter().enumerate() {
                let s = if *err { Stream::Stderr } else { Stream::Stdout };
                let data: Vec<u8> = (0..*len).map(|j| (i * 31 + j) as u8).collect();
                log.append(s, &data);
                want.extend_from_slice(&data);
                if i % 7 == 3 {
                    // A follower keeping up takes what is there.
                    while let Ok(c) = follower.next_timeout(Duration::ZERO) {
                        followed.push(c);
                    }
                    while let Poll::Ready(Some(c)) = task.poll_chunk(&mut cx) {
                        tasked.push(c);
                    }
                }
            }
            log.close();
            followed.extend(follower);
            while let Poll::Ready(Some(c)) = task.poll_chunk(&mut cx) {
                tasked.push(c);
            }
            prop_assert_eq!(task.poll_chunk(&mut cx), Poll::Ready(None));
            prop_assert!(log.inner.lock().wakers.is_empty());
            prop_assert_eq!(check_chunks(&followed, 0), want.clone());
            let replay: Vec<Chunk> = LogReader::new(log.clone()).collect();
            prop_assert_eq!(check_chunks(&replay, 0), want.clone());
            // A follower ends the chunk it reaches: it saw the chunks a replay sees.
            prop_assert_eq!(&followed, &replay);
            prop_assert_eq!(&tasked, &replay);
            for &n in &offsets {
                let n = n.min(want.len() as u64);
                let got: Vec<Chunk> = LogReader::new(log.clone()).offset(n).collect();
                prop_assert_eq!(check_chunks(&got, n), want[n as usize..].to_vec());
            }
            if persistent {
                let back: Vec<Chunk> = LogReader::new(Arc::new(Log::restored(path.clone()))).collect();
                prop_assert_eq!(&back, &replay);
                // A crash can leave any prefix of the file.
                let size = std::fs::metadata(&path).unwrap().len();
                let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                f.set_len(cut.min(size)).unwrap();
                let torn: Vec<Chunk> = LogReader::new(Arc::new(Log::restored(path))).collect();
                let bytes = check_chunks(&torn, 0);
                prop_assert_eq!(&bytes[..], &want[..bytes.len()]);
            }
        }
    }

    #[test]
    fn polled_readers_are_woken_once_per_change_and_forgotten_when_dropped() {
        use std::sync::atomic::AtomicUsize;
        use std::task::Wake;
        struct Count(AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let log = Arc::new(Log::new(1 << 20));
        let mut r = LogReader::new(log.clone()).offset(2);
        // Polled again and again while nothing comes: one waker, not many.
        for _ in 0..5 {
            assert!(r.poll_chunk(&mut cx).is_pending());
        }
        assert_eq!(log.inner.lock().wakers.len(), 1);
        log.append(Stream::Stderr, b"abcd");
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(
            log.inner.lock().wakers.is_empty(),
            "woken wakers are dropped"
        );
        match r.poll_chunk(&mut cx) {
            Poll::Ready(Some(c)) => {
                assert_eq!(
                    (&c.data[..], c.offset, c.stream),
                    (&b"cd"[..], 2, Stream::Stderr)
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(r.poll_chunk(&mut cx).is_pending());
        log.close();
        assert_eq!(count.0.load(Ordering::SeqCst), 2, "closing wakes too");
        assert_eq!(r.poll_chunk(&mut cx), Poll::Ready(None));

        let log = Arc::new(Log::new(1 << 20));
        let mut r = LogReader::new(log.clone());
        assert!(r.poll_chunk(&mut cx).is_pending());
        drop(r);
        assert!(
            log.inner.lock().wakers.is_empty(),
            "a dropped reader leaves no waker"
        );
        // A snapshot of an open, empty log ends at once instead of waiting.
        let mut snap = LogReader::new(log.clone()).snapshot();
        assert_eq!(snap.poll_chunk(&mut cx), Poll::Ready(None));
    }

    /// A polled reader of a persistent log reads what only the file holds,
    /// and one that fell behind the memory budget catches up through it.
    #[test]
    fn polled_readers_read_the_file_too() {
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let poll_all = |r: &mut LogReader, cx: &mut Context<'_>| {
            let mut out = Vec::new();
            while let Poll::Ready(Some(c)) = r.poll_chunk(cx) {
                out.push(c);
            }
            out
        };
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(Log::persistent(300, dir.path().join("log")));
        let mut live = LogReader::new(log.clone());
        let mut want = Vec::new();
        for i in 0..200u32 {
            let d = format!("line {i}\n");
            log.append(Stream::Stdout, d.as_bytes());
            want.extend_from_slice(d.as_bytes());
        }
        let mut got = poll_all(&mut live, &mut cx);
        assert!(live.poll_chunk(&mut cx).is_pending());
        log.close();
        got.extend(poll_all(&mut live, &mut cx));
        assert_eq!(live.poll_chunk(&mut cx), Poll::Ready(None));
        assert_eq!(check_chunks(&got, 0), want);
        let mut after = LogReader::new(log).offset(7);
        assert_eq!(check_chunks(&poll_all(&mut after, &mut cx), 7), want[7..]);
    }

    #[test]
    fn followers_wake_and_end() {
        let log = Arc::new(Log::new(1 << 20));
        let r = LogReader::new(log.clone());
        let t = std::thread::spawn(move || collect(r));
        for _ in 0..100 {
            log.append(Stream::Stdout, b"x");
        }
        log.close();
        assert_eq!(t.join().unwrap(), vec![b'x'; 100]);
        let log = Arc::new(Log::new(10));
        let mut r = LogReader::new(log.clone());
        assert_eq!(
            r.next_timeout(Duration::from_millis(10)),
            Err(ReadTimeout::TimedOut)
        );
        log.close();
        assert_eq!(
            r.next_timeout(Duration::from_millis(10)),
            Err(ReadTimeout::Ended)
        );
    }
}
