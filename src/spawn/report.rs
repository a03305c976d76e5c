//! What a cell reports through its error pipe before `execve`: a
//! `(stage, errno, step)` record (see `cell/mod.rs`), read by the host
//! within the setup's deadline and turned into an `Error` that names the
//! mount, file, path or limit the step was about.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Instant;

use libc::c_int;

use super::cell::{self, RECORD_LEN};
use super::plan;
use crate::error::{Errno, Error, Stage};
use crate::sys;

/// The error a cell's failure record describes.
pub(super) fn record_error(
    bp: &plan::Blueprint,
    joins: &[PathBuf],
    rec: &[u8; RECORD_LEN],
) -> Error {
    let (stage, errno, step) = cell::decode_record(rec);
    let stage = Stage::from_u32(stage).unwrap_or(Stage::BuildRoot);
    Error::Setup {
        stage,
        detail: stage_detail(bp, joins, stage, step),
        errno: Errno(errno),
    }
}

/// Which mount, file, path or limit step `step` of `stage` is about.
pub(super) fn stage_detail(
    bp: &plan::Blueprint,
    joins: &[PathBuf],
    stage: Stage,
    step: u32,
) -> String {
    match stage {
        Stage::BuildRoot => match bp.op_steps.get(step as usize) {
            Some(Some(i)) => bp.root_steps[*i].describe(),
            Some(None) => "attach the root skeleton".into(),
            None => format!("step {step}"),
        },
        Stage::Exec => bp.program.to_string_lossy().into_owned(),
        Stage::JoinCgroup => joins
            .get(step as usize)
            .map(|dir| dir.display().to_string())
            .unwrap_or_default(),
        Stage::Chdir => bp.cwd.to_string_lossy().into_owned(),
        Stage::SetUser => format!("uid {}", bp.ids.uid),
        Stage::SetGroups => format!("gid {}", bp.ids.gid),
        Stage::PivotRoot => bp.staging.to_string_lossy().into_owned(),
        Stage::Landlock => landlock_detail(bp, step),
        Stage::Rlimits => bp
            .rlimits
            .get(step as usize)
            .map(|(r, l)| format!("resource {r} = {}/{}", l.rlim_cur, l.rlim_max))
            .unwrap_or_default(),
        Stage::Seccomp => bp
            .seccomp
            .as_ref()
            .or(bp.init_seccomp.as_ref())
            .map(|p| format!("filter of {} BPF instructions", p.len()))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// Waits until `deadline` for the cell's record: `Ok(None)` at end-of-file
/// (the job has executed), `Ok(Some(_))` for a failure record, `Err(())`
/// if neither came in time.
pub(super) fn wait_record(
    error_read: &OwnedFd,
    deadline: Instant,
) -> Result<Option<[u8; RECORD_LEN]>, ()> {
    loop {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return Err(());
        };
        let mut fds = [libc::pollfd {
            fd: error_read.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        let ms = left.as_millis().min(i32::MAX as u128) as c_int + 1;
        match sys::poll(&mut fds, ms) {
            Ok(1) => break,
            Ok(_) | Err(Errno(libc::EINTR)) => {}
            // Cannot wait: read, as before there was a deadline.
            Err(_) => break,
        }
    }
    let mut rec = [0u8; RECORD_LEN];
    // A record is written whole before the cell exits: it is all there.
    Ok((read_full(error_read, &mut rec) == RECORD_LEN).then_some(rec))
}

/// A failure record the cell left before it could be released, if it left
/// one: when writing its maps or releasing it fails, the cell may have died
/// first, and its record says why (the write's error would only say that
/// it is gone). Never waits: a live cell has written nothing.
pub(super) fn early_record(error_read: &OwnedFd) -> Option<[u8; RECORD_LEN]> {
    let mut fds = [libc::pollfd {
        fd: error_read.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    if !matches!(sys::poll(&mut fds, 0), Ok(1)) || fds[0].revents & libc::POLLIN == 0 {
        return None;
    }
    let mut rec = [0u8; RECORD_LEN];
    // A record is written whole before the cell exits: it is all there.
    (read_full(error_read, &mut rec) == RECORD_LEN).then_some(rec)
}

/// The Landlock rule (its path) a failure refers to.
fn landlock_detail(bp: &plan::Blueprint, step: u32) -> String {
    #[cfg(feature = "landlock")]
    if let Some(l) = &bp.landlock {
        if let Some((path, _)) = l.rules.get(step as usize) {
            return format!("rule for {}", path.to_string_lossy());
        }
        return "the ruleset".into();
    }
    let _ = (bp, step);
    String::new()
}

fn read_full(fd: &OwnedFd, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match rustix::io::read(fd, &mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => break,
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_early_record_is_read_without_waiting() {
        let (r, w) = super::super::pipe("error").unwrap();
        assert_eq!(early_record(&r), None, "nothing written: no wait");
        let rec = cell::encode_record(Stage::JoinCgroup, Errno(libc::EACCES), 2);
        rustix::io::write(&w, &rec).unwrap();
        assert_eq!(early_record(&r), Some(rec));
        drop(w);
        assert_eq!(early_record(&r), None, "end-of-file is no record");
    }
}
