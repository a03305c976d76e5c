//! A job's output: one append-only log of chunks, read through cursors.
//!
//! The single writer (the reactor) appends under a short lock and never waits
//! for readers. Readers are just positions: each replays from where it starts,
//! at its own pace; a stalled reader holds nothing but its position. Past a
//! memory budget, older chunks are dropped from memory and read back from the
//! job's log file (or a private temporary file when there is no state directory).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

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

    #[allow(dead_code)] // read back by the worker's job store
    pub(crate) fn from_tag(t: u8) -> Option<Stream> {
        match t {
            1 => Some(Stream::Stdout),
            2 => Some(Stream::Stderr),
            _ => None,
        }
    }
}

/// A piece of a job's output, as one read from its pipe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Where it came from.
    pub stream: Stream,
    /// The bytes.
    pub data: Arc<[u8]>,
    /// Position of the first byte in the job's combined output (stdout and stderr together).
    pub offset: u64,
    /// When the supervisor read it.
    pub time: SystemTime,
}

/// Default bytes of log kept in memory per job before older chunks are read from disk.
pub const DEFAULT_MEMORY_BUDGET: usize = 1 << 20;

/// Size of a chunk header in the log file: tag (1), time in µs since the epoch (8), length (4).
pub(crate) const RECORD_HEADER: usize = 13;

struct Entry {
    stream: Stream,
    offset: u64,
    len: u32,
    time: SystemTime,
    /// Where the data starts in the backing file, once written there.
    file_pos: Option<u64>,
    /// The data, while it is within the memory budget.
    data: Option<Arc<[u8]>>,
}

struct Inner {
    entries: Vec<Entry>,
    total: u64,
    mem_bytes: usize,
    /// Index of the oldest entry still holding its data in memory.
    first_in_mem: usize,
    backing: Option<Backing>,
    /// Set when the job's output has ended; readers that catch up then stop.
    closed: bool,
    /// Tasks of readers polled by an async runtime ([`LogReader::poll_chunk`]),
    /// woken (and forgotten) on the next append or on close. Keyed by reader,
    /// so a reader polled again replaces its waker instead of adding one.
    wakers: HashMap<u64, Waker>,
}

struct Backing {
    file: Arc<File>,
    /// Bytes written so far (the next record's position).
    len: u64,
    /// Whether every entry so far is in the file (a persistent log) or only spilled ones.
    persistent: bool,
}

/// The log of one job. Cheap to share (`Arc`).
pub(crate) struct Log {
    inner: Mutex<Inner>,
    cond: Condvar,
    budget: usize,
}

impl Log {
    /// An in-memory log that spills to a temporary file past `budget` bytes.
    pub(crate) fn new(budget: usize) -> Log {
        Log {
            inner: Mutex::new(Inner {
                entries: Vec::new(),
                total: 0,
                mem_bytes: 0,
                first_in_mem: 0,
                backing: None,
                closed: false,
                wakers: HashMap::new(),
            }),
            cond: Condvar::new(),
            budget,
        }
    }

    /// A log that appends every chunk to `file` (a job's persistent log).
    #[allow(dead_code)] // used by the worker's job store
    pub(crate) fn with_file(budget: usize, file: File) -> Log {
        let log = Log::new(budget);
        log.inner.lock().backing = Some(Backing {
            file: Arc::new(file),
            len: 0,
            persistent: true,
        });
        log
    }

    /// Rebuilds a finished log from a persistent log file (after a restart).
    /// A torn last record (the writer died mid-write) is ignored.
    #[allow(dead_code)] // used by the worker's job store
    pub(crate) fn from_file(budget: usize, file: File) -> std::io::Result<Log> {
        let log = Log::with_file(budget, file);
        {
            let mut g = log.inner.lock();
            let b = g.backing.as_ref().expect("just set");
            let file = b.file.clone();
            let size = file.metadata()?.len();
            let mut pos = 0u64;
            let mut header = [0u8; RECORD_HEADER];
            let mut offset = 0u64;
            let mut entries = Vec::new();
            while pos + RECORD_HEADER as u64 <= size {
                file.read_exact_at(&mut header, pos)?;
                let Some(stream) = Stream::from_tag(header[0]) else {
                    break;
                };
                let micros = u64::from_le_bytes(header[1..9].try_into().expect("8 bytes"));
                let len = u32::from_le_bytes(header[9..13].try_into().expect("4 bytes"));
                let data_pos = pos + RECORD_HEADER as u64;
                if data_pos + len as u64 > size {
                    break;
                }
                entries.push(Entry {
                    stream,
                    offset,
                    len,
                    time: SystemTime::UNIX_EPOCH + Duration::from_micros(micros),
                    file_pos: Some(data_pos),
                    data: None,
                });
                offset += len as u64;
                pos = data_pos + len as u64;
            }
            g.first_in_mem = entries.len();
            g.entries = entries;
            g.total = offset;
            g.backing.as_mut().expect("set").len = pos;
            g.closed = true;
        }
        Ok(log)
    }

