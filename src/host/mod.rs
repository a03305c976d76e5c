//! Host checks: can this machine run cells, and if not, why and how to fix it.
//!
//! [`check`] looks at the kernel, user namespaces, cgroups and the file
//! system the way [`Sandbox::spawn`](crate::Sandbox::spawn) will use them, by
//! trying what can be tried in throw-away child processes (a new user
//! namespace, a `pivot_root` into a tmpfs, the system calls jobcell needs) and
//! reading the rest from `/proc` and cgroupfs. Every problem comes with the
//! command or configuration that fixes it.
//!
//! ```no_run
//! let report = jobcell::host::check();
//! print!("{report}");                       // a report for people
//! let json = serde_json::to_string_pretty(&report)?; // or for programs
//! if report.status() == jobcell::host::Status::Problem {
//!     for c in report.problems() {
//!         eprintln!("{}: {} (fix: {})", c.name, c.detail, c.fix.as_deref().unwrap_or("-"));
//!     }
//! }
//! # Ok::<(), serde_json::Error>(())
//! ```
//!
//! The command-line runner prints the same report:
//! `cargo run --example run -- --check` (or `--check-namespaces`,
//! `--check-cgroups`, `--check-filesystem` for one section).

mod cgroups;
mod child;
mod fs;
mod kernel;
mod userns;

use std::fmt;

use serde::Serialize;

/// How a check came out. Ordered: `Ok < Warning < Problem`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Works as jobcell needs it.
    Ok,
    /// Works, but something is missing or degraded (a fallback, a limit that cannot be set).
    Warning,
    /// Cells (or some of their limits) fail on this host until it is fixed.
    Problem,
}

impl Status {
    /// The lower-case name shown in reports: `"ok"`, `"warning"`, `"problem"`.
    ///
    /// ```
    /// assert_eq!(jobcell::host::Status::Warning.name(), "warning");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Problem => "problem",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The parts of a host report, in the order they are shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SectionKind {
    /// Kernel version and the system calls jobcell relies on (seccomp, landlock, pidfd, clone3).
    Kernel,
    /// User namespaces (and why not), the other namespaces, the id mapping.
    Namespaces,
    /// The cgroup hierarchy, jobcell's base, write access, delegation, controllers.
    Cgroups,
    /// Building a root: mount namespace, tmpfs, procfs, `pivot_root`, the new mount API.
    Filesystem,
}

impl SectionKind {
    /// Every section, in report order.
    ///
    /// ```
    /// use jobcell::host::SectionKind;
    /// assert_eq!(SectionKind::ALL[0], SectionKind::Kernel);
    /// ```
    pub const ALL: [SectionKind; 4] = [
        SectionKind::Kernel,
        SectionKind::Namespaces,
        SectionKind::Cgroups,
        SectionKind::Filesystem,
    ];

    /// The section's heading.
    ///
    /// ```
    /// assert_eq!(jobcell::host::SectionKind::Cgroups.title(), "cgroups");
    /// ```
    pub fn title(self) -> &'static str {
        match self {
            SectionKind::Kernel => "kernel",
            SectionKind::Namespaces => "namespaces",
            SectionKind::Cgroups => "cgroups",
            SectionKind::Filesystem => "filesystem",
        }
    }
}

/// One finding: what was checked, how it came out, and how to fix it.
///
/// ```no_run
/// let report = jobcell::host::check();
/// let userns = report.find("user namespaces").expect("always checked");
/// if let Some(fix) = &userns.fix {
///     eprintln!("{}: {}\nfix: {fix}", userns.name, userns.detail);
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked, e.g. `"user namespaces"`.
    pub name: String,
    /// How it came out.
    pub status: Status,
    /// What was found, in a sentence.
    pub detail: String,
    /// The command or configuration that fixes it (for warnings and problems).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn new(
        name: impl Into<String>,
        status: Status,
        detail: impl Into<String>,
        fix: Option<String>,
    ) -> Check {
        Check {
            name: name.into(),
            status,
            detail: detail.into(),
            fix,
        }
    }

    pub(crate) fn ok(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check::new(name, Status::Ok, detail, None)
    }

    pub(crate) fn warning(
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check::new(name, Status::Warning, detail, Some(fix.into()))
    }

    pub(crate) fn problem(
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check::new(name, Status::Problem, detail, Some(fix.into()))
    }
}

