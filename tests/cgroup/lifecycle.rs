//! A job's cgroup from creation to removal: its usage figures, a fresh
//! cgroup per job, only the controllers needed, and nothing left after a
//! kill, a drop, a failed spawn or many jobs at once.

use super::*;

#[test]
fn usage_of_half_a_second_of_cpu() {
    let _g = common::shared();
    let sb = sandbox(Limits::default());
    let job = sb
        .spawn(Command::new("/jc-helper").args(["burn", "500"]))
        .unwrap();
    assert!(job.usage().is_some(), "live usage of a job without limits");
    let o = job.wait().unwrap();
    assert!(o.success(), "{o:?}");
    let u = o
        .usage
        .expect("a job without limits still gets a cgroup here");
    let cpu = u.cpu_total().as_secs_f64();
    eprintln!("burn 500 ms: {u:?}");
    assert!((0.45..=2.0).contains(&cpu), "{u:?}");
    assert!(u.cpu_user > u.cpu_system, "{u:?}");
    assert!(u.memory_peak.is_none_or(|p| p > 0), "{u:?}");
    assert_eq!(job.usage(), Some(u), "the final usage stays readable");
}

#[test]
fn no_cgroup_survives_a_killed_or_dropped_job() {
    let _g = common::shared();
    let sb = sandbox(Limits {
        pids: Some(16),
        ..Default::default()
    });
    let cmd = Command::new("/jc-helper").args(["spin", "30000"]).clone();

    let job = sb.spawn(&cmd).unwrap();
    let id = job.id().to_string();
    assert!(
        !common::cgroup_dirs_named(&id).is_empty(),
        "the job has a cgroup"
    );
    job.kill().unwrap();
    assert_eq!(job.wait().unwrap().state, JobState::Stopped);
    assert_eq!(common::cgroup_dirs_named(&id), Vec::<PathBuf>::new());

    let job = sb.spawn(&cmd).unwrap();
    let id = job.id().to_string();
    assert!(!common::cgroup_dirs_named(&id).is_empty());
    drop(job);
    assert_eq!(wait_gone(&id), Vec::<PathBuf>::new());
}

#[test]
fn parallel_jobs_create_and_remove_their_cgroups_safely() {
    let _g = common::shared();
    let sb = sandbox(Limits {
        pids: Some(8),
        memory: Some(32 * MIB),
        ..Default::default()
    });
    let ids: Vec<String> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    (0..4)
                        .map(|_| {
                            let job = sb.spawn(&Command::new("true")).unwrap();
                            assert!(job.wait().unwrap().success());
                            job.id().to_string()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    });
    for id in ids {
        assert_eq!(common::cgroup_dirs_named(&id), Vec::<PathBuf>::new());
    }
}

/// Every job gets a fresh cgroup, whether made for it or ahead of it (v1
/// keeps a few empty directories ready and renames one to the job's id):
/// no job sees another's usage. A job that OOMs at its limit and leaves
/// 200 processes' worth of pids history is followed by tiny jobs whose
/// peaks and kill counts start from nothing.
#[test]
fn each_job_starts_from_a_fresh_cgroup() {
    let _g = common::shared();
    let limit = 64 * MIB;
    let sb = sandbox(Limits {
        memory: Some(limit),
        pids: Some(256),
        ..Default::default()
    });
    let (o, out) = run(&sb, &["/jc-helper", "mem", "512"]);
    assert!(o.oom_killed, "{o:?} {out}");
    let (o, _) = run(
        &sb,
        &["sh", "-c", "for i in $(seq 200); do sleep 1 & done; wait"],
    );
    let busy = o.usage.expect("usage");
    assert!(busy.pids_peak.is_none_or(|p| p >= 100), "{busy:?}");
    for _ in 0..6 {
        let (o, out) = run(&sb, &["true"]);
        assert!(o.success(), "{o:?} {out}");
        let u = o.usage.expect("usage");
        assert_eq!(u.oom_kills, 0, "{u:?}");
        assert!(!o.oom_killed);
        assert!(
            u.memory_peak.is_none_or(|p| p < 16 * MIB),
            "a tiny job's peak {u:?}"
        );
        assert!(u.pids_peak.is_none_or(|p| p <= 4), "{u:?}");
        assert!(
            u.cpu_user + u.cpu_system < Duration::from_millis(200),
            "{u:?}"
        );
    }
    if !is_v2() {
        // The mechanism on v1: ready directories wait in this process's own
        // (once the background work that makes them has settled).
        jobcell::__private::cached_descriptors();
        let own = default_base()
            .join(format!("{}-", std::process::id()))
            .to_string_lossy()
            .into_owned();
        let ready = std::fs::read_dir(default_base())
            .unwrap()
            .flatten()
            .filter(|e| e.path().to_string_lossy().starts_with(&own))
            .flat_map(|e| std::fs::read_dir(e.path()).unwrap().flatten())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".ready-"))
            .count();
        assert!(ready > 0, "no ready directory in the pids hierarchy");
    }
}

