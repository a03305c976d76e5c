//! `jobcell::host::check` on this machine, and `run --check`, the report's face.

mod support;

use std::process::Command;

use jobcell::host::{check, check_sections, SectionKind, Status};

/// Whether this host mounts cgroup v1 resource controllers (then it is v1 or hybrid).
fn v1_mounted() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(" - "))
        .any(|(_, r)| {
            r.starts_with("cgroup ")
                && ["memory", "cpu", "pids"]
                    .iter()
                    .any(|c| r.split([' ', ',']).any(|o| o == *c))
        })
}

#[test]
fn this_host_runs_cells_and_the_report_says_so() {
    let r = check();
    assert_ne!(r.status(), Status::Problem, "{r}");
    for name in [
        "user namespaces",
        "other namespaces",
        "id mapping",
        "mount namespace",
        "procfs",
        "pivot_root",
        "pidfd",
        "seccomp",
        "clone3",
        "cgroup write access",
    ] {
        let c = r
            .find(name)
            .unwrap_or_else(|| panic!("no check {name:?}:\n{r}"));
        assert_eq!(c.status, Status::Ok, "{name}: {c:?}");
    }
    let hierarchy = &r.find("cgroup hierarchy").unwrap().detail;
    if v1_mounted() {
        assert!(
            hierarchy.starts_with("hybrid") || hierarchy.starts_with("cgroup v1"),
            "{hierarchy}"
        );
    } else {
        assert!(hierarchy.starts_with("cgroup v2"), "{hierarchy}");
    }
    let kinds: Vec<SectionKind> = r.sections.iter().map(|s| s.kind).collect();
    assert_eq!(kinds, SectionKind::ALL);
    assert!(r.kernel.starts_with(char::is_numeric), "{}", r.kernel);
    // As root the cell gets a range, never host root.
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        let ids = &r.find("id mapping").unwrap().detail;
        assert!(ids.contains("cell ids 0.."), "{ids}");
    }
}

#[test]
fn one_section_at_a_time() {
    let r = check_sections(&[SectionKind::Filesystem, SectionKind::Cgroups]);
    let kinds: Vec<SectionKind> = r.sections.iter().map(|s| s.kind).collect();
    assert_eq!(
        kinds,
        [SectionKind::Cgroups, SectionKind::Filesystem],
        "report order"
    );
    assert!(r.find("user namespaces").is_none());
}

#[test]
fn run_check_prints_the_report() {
    let run = support::example("run");
    let out = Command::new(&run).arg("--check").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.starts_with("jobcell host check (kernel "), "{text}");
    for heading in [
        "\nkernel\n",
        "\nnamespaces\n",
        "\ncgroups\n",
        "\nfilesystem\n",
    ] {
        assert!(text.contains(heading), "{heading:?} in\n{text}");
    }
    assert!(text.contains("  ok       user namespaces"), "{text}");

    let out = Command::new(&run)
        .arg("--check-namespaces")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("\nnamespaces\n") && !text.contains("\ncgroups\n"),
        "{text}"
    );
    let out = Command::new(&run)
        .args(["--check-cgroups", "--check-filesystem"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("\ncgroups\n") && text.contains("\nfilesystem\n"),
        "{text}"
    );
    assert!(!text.contains("\nnamespaces\n"), "{text}");

    let out = Command::new(&run)
        .args(["--check", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["sections"].as_array().unwrap().len(), 4);
    assert_ne!(v["status"], "problem");
    assert_eq!(v["sections"][1]["checks"][0]["name"], "user namespaces");
}
