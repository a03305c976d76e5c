//! Descriptor exhaustion (EMFILE) at each step of a spawn.

use super::*;

// Descriptor exhaustion.

/// Every free descriptor but `k` taken, for k = 0, 1, 2, ...: each spawn
/// fails at a later step, until it succeeds. A failure is EMFILE at a named
/// step and leaves nothing; a success is one job, run once; either way the
/// next spawn works within a second, every helper restored.
#[test]
fn descriptor_exhaustion_at_each_step_of_a_spawn() {
    let out = in_child("emfile", None);
    eprintln!("{out}");
}

/// The same, for spawns that build their root inline (no skeleton ready:
/// the preparation thread is slow, or its build failed in the same
/// exhaustion). The host clones the system paths such a root binds; one it
/// cannot clone for want of a descriptor fails the spawn there, naming the
/// path, rather than sending the cell's init to bind it by name, which only
/// a clone from the host can do: every spawn that gets as far is still
/// served by the spawner.
#[test]
fn descriptor_exhaustion_at_each_step_of_a_spawn_with_its_root_built_inline() {
    let out = in_child("emfile-inline", None);
    eprintln!("{out}");
}

/// The same for spawns from a pool of cells made ahead: each step of
/// handing a ready cell its job meets EMFILE in turn. A failure names the
/// step; the pool makes up for any cell it lost and is full again, with as
/// many cells, descriptors and cgroups as before; a success runs the job
/// once, in a cell made ahead.
#[test]
fn descriptor_exhaustion_at_each_step_of_a_spawn_from_a_pool() {
    let out = in_child("emfile-pool", None);
    eprintln!("{out}");
}

pub(super) fn emfile_at_each_step() {
    // A soft limit that is cheap to fill; set before jobcell starts anything.
    set_nofile(512, 4096);
    let (sb, cmd, data) = emfile_job();
    // The spawn path each sweep takes depends on what the preparation
    // thread holds ready (a network namespace, a skeleton), which the
    // exhaustion also hits: a sweep may step over the last descriptor a
    // spawn takes. What every step must do is checked in each sweep; that
    // the spawner's answer is among them, in one of a few.
    let mut all = BTreeMap::new();
    for round in 0..3 {
        let failures = sweep(&sb, &cmd);
        assert!(
            failures.len() >= 5,
            "too few distinct steps hit: {failures:?}"
        );
        all.extend(failures);
        if all
            .keys()
            .any(|e| e.contains("receive the cell from the spawner"))
        {
            println!("the spawner's answer was hit in sweep {round}");
            break;
        }
    }
    // The step the sweep is for: the spawner cloned the cell, and its answer
    // (with the cell's pidfd) could not be received.
    assert!(
        all.keys()
            .any(|e| e.contains("receive the cell from the spawner")),
        "the sweep never hit the spawner's answer: {all:?}"
    );
    drop(data);
}

pub(super) fn emfile_inline_at_each_step() {
    set_nofile(512, 4096);
    // As a program that spawns again, whose skeleton builds fail: every
    // spawn builds its root inline.
    jobcell::__private::want_work_ahead();
    jobcell::__private::fail_skeletons(true);
    let (sb, cmd, data) = emfile_job();
    let failures = sweep(&sb, &cmd);
    assert!(
        failures.len() >= 5,
        "too few distinct steps hit: {failures:?}"
    );
    assert!(
        failures.keys().any(|e| e.contains("system path")),
        "no spawn failed at the clone of a system path: {failures:?}"
    );
    assert!(
        failures
            .keys()
            .any(|e| e.contains("receive the cell from the spawner")),
        "the sweep never hit the spawner's answer: {failures:?}"
    );
    assert!(
        !failures.keys().any(|e| e.starts_with("clone3")),
        "a spawn was cloned from the host: {failures:?}"
    );
    drop(data);
}

/// A sandbox that binds a host directory and sets limits, and a job that
/// reads the directory and its stdin.
fn emfile_job() -> (Sandbox, Command, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("f"), "data\n").unwrap();
    let mut sb = Sandbox::new();
    sb.bind_ro(data.path(), "/data").limits(Limits {
        pids: Some(64),
        memory: Some(256 << 20),
        ..Default::default()
    });
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "cat /data/f; cat"])
        .stdin(Stdin::bytes("in\n"));
    (sb, cmd, data)
}

