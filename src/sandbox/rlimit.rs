//! Per-process resource limits (`setrlimit`) of the job.

use crate::error::{Error, Result};

/// A per-process resource limit, applied to the job with `setrlimit` before
/// it drops privileges. Unlike [`Limits`](crate::Limits), which bound the
/// whole job through its cgroup, these bound each of its processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rlimit {
    /// Address space (`RLIMIT_AS`), bytes.
    AddressSpace,
    /// Core dump size (`RLIMIT_CORE`), bytes. Default 0: no core dumps.
    Core,
    /// CPU time (`RLIMIT_CPU`), seconds; SIGXCPU at the soft limit.
    Cpu,
    /// Data segment (`RLIMIT_DATA`), bytes.
    Data,
    /// Largest file the job may write (`RLIMIT_FSIZE`), bytes; SIGXFSZ beyond.
    FileSize,
    /// File locks (`RLIMIT_LOCKS`).
    Locks,
    /// Locked memory (`RLIMIT_MEMLOCK`), bytes.
    MemoryLock,
    /// POSIX message queue bytes (`RLIMIT_MSGQUEUE`).
    MessageQueue,
    /// Nice ceiling (`RLIMIT_NICE`).
    Nice,
    /// Open file descriptors (`RLIMIT_NOFILE`). Default 1024 soft, 4096 hard
    /// (at most the host process's own hard limit).
    OpenFiles,
    /// Processes of the job's user (`RLIMIT_NPROC`).
    Processes,
    /// Resident set (`RLIMIT_RSS`, ignored by Linux).
    Rss,
    /// Real-time priority ceiling (`RLIMIT_RTPRIO`).
    RealtimePriority,
    /// Real-time CPU time without blocking (`RLIMIT_RTTIME`), microseconds.
    RealtimeTime,
    /// Queued signals (`RLIMIT_SIGPENDING`).
    PendingSignals,
    /// Stack size (`RLIMIT_STACK`), bytes.
    Stack,
}

/// No limit (`RLIM_INFINITY`).
pub const UNLIMITED: u64 = u64::MAX;

impl Rlimit {
    pub(crate) fn resource(self) -> libc::c_int {
        (match self {
            Rlimit::AddressSpace => libc::RLIMIT_AS,
            Rlimit::Core => libc::RLIMIT_CORE,
            Rlimit::Cpu => libc::RLIMIT_CPU,
            Rlimit::Data => libc::RLIMIT_DATA,
            Rlimit::FileSize => libc::RLIMIT_FSIZE,
            Rlimit::Locks => libc::RLIMIT_LOCKS,
            Rlimit::MemoryLock => libc::RLIMIT_MEMLOCK,
            Rlimit::MessageQueue => libc::RLIMIT_MSGQUEUE,
            Rlimit::Nice => libc::RLIMIT_NICE,
            Rlimit::OpenFiles => libc::RLIMIT_NOFILE,
            Rlimit::Processes => libc::RLIMIT_NPROC,
            Rlimit::Rss => libc::RLIMIT_RSS,
            Rlimit::RealtimePriority => libc::RLIMIT_RTPRIO,
            Rlimit::RealtimeTime => libc::RLIMIT_RTTIME,
            Rlimit::PendingSignals => libc::RLIMIT_SIGPENDING,
            Rlimit::Stack => libc::RLIMIT_STACK,
        }) as libc::c_int
    }

    fn host_resource(self) -> rustix::process::Resource {
        use rustix::process::Resource as R;
        match self {
            Rlimit::AddressSpace => R::As,
            Rlimit::Core => R::Core,
            Rlimit::Cpu => R::Cpu,
            Rlimit::Data => R::Data,
            Rlimit::FileSize => R::Fsize,
            Rlimit::Locks => R::Locks,
            Rlimit::MemoryLock => R::Memlock,
            Rlimit::MessageQueue => R::Msgqueue,
            Rlimit::Nice => R::Nice,
            Rlimit::OpenFiles => R::Nofile,
            Rlimit::Processes => R::Nproc,
            Rlimit::Rss => R::Rss,
            Rlimit::RealtimePriority => R::Rtprio,
            Rlimit::RealtimeTime => R::Rttime,
            Rlimit::PendingSignals => R::Sigpending,
            Rlimit::Stack => R::Stack,
        }
    }

    /// This process's hard limit, which its cells inherit and cannot raise
    /// (that needs `CAP_SYS_RESOURCE` in the host's user namespace).
    fn host_hard(self) -> u64 {
        rustix::process::getrlimit(self.host_resource())
            .maximum
            .unwrap_or(UNLIMITED)
    }

    /// The name setrlimit(2) uses.
    pub fn name(self) -> &'static str {
        match self {
            Rlimit::AddressSpace => "RLIMIT_AS",
            Rlimit::Core => "RLIMIT_CORE",
            Rlimit::Cpu => "RLIMIT_CPU",
            Rlimit::Data => "RLIMIT_DATA",
            Rlimit::FileSize => "RLIMIT_FSIZE",
            Rlimit::Locks => "RLIMIT_LOCKS",
            Rlimit::MemoryLock => "RLIMIT_MEMLOCK",
            Rlimit::MessageQueue => "RLIMIT_MSGQUEUE",
            Rlimit::Nice => "RLIMIT_NICE",
            Rlimit::OpenFiles => "RLIMIT_NOFILE",
            Rlimit::Processes => "RLIMIT_NPROC",
            Rlimit::Rss => "RLIMIT_RSS",
            Rlimit::RealtimePriority => "RLIMIT_RTPRIO",
            Rlimit::RealtimeTime => "RLIMIT_RTTIME",
            Rlimit::PendingSignals => "RLIMIT_SIGPENDING",
            Rlimit::Stack => "RLIMIT_STACK",
        }
    }
}