/// The checks of one [`SectionKind`].
///
/// ```no_run
/// use jobcell::host::{check_sections, SectionKind};
/// let report = check_sections(&[SectionKind::Cgroups]);
/// for c in &report.sections[0].checks {
///     println!("{:<8} {}: {}", c.status, c.name, c.detail);
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Section {
    /// Which section.
    pub kind: SectionKind,
    /// The worst status of its checks.
    pub status: Status,
    /// Its checks, in order.
    pub checks: Vec<Check>,
}

impl Section {
    fn new(kind: SectionKind, checks: Vec<Check>) -> Section {
        Section {
            kind,
            status: worst(checks.iter().map(|c| c.status)),
            checks,
        }
    }
}

/// What [`check`] found: a section per [`SectionKind`] asked for.
///
/// `Display` renders a report for people (a line per check, the fix below
/// each warning or problem); `Serialize` gives the same as JSON.
///
/// ```no_run
/// let report = jobcell::host::check();
/// println!("{report}");
/// let json = serde_json::to_value(&report).unwrap();
/// assert_eq!(json["status"], report.status().name());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostReport {
    /// The worst status of all checks.
    pub status: Status,
    /// The kernel release (`uname -r`).
    pub kernel: String,
    /// The sections, in [`SectionKind::ALL`] order.
    pub sections: Vec<Section>,
}

impl HostReport {
    /// The worst status of all checks.
    ///
    /// ```no_run
    /// use jobcell::host::{check, Status};
    /// assert_ne!(check().status(), Status::Problem, "this host cannot run cells");
    /// ```
    pub fn status(&self) -> Status {
        self.status
    }

    /// The section of this kind, if it was checked.
    ///
    /// ```no_run
    /// use jobcell::host::{check_sections, SectionKind};
    /// let r = check_sections(&[SectionKind::Cgroups]);
    /// assert!(r.section(SectionKind::Cgroups).is_some());
    /// assert!(r.section(SectionKind::Kernel).is_none());
    /// ```
    pub fn section(&self, kind: SectionKind) -> Option<&Section> {
        self.sections.iter().find(|s| s.kind == kind)
    }

    /// The check named `name` in any section.
    ///
    /// ```no_run
    /// let r = jobcell::host::check();
    /// println!("{:?}", r.find("user namespaces").map(|c| c.status));
    /// ```
    pub fn find(&self, name: &str) -> Option<&Check> {
        self.sections
            .iter()
            .flat_map(|s| &s.checks)
            .find(|c| c.name == name)
    }

    /// Every check whose status is [`Status::Problem`].
    ///
    /// ```no_run
    /// for c in jobcell::host::check().problems() {
    ///     eprintln!("{}: {} (fix: {})", c.name, c.detail, c.fix.as_deref().unwrap_or("-"));
    /// }
    /// ```
    pub fn problems(&self) -> impl Iterator<Item = &Check> {
        self.with_status(Status::Problem)
    }

    /// Every check whose status is [`Status::Warning`].
    ///
    /// ```no_run
    /// let n = jobcell::host::check().warnings().count();
    /// println!("{n} warnings");
    /// ```
    pub fn warnings(&self) -> impl Iterator<Item = &Check> {
        self.with_status(Status::Warning)
    }

    fn with_status(&self, status: Status) -> impl Iterator<Item = &Check> {
        self.sections
            .iter()
            .flat_map(|s| &s.checks)
            .filter(move |c| c.status == status)
    }
}

fn worst(it: impl Iterator<Item = Status>) -> Status {
    it.max().unwrap_or(Status::Ok)
}

