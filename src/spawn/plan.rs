//! Turning a `Sandbox` and a `Command` into plain data for the cell: every
//! path as a C string, every mount as a prepared step, the program resolved
//! inside the cell. All input errors surface here, before anything is spawned.

use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};

use crate::error::{Errno, Error, Result};
use crate::sandbox::path::{join_lexical, CellPath};
use crate::sandbox::{Command, MountSpec, Network, Root, Sandbox, DEFAULT_TMP_SIZE};
use crate::spawn::child::Op;
use crate::spawn::idmap::{self, IdPlan};
use crate::spawn::layout::{Layout, Node};
use crate::sys;

/// The PATH used to find programs when the job's environment has none.
pub(crate) const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Host directories bound read-only into the minimal root (symlinks stay symlinks).
const SYSTEM_DIRS: &[&str] = &["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"];
/// `/etc` entries programs need to run. Never secrets: no shadow, ssh keys, machine-id.
const ETC_ENTRIES: &[&str] = &[
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "nsswitch.conf",
    "localtime",
    "timezone",
    "alternatives",
    "os-release",
    "services",
    "protocols",
];
/// `/etc` entries that only matter with the host's network.
const ETC_NETWORK_ENTRIES: &[&str] = &[
    "resolv.conf",
    "host.conf",
    "gai.conf",
    "ssl",
    "ca-certificates",
];
const DEV_NODES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];
const DEV_SHM_SIZE: u64 = 64 << 20;

/// The cell as plain data, plus the host resources that must stay open until the clone.
pub(crate) struct Blueprint {
    pub ids: IdPlan,
    pub ops: Vec<Op>,
    /// A human description of each op, for error messages.
    pub op_names: Vec<String>,
    /// Detached mount trees referenced by `Op::Attach`.
    pub trees: Vec<OwnedFd>,
    pub staging: CString,
    pub hostname: Vec<u8>,
    pub loopback: bool,
    pub ns_flags: u64,
    pub program: CString,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    pub cwd: CString,
    /// The job's seccomp program, if it gets one.
    pub seccomp: Option<Vec<libc::sock_filter>>,
}

/// Whether `open_tree` + `mount_setattr` work here (0 unknown, 1 yes, 2 no).
static MOUNT_API: AtomicU8 = AtomicU8::new(0);

pub(crate) fn build(sandbox: &Sandbox, command: &Command) -> Result<Blueprint> {
    sandbox.limits.validate()?;
    let ids = idmap::plan(sandbox.id_map, sandbox.uid, sandbox.gid)?;

    let hostname = sandbox.hostname.as_bytes().to_vec();
    if hostname.is_empty() || hostname.len() > 64 || hostname.contains(&0) {
        return Err(Error::InvalidSetting {
            name: "hostname",
            value: sandbox.hostname.to_string_lossy().into_owned(),
            reason: "must be 1 to 64 bytes without NUL".into(),
        });
    }
    let cwd = CellPath::new(&sandbox.current_dir)?;

    let program = command.program.as_bytes();
    if program.is_empty() {
        return Err(Error::EmptyProgram);
    }
    let mut argv = vec![cstring(program, || "the program".to_string())?];
    for (i, a) in command.args.iter().enumerate() {
        argv.push(cstring(a.as_bytes(), || format!("argument {}", i + 1))?);
    }
    let env = environment(sandbox, command, &ids)?;

    let mut b = Builder::new(sandbox)?;
    b.root(sandbox, &ids)?;
    for m in &sandbox.mounts {
        b.user_mount(m, &ids)?;
    }
    b.finish_root();

    let path_var = env
        .iter()
        .find(|(k, _)| k.as_bytes() == b"PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| DEFAULT_PATH.into());
    let resolved = resolve_program(&b.layout, program, &cwd, path_var.as_bytes())?;
    match b.layout.resolve(&cwd, true) {
        Ok((_, Node::Dir)) => {}
        _ => {
            return Err(Error::CurrentDirNotFound {
                path: cwd.display(),
            })
        }
    }

    let envp = env
        .iter()
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            cstring(&kv, || format!("environment variable {}", k.to_string_lossy()))
        })
        .collect::<Result<Vec<_>>>()?;

    #[cfg(feature = "seccomp")]
    let seccomp = sandbox.seccomp.compile()?;
    #[cfg(not(feature = "seccomp"))]
    let seccomp = None;

    let mut ns_flags = (libc::CLONE_NEWUSER
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC) as u64;
    if sandbox.network == Network::None {
        ns_flags |= libc::CLONE_NEWNET as u64;
    }

    Ok(Blueprint {
        ids,
        ops: b.ops,
        op_names: b.op_names,
        trees: b.trees,
        staging: b.staging,
        hostname,
        loopback: sandbox.network == Network::None,
        ns_flags,
        program: cstring(resolved.as_bytes(), || "the program path".into())?,
        argv,
        envp,
        cwd: cstring(cwd.as_bytes(), || "the working directory".into())?,
        seccomp,
    })
}