    /// Appends a chunk. Never blocks on readers. Returns an error only when the
    /// backing file cannot be written (the chunk is still kept in memory).
    pub(crate) fn append(&self, stream: Stream, data: &[u8]) -> std::io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let time = SystemTime::now();
        let data: Arc<[u8]> = data.into();
        let mut result = Ok(());
        let mut g = self.inner.lock();
        let offset = g.total;
        let mut file_pos = None;
        if let Some(b) = g.backing.as_mut().filter(|b| b.persistent) {
            match write_record(b, stream, time, &data) {
                Ok(p) => file_pos = Some(p),
                Err(e) => result = Err(e),
            }
        }
        g.entries.push(Entry {
            stream,
            offset,
            len: data.len() as u32,
            time,
            file_pos,
            data: Some(data.clone()),
        });
        g.total += data.len() as u64;
        g.mem_bytes += data.len();
        if g.mem_bytes > self.budget {
            if let Err(e) = self.spill(&mut g) {
                result = result.and(Err(e));
            }
        }
        let wakers = std::mem::take(&mut g.wakers);
        drop(g);
        self.cond.notify_all();
        wakers.into_values().for_each(Waker::wake);
        result
    }

    /// Drops the oldest in-memory data until within budget, writing it to the
    /// backing file first when it is not there yet.
    fn spill(&self, g: &mut Inner) -> std::io::Result<()> {
        if g.backing.is_none() {
            g.backing = Some(Backing {
                file: Arc::new(tempfile::tempfile()?),
                len: 0,
                persistent: false,
            });
        }
        // Keep the newest chunk in memory even if it alone exceeds the budget.
        let last = g.entries.len().saturating_sub(1);
        while g.mem_bytes > self.budget && g.first_in_mem < last {
            let i = g.first_in_mem;
            if g.entries[i].file_pos.is_none() {
                let data = g.entries[i].data.clone().expect("in memory");
                let (stream, time) = (g.entries[i].stream, g.entries[i].time);
                let b = g.backing.as_mut().expect("created above");
                let pos = write_record(b, stream, time, &data)?;
                g.entries[i].file_pos = Some(pos);
            }
            let len = g.entries[i].len as usize;
            g.entries[i].data = None;
            g.mem_bytes -= len;
            g.first_in_mem += 1;
        }
        Ok(())
    }

    /// Marks the end of output: followers stop once they have read everything.
    pub(crate) fn close(&self) {
        let mut g = self.inner.lock();
        g.closed = true;
        if let Some(b) = g.backing.as_ref().filter(|b| b.persistent) {
            let _ = b.file.sync_data();
        }
        let wakers = std::mem::take(&mut g.wakers);
        drop(g);
        self.cond.notify_all();
        wakers.into_values().for_each(Waker::wake);
    }

    /// Total bytes appended so far.
    #[allow(dead_code)] // used by the worker's job store
    pub(crate) fn len(&self) -> u64 {
        self.inner.lock().total
    }

    #[allow(dead_code)] // used by the worker's job store
    pub(crate) fn is_closed(&self) -> bool {
        self.inner.lock().closed
    }
}

fn write_record(
    b: &mut Backing,
    stream: Stream,
    time: SystemTime,
    data: &[u8],
) -> std::io::Result<u64> {
    let micros = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64;
    let mut header = [0u8; RECORD_HEADER];
    header[0] = stream.tag();
    header[1..9].copy_from_slice(&micros.to_le_bytes());
    header[9..13].copy_from_slice(&(data.len() as u32).to_le_bytes());
    // One write per record keeps a torn record detectable at the tail only.
    let mut rec = Vec::with_capacity(RECORD_HEADER + data.len());
    rec.extend_from_slice(&header);
    rec.extend_from_slice(data);
    b.file.write_all_at(&rec, b.len)?;
    let pos = b.len + RECORD_HEADER as u64;
    b.len += rec.len() as u64;
    Ok(pos)
}

/// Why [`LogReader::next_timeout`] returned no chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadTimeout {
    /// Nothing arrived in time; the job may still write more.
    TimedOut,
    /// The log has ended: the job's output is complete and all of it was read.
    Ended,
}

struct TimedOut;

/// What [`LogReader::take`] found.
enum Ready {
    /// Entries were moved into the batch.
    Some,
    /// Nothing more will come.
    Ended,
    /// Nothing yet.
    Empty,
}