impl fmt::Display for HostReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (p, w) = (self.problems().count(), self.warnings().count());
        let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
        let verdict = match (p, w) {
            (0, 0) => "everything jobcell needs is here".to_string(),
            (0, w) => format!("cells work; {}", plural(w, "warning")),
            (p, w) => format!("{}, {}", plural(p, "problem"), plural(w, "warning")),
        };
        writeln!(f, "jobcell host check (kernel {}): {verdict}", self.kernel)?;
        let width = self
            .sections
            .iter()
            .flat_map(|s| &s.checks)
            .map(|c| c.name.len())
            .max()
            .unwrap_or(0);
        for s in &self.sections {
            writeln!(f, "\n{}", s.kind.title())?;
            for c in &s.checks {
                writeln!(
                    f,
                    "  {:<8} {:<width$}  {}",
                    c.status.name(),
                    c.name,
                    c.detail
                )?;
                if let Some(fix) = &c.fix {
                    writeln!(f, "  {:<8} {:<width$}  fix: {fix}", "", "")?;
                }
            }
        }
        Ok(())
    }
}

/// Checks everything: the kernel, namespaces, cgroups and the file system.
///
/// It forks a few short-lived child processes to try things (they enter
/// new namespaces, mount a tmpfs in their own mount namespace and
/// `pivot_root` into it); nothing they do is visible on the host, and they
/// are gone when `check` returns. It takes a few milliseconds.
///
/// ```no_run
/// let report = jobcell::host::check();
/// print!("{report}");
/// ```
pub fn check() -> HostReport {
    check_sections(&SectionKind::ALL)
}

/// Checks only the sections named (in report order, each once).
///
/// ```no_run
/// use jobcell::host::{check_sections, SectionKind};
/// print!("{}", check_sections(&[SectionKind::Namespaces]));
/// ```
pub fn check_sections(kinds: &[SectionKind]) -> HostReport {
    let sections: Vec<Section> = SectionKind::ALL
        .into_iter()
        .filter(|k| kinds.contains(k))
        .map(|k| {
            let checks = match k {
                SectionKind::Kernel => kernel::checks(),
                SectionKind::Namespaces => userns::checks(),
                SectionKind::Cgroups => cgroups::checks(),
                SectionKind::Filesystem => fs::checks(),
            };
            Section::new(k, checks)
        })
        .collect();
    HostReport {
        status: worst(sections.iter().map(|s| s.status)),
        kernel: kernel::release(),
        sections,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> HostReport {
        let sections = vec![
            Section::new(
                SectionKind::Kernel,
                vec![
                    Check::ok("version", "6.18"),
                    Check::warning("landlock", "off", "lsm=landlock"),
                ],
            ),
            Section::new(
                SectionKind::Namespaces,
                vec![Check::problem("user namespaces", "EPERM", "sysctl -w x=1")],
            ),
        ];
        HostReport {
            status: worst(sections.iter().map(|s| s.status)),
            kernel: "6.18".into(),
            sections,
        }
    }

    #[test]
    fn status_orders_and_report_summarises() {
        assert!(Status::Ok < Status::Warning && Status::Warning < Status::Problem);
        let r = sample();
        assert_eq!(r.status(), Status::Problem);
        assert_eq!(
            r.section(SectionKind::Kernel).unwrap().status,
            Status::Warning
        );
        assert_eq!(r.problems().count(), 1);
        assert_eq!(r.warnings().count(), 1);
        assert_eq!(
            r.find("landlock").unwrap().fix.as_deref(),
            Some("lsm=landlock")
        );
        assert!(r.section(SectionKind::Cgroups).is_none());
    }

    #[test]
    fn display_shows_every_check_and_its_fix() {
        let text = sample().to_string();
        assert!(
            text.starts_with("jobcell host check (kernel 6.18): 1 problem, 1 warning"),
            "{text}"
        );
        assert!(
            text.contains("  problem  user namespaces  EPERM\n"),
            "{text}"
        );
        assert!(text.contains("fix: sysctl -w x=1"), "{text}");
        assert!(text.contains("\nnamespaces\n"), "{text}");
    }

    #[test]
    fn json_uses_lower_case_names() {
        let v = serde_json::to_value(sample()).unwrap();
        assert_eq!(v["status"], "problem");
        assert_eq!(v["sections"][1]["kind"], "namespaces");
        assert_eq!(v["sections"][1]["checks"][0]["status"], "problem");
        assert!(v["sections"][0]["checks"][0].get("fix").is_none());
    }
}
