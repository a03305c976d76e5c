//! A model of the cell's file tree, built by the planner as it emits mount
//! operations, so that paths can be checked and resolved before anything runs:
//! the program on `PATH`, the working directory, symlinks inside the cell.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::path::{join_lexical, CellPath};

/// What one entry of the cell tree is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Node {
    Dir,
    File {
        executable: bool,
    },
    Symlink(Vec<u8>),
    /// A device, socket or fifo.
    Other,
}

#[derive(Clone, Debug)]
enum Layer {
    /// A host path mounted here (directory or file).
    /// A host path mounted here; `untrusted` when jobs may write to it (user binds).
    Host(PathBuf, bool),
    /// A fresh, empty file system mounted here.
    EmptyFs,
    /// An entry created here.
    Entry(Node),
}

/// The cell's tree as a list of layers in the order they are applied; later layers win.
#[derive(Clone, Debug, Default)]
pub(crate) struct Layout {
    layers: Vec<(CellPath, Layer)>,
}

/// Why a cell path does not resolve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ResolveError {
    NotFound,
    NotADirectory,
    TooManyLinks,
}

const MAX_LINKS: usize = 40;

impl Layout {
    pub(crate) fn mount_host(&mut self, at: CellPath, source: &Path) {
        self.layers
            .push((at, Layer::Host(source.to_owned(), false)));
    }

    /// A host path jobs may write to (a user bind): symlinks in it are not to be trusted.
    pub(crate) fn mount_host_untrusted(&mut self, at: CellPath, source: &Path) {
        self.layers.push((at, Layer::Host(source.to_owned(), true)));
    }

    /// True when `path` lies inside (not at) a mount of an untrusted host path.
    pub(crate) fn in_untrusted_mount(&self, path: &CellPath) -> bool {
        for (at, layer) in self.layers.iter().rev() {
            if at == path {
                return false;
            }
            if path.starts_with(at) {
                match layer {
                    Layer::Host(_, untrusted) => return *untrusted,
                    Layer::EmptyFs => return false,
                    Layer::Entry(_) => {}
                }
            }
        }
        false
    }

    pub(crate) fn mount_empty(&mut self, at: CellPath) {
        self.layers.push((at, Layer::EmptyFs));
    }

    pub(crate) fn add(&mut self, at: CellPath, node: Node) {
        self.layers.push((at, Layer::Entry(node)));
    }

    /// The entry at exactly `path`, without following a symlink there.
    /// Every proper ancestor of `path` must already be a directory (the resolver ensures it).
    pub(crate) fn lookup(&self, path: &CellPath) -> Option<Node> {
        for (at, layer) in self.layers.iter().rev() {
            if at == path {
                return match layer {
                    Layer::Host(src, _) => host_node(src),
                    Layer::EmptyFs => Some(Node::Dir),
                    Layer::Entry(n) => Some(n.clone()),
                };
            }
            if path.starts_with(at) {
                match layer {
                    Layer::Host(src, _) => {
                        let rest = path.strip_prefix(at).unwrap_or_default();
                        return host_node(&src.join(OsStr::from_bytes(rest)));
                    }
                    Layer::EmptyFs => return None,
                    Layer::Entry(_) => {}
                }
            }
        }
        None
    }