/// A cursor into a job's log: a blocking iterator of [`Chunk`]s.
///
/// Every reader sees every byte, in order, from its start position. By
/// default it starts at the beginning and follows the log until the job's
/// output ends; [`offset`](LogReader::offset) starts elsewhere and
/// [`snapshot`](LogReader::snapshot) stops at what is there now.
///
/// ```no_run
/// let job = jobcell::Sandbox::new().spawn(jobcell::Command::new("echo").arg("hi"))?;
/// let text: Vec<u8> = job.logs().flat_map(|c| c.data.to_vec()).collect();
/// assert_eq!(text, b"hi\n");
/// # Ok::<(), jobcell::Error>(())
/// ```
pub struct LogReader {
    log: Arc<Log>,
    index: usize,
    /// Byte offset to start at; resolved to an index on the first read.
    start: Option<u64>,
    /// Stop at this entry count (a snapshot), or follow when None.
    until: Option<usize>,
    follow: bool,
    /// Entries taken under one lock and not yet returned: a reader takes all
    /// that is ready at once, so a thousand followers do not queue on the
    /// lock once per chunk (the writer needs it too).
    batch: std::collections::VecDeque<Pending>,
    /// This reader's slot among the log's wakers, once it has been polled.
    waker_key: Option<u64>,
}

/// An entry taken from the log, its data in memory or in the backing file.
struct Pending {
    stream: Stream,
    offset: u64,
    time: SystemTime,
    len: usize,
    source: Result<Arc<[u8]>, (Arc<File>, u64)>,
}

/// At most this many entries per batch (a batch of chunks already in memory
/// costs only reference counts).
const BATCH: usize = 256;

impl LogReader {
    pub(crate) fn new(log: Arc<Log>) -> LogReader {
        LogReader {
            log,
            index: 0,
            start: None,
            until: None,
            follow: true,
            batch: std::collections::VecDeque::new(),
            waker_key: None,
        }
    }

    /// Starts at byte `offset` of the combined output (a chunk that spans it is cut).
    ///
    /// ```no_run
    /// # let job = jobcell::Sandbox::new().spawn(&jobcell::Command::new("true"))?;
    /// for chunk in job.logs().offset(1024) { /* ... */ }
    /// # Ok::<(), jobcell::Error>(())
    /// ```
    pub fn offset(mut self, offset: u64) -> LogReader {
        self.start = Some(offset);
        self.index = 0;
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
        self.until = Some(self.log.inner.lock().entries.len());
        self.batch.clear();
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
        match self.next_inner(Some(std::time::Instant::now() + timeout)) {
            Ok(Some(c)) => Ok(c),
            Ok(None) => Err(ReadTimeout::Ended),
            Err(TimedOut) => Err(ReadTimeout::TimedOut),
        }
    }

    fn next_inner(
        &mut self,
        deadline: Option<std::time::Instant>,
    ) -> Result<Option<Chunk>, TimedOut> {
        if let Some(p) = self.batch.pop_front() {
            return Ok(Some(self.materialize(p)));
        }
        let log = self.log.clone();
        let mut g = log.inner.lock();
        loop {
            match self.take(&mut g) {
                Ready::Some => break,
                Ready::Ended => return Ok(None),
                Ready::Empty => {}
            }
            match deadline {
                None => log.cond.wait(&mut g),
                Some(d) => {
                    if log.cond.wait_until(&mut g, d).timed_out() {
                        match self.take(&mut g) {
                            Ready::Some => break,
                            Ready::Ended => return Ok(None),
                            Ready::Empty => return Err(TimedOut),
                        }
                    }
                }
            }
        }
        drop(g);
        let first = self
            .batch
            .pop_front()
            .expect("at least one entry was ready");
        Ok(Some(self.materialize(first)))
    }

