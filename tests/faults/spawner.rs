//! The spawner killed between spawns and at each step of serving one,
//! and a spawner that hangs.

use super::*;

// The spawner.

#[test]
fn a_spawner_killed_between_spawns_is_replaced() {
    in_child("killed-spawner", None);
}

pub(super) fn killed_spawner_between_spawns() {
    let sb = Sandbox::new();
    healthy(&sb).unwrap();
    for round in 0..3 {
        let pid = kill_spawner();
        let before = settled();
        let cgroups_before = job_cgroups();
        let ran = sh(&sb, "echo ran");
        assert_eq!(ran.stdout, "ran\n", "round {round}");
        nothing_left(&before, &cgroups_before, "after a killed spawner");
        recovers_within_a_second("a new spawner", || healthy(&sb));
        assert_ne!(jobcell::__private::spawner_pid(), Some(pid));
    }
}

/// The spawner killed (SIGKILL) at each step of serving a spawn. Before it
/// cloned, the spawn goes on without it (the host clones the cell); after,
/// the host finds the cell through the pid the clone stored in the status
/// page and takes it over (it may be running its job already), never
/// cloning a second one. Either way the job runs exactly once, nothing is
/// left (not even a zombie), and the next spawn works, from a new spawner.
#[test]
fn a_spawner_killed_at_each_step_leaves_nothing() {
    in_child("spawner-steps", None);
}

pub(super) fn spawner_killed_at_each_step() {
    let sb = Sandbox::new();
    healthy(&sb).unwrap();
    let mut limited = Sandbox::new();
    limited.limits(Limits {
        pids: Some(32),
        ..Default::default()
    });
    for base in [&sb, &limited] {
        for step in [
            SpawnerStep::OnReceipt,
            SpawnerStep::BeforeClone,
            SpawnerStep::AfterClone,
            SpawnerStep::BeforeAnswer,
        ] {
            let before = settled();
            let cgroups_before = job_cgroups();
            let old = jobcell::__private::spawner_pid();
            let mut faulty = base.clone();
            inject(&mut faulty, Fault::KillSpawner(step));
            let what = format!("spawner killed {step:?}");
            // The job counts its runs in a file the host reads after.
            let dir = tempfile::tempdir().unwrap();
            std::fs::set_permissions(
                dir.path(),
                std::os::unix::fs::PermissionsExt::from_mode(0o777),
            )
            .unwrap();
            faulty.bind_rw(dir.path(), "/count");
            let job = faulty
                .spawn(Command::new("sh").args(["-c", "echo x >> /count/runs; echo ran"]))
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            // Run once: no second cell, no lost output.
            assert_eq!(collect(&job).stdout, "ran\n", "{what}");
            let runs = std::fs::read_to_string(dir.path().join("runs")).unwrap();
            assert_eq!(runs, "x\n", "{what}");
            nothing_left(&before, &cgroups_before, &what);
            recovers_within_a_second(&what, || healthy(base));
            assert_ne!(
                jobcell::__private::spawner_pid(),
                old,
                "{what}: same spawner"
            );
        }
    }
}

/// A spawner that hangs: the spawn gives up at the setup timeout, naming
/// the clone, kills it (and a cell it may have made), and the next spawn
/// gets a new one.
#[test]
fn a_hung_spawner_times_out_at_the_clone() {
    in_child("hung-spawner", None);
}

pub(super) fn hung_spawner() {
    let mut sb = Sandbox::new();
    healthy(&sb).unwrap();
    let before = settled();
    let cgroups_before = job_cgroups();
    sb.setup_timeout(Duration::from_millis(300));
    let mut hung = sb.clone();
    inject(&mut hung, Fault::HangSpawner);
    let t = Instant::now();
    let e = hung.spawn(&Command::new("true")).unwrap_err();
    assert!(
        matches!(
            e,
            Error::SetupTimeout {
                stage: Stage::Clone,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    nothing_left(&before, &cgroups_before, "a hung spawner");
    recovers_within_a_second("after a hung spawner", || healthy(&sb));
}