fn cstring(bytes: &[u8], what: impl FnOnce() -> String) -> Result<CString> {
    CString::new(bytes).map_err(|_| Error::NulByte {
        what: what(),
        value: String::from_utf8_lossy(bytes).into_owned(),
    })
}

/// The job's environment: a small default (never the host's), then the
/// sandbox's settings, then the command's.
fn environment(sandbox: &Sandbox, command: &Command, ids: &IdPlan) -> Result<Vec<(OsString, OsString)>> {
    let mut env: Vec<(OsString, OsString)> = Vec::new();
    if !sandbox.env_clear {
        let user = if ids.uid == 0 { "root" } else { "user" };
        let home = if ids.uid == 0 { "/root" } else { "/tmp" };
        for (k, v) in [
            ("PATH", DEFAULT_PATH),
            ("HOME", home),
            ("USER", user),
            ("LOGNAME", user),
            ("LANG", "C.UTF-8"),
        ] {
            env.push((k.into(), v.into()));
        }
        env.push(("HOSTNAME".into(), sandbox.hostname.clone()));
    }
    for (k, v) in sandbox.env.iter().chain(command.env.iter()) {
        let kb = k.as_bytes();
        if kb.is_empty() || kb.contains(&b'=') || kb.contains(&0) {
            return Err(Error::InvalidSetting {
                name: "environment variable name",
                value: k.to_string_lossy().into_owned(),
                reason: "must be non-empty, without '=' or NUL".into(),
            });
        }
        env.retain(|(ek, _)| ek != k);
        if let Some(v) = v {
            env.push((k.clone(), v.clone()));
        }
    }
    Ok(env)
}

/// Finds the program inside the cell: an absolute or relative path as given, or
/// a bare name on `PATH`, like `execvp` would after `pivot_root`.
fn resolve_program(layout: &Layout, program: &[u8], cwd: &CellPath, path_var: &[u8]) -> Result<CellPath> {
    let name = String::from_utf8_lossy(program).into_owned();
    let runnable = |p: &CellPath| matches!(layout.resolve(p, true), Ok((_, Node::File { executable: true })));
    if program.contains(&b'/') {
        let p = if program.starts_with(b"/") {
            CellPath::new(OsStr::from_bytes(program))?
        } else {
            join_lexical(cwd, program)
        };
        if runnable(&p) {
            return Ok(p);
        }
        return Err(Error::ProgramNotFound {
            program: name,
            searched: format!("{} (missing or not executable)", p.display()),
        });
    }
    for dir in path_var.split(|&b| b == b':') {
        if !dir.starts_with(b"/") {
            continue; // relative PATH entries are ignored, as a careful execvp does
        }
        let Ok(d) = CellPath::new(OsStr::from_bytes(dir)) else {
            continue;
        };
        let p = d.join(program);
        if runnable(&p) {
            return Ok(p);
        }
    }
    Err(Error::ProgramNotFound {
        program: name,
        searched: format!("PATH={}", String::from_utf8_lossy(path_var)),
    })
}