    /// The next chunk for a task of an async runtime: `Ready(Some(chunk))`,
    /// `Ready(None)` once the output has ended (or the snapshot is read), or
    /// `Pending`, after which the task is woken when the job writes more or
    /// its output ends. jobcell runs no runtime of its own: any executor can
    /// drive this, and a thousand pending readers cost a thousand wakers,
    /// not a thread each.
    ///
    /// Chunks that the log spilled to its file are read back inside this
    /// call (a `pread` of at most one chunk, usually from the page cache).
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
        if let Some(p) = self.batch.pop_front() {
            return Poll::Ready(Some(self.materialize(p)));
        }
        let log = self.log.clone();
        let mut g = log.inner.lock();
        match self.take(&mut g) {
            Ready::Some => {
                drop(g);
                let first = self.batch.pop_front().expect("an entry was ready");
                Poll::Ready(Some(self.materialize(first)))
            }
            Ready::Ended => Poll::Ready(None),
            Ready::Empty => {
                static KEYS: AtomicU64 = AtomicU64::new(0);
                let key = *self
                    .waker_key
                    .get_or_insert_with(|| KEYS.fetch_add(1, Ordering::Relaxed));
                match g.wakers.get_mut(&key) {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    Some(w) => w.clone_from(cx.waker()),
                    None => {
                        g.wakers.insert(key, cx.waker().clone());
                    }
                }
                Poll::Pending
            }
        }
    }

    /// Takes the entries ready now into the batch, under the log's lock.
    fn take(&mut self, g: &mut Inner) -> Ready {
        if let Some(start) = self.start {
            // The first entry whose end lies beyond `start`.
            self.index = g
                .entries
                .partition_point(|e| e.offset + e.len as u64 <= start);
        }
        if self.until.is_some_and(|until| self.index >= until) {
            return Ready::Ended;
        }
        if self.index >= g.entries.len() {
            return if g.closed || !self.follow {
                Ready::Ended
            } else {
                Ready::Empty
            };
        }
        let end = self
            .until
            .unwrap_or(usize::MAX)
            .min(g.entries.len())
            .min(self.index + BATCH);
        for e in &g.entries[self.index..end] {
            let source = match (&e.data, e.file_pos, &g.backing) {
                (Some(d), _, _) => Ok(d.clone()),
                (None, Some(pos), Some(b)) => Err((b.file.clone(), pos)),
                _ => Ok(Arc::from(&[][..])),
            };
            self.batch.push_back(Pending {
                stream: e.stream,
                offset: e.offset,
                time: e.time,
                len: e.len as usize,
                source,
            });
        }
        self.index = end;
        Ready::Some
    }

    /// Turns a taken entry into a chunk, reading spilled data from the file
    /// (outside the lock: a slow disk never stalls the writer).
    fn materialize(&mut self, p: Pending) -> Chunk {
        let Pending {
            stream,
            offset,
            time,
            len,
            source,
        } = p;
        let data: Arc<[u8]> = match source {
            Ok(d) => d,
            Err((file, pos)) => {
                let mut buf = vec![0u8; len];
                if file.read_exact_at(&mut buf, pos).is_err() {
                    buf.clear();
                }
                buf.into()
            }
        };
        let (data, offset) = match self.start.take() {
            Some(start) if start > offset => {
                let cut = ((start - offset) as usize).min(data.len());
                (Arc::from(&data[cut..]), offset + cut as u64)
            }
            _ => (data, offset),
        };
        Chunk {
            stream,
            data,
            offset,
            time,
        }
    }
}

impl Drop for LogReader {
    fn drop(&mut self) {
        if let Some(key) = self.waker_key {
            self.log.inner.lock().wakers.remove(&key);
        }
    }
}

impl Iterator for LogReader {
    type Item = Chunk;

    fn next(&mut self) -> Option<Chunk> {
        self.next_inner(None).ok().flatten()
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
        log.append(Stream::Stdout, b"hello ").unwrap();
        log.append(Stream::Stderr, b"world").unwrap();
        let snap = LogReader::new(log.clone()).snapshot();
        log.append(Stream::Stdout, b"!").unwrap();
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
    fn spills_past_budget_and_reads_back() {
        let log = Arc::new(Log::new(100));
        let mut expect = Vec::new();
        for i in 0..50u8 {
            let chunk = vec![i; 37];
            log.append(Stream::Stdout, &chunk).unwrap();
            expect.extend_from_slice(&chunk);
        }
        log.close();
        assert!(log.inner.lock().mem_bytes <= 100 + 37);
        assert_eq!(collect(LogReader::new(log.clone())), expect);
        assert_eq!(collect(LogReader::new(log).offset(1000)), expect[1000..]);
    }

    #[test]
    fn persistent_log_roundtrip_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let log = Log::with_file(10, f);
        log.append(Stream::Stdout, b"first").unwrap();
        log.append(Stream::Stderr, b"second chunk").unwrap();
        log.close();
        // A torn record at the end (writer killed mid-write) is ignored.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(&[1, 0, 0, 0]).unwrap();
        let f = std::fs::File::open(&path).unwrap();
        let back = Arc::new(Log::from_file(10, f).unwrap());
        assert!(back.is_closed());
        assert_eq!(back.len(), 17);
        assert_eq!(collect(LogReader::new(back)), b"firstsecond chunk");
    }

    #[test]
    fn followers_wake_and_end() {
        let log = Arc::new(Log::new(1 << 20));
        let r = LogReader::new(log.clone());
        let t = std::thread::spawn(move || collect(r));
        for _ in 0..100 {
            log.append(Stream::Stdout, b"x").unwrap();
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
        log.append(Stream::Stderr, b"abcd").unwrap();
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
}
