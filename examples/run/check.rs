//! The host checks: `--check…` prints the host report, and a setup failure
//! names the section that tells what the host lacks.

use std::process::ExitCode;

use jobcell::host::{self, SectionKind, Status};
use jobcell::Error;

use crate::args::Args;

/// Which `--check…` section a host-caused error points to.
pub fn check_for(e: &Error) -> &'static str {
    match e {
        Error::Cgroup { .. } | Error::ControllerUnavailable { .. } => "--check-cgroups",
        Error::Spawn { op, .. } if op.starts_with("clone") || op.contains("_map") => {
            "--check-namespaces"
        }
        Error::OwnedBind { .. } => "--check-filesystem",
        Error::Setup { .. } | Error::SetupDied { .. } => "--check",
        _ => "--check",
    }
}

pub fn check(args: &Args) -> ExitCode {
    let kinds: Vec<SectionKind> = if args.check {
        SectionKind::ALL.to_vec()
    } else {
        [
            (args.check_namespaces, SectionKind::Namespaces),
            (args.check_cgroups, SectionKind::Cgroups),
            (args.check_filesystem, SectionKind::Filesystem),
        ]
        .into_iter()
        .filter_map(|(on, k)| on.then_some(k))
        .collect()
    };
    let report = host::check_sections(&kinds);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("a report serializes")
        );
    } else {
        print!("{report}");
    }
    ExitCode::from(u8::from(report.status() == Status::Problem))
}
