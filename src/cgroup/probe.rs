//! Which cgroup hierarchy this host offers, and where this process sits in it,
//! from `/proc/self/mountinfo` and `/proc/self/cgroup`.

use std::path::{Path, PathBuf};

/// Controllers a v1 hierarchy can carry (named hierarchies such as `name=systemd` carry none).
const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "blkio",
    "perf_event",
    "net_prio",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
];
/// The v1 controllers that, when mounted, make the host a v1 (or hybrid) host for jobcell.
const V1_RESOURCE_CONTROLLERS: &[&str] = &["cpu", "cpuacct", "cpuset", "memory", "blkio", "pids"];

/// One mounted v1 hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Hierarchy {
    /// Its controllers, e.g. `["cpu", "cpuacct"]` when co-mounted.
    pub controllers: Vec<String>,
    /// Where it is mounted.
    pub mount: PathBuf,
    /// This process's own cgroup in it, as a directory; `None` if it is not visible
    /// through the mount (the mount shows another part of the tree).
    pub own: Option<PathBuf>,
}

#[cfg(test)]
impl Hierarchy {
    pub(crate) fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// The cgroup layout of the host, as this process sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Host {
    /// Pure cgroup v2 (the unified hierarchy carries the controllers).
    V2 {
        mount: PathBuf,
        /// This process's own cgroup; `None` if the mount does not show it.
        own: Option<PathBuf>,
    },
    /// cgroup v1, or hybrid (v1 controllers next to an empty unified hierarchy).
    V1 { hierarchies: Vec<Hierarchy> },
    /// No usable cgroup file system.
    Unavailable { reason: String },
}

/// Reads the two proc files and works out the host's layout.
pub(crate) fn probe() -> Host {
    let mountinfo = match std::fs::read_to_string("/proc/self/mountinfo") {
        Ok(t) => t,
        Err(e) => {
            return Host::Unavailable {
                reason: format!("cannot read /proc/self/mountinfo: {e}"),
            }
        }
    };
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    resolve(&parse_mountinfo(&mountinfo), &parse_proc_cgroup(&cgroup))
}

/// A cgroup or cgroup2 line of mountinfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Mount {
    pub root: String,
    pub point: PathBuf,
    pub fstype: String,
    pub super_opts: String,
}