/// The rlimits every job gets unless the sandbox says otherwise.
pub(crate) const DEFAULT_RLIMITS: [(Rlimit, u64, u64); 2] =
    [(Rlimit::Core, 0, 0), (Rlimit::OpenFiles, 1024, 4096)];

/// The effective list: defaults, then the sandbox's settings (a later setting
/// of the same resource wins), checked against this process's hard limits,
/// which the cell inherits and cannot raise: a default is lowered to fit
/// under them, a setting above them is an error.
pub(crate) fn effective(
    settings: &[(Rlimit, u64, u64)],
) -> Result<Vec<(libc::c_int, libc::rlimit64)>> {
    effective_under(settings, Rlimit::host_hard)
}

fn effective_under(
    settings: &[(Rlimit, u64, u64)],
    host_hard: impl Fn(Rlimit) -> u64,
) -> Result<Vec<(libc::c_int, libc::rlimit64)>> {
    let mut out: Vec<(Rlimit, u64, u64)> = DEFAULT_RLIMITS
        .iter()
        .map(|&(r, soft, hard)| {
            let hard = hard.min(host_hard(r));
            (r, soft.min(hard), hard)
        })
        .collect();
    for &(r, soft, hard) in settings {
        let value = || format!("soft {soft}, hard {hard}");
        if soft > hard {
            return Err(Error::InvalidSetting {
                name: r.name(),
                value: value(),
                reason: "the soft limit exceeds the hard limit".into(),
            });
        }
        let host = host_hard(r);
        if hard > host {
            return Err(Error::InvalidSetting {
                name: r.name(),
                value: value(),
                reason: format!(
                    "the hard limit exceeds this process's own ({host}), which a cell \
                     cannot raise: raise the process's hard limit (ulimit -H, LimitNOFILE= \
                     and the like) or ask for less"
                ),
            });
        }
        out.retain(|(x, ..)| *x != r);
        out.push((r, soft, hard));
    }
    let lim = |v: u64| {
        if v == UNLIMITED {
            libc::RLIM64_INFINITY
        } else {
            v
        }
    };
    Ok(out
        .into_iter()
        .map(|(r, soft, hard)| {
            (
                r.resource(),
                libc::rlimit64 {
                    rlim_cur: lim(soft),
                    rlim_max: lim(hard),
                },
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn as_tuples(v: Vec<(libc::c_int, libc::rlimit64)>) -> Vec<(libc::c_int, u64, u64)> {
        v.into_iter()
            .map(|(r, l)| (r, l.rlim_cur, l.rlim_max))
            .collect()
    }

    #[test]
    fn defaults_and_overrides() {
        let e = as_tuples(effective(&[]).unwrap());
        assert!(e.contains(&(libc::RLIMIT_CORE as i32, 0, 0)));
        let e = as_tuples(
            effective(&[
                (Rlimit::OpenFiles, 64, 64),
                (Rlimit::Stack, UNLIMITED, UNLIMITED),
            ])
            .unwrap(),
        );
        assert_eq!(e.len(), 3);
        assert!(e.contains(&(libc::RLIMIT_NOFILE as i32, 64, 64)));
        assert!(e.contains(&(
            libc::RLIMIT_STACK as i32,
            libc::RLIM64_INFINITY,
            libc::RLIM64_INFINITY
        )));
        assert!(effective(&[(Rlimit::Cpu, 10, 5)]).is_err());
    }

    #[test]
    fn defaults_fit_under_the_hosts_hard_limits_and_settings_may_not_exceed_them() {
        let host = |r: Rlimit| match r {
            Rlimit::OpenFiles => 1024,
            Rlimit::Stack => 8 << 20,
            _ => UNLIMITED,
        };
        let e = as_tuples(effective_under(&[], host).unwrap());
        assert!(
            e.contains(&(libc::RLIMIT_NOFILE as i32, 1024, 1024)),
            "{e:?}"
        );
        let small = |r: Rlimit| {
            if r == Rlimit::OpenFiles {
                100
            } else {
                UNLIMITED
            }
        };
        let e = as_tuples(effective_under(&[], small).unwrap());
        assert!(e.contains(&(libc::RLIMIT_NOFILE as i32, 100, 100)), "{e:?}");
        let e = as_tuples(effective_under(&[(Rlimit::OpenFiles, 64, 1024)], host).unwrap());
        assert!(e.contains(&(libc::RLIMIT_NOFILE as i32, 64, 1024)), "{e:?}");
        let err = effective_under(&[(Rlimit::OpenFiles, 64, 2048)], host).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("RLIMIT_NOFILE") && text.contains("1024"),
            "{text}"
        );
        let err = effective_under(&[(Rlimit::Stack, UNLIMITED, UNLIMITED)], host).unwrap_err();
        assert!(err.to_string().contains("RLIMIT_STACK"), "{err}");
    }
}