/// Without accounting, a job with limits joins only the controllers its
/// limits need: on v1 its directories are in the memory and pids
/// hierarchies only, and its figures are those controllers' (CPU time and
/// IO read 0; CPU time still comes from `cpu.stat` on v2).
#[test]
fn without_accounting_only_the_limits_controllers_are_joined() {
    let _g = common::shared();
    let mut sb = sandbox(Limits {
        memory: Some(64 * MIB),
        pids: Some(16),
        ..Default::default()
    });
    sb.accounting(false);
    let job = sb
        .spawn(Command::new("/jc-helper").args(["spin", "300"]))
        .unwrap();
    let id = job.id().to_string();
    let dirs = common::cgroup_dirs_named(&id);
    if !is_v2() {
        let mut hierarchies: Vec<String> = dirs
            .iter()
            .map(|d| {
                d.strip_prefix("/sys/fs/cgroup")
                    .unwrap()
                    .iter()
                    .next()
                    .unwrap()
            })
            .map(|h| h.to_string_lossy().into_owned())
            .collect();
        hierarchies.sort();
        assert_eq!(hierarchies, ["memory", "pids"], "{dirs:?}");
    } else {
        assert_eq!(dirs.len(), 1, "{dirs:?}");
    }
    let o = job.wait().unwrap();
    assert!(o.success(), "{o:?}");
    let u = o.usage.expect("a job with limits has usage figures");
    assert!(u.memory_peak.is_some_and(|p| p > 0), "{u:?}");
    assert!(u.pids_peak.is_none_or(|p| p >= 1), "{u:?}");
    if !is_v2() {
        assert_eq!(
            u.cpu_user + u.cpu_system,
            Duration::ZERO,
            "no cpuacct: {u:?}"
        );
    }
    assert_eq!(common::cgroup_dirs_named(&id), Vec::<PathBuf>::new());
}

/// A spawn that fails after its cgroup was made (here: no such program)
/// leaves no directory behind, ready directories taken for it included.
#[test]
fn a_failed_spawn_leaves_no_cgroup_directory() {
    // Counts and kills below must not see another test's jobs mid-way.
    let _g = common::exclusive();
    let sb = sandbox(Limits {
        memory: Some(64 * MIB),
        pids: Some(16),
        ..Default::default()
    });
    let (o, _) = run(&sb, &["true"]);
    assert!(o.success());
    jobcell::__private::cached_descriptors();
    let count = || {
        let own = format!("{}-", std::process::id());
        std::fs::read_dir(default_base())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&own))
            .flat_map(|e| std::fs::read_dir(e.path()).unwrap().flatten())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            // Ready directories come and go with the process's demand
            // (made ahead while it spawns, given back when it idles).
            .filter(|e| !e.file_name().to_string_lossy().starts_with(".ready-"))
            .count()
    };
    let before = count();
    for _ in 0..6 {
        let Err(e) = sb.spawn(&Command::new("/no/such/program")) else {
            panic!("no such program, yet it spawned");
        };
        assert!(e.to_string().contains("/no/such/program"), "{e}");
    }
    jobcell::__private::cached_descriptors();
    assert_eq!(count(), before, "directories in the pids hierarchy");
}