/// The cgroup mounts of a mountinfo text (other lines, and malformed ones, are skipped).
pub(crate) fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            let (root, point) = (*l.get(3)?, *l.get(4)?);
            let (fstype, super_opts) = (*r.first()?, *r.get(2)?);
            if fstype != "cgroup" && fstype != "cgroup2" {
                return None;
            }
            Some(Mount {
                root: unescape(root),
                point: PathBuf::from(unescape(point)),
                fstype: fstype.to_owned(),
                super_opts: super_opts.to_owned(),
            })
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` is a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// This process's memberships, from `/proc/self/cgroup`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Membership {
    /// The `0::/path` line.
    pub v2: Option<String>,
    /// `(controllers, path)` of each v1 line with controllers.
    pub v1: Vec<(Vec<String>, String)>,
}

pub(crate) fn parse_proc_cgroup(text: &str) -> Membership {
    let mut m = Membership::default();
    for line in text.lines() {
        let mut it = line.splitn(3, ':');
        let (Some(id), Some(ctrls), Some(path)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        if id == "0" && ctrls.is_empty() {
            m.v2 = Some(path.to_owned());
        } else if !ctrls.is_empty() {
            let list: Vec<String> = ctrls
                .split(',')
                .filter(|c| !c.starts_with("name="))
                .map(str::to_owned)
                .collect();
            if !list.is_empty() {
                m.v1.push((list, path.to_owned()));
            }
        }
    }
    m
}

/// The directory of cgroup `path` under a mount whose root is `root`, if the mount shows it.
fn dir_under(mount: &Path, root: &str, path: &str) -> Option<PathBuf> {
    let rel = if root == "/" {
        path.trim_start_matches('/')
    } else {
        let rest = path.strip_prefix(root)?;
        if !(rest.is_empty() || rest.starts_with('/')) {
            return None;
        }
        rest.trim_start_matches('/')
    };
    if rel.split('/').any(|c| c == "..") {
        return None; // a path outside our cgroup namespace
    }
    Some(if rel.is_empty() {
        mount.to_owned()
    } else {
        mount.join(rel)
    })
}

pub(crate) fn resolve(mounts: &[Mount], me: &Membership) -> Host {
    let mut hierarchies: Vec<Hierarchy> = Vec::new();
    for m in mounts.iter().filter(|m| m.fstype == "cgroup") {
        let mut controllers: Vec<String> = m
            .super_opts
            .split(',')
            .filter(|o| V1_CONTROLLERS.contains(o))
            .map(str::to_owned)
            .collect();
        if controllers.is_empty() {
            continue;
        }
        controllers.sort();
        let own = me
            .v1
            .iter()
            .find(|(c, _)| {
                let mut c = c.clone();
                c.sort();
                c == controllers
            })
            .and_then(|(_, path)| dir_under(&m.point, &m.root, path));
        match hierarchies
            .iter_mut()
            .find(|h| h.controllers == controllers)
        {
            // The same hierarchy mounted twice: keep the mount that shows our cgroup.
            Some(h) if h.own.is_none() && own.is_some() => {
                h.mount = m.point.clone();
                h.own = own;
            }
            Some(_) => {}
            None => hierarchies.push(Hierarchy {
                controllers,
                mount: m.point.clone(),
                own,
            }),
        }
    }
    if hierarchies.iter().any(|h| {
        h.controllers
            .iter()
            .any(|c| V1_RESOURCE_CONTROLLERS.contains(&c.as_str()))
    }) {
        return Host::V1 { hierarchies };
    }
    if let Some(m) = mounts.iter().find(|m| m.fstype == "cgroup2") {
        let own = me
            .v2
            .as_deref()
            .and_then(|p| dir_under(&m.point, &m.root, p));
        return Host::V2 {
            mount: m.point.clone(),
            own,
        };
    }
    Host::Unavailable {
        reason: "no cgroup file system is mounted (see /proc/self/mountinfo)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const HYBRID_CG: &str = "\
9:name=systemd:/
6:freezer:/
4:memory:/process_api/8f40
2:cpuacct:/
1:cpu:/
0::/
";

    #[test]
    fn hybrid_is_v1_with_own_cgroups_per_hierarchy() {
        let host = resolve(&parse_mountinfo(HYBRID), &parse_proc_cgroup(HYBRID_CG));
        let Host::V1 { hierarchies } = host else {
            panic!("{host:?}")
        };
        assert_eq!(hierarchies.len(), 4, "named hierarchies are skipped");
        let mem = hierarchies.iter().find(|h| h.has("memory")).unwrap();
        assert_eq!(
            mem.own.as_deref(),
            Some(Path::new("/sys/fs/cgroup/memory/process_api/8f40"))
        );
        let cpu = hierarchies.iter().find(|h| h.has("cpu")).unwrap();
        assert!(!cpu.has("cpuacct"));
        assert_eq!(cpu.own.as_deref(), Some(Path::new("/sys/fs/cgroup/cpu")));
    }

    #[test]
    fn comounted_controllers_are_one_hierarchy() {
        let mi = "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpuacct,cpu\n";
        let cg = "3:cpu,cpuacct:/user.slice\n";
        let Host::V1 { hierarchies } = resolve(&parse_mountinfo(mi), &parse_proc_cgroup(cg)) else {
            panic!()
        };
        assert_eq!(hierarchies[0].controllers, ["cpu", "cpuacct"]);
        assert_eq!(
            hierarchies[0].own.as_deref(),
            Some(Path::new("/sys/fs/cgroup/cpu,cpuacct/user.slice"))
        );
    }

    #[test]
    fn pure_v2() {
        let mi = "25 20 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";
        let cg = "0::/system.slice/app.service\n";
        assert_eq!(
            resolve(&parse_mountinfo(mi), &parse_proc_cgroup(cg)),
            Host::V2 {
                mount: "/sys/fs/cgroup".into(),
                own: Some("/sys/fs/cgroup/system.slice/app.service".into())
            }
        );
    }

    #[test]
    fn v2_mount_of_a_subtree() {
        // A container that bind-mounted only its own part of the host tree.
        let mi = "25 20 0:22 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let inside = parse_proc_cgroup("0::/docker/abc/sub\n");
        let Host::V2 { own, .. } = resolve(&parse_mountinfo(mi), &inside) else {
            panic!()
        };
        assert_eq!(own.as_deref(), Some(Path::new("/sys/fs/cgroup/sub")));
        let outside = parse_proc_cgroup("0::/docker/abcdef\n");
        let Host::V2 { own, .. } = resolve(&parse_mountinfo(mi), &outside) else {
            panic!()
        };
        assert_eq!(own, None);
        let foreign = parse_proc_cgroup("0::/../../x\n");
        let mi_root = "25 20 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let Host::V2 { own, .. } = resolve(&parse_mountinfo(mi_root), &foreign) else {
            panic!()
        };
        assert_eq!(own, None);
    }

    #[test]
    fn escaped_mount_points_and_nothing_mounted() {
        let mi = r"25 20 0:22 / /mnt/cg\040two rw - cgroup2 cgroup2 rw";
        assert_eq!(parse_mountinfo(mi)[0].point, Path::new("/mnt/cg two"));
        assert!(matches!(
            resolve(&[], &Membership::default()),
            Host::Unavailable { .. }
        ));
    }

    #[test]
    fn a_hierarchy_mounted_twice_is_used_where_it_shows_our_cgroup() {
        // Another part of the tree bind-mounted first, then the whole
        // hierarchy, then the whole again elsewhere.
        let mi = "\
32 31 0:29 /other /mnt/a rw - cgroup cgroup rw,memory
33 31 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
34 31 0:29 / /mnt/b rw - cgroup cgroup rw,memory
";
        let cg = parse_proc_cgroup("4:memory:/job/x\n");
        let Host::V1 { hierarchies } = resolve(&parse_mountinfo(mi), &cg) else {
            panic!()
        };
        assert_eq!(
            hierarchies,
            [Hierarchy {
                controllers: vec!["memory".into()],
                mount: "/sys/fs/cgroup/memory".into(),
                own: Some("/sys/fs/cgroup/memory/job/x".into()),
            }]
        );
    }

    /// How the kernel writes a path into mountinfo (`seq_path`/`mangle`):
    /// space, tab, newline and backslash as three octal digits.
    fn escape(s: &str) -> String {
        s.chars()
            .map(|c| match c {
                ' ' | '\t' | '\n' | '\\' => format!("\\{:03o}", c as u32),
                c => c.to_string(),
            })
            .collect()
    }

    #[test]
    fn mountinfo_escapes_are_undone_and_nothing_else() {
        for (text, path) in [
            (r"/mnt/a\040b\011c\012d\134e", "/mnt/a b\tc\nd\\e"),
            // Escapes at each position, and the largest digit in each place.
            (r"\040", " "),
            (r"a\040", "a "),
            (r"ab\040", "ab "),
            (r"abc\040x", "abc x"),
            (r"\101\177\007", "A\x7f\x07"),
            (r"\134\134", r"\\"),
            // A backslash not followed by three octal digits stays, as do
            // digits after anything else.
            (r"\x", r"\x"),
            (r"\08", r"\08"),
            (r"a\04", r"a\04"),
            (r"a\1", r"a\1"),
            (r"a\", r"a\"),
            (r"\", r"\"),
            (r"\\040", r"\ "),
            ("a123", "a123"),
            ("/jobcell-é", "/jobcell-é"),
            ("", ""),
        ] {
            assert_eq!(unescape(text), path, "{text:?}");
        }
    }

    proptest! {
        #[test]
        fn parsers_never_panic(a in "\\PC{0,300}", b in "\\PC{0,200}") {
            let _ = resolve(&parse_mountinfo(&a), &parse_proc_cgroup(&b));
        }

        #[test]
        fn escaped_paths_read_back(path in "[ \t\n\\\\0-9a-z/é]{0,40}") {
            prop_assert_eq!(unescape(&escape(&path)), path);
        }
    }
}
