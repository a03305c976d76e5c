//! The unprivileged path: a caller without root maps only its own ids.
//! The test re-runs itself as `nobody` (so it needs root to start).

use std::os::unix::process::CommandExt;

const CHILD: &str = "JOBCELL_UNPRIVILEGED_CHILD";

#[test]
fn an_unprivileged_caller_maps_its_single_id() {
    if std::env::var_os(CHILD).is_some() {
        return child();
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to become nobody");
        return;
    }
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    // std drops root's supplementary groups when it switches to another uid.
    let out = cmd
        .args([
            "--exact",
            "an_unprivileged_caller_maps_its_single_id",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .current_dir("/")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("CHILD-OK"), "{text}");
}

fn child() {
    use jobcell::{Command, Sandbox, Stream};
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 65534);
    assert_eq!(
        Sandbox::new().host_ids().unwrap(),
        (65534, 65534),
        "the job runs as the caller"
    );
    let job = Sandbox::new()
        .spawn(Command::new("sh").args([
            "-c",
            "id -u; id -g; cat /proc/self/uid_map; echo /proc/[0-9]*; hostname; cat /proc/net/dev | grep -c ':'",
        ]))
        .expect("an unprivileged cell");
    // Cells come from the spawner here too (it needs no privilege).
    assert!(
        jobcell::__private::spawner_pid().is_some(),
        "{}",
        jobcell::host::check()
    );
    let out: Vec<u8> = job
        .logs()
        .filter(|c| c.stream == Stream::Stdout)
        .flat_map(|c| c.data.to_vec())
        .collect();
    let outcome = job.wait().unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(outcome.success(), "{outcome:?} {out}");
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "1000");
    assert_eq!(l[1], "1000");
    let map: Vec<&str> = l[2].split_whitespace().collect();
    assert_eq!(map, ["1000", "65534", "1"]);
    assert_eq!(l[3], "/proc/1 /proc/2");
    assert_eq!(l[4], "jobcell");
    assert_eq!(l[5], "1", "only loopback: {out}");
    // A job killed by its wall-time limit reports its own CPU time here too,
    // where there is no cgroup to ask.
    let mut sb = Sandbox::new();
    sb.limits(jobcell::Limits {
        wall_time: Some(std::time::Duration::from_millis(1200)),
        ..Default::default()
    });
    let o = sb
        .spawn(Command::new("sh").args(["-c", "while :; do :; done"]))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(
        o.state,
        jobcell::JobState::TimedOut(jobcell::TimeLimit::Wall)
    );
    assert!(
        o.usage.is_none(),
        "no cgroup for an unprivileged caller here"
    );
    assert!(
        o.rusage.cpu_time() >= std::time::Duration::from_millis(400),
        "{:?}",
        o.rusage
    );
    println!("CHILD-OK");
}