/// Emits ops and keeps the layout model in step with them.
struct Builder {
    ops: Vec<Op>,
    op_names: Vec<String>,
    trees: Vec<OwnedFd>,
    layout: Layout,
    staging: CString,
    staging_bytes: Vec<u8>,
    mount_api: bool,
    minimal_root: bool,
    user_tmp: bool,
}

impl Builder {
    fn new(sandbox: &Sandbox) -> Result<Builder> {
        let mount_api = mount_api_available();
        // Path-based binds (old kernels) must not have their sources hidden by the staging mount.
        let mut sources: Vec<PathBuf> = Vec::new();
        if !mount_api {
            sources.extend(SYSTEM_DIRS.iter().map(PathBuf::from));
            sources.push("/etc".into());
            sources.push("/dev".into());
            for m in &sandbox.mounts {
                if let MountSpec::Bind { source, .. } = m {
                    sources.push(std::fs::canonicalize(source).unwrap_or_else(|_| source.clone()));
                }
            }
            if let Root::Dir(d) = &sandbox.root {
                sources.push(std::fs::canonicalize(d).unwrap_or_else(|_| d.clone()));
            }
        }
        let staging = ["/tmp", "/mnt", "/run", "/var/tmp", "/media", "/srv", "/opt"]
            .iter()
            .map(Path::new)
            .find(|c| {
                std::fs::symlink_metadata(c).is_ok_and(|m| m.is_dir())
                    && !sources.iter().any(|s| s.starts_with(c))
            })
            .ok_or_else(|| Error::InvalidSetting {
                name: "bind sources",
                value: String::new(),
                reason: "no staging directory for the new root is free of bind sources".into(),
            })?;
        let staging_bytes = staging.as_os_str().as_bytes().to_vec();
        Ok(Builder {
            ops: Vec::new(),
            op_names: Vec::new(),
            trees: Vec::new(),
            layout: Layout::default(),
            staging: CString::new(staging_bytes.clone()).expect("static path"),
            staging_bytes,
            mount_api,
            minimal_root: matches!(sandbox.root, Root::Minimal),
            user_tmp: sandbox.mounts.iter().any(|m| {
                matches!(m, MountSpec::Tmpfs { target, .. }
                    if CellPath::new(target).is_ok_and(|t| t.as_bytes() == b"/tmp"))
            }),
        })
    }

    /// The host-side path of a cell path while the root is being built.
    fn staged(&self, p: &CellPath) -> CString {
        let mut v = self.staging_bytes.clone();
        if !p.is_root() {
            v.extend_from_slice(p.as_bytes());
        }
        // Cell paths never contain NUL (checked by CellPath::new).
        CString::new(v).expect("cell paths have no NUL")
    }

    fn push(&mut self, op: Op, name: String) {
        self.ops.push(op);
        self.op_names.push(name);
    }

    fn mkdir(&mut self, p: &CellPath) {
        let path = self.staged(p);
        self.push(Op::Mkdir { path }, format!("mkdir {}", p.display()));
        self.layout.add(p.clone(), Node::Dir);
    }

    fn tmpfs(&mut self, p: &CellPath, flags: u64, data: String) {
        let target = self.staged(p);
        self.push(
            Op::Mount {
                fstype: c"tmpfs",
                target,
                flags,
                data: Some(CString::new(data.clone()).expect("no NUL")),
            },
            format!("mount tmpfs on {} ({data})", p.display()),
        );
        self.layout.mount_empty(p.clone());
    }

    fn symlink(&mut self, value: &[u8], link: &CellPath) -> Result<()> {
        let v = cstring(value, || format!("symlink target for {}", link.display()))?;
        let l = self.staged(link);
        self.push(
            Op::Symlink { value: v, link: l },
            format!("symlink {} -> {}", link.display(), String::from_utf8_lossy(value)),
        );
        self.layout.add(link.clone(), Node::Symlink(value.to_vec()));
        Ok(())
    }

