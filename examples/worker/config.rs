//! The service's configuration, from the environment (documented in
//! `docs/service.md`).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use jobcell::units::{parse_duration, parse_size};
use jobcell::{Limits, UNTRUSTED_FILE_SIZE};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub addr: String,
    pub token: Option<String>,
    pub state_dir: PathBuf,
    /// Jobs running at once (`MAX_JOBS`).
    pub max_jobs: usize,
    /// Jobs waiting for a slot; more are refused with 503.
    pub max_queued: usize,
    /// Limits a job gets for the fields its request leaves out.
    pub defaults: Limits,
    /// The largest file a job may write (`RLIMIT_FSIZE`); `None`: no cap.
    pub file_size: Option<u64>,
    pub log_level: String,
    pub log_json: bool,
    /// SIGTERM to SIGKILL, for a stop and at shutdown.
    pub stop_grace: Duration,
    pub max_body: u64,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_connections: usize,
    pub max_requests: usize,
    /// Bytes read back per collected file.
    pub collect_max: u64,
    /// Finished jobs kept (count); older ones are deleted with their logs.
    pub retain_jobs: Option<usize>,
    /// Finished jobs kept (age since they ended).
    pub retain_age: Option<Duration>,
    /// Cluster mode: the Redis of the cluster (`WORKER_REDIS_URL`).
    pub redis_url: Option<String>,
    /// The cluster's key prefix (`WORKER_REDIS_PREFIX`).
    pub redis_prefix: String,
    /// In cluster mode, also run jobs here (`WORKER_CLUSTER_NODE`, default 1).
    pub cluster_node: bool,
    /// The node's lease (`WORKER_CLUSTER_LEASE`).
    pub cluster_lease: Duration,
}

pub const DEFAULT_MAX_JOBS: usize = 64;

/// The service's own default wall time: longer than the untrusted one (a
/// service runs builds and test suites too), and still finite, so that a
/// forgotten `sleep` cannot hold a slot for ever.
pub const DEFAULT_WALL_TIME: Duration = Duration::from_secs(600);

/// The defaults for limits a request leaves out, unless the environment
/// says otherwise: requests come from strangers, so the untrusted ones
/// ([`Limits::conservative`]: 512 MiB, 256 pids, 16 MiB of output) with the
/// service's own wall time.
pub fn builtin_defaults() -> Limits {
    Limits {
        wall_time: Some(DEFAULT_WALL_TIME),
        ..Limits::conservative()
    }
}

