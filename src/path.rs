//! Paths inside the cell: absolute, normalised, never climbing with `..`.

#[cfg(test)]
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::{Error, Result};

/// Longest path the kernel accepts (PATH_MAX includes the NUL).
const PATH_MAX: usize = 4095;
const NAME_MAX: usize = 255;

/// A validated, normalised absolute path inside the cell, as bytes without a trailing NUL.
///
/// `"/"` is the root; every other path is `/` followed by `/`-separated
/// components, none of them empty, `.` or `..`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct CellPath(Vec<u8>);

impl CellPath {
    pub(crate) fn root() -> CellPath {
        CellPath(b"/".to_vec())
    }

    /// Validates and normalises `p`: collapses repeated slashes and a trailing
    /// slash; refuses relative paths, `.`, `..`, NUL bytes and over-long names.
    pub(crate) fn new(p: impl AsRef<Path>) -> Result<CellPath> {
        let raw = p.as_ref().as_os_str().as_bytes();
        let bad = |reason| Error::InvalidPath {
            path: String::from_utf8_lossy(raw).into_owned(),
            reason,
        };
        if raw.is_empty() {
            return Err(bad("the path is empty"));
        }
        if raw.contains(&0) {
            return Err(bad("the path contains a NUL byte"));
        }
        if raw[0] != b'/' {
            return Err(bad("the path must be absolute"));
        }
        let mut out = Vec::with_capacity(raw.len());
        for comp in raw.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
            match comp {
                b"." => return Err(bad("the path contains a '.' component")),
                b".." => return Err(bad("the path contains a '..' component")),
                c if c.len() > NAME_MAX => return Err(bad("a component is longer than 255 bytes")),
                c => {
                    out.push(b'/');
                    out.extend_from_slice(c);
                }
            }
        }
        if out.is_empty() {
            out.push(b'/');
        }
        if out.len() > PATH_MAX {
            return Err(bad("the path is longer than PATH_MAX"));
        }
        Ok(CellPath(out))
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    #[cfg(test)]
    pub(crate) fn as_os_str(&self) -> &OsStr {
        OsStr::from_bytes(&self.0)
    }

    pub(crate) fn display(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }

    pub(crate) fn is_root(&self) -> bool {
        self.0 == b"/"
    }

    /// The components, in order (none for the root).
    pub(crate) fn components(&self) -> impl DoubleEndedIterator<Item = &[u8]> {
        self.0.split(|&b| b == b'/').filter(|c| !c.is_empty())
    }

    /// The parent directory (the root is its own parent).
    pub(crate) fn parent(&self) -> CellPath {
        match self.0.iter().rposition(|&b| b == b'/') {
            Some(0) | None => CellPath::root(),
            Some(i) => CellPath(self.0[..i].to_vec()),
        }
    }

    /// `self` followed by one component; `name` must not contain '/'.
    pub(crate) fn join(&self, name: &[u8]) -> CellPath {
        let mut v = self.0.clone();
        if !self.is_root() {
            v.push(b'/');
        }
        v.extend_from_slice(name);
        CellPath(v)
    }

    /// True when `self` is `other` or lies below it.
    pub(crate) fn starts_with(&self, other: &CellPath) -> bool {
        if other.is_root() {
            return true;
        }
        self.0.starts_with(&other.0)
            && (self.0.len() == other.0.len() || self.0[other.0.len()] == b'/')
    }

    /// The part of `self` below `base` (empty when equal), without a leading slash.
    pub(crate) fn strip_prefix(&self, base: &CellPath) -> Option<&[u8]> {
        if !self.starts_with(base) {
            return None;
        }
        if base.is_root() {
            return Some(&self.0[1..]);
        }
        let rest = &self.0[base.0.len()..];
        Some(rest.strip_prefix(b"/").unwrap_or(rest))
    }
}

/// Resolves `rel` (which may contain `.` and `..`) against the absolute cell directory `base`,
/// lexically. Used for relative program paths and symlink targets; `..` at the root stays at the root.
pub(crate) fn join_lexical(base: &CellPath, rel: &[u8]) -> CellPath {
    let mut comps: Vec<&[u8]> = if rel.first() == Some(&b'/') {
        Vec::new()
    } else {
        base.components().collect()
    };
    for c in rel.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                comps.pop();
            }
            c => comps.push(c),
        }
    }
    let mut v = Vec::new();
    for c in comps {
        v.push(b'/');
        v.extend_from_slice(c);
    }
    if v.is_empty() {
        v.push(b'/');
    }
    CellPath(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normalises() {
        assert_eq!(CellPath::new("/a//b/").unwrap().as_bytes(), b"/a/b");
        assert_eq!(CellPath::new("///").unwrap().as_bytes(), b"/");
        assert!(CellPath::new("a/b").is_err());
        assert!(CellPath::new("/a/../b").is_err());
        assert!(CellPath::new("/a/./b").is_err());
        assert!(CellPath::new("").is_err());
        assert!(CellPath::new("/a\0b").is_err());
    }

    #[test]
    fn relations() {
        let a = CellPath::new("/a/b").unwrap();
        assert!(a.starts_with(&CellPath::new("/a").unwrap()));
        assert!(!CellPath::new("/ab")
            .unwrap()
            .starts_with(&CellPath::new("/a").unwrap()));
        assert_eq!(a.parent().as_bytes(), b"/a");
        assert_eq!(CellPath::new("/a").unwrap().parent().as_bytes(), b"/");
        assert_eq!(a.strip_prefix(&CellPath::root()).unwrap(), b"a/b");
        assert_eq!(a.strip_prefix(&a).unwrap(), b"");
        assert_eq!(join_lexical(&a, b"../c").as_bytes(), b"/a/c");
        assert_eq!(join_lexical(&a, b"/x/./y").as_bytes(), b"/x/y");
        assert_eq!(join_lexical(&a, b"../../../..").as_bytes(), b"/");
    }

    fn component() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9_-]{1,8}",
            Just(".".to_string()),
            Just("..".to_string()),
            Just(String::new()),
        ]
    }

    proptest! {
        #[test]
        fn valid_paths_are_normal(comps in proptest::collection::vec(component(), 0..8), lead in any::<bool>()) {
            let s = format!("{}{}", if lead { "/" } else { "" }, comps.join("/"));
            let absolute = s.starts_with('/');
            match CellPath::new(&s) {
                Ok(p) => {
                    let b = p.as_bytes();
                    prop_assert!(absolute);
                    prop_assert_eq!(b[0], b'/');
                    prop_assert!(b.len() == 1 || !b.ends_with(b"/"));
                    prop_assert!(!b.windows(2).any(|w| w == b"//"));
                    for c in p.components() {
                        prop_assert!(c != b"." && c != b".." && !c.is_empty());
                    }
                    // Normalising again changes nothing.
                    let again = CellPath::new(p.as_os_str()).unwrap();
                    prop_assert_eq!(&again, &p);
                    // The parent is a prefix.
                    prop_assert!(p.starts_with(&p.parent()));
                }
                Err(_) => {
                    prop_assert!(!absolute || comps.iter().any(|c| c == "." || c == ".."));
                }
            }
        }

        #[test]
        fn lexical_join_never_escapes_root(base in proptest::collection::vec("[a-z]{1,3}", 0..4),
                                           rel in proptest::collection::vec(component(), 0..8)) {
            let b = CellPath::new(format!("/{}", base.join("/"))).unwrap();
            let j = join_lexical(&b, rel.join("/").as_bytes());
            prop_assert_eq!(j.as_bytes()[0], b'/');
            for c in j.components() {
                prop_assert!(c != b".." && c != b".");
            }
        }
    }
}
