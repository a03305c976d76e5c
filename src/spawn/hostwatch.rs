//! Facts about the host paths every root plan looks at (the system
//! directories, the `/etc` files a cell gets), cached while inotify reports
//! no change to them.
//!
//! The minimal root's plan asks for the type, metadata and symlink target of
//! ~17 host paths on every spawn: its skeleton is keyed by them, so an
//! edited host file gives cells a fresh copy. Asking the kernel each time
//! cost ~40 µs a spawn here. Now the answers are kept, and one read of an
//! inotify descriptor per plan ([`refresh`]) says whether any of those paths
//! (or their directories' entries) changed since; any event drops every
//! answer. Without inotify (its limits reached, say, or before the process
//! spawns a second time: see [`refresh`]) every lookup asks the kernel.

use std::collections::{HashMap, HashSet};
use std::fs::Metadata;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use rustix::fs::inotify;

/// What a spawn needs to know of a host path.
#[derive(Clone, Debug)]
pub(crate) struct Facts {
    /// `lstat` of the path.
    pub md: Metadata,
    /// Where it points, if it is a symlink (and could be read).
    pub link: Option<PathBuf>,
}

struct Cache {
    /// `None` where inotify cannot be had: nothing is cached then.
    fd: Option<OwnedFd>,
    /// When inotify was last asked for (without success: asked again a
    /// second later, since a failure may be a moment's EMFILE).
    asked: Option<std::time::Instant>,
    /// Answers, absent paths (`None`) included.
    entries: HashMap<PathBuf, Option<Facts>>,
    /// Directories whose entries are watched.
    parents: HashSet<PathBuf>,
}

static CACHE: Mutex<Option<Cache>> = Mutex::new(None);

/// Changes to a watched path itself.
fn self_flags() -> inotify::WatchFlags {
    use inotify::WatchFlags as W;
    W::DONT_FOLLOW | W::MODIFY | W::ATTRIB | W::CLOSE_WRITE | W::DELETE_SELF | W::MOVE_SELF
}

/// Entries appearing in, or leaving, a watched directory.
fn parent_flags() -> inotify::WatchFlags {
    use inotify::WatchFlags as W;
    W::CREATE | W::DELETE | W::MOVED_FROM | W::MOVED_TO | W::DELETE_SELF | W::MOVE_SELF
}

/// The cache; with `watch`, its inotify descriptor is made if it has none
/// (and the last try is a second old).
fn cache(g: &mut Option<Cache>, watch: bool) -> &mut Cache {
    let cache = g.get_or_insert_with(|| Cache {
        fd: None,
        asked: None,
        entries: HashMap::new(),
        parents: HashSet::new(),
    });
    let due = cache
        .asked
        .is_none_or(|at| at.elapsed() >= std::time::Duration::from_secs(1));
    if watch && cache.fd.is_none() && due {
        cache.asked = Some(std::time::Instant::now());
        cache.fd =
            inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK).ok();
    }
    cache
}

/// Takes in what changed since the last call: once per plan, before its
/// lookups (a change during the plan is one just after it, as before).
///
/// `watch`: the process spawns again, so the answers are worth keeping.
/// A one-shot program's spawn asks the kernel instead and makes no inotify
/// descriptor: closing one waits for the kernel to free its watches (an
/// SRCU grace period, 10-15 ms on an idle machine), which such a program
/// would pay at exit, to save ~40 µs once.
pub(crate) fn refresh(watch: bool) {
    let mut g = CACHE.lock();
    let cache = cache(&mut g, watch);
    if cache.fd.as_ref().is_some_and(changed) {
        cache.entries.clear();
    }
}

/// The facts of `path` (`None` if it does not exist or cannot be looked
/// at), as of the last [`refresh`].
pub(crate) fn lookup(path: &Path) -> Option<Facts> {
    let mut g = CACHE.lock();
    let cache = cache(&mut g, false);
    let Some(fd) = &cache.fd else {
        return ask(path);
    };
    if let Some(known) = cache.entries.get(path) {
        return known.clone();
    }
    // Watches first, then the question: a change in between is reported.
    let mut watched = true;
    if let Some(parent) = path.parent() {
        if !cache.parents.contains(parent) {
            if inotify::add_watch(fd, parent, parent_flags()).is_ok() {
                cache.parents.insert(parent.to_owned());
            } else {
                watched = false;
            }
        }
    }
    let exists = match inotify::add_watch(fd, path, self_flags()) {
        Ok(_) => true,
        Err(rustix::io::Errno::NOENT) => false,
        Err(_) => {
            watched = false;
            true
        }
    };
    let facts = if exists { ask(path) } else { None };
    if watched {
        cache.entries.insert(path.to_owned(), facts.clone());
    }
    facts
}

/// The inotify descriptor, if one is held: what a leak check must not count.
pub(crate) fn descriptor() -> Option<std::os::fd::RawFd> {
    use std::os::fd::AsRawFd;
    CACHE.lock().as_ref()?.fd.as_ref().map(AsRawFd::as_raw_fd)
}

/// Drains the inotify queue: true if anything happened.
fn changed(fd: &OwnedFd) -> bool {
    let mut buf = [0u8; 4096];
    let mut any = false;
    loop {
        match rustix::io::read(fd, &mut buf) {
            Ok(n) if n > 0 => any = true,
            Err(rustix::io::Errno::INTR) => {}
            // EAGAIN: drained. Anything else: assume the worst.
            Err(rustix::io::Errno::AGAIN) => return any,
            _ => return true,
        }
    }
}

fn ask(path: &Path) -> Option<Facts> {
    let md = std::fs::symlink_metadata(path).ok()?;
    let link = if md.file_type().is_symlink() {
        std::fs::read_link(path).ok()
    } else {
        None
    };
    Some(Facts { md, link })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn answers_follow_every_change() {
        // As a plan does: take in the changes, then look.
        let look = |p: &Path| {
            refresh(true);
            lookup(p)
        };
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("conf");
        assert!(look(&f).is_none(), "absent");
        std::fs::write(&f, "a").unwrap();
        assert_eq!(look(&f).expect("created").md.size(), 1);
        assert_eq!(look(&f).unwrap().md.size(), 1, "cached");
        // In place, as an editor that truncates and writes does.
        std::fs::write(&f, "abc").unwrap();
        assert_eq!(look(&f).unwrap().md.size(), 3);
        let before = look(&f).unwrap().md.mode();
        std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        assert_ne!(look(&f).unwrap().md.mode(), before);
        // Replaced by a symlink through a rename, as package managers do.
        let tmp = d.path().join(".conf.new");
        std::os::unix::fs::symlink("target", &tmp).unwrap();
        std::fs::rename(&tmp, &f).unwrap();
        let facts = look(&f).unwrap();
        assert!(facts.md.file_type().is_symlink());
        assert_eq!(facts.link.as_deref(), Some(Path::new("target")));
        std::fs::remove_file(&f).unwrap();
        assert!(look(&f).is_none(), "deleted");
    }
}
