//! `GET /metrics`: Prometheus text (OpenMetrics) through `prometheus-client`.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use jobcell::{JobState, Stage};

type Labels = Vec<(&'static str, String)>;

pub struct Metrics {
    registry: Registry,
    pub jobs: Family<Labels, Gauge>,
    pub queued: Gauge,
    pub running: Gauge,
    pub submitted: Counter,
    pub spawn_seconds: Histogram,
    pub spawn_errors: Family<Labels, Counter>,
    pub stream_bytes: Family<Labels, Counter>,
    pub streams_open: Gauge,
    pub connections_open: Gauge,
    pub requests: Family<Labels, Counter>,
    pub deleted: Counter,
    pub collected_bytes: Counter<u64, AtomicU64>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("jobcell");
        let jobs = Family::<Labels, Gauge>::default();
        r.register("jobs", "Jobs the service knows, by state", jobs.clone());
        let queued = Gauge::default();
        r.register("queue_length", "Jobs waiting for a slot", queued.clone());
        let running = Gauge::default();
        r.register(
            "running",
            "Jobs holding a slot (starting or running)",
            running.clone(),
        );
        let submitted = Counter::default();
        r.register(
            "jobs_submitted",
            "Jobs accepted by POST /jobs",
            submitted.clone(),
        );
        let spawn_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        r.register_with_unit(
            "spawn",
            "From a job's start to its program running (cell setup included)",
            Unit::Seconds,
            spawn_seconds.clone(),
        );
        let spawn_errors = Family::<Labels, Counter>::default();
        r.register(
            "spawn_errors",
            "Jobs that failed before their program ran, by the stage that failed",
            spawn_errors.clone(),
        );
        let stream_bytes = Family::<Labels, Counter>::default();
        r.register_with_unit(
            "streamed",
            "Bytes of job output sent to clients, by format",
            Unit::Bytes,
            stream_bytes.clone(),
        );
        let streams_open = Gauge::default();
        r.register(
            "streams_open",
            "Output streams being sent now",
            streams_open.clone(),
        );
        let connections_open = Gauge::default();
        r.register(
            "http_connections_open",
            "Client connections open now",
            connections_open.clone(),
        );
        let requests = Family::<Labels, Counter>::default();
        r.register(
            "http_requests",
            "Requests answered, by status",
            requests.clone(),
        );
        let deleted = Counter::default();
        r.register(
            "jobs_deleted",
            "Jobs deleted (DELETE or retention)",
            deleted.clone(),
        );
        let collected_bytes = Counter::<u64, AtomicU64>::default();
        r.register_with_unit(
            "collected",
            "Bytes read back from jobs' work directories",
            Unit::Bytes,
            collected_bytes.clone(),
        );
        Metrics {
            registry: r,
            jobs,
            queued,
            running,
            submitted,
            spawn_seconds,
            spawn_errors,
            stream_bytes,
            streams_open,
            connections_open,
            requests,
            deleted,
            collected_bytes,
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// Every stage of a cell's setup, with its label.
pub const STAGES: &[(Stage, &str)] = &[
    (Stage::Clone, "clone"),
    (Stage::CloseFds, "close_fds"),
    (Stage::JoinCgroup, "join_cgroup"),
    (Stage::WaitForHost, "wait_for_host"),
    (Stage::BecomeRoot, "become_root"),
    (Stage::CgroupNamespace, "cgroup_namespace"),
    (Stage::SetHostname, "set_hostname"),
    (Stage::MakeMountsPrivate, "make_mounts_private"),
    (Stage::BuildRoot, "build_root"),
    (Stage::PivotRoot, "pivot_root"),
    (Stage::DetachOldRoot, "detach_old_root"),
    (Stage::LoopbackUp, "loopback_up"),
    (Stage::ForkJob, "fork_job"),
    (Stage::Setsid, "setsid"),
    (Stage::Stdio, "stdio"),
    (Stage::Rlimits, "rlimits"),
    (Stage::NoNewPrivs, "no_new_privs"),
    (Stage::DropCapabilities, "drop_capabilities"),
    (Stage::SetGroups, "set_groups"),
    (Stage::SetUser, "set_user"),
    (Stage::Chdir, "chdir"),
    (Stage::CloseOnExec, "close_on_exec"),
    (Stage::Seccomp, "seccomp"),
    (Stage::Landlock, "landlock"),
    (Stage::Exec, "exec"),
];

/// The `stage` label of a job that ended in `state`, if it failed before
/// its program ran (`ran`: it reached `running`, its record's `started`).
///
/// The Worker spawns on its own thread after `submit` has answered, so the
/// typed error (`Error::Setup { stage, .. }`, `Error::SetupTimeout`) never
/// reaches the service: what is left of it is what a record (or the state
/// event) keeps, whether the program started and the error as text. Each
/// stage is found by its typed value's own `Display` (the tests below
/// render every stage through both errors, so a change of wording fails
/// them, not the metric). Failures outside the cell are `cgroup` (creating
/// the job's cgroup or writing its limits), `cell_died` and `host` (the
/// clone, the id maps, the spawner).
pub fn spawn_error_stage(state: &JobState, ran: bool) -> Option<&'static str> {
    match state {
        JobState::Failed { reason } if !ran => Some(stage_of(reason)),
        _ => None,
    }
}

fn stage_of(reason: &str) -> &'static str {
    // `Error::Setup`: "cell setup failed while {stage}…";
    // `Error::SetupTimeout`: "cell setup did not finish within …: stuck while {stage}…".
    let after = ["cell setup failed while ", "stuck while "]
        .iter()
        .find_map(|m| reason.split_once(m).map(|(_, rest)| rest));
    if let Some(rest) = after {
        let found = STAGES.iter().find(|(stage, _)| {
            rest.strip_prefix(&stage.to_string())
                .is_some_and(|tail| tail.is_empty() || tail.starts_with([' ', ':', '(']))
        });
        if let Some((_, label)) = found {
            return label;
        }
    }
    if reason.starts_with("cgroup ") || reason.starts_with("limit ") {
        "cgroup"
    } else if reason.starts_with("the cell died during setup") {
        "cell_died"
    } else {
        "host"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Every stage, through both typed errors as a Worker's record keeps
    /// them, with and without a detail.
    #[test]
    fn stage_labels_from_the_typed_errors() {
        use jobcell::{Errno, Error};
        let mut labels = std::collections::HashSet::new();
        for &(stage, label) in STAGES {
            assert!(labels.insert(label), "{label} twice");
            for detail in ["", "bind /opt/x on /x", "/usr/bin/true"] {
                let errors = [
                    Error::Setup {
                        stage,
                        detail: detail.into(),
                        errno: Errno(libc::EACCES),
                    },
                    Error::SetupTimeout {
                        stage,
                        detail: detail.into(),
                        timeout: Duration::from_millis(300),
                    },
                ];
                for e in errors {
                    assert_eq!(stage_of(&e.to_string()), label, "{e}");
                }
            }
        }
        let cgroup = Error::Cgroup {
            op: "write",
            path: "/sys/fs/cgroup/x/cpuset.cpus".into(),
            value: Some("7".into()),
            errno: Errno(libc::EINVAL),
            hint: None,
        };
        assert_eq!(stage_of(&cgroup.to_string()), "cgroup");
        let died = Error::SetupDied {
            status: "killed by SIGKILL".into(),
        };
        assert_eq!(stage_of(&died.to_string()), "cell_died");
        assert_eq!(stage_of("clone3: ENOMEM"), "host");
        assert_eq!(stage_of(""), "host");
    }

    #[test]
    fn only_jobs_that_never_ran_are_spawn_errors() {
        let failed = JobState::Failed {
            reason: "cell setup failed while pivot_root: EINVAL (Invalid argument)".into(),
        };
        assert_eq!(spawn_error_stage(&failed, false), Some("pivot_root"));
        assert_eq!(spawn_error_stage(&failed, true), None, "it ran");
        assert_eq!(
            spawn_error_stage(&JobState::Stopped, false),
            None,
            "stopped while queued"
        );
    }

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new();
        m.jobs
            .get_or_create(&vec![("state", "running".to_string())])
            .set(2);
        m.spawn_seconds.observe(0.002);
        let text = m.render();
        assert!(text.contains("jobcell_jobs{state=\"running\"} 2"), "{text}");
        assert!(
            text.contains("# TYPE jobcell_spawn_seconds histogram"),
            "{text}"
        );
        assert!(text.contains("jobcell_spawn_seconds_count 1"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
