use super::*;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use super::reader::*;

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
        // Mostly small appends; some larger than half a file block (read
        // back on their own) or than a chunk (a chunk of their own).
        appends in proptest::collection::vec(
            (any::<bool>(), prop_oneof![9 => 1usize..3000, 1 => 30_000usize..70_000]),
            1..120,
        ),
        budget in prop_oneof![Just(200usize), Just(4096), Just(1 << 20)],
        persistent in any::<bool>(),
        offsets in proptest::collection::vec(0u64..1_000_000, 3),
        cut in 0u64..1_000_000,
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

/// This thread's read calls and bytes read so far (`syscr`, `rchar`).
fn thread_reads() -> (u64, u64) {
    let io = std::fs::read_to_string("/proc/thread-self/io").unwrap();
    let field = |k: &str| -> u64 {
        io.lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or_else(|| panic!("no {k} in {io}"))
            .trim()
            .parse()
            .unwrap()
    };
    (field("syscr:"), field("rchar:"))
}

/// A spilled log is read back in blocks, and a reader that starts late
/// reads the file near where it starts, not from its beginning: from the
/// sparse index of chunk starts, or, just behind the memory, from the
/// recent ones.
#[test]
fn readers_read_the_file_in_blocks_from_near_where_they_start() {
    const CHUNK: usize = 30_000;
    let log = Arc::new(Log::new(64 << 10));
    let mut want = Vec::new();
    for i in 0..600u32 {
        // Alternating streams: no chunk joins the one before.
        let s = if i % 2 == 0 {
            Stream::Stdout
        } else {
            Stream::Stderr
        };
        let data: Vec<u8> = (0..CHUNK as u32).map(|j| (i * 7 + j) as u8).collect();
        log.append(s, &data);
        want.extend_from_slice(&data);
    }
    log.close();
    let (index, recent, mem_start) = {
        let g = log.inner.lock();
        (g.index.clone(), g.recent.clone(), g.mem_start())
    };
    assert!(index.len() > 16 && recent.len() == RECENT, "{index:?}");
    // The first chunk a reader from `at` returns, and what reading it cost.
    let first_from = |at: u64| {
        let before = thread_reads();
        let c = LogReader::new(log.clone())
            .offset(at)
            .next()
            .expect("a chunk");
        let after = thread_reads();
        assert_eq!(c.offset, at);
        let n = c.data.len();
        assert_eq!(&c.data[..], &want[at as usize..at as usize + n]);
        (after.0 - before.0, after.1 - before.1)
    };
    // Half-way: the index is at most a few steps away.
    let step = index.windows(2).map(|w| w[1].0 - w[0].0).max().unwrap();
    let at = want.len() as u64 / 2 + 1;
    let (_, bytes) = first_from(at);
    assert!(
        bytes < 2 * step + (256 << 10),
        "{bytes} bytes read for one chunk, step {step}"
    );
    // Just behind the memory: the recent chunk farthest from an index entry.
    let (at, gap) = recent
        .iter()
        .map(|&(o, _)| {
            let before = index.iter().rev().find(|(i, _)| *i <= o).map_or(0, |e| e.0);
            (o, o - before)
        })
        .max_by_key(|&(_, gap)| gap)
        .unwrap();
    assert!(
        at < mem_start && gap >= 3 * CHUNK as u64,
        "{at} {gap} {mem_start}"
    );
    let (_, bytes) = first_from(at);
    assert!(
        bytes < gap,
        "{bytes} bytes read for one chunk {gap} past an index entry"
    );
    // From the start: about one read per block.
    let before = thread_reads();
    assert!(collect(LogReader::new(log.clone())) == want);
    let calls = thread_reads().0 - before.0;
    let blocks = want.len() as u64 / (64 << 10);
    assert!(calls < 2 * blocks, "{calls} reads for {blocks} blocks");
}

/// What a log holds in memory, counted here from its parts: every chunk's
/// bytes and shared-buffer cost, the chunk slots, the growing chunk's
/// buffer and the file's index.
fn held(g: &Inner) -> usize {
    g.entries
        .iter()
        .map(|e| e.data.len() + ARC_COST)
        .sum::<usize>()
        + g.entries.capacity() * std::mem::size_of::<Entry>()
        + g.tail.as_ref().map_or(0, |t| t.buf.capacity())
        + (g.index.capacity() + g.recent.capacity()) * std::mem::size_of::<(u64, u64)>()
}

