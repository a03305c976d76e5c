//! Resource limits and usage through real cgroups (run as root).
//!
//! The same tests run on this host's cgroup v1 (hybrid) hierarchy and, via
//! `.ci/v2vm-tests`, on a pure cgroup v2 kernel. Every assertion comes from the
//! public API: the job's `Outcome`, its `usage()`, and its output.
//!
//! Environment:
//! - `JOBCELL_TEST_HELPER`: a prebuilt static `tests/helper/jc-helper.c`
//!   (else it is compiled here with `cc -static`);
//! - `JOBCELL_TEST_IO_DIR`: a directory on a real block device for the IO
//!   test (else `/var/tmp`, if that is not a tmpfs).
//!
//! `limits`: what a job's cgroup enforces; `lifecycle`: a job's cgroup from
//! creation to removal; `bases`: where job cgroups live. The helpers they
//! share are here.

mod bases;
#[path = "../common/mod.rs"]
mod common;
mod lifecycle;
mod limits;

use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use jobcell::{Command, Error, Exit, JobHandle, JobState, Limits, Outcome, Sandbox, TimeLimit};

const MIB: u64 = 1 << 20;

/// The static helper program, bound into every cell at `/jc-helper`.
fn helper() -> &'static Path {
    static HELPER: OnceLock<PathBuf> = OnceLock::new();
    HELPER.get_or_init(|| {
        common::static_helper("jc-helper.c", "jc-helper", "JOBCELL_TEST_HELPER", &[])
    })
}

fn sandbox(limits: Limits) -> Sandbox {
    let mut s = Sandbox::new();
    s.bind_ro(helper(), "/jc-helper").limits(limits);
    s
}

fn run(sandbox: &Sandbox, args: &[&str]) -> (Outcome, String) {
    let job = sandbox
        .spawn(Command::new(args[0]).args(&args[1..]))
        .expect("spawn");
    let out = output(&job);
    (job.wait().expect("wait"), out)
}

fn output(job: &JobHandle) -> String {
    job.logs()
        .map(|c| String::from_utf8_lossy(&c.data).into_owned())
        .collect()
}

fn wait_gone(name: &str) -> Vec<PathBuf> {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let left = common::cgroup_dirs_named(name);
        if left.is_empty() || Instant::now() > end {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn is_v2() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .all(|l| !l.contains(" - cgroup cgroup "))
}

/// The default base in one hierarchy, as jobcell computes it.
fn default_base() -> PathBuf {
    let cg = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let (root, own) = if is_v2() {
        let own = cg
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .unwrap()
            .to_owned();
        ("/sys/fs/cgroup".to_owned(), own)
    } else {
        let own = cg
            .lines()
            .find_map(|l| l.split_once(":pids:").map(|(_, p)| p.to_owned()))
            .unwrap();
        ("/sys/fs/cgroup/pids".to_owned(), own)
    };
    let mut own = PathBuf::from(root).join(own.trim_start_matches('/'));
    if own.ends_with("jobcell-supervisor") {
        own.pop();
    }
    own.join("jobcell")
}
