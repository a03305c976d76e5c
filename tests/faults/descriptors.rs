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

pub(super) fn emfile_at_each_step() {
    // A soft limit that is cheap to fill; set before jobcell starts anything.
    set_nofile(512, 4096);
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
    let expect = "data\nin\n";
    assert_eq!(collect(&sb.spawn(&cmd).unwrap()).stdout, expect);
    healthy(&sb).unwrap();
    let before = settled();
    let cgroups_before = job_cgroups();

    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    let mut successes = 0;
    for free in 0..96 {
        let fill = Fill::leaving(free);
        let spawned = sb.spawn(&cmd);
        drop(fill);
        match spawned {
            Ok(job) => {
                let ran = collect(&job);
                assert_eq!(ran.stdout, expect, "{free} free: {:?}", ran.outcome);
                println!("{free:3} free: ran");
                successes += 1;
            }
            Err(e) => {
                let text = e.to_string();
                assert!(is_emfile(&e), "{free} free: not an EMFILE error: {text}");
                println!("{free:3} free: {text}");
                *failures.entry(text).or_default() += 1;
            }
        }
        nothing_left(
            &before,
            &cgroups_before,
            &format!("{free} descriptors free"),
        );
        recovers_within_a_second(&format!("after {free} free descriptors"), || healthy(&sb));
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
    assert!(
        failures.len() >= 5,
        "too few distinct steps hit: {failures:?}"
    );
    // The step the sweep is for: the spawner cloned the cell, and its answer
    // (with the cell's pidfd) could not be received.
    assert!(
        failures
            .keys()
            .any(|e| e.contains("receive the cell from the spawner")),
        "the sweep never hit the spawner's answer: {failures:?}"
    );
}