/// The memory budget holds whatever the output: tiny chunks (their
/// bookkeeping), ordinary ones, and single reads larger than a chunk
/// grows (they become chunks of their own).
#[test]
fn memory_held_stays_within_the_budget() {
    let budget = 64 << 10;
    let log = Arc::new(Log::new(budget));
    let mut want = Vec::new();
    for i in 0..30_000u32 {
        let s = if i % 2 == 0 {
            Stream::Stdout
        } else {
            Stream::Stderr
        };
        let len = match i % 1000 {
            0 => 100_000,
            1..=99 => 3000,
            _ => 1,
        };
        let data = vec![i as u8; len];
        log.append(s, &data);
        want.extend_from_slice(&data);
        let g = log.inner.lock();
        let entry_bytes: usize = g.entries.iter().map(|e| e.data.len() + ARC_COST).sum();
        assert_eq!(g.entry_bytes, entry_bytes, "after append {i}");
        assert!(
            held(&g) <= budget,
            "{} bytes held after append {i}",
            held(&g)
        );
    }
    log.close();
    assert!(collect(LogReader::new(log)) == want);
    // A growing chunk counts too, before anything was spilled. (Appends
    // within GROUP_WINDOW join it: tried a few times.)
    for _ in 0..5 {
        let log = Log::new(4096);
        log.append(Stream::Stdout, &[1; 3000]);
        log.append(Stream::Stdout, &[2; 3000]);
        let g = log.inner.lock();
        assert!(held(&g) <= 4096, "{} bytes held", held(&g));
    }
}

/// Many tiny chunks: the bookkeeping of the chunks let go is given back as
/// they go, so a spill keeps the newest in memory rather than emptying it
/// (the chunk list's room alone could exceed the budget).
#[test]
fn a_spill_of_tiny_chunks_keeps_the_newest_in_memory() {
    let budget = 64 << 10;
    let log = Log::new(budget);
    let mut least = usize::MAX;
    for i in 0..20_000u32 {
        // Alternating streams: one chunk per append.
        let s = if i % 2 == 0 {
            Stream::Stdout
        } else {
            Stream::Stderr
        };
        log.append(s, b"x");
        if i >= 5_000 {
            let g = log.inner.lock();
            assert!(held(&g) <= budget, "{} bytes held", held(&g));
            least = least.min(g.entries.len());
        }
    }
    assert!(
        least >= 100,
        "a spill left {least} chunks in memory (of a {budget}-byte budget)"
    );
}

/// A job's log keeps its first megabyte ([`DEFAULT_MEMORY_BUDGET`]) in
/// memory; past it, the oldest output goes to the spill file.
#[test]
fn the_default_budget_is_a_megabyte() {
    let log = Log::new(DEFAULT_MEMORY_BUDGET);
    for i in 0..30 {
        let s = if i % 2 == 0 {
            Stream::Stdout
        } else {
            Stream::Stderr
        };
        log.append(s, &[i as u8; 30_000]);
    }
    assert!(log.inner.lock().file.is_none(), "900 kB stay in memory");
    for _ in 0..10 {
        log.append(Stream::Stdout, &[0; 30_000]);
        log.append(Stream::Stderr, &[0; 30_000]);
    }
    assert!(
        log.inner.lock().file.is_some(),
        "past 1 MiB, output is spilled"
    );
}

/// Output of one stream that arrives together joins one chunk of up to
/// 64 KiB, the most one read of the supervisor takes.
#[test]
fn a_burst_joins_one_chunk_of_up_to_64_kib() {
    // The appends must come within GROUP_WINDOW of each other: tried a few
    // times, so that a test thread preempted in between does not fail it.
    let sizes = (0..5)
        .map(|_| {
            let log = Arc::new(Log::new(1 << 20));
            log.append(Stream::Stdout, &[1; 40_000]);
            log.append(Stream::Stdout, &[2; 25_536]);
            log.append(Stream::Stdout, &[3; 1]);
            log.close();
            LogReader::new(log)
                .map(|c| c.data.len())
                .collect::<Vec<_>>()
        })
        .find(|s| s == &[65_536, 1]);
    assert_eq!(sizes, Some(vec![65_536, 1]));
}