    /// Binds the host `source` at `target`; the mount point must already exist.
    fn bind(&mut self, source: &Path, target: &CellPath, writable: bool, what: &'static str) -> Result<()> {
        let src = cstring(source.as_os_str().as_bytes(), || format!("{what} path"))?;
        let mode = if writable { "rw" } else { "ro" };
        let name = format!("bind {} -> {} ({mode})", source.display(), target.display());
        let staged = self.staged(target);
        // Binds are nosuid and nodev, except /dev's nodes, which are the point.
        let is_dev = what == "device node";
        let mut set = sys::MOUNT_ATTR_NOSUID;
        if !is_dev {
            set |= sys::MOUNT_ATTR_NODEV;
        }
        if !writable {
            set |= sys::MOUNT_ATTR_RDONLY;
        }
        if self.mount_api {
            let fd = sys::open_tree_clone(&src, set).map_err(|errno| Error::HostPath {
                what,
                path: source.to_owned(),
                errno,
            })?;
            self.push(
                Op::Attach {
                    fd: fd.as_raw_fd(),
                    target: staged,
                },
                name,
            );
            self.trees.push(fd);
        } else {
            std::fs::metadata(source).map_err(|e| Error::HostPath {
                what,
                path: source.to_owned(),
                errno: Errno::from(&e),
            })?;
            let locked = locked_flags(source);
            let mut flags = locked | libc::MS_BIND | libc::MS_NOSUID;
            if !is_dev {
                flags |= libc::MS_NODEV;
            }
            if !writable {
                flags |= libc::MS_RDONLY;
            }
            self.push(
                Op::Bind {
                    source: src,
                    target: staged.clone(),
                },
                name.clone(),
            );
            self.push(Op::Remount { target: staged, flags }, format!("remount {name}"));
        }
        self.layout.mount_host(target.clone(), source);
        Ok(())
    }

    /// Creates the mount point for a host path: a directory, or an empty file.
    fn mount_point_for(&mut self, source: &Path, target: &CellPath, what: &'static str) -> Result<()> {
        let md = std::fs::metadata(source).map_err(|e| Error::HostPath {
            what,
            path: source.to_owned(),
            errno: Errno::from(&e),
        })?;
        match self.layout.lookup(target) {
            Some(Node::Dir) if md.is_dir() => {}
            Some(Node::File { .. }) | Some(Node::Other) if !md.is_dir() => {}
            Some(_) => {
                return Err(Error::InvalidPath {
                    path: target.display(),
                    reason: "the mount point exists in the cell with another file type",
                })
            }
            None if md.is_dir() => self.mkdir(target),
            None => {
                let path = self.staged(target);
                self.push(Op::Touch { path }, format!("create mount point {}", target.display()));
                self.layout.add(target.clone(), Node::File { executable: false });
            }
        }
        Ok(())
    }

    /// Resolves the directory that will hold `target`, creating missing
    /// directories along the way, and returns `target` with its parent resolved.
    fn prepare_parent(&mut self, target: &CellPath) -> Result<CellPath> {
        if target.is_root() {
            return Err(Error::InvalidPath {
                path: "/".into(),
                reason: "cannot replace the root; use Sandbox::rootfs",
            });
        }
        let last = target.components().last().unwrap_or_default().to_vec();
        let mut cur = CellPath::root();
        let parent = target.parent();
        let mut pending: Vec<Vec<u8>> = parent.components().rev().map(<[u8]>::to_vec).collect();
        let mut links = 0;
        while let Some(c) = pending.pop() {
            let cand = cur.join(&c);
            match self.layout.lookup(&cand) {
                None => {
                    self.mkdir(&cand);
                    cur = cand;
                }
                Some(Node::Dir) => cur = cand,
                Some(Node::Symlink(v)) => {
                    links += 1;
                    if links > 40 {
                        return Err(Error::InvalidPath {
                            path: target.display(),
                            reason: "too many symlinks inside the cell",
                        });
                    }
                    let t = join_lexical(&cur, &v);
                    pending.extend(t.components().rev().map(<[u8]>::to_vec));
                    cur = CellPath::root();
                }
                Some(_) => {
                    return Err(Error::InvalidPath {
                        path: target.display(),
                        reason: "a parent is not a directory inside the cell",
                    })
                }
            }
        }
        let full = cur.join(&last);
        // A symlink at the target itself would be followed by mount(2) on the host side
        // of pivot_root; follow it here, inside the cell, instead.
        match self.layout.lookup(&full) {
            Some(Node::Symlink(_)) => match self.layout.resolve(&full, true) {
                Ok((p, _)) => Ok(p),
                Err(_) => Err(Error::InvalidPath {
                    path: target.display(),
                    reason: "the target is a dangling symlink inside the cell",
                }),
            },
            _ => Ok(full),
        }
    }

