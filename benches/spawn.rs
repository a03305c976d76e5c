//! Spawn latency and throughput, each as a ratio to the C reference cell
//! of `benches/floor.c` (clone3 into new user, PID, mount, UTS, IPC and
//! network namespaces, id maps, a tmpfs root with `/usr` and a fresh
//! `/proc`, `pivot_root`, then fork + exec and wait), measured in the same
//! run so a noisy machine disturbs both alike:
//!
//! - sequential spawn → reap of `/bin/true`: the default cell with its
//!   output logged (captured and read to the end) and discarded, the cell
//!   with memory + pids + CPU limits, and a cell from a pool of cells made
//!   ahead (`Sandbox::prepare(4)`, output discarded; also as a ratio to
//!   plain `std::process::Command`, which is `posix_spawn` here, with how
//!   many spawns found a ready cell);
//! - a one-shot program: a fresh process (this benchmark run again) that
//!   spawns one default cell and exits, against `bwrap` running `/bin/true`
//!   with every namespace unshared, when bubblewrap is installed (measured
//!   first, before this process spawns anything itself);
//! - closed-loop throughput with 2 concurrent spawners, jobs per second and
//!   CPU time per job (of this process, its cells and the spawner).
//!
//! Run with `cargo bench --bench spawn` (as root; the C reference needs a
//! C compiler, `cc`). The latency variants are measured interleaved (one of
//! each per round) and compared by their medians. A last round repeats the
//! discarded-output cell after the process has touched 1 GiB of heap:
//! cells are cloned from a small spawner process, so their cost must not
//! grow with the host's memory.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::time::{Duration, Instant};

use jobcell::{Command, Limits, Output, Sandbox};

const WARMUP: usize = 30;
const ROUNDS: usize = 300;
const ONE_SHOT_ROUNDS: usize = 40;
const THROUGHPUT_SECS: f64 = 3.0;
/// Set in the one-shot child: run one job and exit.
const ONE_SHOT: &str = "JOBCELL_BENCH_ONE_SHOT";

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    if std::env::var_os(ONE_SHOT).is_some() {
        one_shot_child();
        return;
    }
    let floor = Floor::build();
    let reference = floor.as_ref().map(Floor::serve);
    let mut reference = reference.and_then(Result::ok);
    if reference.is_none() {
        println!("C reference: unavailable (no C compiler, or not root); ratios are to std::process::Command");
    }

    // First, while this process has spawned nothing: a one-shot child must
    // meet the machine as a lone program would (a process that holds
    // jobcell's helpers changes how fast another exits: it once hid
    // 13-17 ms of a one-shot program's exit).
    one_shot(&mut reference);

    let mut logged = Command::new("/bin/true");
    logged.stdout(Output::Capture).stderr(Output::Capture);
    let mut discarded = Command::new("/bin/true");
    discarded.stdout(Output::Discard).stderr(Output::Discard);
    let mut limited = Sandbox::new();
    limited.limits(Limits {
        memory: Some(256 << 20),
        pids: Some(64),
        cpu_percent: Some(100),
        ..Default::default()
    });
    let default = Sandbox::new();
    let cells: Vec<(&str, &Sandbox, &Command)> = vec![
        ("default cell, output logged", &default, &logged),
        ("default cell, output discarded", &default, &discarded),
        ("memory + pids + cpu limits", &limited, &discarded),
    ];

    let run_std = || {
        let t = Instant::now();
        assert!(std::process::Command::new("/bin/true")
            .status()
            .unwrap()
            .success());
        t.elapsed()
    };
    let run_cell = |sb: &Sandbox, cmd: &Command| {
        let t = Instant::now();
        let job = sb.spawn(cmd).unwrap();
        // Logged output is read to its end, as a caller would.
        for _ in job.logs() {}
        assert!(job.wait().unwrap().success());
        t.elapsed()
    };
    let run_ref = |r: &mut Option<Reference>| r.as_mut().map(Reference::cell);
    let pool = default.prepare(4).expect("prepare a pool");
    let run_pool = || {
        let t = Instant::now();
        let job = pool.spawn(&discarded).unwrap();
        assert!(job.wait().unwrap().success());
        t.elapsed()
    };
    for _ in 0..WARMUP {
        run_std();
        run_ref(&mut reference);
        for (_, sb, cmd) in &cells {
            run_cell(sb, cmd);
        }
        run_pool();
    }
    let warm_counts = jobcell::__private::pool_counts(&pool);
    let mut std_samples = Vec::with_capacity(ROUNDS);
    let mut ref_samples = Vec::with_capacity(ROUNDS);
    let mut cell_samples: Vec<Vec<Duration>> = vec![Vec::with_capacity(ROUNDS); cells.len()];
    let mut pool_samples = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        std_samples.push(run_std());
        ref_samples.extend(run_ref(&mut reference));
        for (i, (_, sb, cmd)) in cells.iter().enumerate() {
            cell_samples[i].push(run_cell(sb, cmd));
        }
        pool_samples.push(run_pool());
    }
    let counts = jobcell::__private::pool_counts(&pool);
    let (taken, fresh) = (counts.0 - warm_counts.0, counts.1 - warm_counts.1);
    drop(pool);
    let big_host = {
        let heap = vec![1u8; 1 << 30];
        let mut ref_big = Vec::new();
        let mut cell_big = Vec::new();
        for _ in 0..ROUNDS / 4 {
            ref_big.extend(run_ref(&mut reference));
            cell_big.push(run_cell(&default, &discarded));
        }
        assert_eq!(std::hint::black_box(&heap)[1 << 29], 1);
        (median(&mut ref_big), median(&mut cell_big))
    };

    let std_median = median(&mut std_samples).expect("rounds ran");
    let base = median(&mut ref_samples).unwrap_or(std_median);
    let base_name = match reference {
        Some(_) => "C reference",
        None => "std::process::Command",
    };
    println!("sequential spawn -> reap of /bin/true, median of {ROUNDS} interleaved rounds:");
    let line = |name: &str, m: Duration| {
        println!(
            "  {:<44} {:>8.1} µs   {:>5.2}x {base_name}",
            name,
            us(m),
            m.as_secs_f64() / base.as_secs_f64()
        );
    };
    line("std::process::Command (fork + exec)", std_median);
    if reference.is_some() {
        line("C reference cell (benches/floor.c)", base);
    }
    for ((name, ..), samples) in cells.iter().zip(cell_samples.iter_mut()) {
        line(
            &format!("jobcell {name}"),
            median(samples).expect("rounds ran"),
        );
    }
    let pooled = median(&mut pool_samples).expect("rounds ran");
    line("jobcell cell from a pool made ahead", pooled);
    println!(
        "  {:<44} {:>5.2}x std::process::Command; {taken} of {} spawns took a ready cell",
        "",
        pooled.as_secs_f64() / std_median.as_secs_f64(),
        taken + fresh
    );
    if let (Some(r), Some(c)) = big_host {
        println!(
            "  with 1 GiB of host heap: C reference {:.1} µs, jobcell discarded output {:.1} µs ({:.2}x)",
            us(r),
            us(c),
            c.as_secs_f64() / r.as_secs_f64()
        );
    }

    drop(reference);
    throughput(floor.as_ref());
}