impl Config {
    /// Reads the configuration through `get` (the environment, or a map in tests).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        let var = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let count = |k: &str, default: usize| -> Result<usize, String> {
            match var(k) {
                None => Ok(default),
                Some(v) => match v.trim().parse::<usize>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => Err(format!("{k}={v:?}: expected a whole number above 0")),
                },
            }
        };
        let size = |k: &str, default: u64| -> Result<u64, String> {
            match var(k) {
                None => Ok(default),
                Some(v) => parse_size(&v)
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("{k}={v:?}: expected a size above 0 such as 8M")),
            }
        };
        let duration = |k: &str, default: Duration| -> Result<Duration, String> {
            match var(k) {
                None => Ok(default),
                Some(v) => parse_duration(&v)
                    .ok()
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| format!("{k}={v:?}: expected a duration above 0 such as 30s")),
            }
        };
        let state_dir = match var("WORKER_STATE_DIR") {
            Some(d) => PathBuf::from(d),
            None => match (var("XDG_STATE_HOME"), var("HOME")) {
                (Some(x), _) => PathBuf::from(x).join("jobcell"),
                (None, Some(h)) => PathBuf::from(h).join(".local/state/jobcell"),
                (None, None) => return Err("set WORKER_STATE_DIR (there is no HOME)".into()),
            },
        };
        let log_json = match var("WORKER_LOG_FORMAT").as_deref() {
            None | Some("text") => false,
            Some("json") => true,
            Some(v) => return Err(format!("WORKER_LOG_FORMAT={v:?}: expected text or json")),
        };
        let retain_jobs = match var("WORKER_RETAIN_JOBS") {
            None => None,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(0) => None,
                Ok(n) => Some(n),
                Err(_) => return Err(format!("WORKER_RETAIN_JOBS={v:?}: expected a count")),
            },
        };
        let retain_age = match var("WORKER_RETAIN_AGE") {
            None => None,
            Some(v) => match parse_duration(&v) {
                Ok(d) if d.is_zero() => None,
                Ok(d) => Some(d),
                Err(e) => return Err(format!("WORKER_RETAIN_AGE: {e}")),
            },
        };
        let file_size = match var("DEFAULT_FILE_SIZE_LIMIT") {
            None => Some(UNTRUSTED_FILE_SIZE),
            Some(v) if matches!(v.trim(), "0" | "none" | "unlimited") => None,
            Some(v) => Some(parse_size(&v).map_err(|e| format!("DEFAULT_FILE_SIZE_LIMIT: {e}"))?),
        };
        Ok(Config {
            addr: var("WORKER_ADDR").unwrap_or_else(|| "127.0.0.1:8080".into()),
            token: var("WORKER_TOKEN"),
            state_dir,
            max_jobs: count("MAX_JOBS", DEFAULT_MAX_JOBS)?,
            max_queued: count("WORKER_MAX_QUEUED", 10_000)?,
            defaults: defaults(&var)?,
            file_size,
            log_level: var("WORKER_LOG_LEVEL").unwrap_or_else(|| "info".into()),
            log_json,
            stop_grace: duration("WORKER_STOP_GRACE", Duration::from_secs(5))?,
            max_body: size("WORKER_MAX_BODY", 8 << 20)?,
            header_timeout: duration("WORKER_HEADER_TIMEOUT", Duration::from_secs(10))?,
            body_timeout: duration("WORKER_BODY_TIMEOUT", Duration::from_secs(30))?,
            max_connections: count("WORKER_MAX_CONNECTIONS", 4096)?,
            max_requests: count("WORKER_MAX_REQUESTS", 256)?,
            collect_max: size("WORKER_COLLECT_LIMIT", 1 << 20)?,
            retain_jobs,
            retain_age,
            redis_url: var("WORKER_REDIS_URL"),
            redis_prefix: var("WORKER_REDIS_PREFIX").unwrap_or_else(|| "jobcell".into()),
            cluster_node: match var("WORKER_CLUSTER_NODE").as_deref() {
                None | Some("1" | "true" | "yes") => true,
                Some("0" | "false" | "no") => false,
                Some(v) => return Err(format!("WORKER_CLUSTER_NODE={v:?}: expected 1 or 0")),
            },
            cluster_lease: duration("WORKER_CLUSTER_LEASE", Duration::from_secs(30))?,
        })
    }

    /// The address to listen on; refuses a non-loopback one without a token.
    pub fn listen_addr(&self) -> Result<SocketAddr, String> {
        let addrs: Vec<SocketAddr> = self
            .addr
            .to_socket_addrs()
            .map_err(|e| format!("WORKER_ADDR={:?}: {e}", self.addr))?
            .collect();
        let first = *addrs
            .first()
            .ok_or_else(|| format!("WORKER_ADDR={:?}: no address", self.addr))?;
        if self.token.is_none() && !addrs.iter().all(|a| a.ip().is_loopback()) {
            return Err(format!(
                "refusing to listen on {first} without WORKER_TOKEN: anyone who can reach it \
                 could run commands here. Set WORKER_TOKEN, or listen on 127.0.0.1"
            ));
        }
        Ok(first)
    }
}