/// A persistent log whose file fails, with output past its memory budget:
/// what the file lacks is never written elsewhere, and the error is the
/// log file's.
#[test]
fn a_failed_write_past_the_budget_is_the_log_files_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let log = Arc::new(Log::persistent(300, path.clone()));
    log.append(Stream::Stdout, b"kept ");
    log.inner.lock().file = Some(Arc::new(File::open(&path).unwrap()));
    let mut want = b"kept ".to_vec();
    // The first lost output starts a chunk of its own.
    for i in 0..40u8 {
        let s = if i % 2 == 0 {
            Stream::Stderr
        } else {
            Stream::Stdout
        };
        log.append(s, &[b'a' + i % 26; 50]);
        want.extend_from_slice(&[b'a' + i % 26; 50]);
    }
    let err = log.store_error().unwrap();
    let file = path.display().to_string();
    assert!(
        err.starts_with("output from byte 5 on was not stored: write ") && err.contains(&file),
        "{err}"
    );
    // The file's part, then what memory still holds; the rest is lost.
    let got = collect(LogReader::new(log.clone()).snapshot());
    assert!(got.starts_with(b"kept ") && want.ends_with(&got[5..]) && got.len() < want.len());
    log.close();
    assert_eq!(
        collect(LogReader::new(Arc::new(Log::restored(path)))),
        b"kept "
    );
}

/// `next_timeout` waits for output that comes within the time given.
#[test]
fn next_timeout_waits_for_what_comes_in_time() {
    let log = Arc::new(Log::new(1 << 20));
    let mut r = LogReader::new(log.clone());
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            log.append(Stream::Stderr, b"late");
        })
    };
    let c = r.next_timeout(Duration::from_secs(20)).expect("in time");
    assert_eq!((c.stream, &c.data[..]), (Stream::Stderr, &b"late"[..]));
    writer.join().unwrap();
}

/// A log file that cannot be read (a failing disk) ends what a reader
/// gets from it; the reader goes on with what memory holds.
#[test]
fn an_unreadable_file_is_skipped_not_retried() {
    let log = Arc::new(Log::new(4096));
    let mut want = Vec::new();
    for i in 0..100u8 {
        log.append(Stream::Stdout, &[i; 1000]);
        log.append(Stream::Stderr, &[i; 10]);
        want.extend_from_slice(&[i; 1000]);
        want.extend_from_slice(&[i; 10]);
    }
    log.close();
    let dir = tempfile::tempdir().unwrap();
    // Reads of a directory fail with EISDIR, every time.
    log.inner.lock().file = Some(Arc::new(File::open(dir.path()).unwrap()));
    let got = collect(LogReader::new(log.clone()));
    assert!(!got.is_empty() && got.len() < want.len() && want.ends_with(&got));
}

/// A reader waiting for more when the log ends learns that it has ended,
/// at once, rather than that its time ran out.
#[test]
fn a_waiting_reader_learns_of_the_end_at_once() {
    let log = Arc::new(Log::new(1 << 20));
    log.append(Stream::Stdout, b"x");
    let mut r = LogReader::new(log.clone());
    assert_eq!(&r.next_timeout(Duration::ZERO).unwrap().data[..], b"x");
    let closer = {
        let log = log.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            log.close();
        })
    };
    let t = Instant::now();
    assert_eq!(
        r.next_timeout(Duration::from_secs(20)),
        Err(ReadTimeout::Ended)
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    closer.join().unwrap();
}

/// A reader behind the memory reads on from the file without the log's
/// lock (which the writer needs): here the lock is held all along.
#[test]
fn a_reader_behind_reads_the_file_without_the_lock() {
    let log = Arc::new(Log::new(4096));
    let mut want = Vec::new();
    for i in 0..2000u32 {
        let s = if i % 2 == 0 {
            Stream::Stdout
        } else {
            Stream::Stderr
        };
        let data = vec![i as u8; 200];
        log.append(s, &data);
        want.extend_from_slice(&data);
    }
    let mut r = LogReader::new(log.clone());
    // The first batch is taken under the lock, and says how far the file
    // goes (less than one batch: BATCH_BYTES).
    let first = r.next().unwrap();
    assert_eq!(first.offset, 0);
    let held = log.inner.lock();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut got = first.data.to_vec();
        while got.len() < 200_000 {
            got.extend_from_slice(&r.next().unwrap().data);
        }
        tx.send(got).unwrap();
    });
    let got = rx.recv_timeout(Duration::from_secs(20));
    drop(held);
    let got = got.expect("read without the lock");
    assert!(got[..] == want[..got.len()]);
    reader.join().unwrap();
}

/// A snapshot ends at what the log held when it was taken, though later
/// chunks follow it in memory.
#[test]
fn a_snapshot_ends_where_the_log_was() {
    let log = Arc::new(Log::new(1 << 20));
    log.append(Stream::Stdout, b"before");
    let snap = LogReader::new(log.clone()).snapshot();
    // A chunk of its own (another stream), ended by the next one.
    log.append(Stream::Stderr, b" after");
    log.append(Stream::Stdout, b" more");
    assert_eq!(collect(snap), b"before");
}
