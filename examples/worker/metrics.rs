//! `GET /metrics`: Prometheus text (OpenMetrics) through `prometheus-client`.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

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

/// The label of a failed job's reason: the setup stage or host step that
/// failed, in snake case ("building_the_root", "clone3"), or "other".
pub fn stage_label(reason: &str) -> String {
    let stage = if let Some(rest) = reason.strip_prefix("cell setup failed while ") {
        rest.split([':', '(', ',']).next().unwrap_or(rest)
    } else if reason.starts_with("cgroup ") {
        "cgroup"
    } else if reason.starts_with("the cell died during setup") {
        "cell_died"
    } else {
        reason.split([':', ' ']).next().unwrap_or("other")
    };
    let slug: String = stage
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if slug.is_empty() || slug.len() > 40 {
        "other".into()
    } else {
        slug
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_labels() {
        assert_eq!(
            stage_label("cell setup failed while building the root (mkdir /x): EACCES"),
            "building_the_root"
        );
        assert_eq!(stage_label("clone3: ENOMEM"), "clone3");
        assert_eq!(stage_label("cgroup write /sys/x = 1: EBUSY"), "cgroup");
        assert_eq!(stage_label(""), "other");
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