fn median(v: &mut [Duration]) -> Option<Duration> {
    v.sort();
    v.get(v.len() / 2).copied()
}

/// benches/floor.c, compiled.
struct Floor {
    _dir: tempfile::TempDir,
    bin: PathBuf,
}

impl Floor {
    fn build() -> Option<Floor> {
        let src = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/floor.c");
        let dir = tempfile::tempdir().ok()?;
        let bin = dir.path().join("floor");
        let built = std::process::Command::new("cc")
            .args(["-O2", "-o"])
            .arg(&bin)
            .arg(src)
            .status()
            .is_ok_and(|s| s.success());
        built.then_some(Floor { _dir: dir, bin })
    }

    /// `floor serve`: a reference cell per request.
    fn serve(&self) -> std::io::Result<Reference> {
        let mut child = std::process::Command::new(&self.bin)
            .arg("serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let input = child.stdin.take().expect("piped");
        let output = BufReader::new(child.stdout.take().expect("piped"));
        let mut r = Reference {
            child,
            input: Some(input),
            output,
        };
        // A host where the reference cannot run (not root) says so at once.
        match r.try_cell() {
            Some(_) => Ok(r),
            None => Err(std::io::Error::other("the reference cell failed")),
        }
    }
}

/// A running `floor serve`.
struct Reference {
    child: Child,
    input: Option<ChildStdin>,
    output: BufReader<ChildStdout>,
}

impl Reference {
    fn try_cell(&mut self) -> Option<Duration> {
        self.input.as_mut()?.write_all(b"x").ok()?;
        let mut line = String::new();
        self.output.read_line(&mut line).ok()?;
        let t: f64 = line.trim().parse().ok()?;
        (t >= 0.0).then(|| Duration::from_secs_f64(t / 1e6))
    }