    /// Resolves `path` inside the cell, following symlinks as the kernel would
    /// after `pivot_root` (absolute targets are relative to the cell's root).
    /// With `follow_last` false, a symlink in the last component is returned as is.
    pub(crate) fn resolve(
        &self,
        path: &CellPath,
        follow_last: bool,
    ) -> Result<(CellPath, Node), ResolveError> {
        let mut pending: Vec<Vec<u8>> = path.components().rev().map(<[u8]>::to_vec).collect();
        let mut cur = CellPath::root();
        let mut node = Node::Dir;
        let mut links = 0;
        while let Some(comp) = pending.pop() {
            if node != Node::Dir {
                return Err(ResolveError::NotADirectory);
            }
            let cand = cur.join(&comp);
            match self.lookup(&cand) {
                None => return Err(ResolveError::NotFound),
                Some(Node::Symlink(target)) if follow_last || !pending.is_empty() => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(ResolveError::TooManyLinks);
                    }
                    let target_path = join_lexical(&cur, &target);
                    // Restart from the root with the target's components in front of what is left.
                    pending.extend(target_path.components().rev().map(<[u8]>::to_vec));
                    cur = CellPath::root();
                    node = Node::Dir;
                }
                Some(n) => {
                    cur = cand;
                    node = n;
                }
            }
        }
        Ok((cur, node))
    }

    /// The host path behind a (resolved) cell path, if it lies in a host mount.
    #[cfg(test)]
    pub(crate) fn host_path(&self, path: &CellPath) -> Option<PathBuf> {
        for (at, layer) in self.layers.iter().rev() {
            if path.starts_with(at) {
                match layer {
                    Layer::Host(src, _) => {
                        let rest = path.strip_prefix(at).unwrap_or_default();
                        return Some(src.join(OsStr::from_bytes(rest)));
                    }
                    Layer::EmptyFs => return None,
                    Layer::Entry(_) if at == path => return None,
                    Layer::Entry(_) => {}
                }
            }
        }
        None
    }
}

fn host_node(p: &Path) -> Option<Node> {
    let md = std::fs::symlink_metadata(p).ok()?;
    let ft = md.file_type();
    Some(if ft.is_dir() {
        Node::Dir
    } else if ft.is_symlink() {
        Node::Symlink(std::fs::read_link(p).ok()?.into_os_string().into_vec())
    } else if ft.is_file() {
        Node::File {
            executable: md.permissions().mode() & 0o111 != 0,
        }
    } else if ft.is_block_device() || ft.is_char_device() || ft.is_fifo() || ft.is_socket() {
        Node::Other
    } else {
        return None;
    })
}

use std::os::unix::ffi::OsStringExt;

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> CellPath {
        CellPath::new(s).unwrap()
    }

    #[test]
    fn resolves_through_cell_symlinks_and_host_mounts() {
        let host = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(host.path().join("bin")).unwrap();
        std::fs::write(host.path().join("bin/tool"), "x").unwrap();
        std::fs::set_permissions(
            host.path().join("bin/tool"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        // An absolute symlink on the host must resolve inside the cell, not on the host.
        std::os::unix::fs::symlink("/usr/bin/tool", host.path().join("bin/alias")).unwrap();

        let mut l = Layout::default();
        l.mount_empty(CellPath::root());
        l.add(p("/usr"), Node::Dir);
        l.mount_host(p("/usr"), host.path());
        l.add(p("/bin"), Node::Symlink(b"usr/bin".to_vec()));

        let (path, node) = l.resolve(&p("/bin/tool"), true).unwrap();
        assert_eq!(path, p("/usr/bin/tool"));
        assert_eq!(node, Node::File { executable: true });
        let (path, _) = l.resolve(&p("/usr/bin/alias"), true).unwrap();
        assert_eq!(path, p("/usr/bin/tool"));
        assert_eq!(l.host_path(&path).unwrap(), host.path().join("bin/tool"));
        assert_eq!(l.resolve(&p("/nope"), true), Err(ResolveError::NotFound));
        assert_eq!(
            l.resolve(&p("/usr/bin/tool/x"), true),
            Err(ResolveError::NotADirectory)
        );
        let (_, n) = l.resolve(&p("/bin"), false).unwrap();
        assert!(matches!(n, Node::Symlink(_)));
    }

    #[test]
    fn later_mounts_shadow_earlier_entries() {
        let mut l = Layout::default();
        l.mount_empty(CellPath::root());
        l.add(p("/a"), Node::Dir);
        l.add(p("/a/b"), Node::Dir);
        l.mount_empty(p("/a"));
        assert_eq!(l.resolve(&p("/a/b"), true), Err(ResolveError::NotFound));
        l.add(p("/a/c"), Node::File { executable: false });
        assert!(l.resolve(&p("/a/c"), true).is_ok());
    }

    #[test]
    fn symlink_loops_end() {
        let mut l = Layout::default();
        l.mount_empty(CellPath::root());
        l.add(p("/x"), Node::Symlink(b"/y".to_vec()));
        l.add(p("/y"), Node::Symlink(b"x".to_vec()));
        assert_eq!(l.resolve(&p("/x"), true), Err(ResolveError::TooManyLinks));
    }
}
