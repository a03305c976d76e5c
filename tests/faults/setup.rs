//! A setup step that stalls until the setup timeout, and transient faults
//! that must not outlive themselves.

use super::*;

// Setup that stalls.

/// A cell whose setup stalls at a stage (a test hook holds it there, as a
/// hung bind source or file system would) is killed at the setup timeout;
/// the error names the stage (and, for the root, the step). Nothing is
/// left, and the next spawn works.
#[test]
fn a_stalled_setup_is_killed_at_the_timeout_naming_the_stage() {
    let _g = common::exclusive();
    let data = tempfile::tempdir().unwrap();
    let mut sb = Sandbox::new();
    sb.bind_ro(data.path(), "/data").limits(Limits {
        pids: Some(32),
        ..Default::default()
    });
    sb.setup_timeout(Duration::from_millis(300));
    assert!(sh(&sb, "true").outcome.success());
    let before = settled();
    let cgroups_before = job_cgroups();
    for stage in [
        Stage::CloseFds,
        Stage::WaitForHost,
        Stage::CgroupNamespace,
        Stage::BuildRoot,
        Stage::PivotRoot,
        Stage::DetachOldRoot,
        Stage::ForkJob,
        Stage::Rlimits,
        Stage::SetUser,
        Stage::Chdir,
        Stage::Exec,
    ] {
        let mut stalled = sb.clone();
        inject(&mut stalled, Fault::StallAt(stage));
        let t = Instant::now();
        let e = stalled.spawn(&Command::new("true")).unwrap_err();
        let took = t.elapsed();
        match &e {
            Error::SetupTimeout {
                stage: s,
                detail,
                timeout,
            } => {
                assert_eq!(*s, stage, "{e}");
                assert_eq!(*timeout, Duration::from_millis(300));
                if stage == Stage::BuildRoot {
                    assert!(!detail.is_empty(), "{e}");
                }
                if stage == Stage::Exec {
                    assert!(detail.ends_with("/true"), "{e}");
                }
            }
            _ => panic!("{stage:?}: {e}"),
        }
        assert!(e.to_string().contains(&stage.to_string()), "{e}");
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(5),
            "{stage:?}: {took:?}"
        );
        nothing_left(&before, &cgroups_before, &format!("stalled at {stage:?}"));
        assert_eq!(sh(&sb, "echo ok").stdout, "ok\n", "after {stage:?}");
    }
    let mut zero = Sandbox::new();
    zero.setup_timeout(Duration::ZERO);
    let e = zero.spawn(&Command::new("true")).unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidSetting {
                name: "setup_timeout",
                ..
            }
        ),
        "{e}"
    );
}

// A slow preparation thread.

/// A preparation thread slowed down (a loaded machine, a queue of builds):
/// a spawn that wants the root skeleton waits a quarter of its setup time
/// for it, then builds its root inline. It never fails for the delay, and
/// the spawner still serves it (its init holds none of the host's memory).
#[test]
fn a_slow_skeleton_costs_a_spawn_its_skeleton_not_its_setup() {
    in_child("slow-skeletons", Some(&super::host::fresh_marker()));
}

pub(super) fn slow_skeletons() {
    let marker = std::env::var(super::MARKER).unwrap();
    jobcell::__private::delay_skeletons(Duration::from_secs(4));
    // As a program that spawns again: the skeleton is wanted, and late.
    jobcell::__private::want_work_ahead();
    let mut sb = Sandbox::new();
    sb.setup_timeout(Duration::from_millis(800));
    for _ in 0..3 {
        let out = sh(
            &sb,
            "cat /etc/hostname && test -x /usr/bin/true && echo > /dev/null && echo ok",
        );
        let seen = format!("{:?} {:?} {:?}", out.outcome, out.stdout, out.stderr);
        assert!(
            out.outcome.success() && out.stdout.ends_with("ok\n"),
            "{seen}"
        );
    }
    let job = sb.spawn(Command::new("sleep").arg("10")).unwrap();
    let init = job.pid().unwrap();
    assert!(
        jobcell::__private::spawner_pid().is_some(),
        "no spawner runs"
    );
    assert!(
        !super::host::memory_holds(init, marker.as_bytes()),
        "a cell with its root built inline was cloned from the host"
    );
    let report = jobcell::host::check_sections(&[jobcell::host::SectionKind::Kernel]);
    println!("skeletons: {:?}", report.find("root skeletons"));
}

// Transient faults.

/// A moment of descriptor exhaustion that every helper meets: the
/// preparation thread's workspace for skeletons, its refill of the network
/// namespace pool, the spawner's (re)start. Each reports the failure in
/// `host::check` while it lasts; once it ends, spawns succeed within a
/// second, from a spawner, every helper healthy again.
#[test]
fn a_transient_fault_does_not_outlive_itself() {
    eprintln!("{}", in_child("transient-faults", None));
}

pub(super) fn transient_faults_pass() {
    set_nofile(512, 4096);
    let helpers = ["spawner", "network namespace pool", "root skeletons"];
    let warned = |report: &jobcell::host::HostReport, name: &str| {
        report
            .find(name)
            .is_some_and(|c| c.status == jobcell::host::Status::Warning)
    };
    let sb = Sandbox::new();
    // Nothing has run yet: every helper starts under the fault, which
    // lasts long enough for many failures in a row (the longest delay).
    let fill = Fill::leaving(0);
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        // Starts what is missing and waits for the work ahead, for real.
        assert_eq!(jobcell::__private::spawner_pid(), None);
        // As a program that spawns again: its caches are wanted.
        jobcell::__private::want_work_ahead();
        jobcell::__private::cached_descriptors();
        match sb.spawn(&Command::new("true")) {
            Ok(_) => panic!("spawned with no descriptor left"),
            Err(e) => assert!(is_emfile(&e), "{e}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let report = jobcell::host::check_sections(&[jobcell::host::SectionKind::Kernel]);
    drop(fill);
    for name in helpers {
        println!("during the fault: {:?}", report.find(name));
        assert!(warned(&report, name), "{name}: {:?}", report.find(name));
    }
    assert!(
        report
            .find("spawner")
            .is_some_and(|c| c.detail.contains("times in a row")),
        "{:?}",
        report.find("spawner")
    );
    recovers_within_a_second("after the fault", || {
        healthy(&sb)?;
        let report = jobcell::host::check_sections(&[jobcell::host::SectionKind::Kernel]);
        match helpers.into_iter().find(|n| warned(&report, n)) {
            Some(n) => Err(format!("{n}: {:?}", report.find(n))),
            None => Ok(()),
        }
    });
    let report = jobcell::host::check_sections(&[jobcell::host::SectionKind::Kernel]);
    for name in helpers {
        println!("after: {:?}", report.find(name));
    }
}