    fn cell(&mut self) -> Duration {
        self.try_cell().expect("the reference cell failed")
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        // End of input ends it.
        drop(self.input.take());
        let _ = self.child.wait();
    }
}

/// The one-shot child: one default cell, output logged, as `examples/run`.
fn one_shot_child() {
    let mut cmd = Command::new("/bin/true");
    cmd.stdout(Output::Capture).stderr(Output::Capture);
    let job = Sandbox::new().spawn(&cmd).expect("spawn");
    for _ in job.logs() {}
    assert!(job.wait().expect("wait").success());
}

fn bwrap() -> Option<PathBuf> {
    ["/usr/bin/bwrap", "/bin/bwrap", "/usr/local/bin/bwrap"]
        .iter()
        .map(Path::new)
        .find(|p| p.exists())
        .map(Path::to_owned)
}

/// A fresh process per job: this benchmark run again as a one-shot program,
/// against bubblewrap and the C reference cell.
fn one_shot(reference: &mut Option<Reference>) {
    let exe = std::env::current_exe().expect("current exe");
    let timed = |c: &mut std::process::Command| {
        let t = Instant::now();
        let st = c.stdout(Stdio::null()).status().expect("run");
        assert!(st.success(), "{c:?}: {st}");
        t.elapsed()
    };
    let bwrap = bwrap();
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    let mut refs = Vec::new();
    for i in 0..ONE_SHOT_ROUNDS + 3 {
        let o = timed(std::process::Command::new(&exe).env(ONE_SHOT, "1"));
        let b = bwrap.as_ref().map(|b| {
            timed(std::process::Command::new(b).args([
                "--unshare-all",
                "--ro-bind",
                "/usr",
                "/usr",
                "--symlink",
                "usr/lib64",
                "/lib64",
                "--symlink",
                "usr/lib",
                "/lib",
                "--symlink",
                "usr/bin",
                "/bin",
                "--proc",
                "/proc",
                "--dev",
                "/dev",
                "/bin/true",
            ]))
        });
        let r = reference.as_mut().map(Reference::cell);
        if i >= 3 {
            ours.push(o);
            theirs.extend(b);
            refs.extend(r);
        }
    }
    let ours = median(&mut ours).expect("rounds ran");
    println!(
        "a one-shot program running one job (a fresh process each), median of {ONE_SHOT_ROUNDS}:"
    );
    match median(&mut refs) {
        Some(r) => println!(
            "  {:<44} {:>8.1} µs   {:>5.2}x C reference",
            "jobcell, first spawn of a process",
            us(ours),
            ours.as_secs_f64() / r.as_secs_f64()
        ),
        None => println!(
            "  {:<44} {:>8.1} µs",
            "jobcell, first spawn of a process",
            us(ours)
        ),
    }
    match median(&mut theirs) {
        Some(b) => println!(
            "  {:<44} {:>8.1} µs   jobcell is {:.2}x bubblewrap",
            "bwrap --unshare-all (bubblewrap)",
            us(b),
            ours.as_secs_f64() / b.as_secs_f64()
        ),
        None => println!("  bubblewrap: not installed"),
    }
}

/// CPU time (user + system) of this process, its reaped children and the
/// spawner, in seconds.
fn cpu_seconds() -> f64 {
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let mut total = 0.0;
    for who in [libc::RUSAGE_SELF, libc::RUSAGE_CHILDREN] {
        // SAFETY: getrusage fills the struct it is given.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: a valid pointer to a rusage.
        unsafe { libc::getrusage(who, &mut ru) };
        total += tv(ru.ru_utime) + tv(ru.ru_stime);
    }
    if let Some(pid) = jobcell::__private::spawner_pid() {
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
            let f: Vec<&str> = after.split_whitespace().collect();
            // utime and stime: fields 14 and 15, the 12th and 13th after the name.
            let ticks: f64 = [11, 12]
                .iter()
                .filter_map(|&i| f.get(i)?.parse::<f64>().ok())
                .sum();
            // SAFETY: sysconf has no preconditions.
            let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
            total += ticks / hz;
        }
    }
    total
}

/// Closed-loop throughput with 2 concurrent spawners: jobcell's default
/// cell (output discarded) against the C reference, alternated twice.
fn throughput(floor: Option<&Floor>) {
    let mut cmd = Command::new("/bin/true");
    cmd.stdout(Output::Discard).stderr(Output::Discard);
    let sb = Sandbox::new();
    let ours = || {
        let cpu0 = cpu_seconds();
        let end = Instant::now() + Duration::from_secs_f64(THROUGHPUT_SECS);
        let t = Instant::now();
        let jobs: usize = std::thread::scope(|s| {
            let workers: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        let mut n = 0;
                        while Instant::now() < end {
                            let job = sb.spawn(&cmd).unwrap();
                            assert!(job.wait().unwrap().success());
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).sum()
        });
        let rate = jobs as f64 / t.elapsed().as_secs_f64();
        (rate, (cpu_seconds() - cpu0) * 1e6 / jobs as f64)
    };
    let theirs = || -> Option<(f64, f64)> {
        let out = std::process::Command::new(&floor?.bin)
            .args(["throughput", &THROUGHPUT_SECS.to_string(), "2"])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut it = text.split_whitespace().map(|w| w.parse::<f64>().ok());
        Some((it.next()??, it.next()??))
    };
    println!(
        "closed-loop throughput, 2 concurrent spawners, {THROUGHPUT_SECS} s each, alternated:"
    );
    for _ in 0..2 {
        let c = theirs();
        let (rate, cpu) = ours();
        match c {
            Some((c_rate, c_cpu)) => println!(
                "  jobcell default cell {rate:>7.1} jobs/s ({:.2}x C reference's {c_rate:.1}), \
                 CPU per job {cpu:>7.0} µs ({:.2}x C reference's {c_cpu:.0} µs)",
                rate / c_rate,
                cpu / c_cpu
            ),
            None => {
                println!("  jobcell default cell {rate:>7.1} jobs/s, CPU per job {cpu:>7.0} µs")
            }
        }
    }
}