/// Spawns `cmd` with every free descriptor but 0, 1, 2, ... taken, until it
/// has run four times; returns the errors met, each with how often.
fn sweep(sb: &Sandbox, cmd: &Command) -> BTreeMap<String, usize> {
    let expect = "data\nin\n";
    assert_eq!(collect(&sb.spawn(cmd).unwrap()).stdout, expect);
    healthy(sb).unwrap();
    let before = settled();
    let cgroups_before = job_cgroups();

    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    let mut successes = 0;
    for free in 0..160 {
        successes += usize::from(spawn_leaving(free, expect, &mut failures, || sb.spawn(cmd)));
        nothing_left(
            &before,
            &cgroups_before,
            &format!("{free} descriptors free"),
        );
        recovers_within_a_second(&format!("after {free} free descriptors"), || healthy(sb));
        nothing_left(&before, &cgroups_before, &format!("{free} free, after"));
        if successes >= 4 {
            break;
        }
    }
    println!("failures by step:");
    for (e, n) in &failures {
        println!("  {n:3}  {e}");
    }
    assert!(successes >= 4, "the spawn never succeeded again");
    failures
}

pub(super) fn emfile_pool_at_each_step() {
    set_nofile(512, 4096);
    let (sb, cmd, data) = emfile_job();
    let expect = "data\nin\n";
    let pool = sb.prepare(2).unwrap();
    let full = |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while pool.ready() < 2 {
            assert!(
                Instant::now() < deadline,
                "{what}: the pool never filled again"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    assert_eq!(collect(&pool.spawn(&cmd).unwrap()).stdout, expect);
    healthy(&sb).unwrap();
    full("warm-up");
    // Ready cells come and go (new pids, new cgroups): what must not change
    // is how many of each a full pool holds.
    let counts = || {
        let s = settled();
        (
            s.fds.len(),
            s.descendants.len(),
            job_cgroups().len(),
            s.mounts,
        )
    };
    let before = counts();

    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    let mut successes = 0;
    let (taken_before, _) = jobcell::__private::pool_counts(&pool);
    for free in 0..160 {
        successes += usize::from(spawn_leaving(free, expect, &mut failures, || {
            pool.spawn(&cmd)
        }));
        recovers_within_a_second(&format!("after {free} free descriptors"), || healthy(&sb));
        full(&format!("{free} free"));
        let deadline = Instant::now() + Duration::from_secs(5);
        while counts() != before {
            assert!(
                Instant::now() < deadline,
                "{free} free: (descriptors, processes, job cgroups, mounts) {:?} != {:?}",
                counts(),
                before
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        if successes >= 4 {
            break;
        }
    }
    println!("failures by step:");
    for (e, n) in &failures {
        println!("  {n:3}  {e}");
    }
    assert!(successes >= 4, "the spawn never succeeded again");
    assert!(
        failures.len() >= 3,
        "too few distinct steps hit: {failures:?}"
    );
    let (taken, _) = jobcell::__private::pool_counts(&pool);
    assert!(
        taken - taken_before >= 4,
        "the jobs that ran took no cell made ahead"
    );
    drop(data);
}

/// Spawns with every free descriptor but `free` taken: true if the job ran
/// (and printed `expect`); otherwise the spawn failed with EMFILE, counted
/// in `failures` by its message.
fn spawn_leaving(
    free: usize,
    expect: &str,
    failures: &mut BTreeMap<String, usize>,
    spawn: impl FnOnce() -> jobcell::Result<jobcell::JobHandle>,
) -> bool {
    let fill = Fill::leaving(free);
    let spawned = spawn();
    drop(fill);
    match spawned {
        Ok(job) => {
            let ran = collect(&job);
            assert_eq!(ran.stdout, expect, "{free} free: {:?}", ran.outcome);
            println!("{free:3} free: ran");
            true
        }
        Err(e) => {
            let text = e.to_string();
            assert!(is_emfile(&e), "{free} free: not an EMFILE error: {text}");
            println!("{free:3} free: {text}");
            *failures.entry(text).or_default() += 1;
            false
        }
    }
}