    fn root(&mut self, sandbox: &Sandbox, ids: &IdPlan) -> Result<()> {
        match &sandbox.root {
            Root::Minimal => {
                self.tmpfs(
                    &CellPath::root(),
                    libc::MS_NOSUID | libc::MS_NODEV,
                    "mode=0755,size=16m,nr_inodes=16384".into(),
                );
                for dir in SYSTEM_DIRS {
                    self.system_entry(Path::new(dir), &CellPath::new(dir)?)?;
                }
                self.etc(sandbox, ids)?;
            }
            Root::Dir(dir) => {
                let md = std::fs::metadata(dir).map_err(|e| Error::HostPath {
                    what: "rootfs",
                    path: dir.clone(),
                    errno: Errno::from(&e),
                })?;
                if !md.is_dir() {
                    return Err(Error::HostPath {
                        what: "rootfs",
                        path: dir.clone(),
                        errno: Errno(libc::ENOTDIR),
                    });
                }
                self.layout.add(CellPath::root(), Node::Dir);
                self.bind(dir, &CellPath::root(), false, "rootfs")?;
            }
        }
        self.dev()?;
        let proc_ = CellPath::new("/proc")?;
        self.ensure_dir(&proc_);
        let target = self.staged(&proc_);
        self.push(
            Op::Mount {
                fstype: c"proc",
                target,
                flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                data: None,
            },
            "mount proc on /proc".into(),
        );
        self.layout.mount_empty(proc_.clone());
        // /proc/self resolves at run time; enough for the layout to know it exists.
        self.layout.add(proc_.join(b"self"), Node::Dir);
        if !self.user_tmp {
            let tmp = CellPath::new("/tmp")?;
            self.ensure_dir(&tmp);
            self.tmpfs(
                &tmp,
                libc::MS_NOSUID | libc::MS_NODEV,
                format!("mode=1777,size={DEFAULT_TMP_SIZE}"),
            );
        }
        Ok(())
    }

    fn ensure_dir(&mut self, p: &CellPath) {
        if self.layout.lookup(p).is_none() {
            self.mkdir(p);
        }
    }

    /// Mirrors one host system entry: symlink as symlink, directory or file as a read-only bind.
    fn system_entry(&mut self, host: &Path, cell: &CellPath) -> Result<()> {
        let Ok(md) = std::fs::symlink_metadata(host) else {
            return Ok(()); // absent on this host
        };
        if md.file_type().is_symlink() {
            let Ok(v) = std::fs::read_link(host) else {
                return Ok(());
            };
            self.symlink(v.as_os_str().as_bytes(), cell)
        } else if md.is_dir() || md.is_file() {
            self.mount_point_for(host, cell, "system path")?;
            self.bind(host, cell, false, "system path")
        } else {
            Ok(())
        }
    }

    fn etc(&mut self, sandbox: &Sandbox, ids: &IdPlan) -> Result<()> {
        let etc = CellPath::new("/etc")?;
        self.mkdir(&etc);
        let (passwd, group) = idmap::passwd_and_group(ids);
        let host = String::from_utf8_lossy(sandbox.hostname.as_bytes()).into_owned();
        let hosts = format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{host}\n");
        for (name, data) in [
            ("passwd", passwd),
            ("group", group),
            ("hosts", hosts),
            ("hostname", format!("{host}\n")),
        ] {
            self.write_file(&etc.join(name.as_bytes()), data.into_bytes().into(), 0o644)?;
        }
        let net = sandbox.network == Network::Host;
        let extra: &[&str] = if net { ETC_NETWORK_ENTRIES } else { &[] };
        for name in ETC_ENTRIES.iter().chain(extra) {
            self.system_entry(&Path::new("/etc").join(name), &etc.join(name.as_bytes()))?;
        }
        Ok(())
    }

