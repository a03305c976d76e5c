//! What `docs/recipes.md` says about systemd and containers, checked as far
//! as this machine allows: the unit file through `systemd-analyze verify`,
//! and the mounts and capabilities those setups leave a service, rebuilt
//! in a private mount namespace of the test's own (the host's mounts and
//! cgroups are left alone). The Rust recipes are doc tests (`src/lib.rs`).

mod support;

use std::path::Path;
use std::process::{Command, Output};

fn recipes() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/recipes.md")).unwrap()
}

/// The body of the first block of `lang` after the heading `heading`.
fn block(text: &str, heading: &str, lang: &str) -> String {
    let at = text.find(heading).expect("the heading");
    let open = format!("```{lang}\n");
    let start = at + text[at..].find(&open).expect("the block") + open.len();
    let len = text[start..].find("```").expect("the block's end");
    text[start..start + len].to_string()
}

fn found(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_systemd_unit_verifies() {
    if !found("systemd-analyze") {
        eprintln!("skipped: no systemd-analyze on this machine");
        return;
    }
    let unit = block(&recipes(), "## Under systemd", "ini");
    for key in ["Delegate=yes", "LimitNOFILE=", "KillMode=mixed"] {
        assert!(unit.contains(key), "{key} in {unit}");
    }
    // The unit's program, replaced by one that exists here.
    let run = support::example("run");
    let unit = unit.replace(
        "ExecStart=/usr/local/bin/judge",
        &format!("ExecStart={}", run.display()),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("judge.service");
    std::fs::write(&path, &unit).unwrap();
    let o = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        o.stderr.is_empty(),
        "every key is known to systemd: {}",
        text(&o)
    );
    // A misspelt key is caught: the check can fail.
    std::fs::write(&path, unit.replace("Delegate=yes", "Delegat=yes")).unwrap();
    let o = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(text(&o).contains("Delegat"), "{}", text(&o));
}

/// Runs `script` (with `$RUN`, the run example) in a private mount
/// namespace (and PID namespace, for a /proc of its own), after `setup`,
/// with the capability bounding set reduced to `keep` when given.
fn in_private_mounts(setup: &str, script: &str, keep: Option<&[&str]>, pid_ns: bool) -> Output {
    let script = match keep {
        Some(caps) => format!(
            "setpriv --bounding-set -all,{} -- sh -c '{}'",
            caps.iter()
                .map(|c| format!("+{c}"))
                .collect::<Vec<_>>()
                .join(","),
            script.replace('\'', r"'\''")
        ),
        None => script.to_string(),
    };
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private"]);
    if pid_ns {
        cmd.args(["-p", "-f"]);
    }
    cmd.args(["sh", "-c", &format!("set -e; {setup}; {script}")])
        .env("RUN", support::example("run"));
    cmd.output().unwrap()
}

#[test]
fn cells_start_under_the_systemd_proc_protections() {
    // ProtectKernelTunables=yes: /proc/sys (among others) read-only.
    let o = in_private_mounts(
        "mount --bind -o ro /proc/sys /proc/sys",
        "\"$RUN\" -- sh -c 'echo in-cell'",
        None,
        false,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("in-cell"), "{}", text(&o));
    // ProtectProc=invisible, ProcSubset=pid: the service's /proc mounted
    // with hidepid=invisible or subset=pid.
    for option in ["hidepid=invisible", "subset=pid"] {
        let o = in_private_mounts(
            &format!("mount -t proc -o {option} proc /proc"),
            "\"$RUN\" -- sh -c 'echo /proc/[0-9]*'",
            None,
            true,
        );
        assert!(o.status.success(), "{option}: {}", text(&o));
        assert!(
            text(&o).contains("/proc/1 /proc/2"),
            "{option}: {}",
            text(&o)
        );
    }
}

/// The capabilities Docker leaves a container's root.
const DOCKER_CAPS: [&str; 14] = [
    "chown",
    "dac_override",
    "fsetid",
    "fowner",
    "mknod",
    "net_raw",
    "setgid",
    "setuid",
    "setfcap",
    "setpcap",
    "net_bind_service",
    "sys_chroot",
    "kill",
    "audit_write",
];

#[test]
fn as_in_docker_without_privileged() {
    // Docker masks parts of /proc, makes others read-only, and mounts the
    // cgroupfs read-only; here in a private mount namespace.
    let setup = "mount --bind /dev/null /proc/keys; mount --bind /dev/null /proc/timer_list; \
                 mount --bind -o ro /proc/sys /proc/sys; \
                 for m in $(awk '$3 == \"cgroup\" || $3 == \"cgroup2\" {print $2}' /proc/self/mounts); do \
                 mount -o remount,bind,ro \"$m\"; done";
    let mut caps = DOCKER_CAPS.to_vec();
    caps.extend(["sys_admin", "net_admin"]);
    let o = in_private_mounts(
        setup,
        "\"$RUN\" --trusted -- sh -c 'echo in-cell'; \
         if \"$RUN\" true; then echo limits-ran; else echo limits-refused=$?; fi",
        Some(&caps),
        false,
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("in-cell"), "{out}");
    assert!(out.contains("limits-refused=125"), "{out}");
    assert!(out.contains("EROFS"), "the cgroupfs is read-only: {out}");
    // Without --cap-add SYS_ADMIN no cell starts.
    let o = in_private_mounts(
        setup,
        "if \"$RUN\" --trusted true; then echo started; else echo refused=$?; fi",
        Some(&DOCKER_CAPS),
        false,
    );
    assert!(text(&o).contains("refused=125"), "{}", text(&o));
    assert!(text(&o).contains("EPERM"), "{}", text(&o));
}