/// `DEFAULT_*` variables: each sets the default of one limit; `0` or `none`
/// removes the built-in default.
fn defaults(var: &dyn Fn(&str) -> Option<String>) -> Result<Limits, String> {
    let mut l = builtin_defaults();
    let unset = |v: &str| matches!(v.trim(), "0" | "none" | "unlimited");
    let size = |k: &str, slot: &mut Option<u64>| -> Result<(), String> {
        if let Some(v) = var(k) {
            *slot = if unset(&v) {
                None
            } else {
                Some(parse_size(&v).map_err(|e| format!("{k}: {e}"))?)
            };
        }
        Ok(())
    };
    let count = |k: &str, slot: &mut Option<u64>| -> Result<(), String> {
        if let Some(v) = var(k) {
            *slot = if unset(&v) {
                None
            } else {
                Some(
                    v.trim()
                        .parse()
                        .map_err(|_| format!("{k}={v:?}: expected a whole number"))?,
                )
            };
        }
        Ok(())
    };
    let duration = |k: &str, slot: &mut Option<Duration>| -> Result<(), String> {
        if let Some(v) = var(k) {
            *slot = if unset(&v) {
                None
            } else {
                Some(parse_duration(&v).map_err(|e| format!("{k}: {e}"))?)
            };
        }
        Ok(())
    };
    if let Some(v) = var("DEFAULT_CPU_LIMIT") {
        l.cpu_percent = if unset(&v) {
            None
        } else {
            Some(v.trim().trim_end_matches('%').parse().map_err(|_| {
                format!("DEFAULT_CPU_LIMIT={v:?}: expected percent of one core, such as 50")
            })?)
        };
    }
    size("DEFAULT_MEMORY_LIMIT", &mut l.memory)?;
    size("DEFAULT_SWAP_LIMIT", &mut l.memory_swap)?;
    let mut io = l.io_read_bps;
    size("DEFAULT_IO_LIMIT", &mut io)?;
    (l.io_read_bps, l.io_write_bps) = (io, io);
    let mut iops = l.io_read_iops;
    count("DEFAULT_IOPS_LIMIT", &mut iops)?;
    (l.io_read_iops, l.io_write_iops) = (iops, iops);
    count("DEFAULT_PIDS_LIMIT", &mut l.pids)?;
    size("DEFAULT_OUTPUT_LIMIT", &mut l.output_bytes)?;
    duration("DEFAULT_WALL_TIME", &mut l.wall_time)?;
    duration("DEFAULT_CPU_TIME", &mut l.cpu_time)?;
    if let Some(v) = var("DEFAULT_CPUS") {
        l.cpus = (!unset(&v)).then(|| v.trim().to_string());
    }
    l.validate().map_err(|e| format!("DEFAULT_* limits: {e}"))?;
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn defaults_and_units() {
        let c = Config::from_env(env(&[("HOME", "/home/u")])).unwrap();
        assert_eq!(c.addr, "127.0.0.1:8080");
        assert_eq!(c.state_dir, PathBuf::from("/home/u/.local/state/jobcell"));
        assert_eq!(c.max_jobs, DEFAULT_MAX_JOBS);
        assert_eq!(c.defaults, builtin_defaults());
        assert_eq!(c.defaults.wall_time, Some(Duration::from_secs(600)));
        assert_eq!(
            Limits {
                wall_time: None,
                ..c.defaults.clone()
            },
            Limits {
                wall_time: None,
                ..Limits::conservative()
            },
            "the untrusted defaults, but for the wall time"
        );
        assert_eq!(c.file_size, Some(UNTRUSTED_FILE_SIZE));
        let c = Config::from_env(env(&[
            ("XDG_STATE_HOME", "/s"),
            ("HOME", "/home/u"),
            ("MAX_JOBS", "3"),
            ("DEFAULT_CPU_LIMIT", "50"),
            ("DEFAULT_MEMORY_LIMIT", "1G"),
            ("DEFAULT_IO_LIMIT", "10M"),
            ("DEFAULT_WALL_TIME", "none"),
            ("DEFAULT_PIDS_LIMIT", "0"),
            ("DEFAULT_CPU_TIME", "2s"),
            ("DEFAULT_CPUS", "0"),
            ("WORKER_STOP_GRACE", "1.5s"),
            ("WORKER_RETAIN_JOBS", "100"),
            ("WORKER_RETAIN_AGE", "168h"),
            ("DEFAULT_FILE_SIZE_LIMIT", "none"),
        ]))
        .unwrap();
        assert_eq!(c.state_dir, PathBuf::from("/s/jobcell"));
        assert_eq!(c.max_jobs, 3);
        assert_eq!(c.defaults.cpu_percent, Some(50));
        assert_eq!(c.defaults.memory, Some(1 << 30));
        assert_eq!(c.defaults.io_write_bps, Some(10 << 20));
        assert_eq!(c.defaults.wall_time, None);
        assert_eq!(c.defaults.pids, None);
        assert_eq!(c.defaults.cpus, None, "0 unsets, like every DEFAULT_*");
        assert_eq!(c.defaults.cpu_time, Some(Duration::from_secs(2)));
        assert_eq!(c.stop_grace, Duration::from_millis(1500));
        assert_eq!(c.retain_jobs, Some(100));
        assert_eq!(c.retain_age, Some(Duration::from_secs(7 * 86400)));
        assert_eq!(c.file_size, None);
        let c =
            Config::from_env(env(&[("HOME", "/h"), ("DEFAULT_FILE_SIZE_LIMIT", "1G")])).unwrap();
        assert_eq!(c.file_size, Some(1 << 30));
        for (k, v) in [
            ("MAX_JOBS", "0"),
            ("MAX_JOBS", "-1"),
            ("DEFAULT_CPU_LIMIT", "half"),
            ("DEFAULT_MEMORY_LIMIT", "12 parsecs"),
            ("DEFAULT_MEMORY_LIMIT", "10"),
            ("DEFAULT_WALL_TIME", "soon"),
            ("DEFAULT_FILE_SIZE_LIMIT", "big"),
            ("WORKER_LOG_FORMAT", "xml"),
            ("WORKER_MAX_BODY", "0"),
        ] {
            let e = Config::from_env(env(&[("HOME", "/h"), (k, v)])).unwrap_err();
            assert!(e.contains(k) || e.contains("DEFAULT_*"), "{k}: {e}");
        }
        assert!(
            Config::from_env(env(&[])).is_err(),
            "no HOME, no WORKER_STATE_DIR"
        );
    }

    #[test]
    fn non_loopback_needs_a_token() {
        let mut c =
            Config::from_env(env(&[("HOME", "/h"), ("WORKER_ADDR", "0.0.0.0:8080")])).unwrap();
        assert!(c.listen_addr().unwrap_err().contains("WORKER_TOKEN"));
        c.token = Some("t".into());
        assert!(c.listen_addr().is_ok());
        c.addr = "localhost:0".into();
        c.token = None;
        assert!(c.listen_addr().unwrap().ip().is_loopback());
    }
}
