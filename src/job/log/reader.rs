//! Readers of a log: cursors that replay from where they start, from
//! memory or from the log's file.

use std::collections::VecDeque;
use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime};

use super::file::Blocks;
use super::{Chunk, Log, Stream, BATCH, BATCH_BYTES, CONTINUES, RECORD_HEADER};

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