    fn write_file(&mut self, p: &CellPath, data: Arc<[u8]>, mode: u32) -> Result<()> {
        let path = self.staged(p);
        self.push(
            Op::WriteFile { path, data, mode },
            format!("write {}", p.display()),
        );
        self.layout.add(
            p.clone(),
            Node::File {
                executable: mode & 0o111 != 0,
            },
        );
        Ok(())
    }

    fn dev(&mut self) -> Result<()> {
        let dev = CellPath::new("/dev")?;
        self.ensure_dir(&dev);
        self.tmpfs(
            &dev,
            libc::MS_NOSUID | libc::MS_NOEXEC,
            "mode=0755,size=64k,nr_inodes=64".into(),
        );
        for node in DEV_NODES {
            let host = Path::new("/dev").join(node);
            if std::fs::metadata(&host).is_err() {
                continue;
            }
            let cell = dev.join(node.as_bytes());
            let path = self.staged(&cell);
            self.push(Op::Touch { path }, format!("create mount point {}", cell.display()));
            self.layout.add(cell.clone(), Node::Other);
            self.bind(&host, &cell, true, "device node")?;
        }
        let pts = dev.join(b"pts");
        self.mkdir(&pts);
        let target = self.staged(&pts);
        self.push(
            Op::Mount {
                fstype: c"devpts",
                target,
                flags: libc::MS_NOSUID | libc::MS_NOEXEC,
                data: Some(c"newinstance,ptmxmode=0666,mode=0620".into()),
            },
            "mount devpts on /dev/pts".into(),
        );
        self.layout.mount_empty(pts);
        for (link, value) in [
            ("ptmx", "pts/ptmx"),
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            self.symlink(value.as_bytes(), &dev.join(link.as_bytes()))?;
        }
        let shm = dev.join(b"shm");
        self.mkdir(&shm);
        self.tmpfs(
            &shm,
            libc::MS_NOSUID | libc::MS_NODEV,
            format!("mode=1777,size={DEV_SHM_SIZE}"),
        );
        // /dev itself read-only: the job cannot plant files next to the nodes.
        let target = self.staged(&dev);
        self.push(
            Op::ReadOnly {
                target,
                recursive: false,
                fallback: libc::MS_NOSUID | libc::MS_NOEXEC,
            },
            "remount /dev read-only".into(),
        );
        Ok(())
    }

    fn user_mount(&mut self, m: &MountSpec, ids: &IdPlan) -> Result<()> {
        match m {
            MountSpec::Bind {
                source,
                target,
                writable,
            } => {
                let t = CellPath::new(target)?;
                if source.as_os_str().is_empty() {
                    return Err(Error::HostPath {
                        what: "bind source",
                        path: source.clone(),
                        errno: Errno(libc::ENOENT),
                    });
                }
                let t = self.prepare_parent(&t)?;
                self.mount_point_for(source, &t, "bind source")?;
                self.bind(source, &t, *writable, "bind source")
            }
            MountSpec::Tmpfs { target, size } => {
                let t = CellPath::new(target)?;
                if *size < 4096 || *size > 1 << 50 {
                    return Err(Error::InvalidSetting {
                        name: "tmpfs size",
                        value: size.to_string(),
                        reason: "must be between 4 KiB and 1 PiB".into(),
                    });
                }
                let t = self.prepare_parent(&t)?;
                self.ensure_dir(&t);
                let data = if t.as_bytes() == b"/tmp" {
                    format!("mode=1777,size={size}")
                } else {
                    format!("mode=0755,uid={},gid={},size={size}", ids.uid, ids.gid)
                };
                self.tmpfs(&t, libc::MS_NOSUID | libc::MS_NODEV, data);
                Ok(())
            }
            MountSpec::Dir { target } => {
                let t = CellPath::new(target)?;
                let t = self.prepare_parent(&t)?;
                self.mkdir(&t);
                Ok(())
            }
            MountSpec::Symlink { value, link } => {
                let l = CellPath::new(link)?;
                let l = self.prepare_parent(&l)?;
                if value.as_os_str().is_empty() {
                    return Err(Error::InvalidPath {
                        path: String::new(),
                        reason: "a symlink needs a non-empty target",
                    });
                }
                self.symlink(value.as_os_str().as_bytes(), &l)
            }
            MountSpec::File { target, contents } => {
                let t = CellPath::new(target)?;
                let t = self.prepare_parent(&t)?;
                self.write_file(&t, contents.clone(), 0o644)
            }
        }
    }

    fn finish_root(&mut self) {
        if self.minimal_root {
            let target = self.staging.clone();
            self.push(
                Op::ReadOnly {
                    target,
                    recursive: false,
                    fallback: libc::MS_NOSUID | libc::MS_NODEV,
                },
                "remount / read-only".into(),
            );
        }
    }
}

/// Mount flags a bind in a user namespace must keep from its source, or the
/// read-only remount fails with EPERM (they are locked).
fn locked_flags(source: &Path) -> u64 {
    let Ok(st) = rustix::fs::statvfs(source) else {
        return 0;
    };
    let f = st.f_flag;
    let mut out = 0;
    for (st_flag, ms_flag) in [
        (rustix::fs::StatVfsMountFlags::NOSUID, libc::MS_NOSUID),
        (rustix::fs::StatVfsMountFlags::NODEV, libc::MS_NODEV),
        (rustix::fs::StatVfsMountFlags::NOEXEC, libc::MS_NOEXEC),
        (rustix::fs::StatVfsMountFlags::NOATIME, libc::MS_NOATIME),
        (rustix::fs::StatVfsMountFlags::NODIRATIME, libc::MS_NODIRATIME),
        (rustix::fs::StatVfsMountFlags::RELATIME, libc::MS_RELATIME),
    ] {
        if f.contains(st_flag) {
            out |= ms_flag;
        }
    }
    out
}

/// Probes once whether the new mount API works (Linux 5.12+, not blocked by a container's seccomp).
fn mount_api_available() -> bool {
    match MOUNT_API.load(Ordering::Relaxed) {
        1 => return true,
        2 => return false,
        _ => {}
    }
    let ok = sys::open_tree_clone(c"/", sys::MOUNT_ATTR_NOSUID).is_ok();
    MOUNT_API.store(if ok { 1 } else { 2 }, Ordering::Relaxed);
    ok
}

/// The highest capability number of the running kernel.
pub(crate) fn cap_last_cap() -> i32 {
    static CAP: OnceLock<i32> = OnceLock::new();
    *CAP.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(63)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_lookup_on_path() {
        let host = tempfile::tempdir().unwrap();
        let bin = host.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::write(bin.join("tool"), "").unwrap();
        std::fs::write(bin.join("data"), "").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(bin.join("tool"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut l = Layout::default();
        l.mount_empty(CellPath::root());
        l.add(CellPath::new("/usr").unwrap(), Node::Dir);
        l.mount_host(CellPath::new("/usr").unwrap(), host.path());
        let cwd = CellPath::root();
        let p = resolve_program(&l, b"tool", &cwd, b"relative:/nope:/usr/bin").unwrap();
        assert_eq!(p.as_bytes(), b"/usr/bin/tool");
        assert!(matches!(
            resolve_program(&l, b"data", &cwd, b"/usr/bin"),
            Err(Error::ProgramNotFound { .. })
        ));
        let p = resolve_program(&l, b"../usr/bin/tool", &CellPath::new("/usr").unwrap(), b"").unwrap();
        assert_eq!(p.as_bytes(), b"/usr/bin/tool");
    }
}
