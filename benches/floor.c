/* The floor for benches/spawn.rs: the least a program can do to run
 * /bin/true in a cell, hand-written in C. clone3 into new user, mount, PID,
 * UTS, IPC (and network) namespaces, uid/gid maps written by the parent, a
 * tmpfs root with /usr bound read-only and a fresh /proc, pivot_root, the
 * old root detached, then fork + exec /bin/true and wait. No /etc, no /dev,
 * no seccomp, no rlimits, no supervision. A last variant adds what issue 3
 * measures on cgroup v1 hosts: a directory in the memory, pids and cpu
 * hierarchies (under this process's own cgroups), a memory, pids and CPU
 * limit written, the child moved in through cgroup.procs before it is
 * released, and the directories removed after it has been reaped (no usage
 * read, no accounting hierarchies).
 *
 * Measured interleaved with fork + exec of /bin/true (what
 * std::process::Command does), so the ratio compares like with like.
 * Build and run: cc -O2 -o floor benches/floor.c && ./floor [rounds]
 * (as root; benches/spawn.rs does this when a C compiler is at hand).
 * `./floor serve` and `./floor throughput SECONDS WORKERS` are the
 * reference cell benches/spawn.rs measures its own against (see below). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void write_file(const char *path, const char *s) {
    int fd = open(path, O_WRONLY);
    if (fd < 0 || write(fd, s, strlen(s)) < 0) {
        perror(path);
        exit(1);
    }
    close(fd);
}

static char root[] = "/tmp/jobcell-floor-XXXXXX";

/* cgroup v1: this process's directory in each hierarchy the limits need. */
static const char *ctrl[3] = {"memory", "pids", "cpu"};
static char own[3][256];
static char job[3][320];

static int find_v1(void) {
    FILE *f = fopen("/proc/self/cgroup", "r");
    char line[1024];
    int found = 0;
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f)) {
        char *a = strchr(line, ':'), *b = a ? strchr(a + 1, ':') : NULL;
        if (!b)
            continue;
        *b = 0;
        b[strcspn(b + 1, "\n") + 1] = 0;
        for (int k = 0; k < 3; k++) {
            /* a hierarchy may carry several controllers: "cpu,cpuacct" */
            char *c = a + 1, *tok;
            while ((tok = strsep(&c, ",")))
                if (!strcmp(tok, ctrl[k]) && !own[k][0]) {
                    snprintf(own[k], sizeof own[k], "/sys/fs/cgroup/%s%s", a + 1, b + 1);
                    found++;
                }
        }
    }
    fclose(f);
    return found == 3;
}

static void make_cgroups(int i) {
    static const char *limit[3][2] = {
        {"memory.limit_in_bytes", "268435456"}, {"pids.max", "64"}, {"cpu.cfs_quota_us", "100000"}};
    char p[400];
    for (int k = 0; k < 3; k++) {
        if (snprintf(job[k], sizeof job[k], "%s/jobcell-floor-%d-%d", own[k], (int)getpid(), i) >=
            (int)sizeof job[k])
            exit(1);
        if (mkdir(job[k], 0755)) {
            perror(job[k]);
            exit(1);
        }
        if (snprintf(p, sizeof p, "%s/%s", job[k], limit[k][0]) >= (int)sizeof p)
            exit(1);
        write_file(p, limit[k][1]);
    }
}

/* One cell: 0 on success. With cgroups (>= 0), in the directories of round `cg`. */
static int cell_in(unsigned long flags, int cg) {
    int sync[2];
    if (pipe2(sync, O_CLOEXEC))
        return -1;
    struct clone_args a;
    memset(&a, 0, sizeof a);
    a.flags = flags;
    a.exit_signal = SIGCHLD;
    long pid = syscall(SYS_clone3, &a, sizeof a);
    if (pid == 0) {
        char b, p[256];
        close(sync[1]);
        if (read(sync[0], &b, 1) != 1)
            _exit(1);
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) ||
            mount("tmpfs", root, "tmpfs", 0, "mode=755"))
            _exit(2);
        snprintf(p, sizeof p, "%s/usr", root);
        mkdir(p, 0755);
        if (mount("/usr", p, NULL, MS_BIND | MS_REC, NULL))
            _exit(3);
        snprintf(p, sizeof p, "%s/proc", root);
        mkdir(p, 0755);
        if (mount("proc", p, "proc", 0, NULL))
            _exit(4);
        const char *links[][2] = {{"usr/bin", "bin"}, {"usr/lib", "lib"}, {"usr/lib64", "lib64"}};
        for (int i = 0; i < 3; i++) {
            snprintf(p, sizeof p, "%s/%s", root, links[i][1]);
            symlink(links[i][0], p);
        }
        if (chdir(root) || syscall(SYS_pivot_root, ".", ".") || umount2(".", MNT_DETACH) || chdir("/"))
            _exit(5);
        pid_t job = fork();
        if (job == 0) {
            execl("/bin/true", "true", (char *)NULL);
            _exit(6);
        }
        int st;
        waitpid(job, &st, 0);
        _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 7);
    }
    if (pid < 0)
        return -1;
    close(sync[0]);
    char path[64];
    if (cg >= 0)
        for (int k = 0; k < 3; k++) {
            char procs[400], v[32];
            if (snprintf(procs, sizeof procs, "%s/cgroup.procs", job[k]) >= (int)sizeof procs)
                return -1;
            snprintf(v, sizeof v, "%ld", pid);
            write_file(procs, v);
        }
    snprintf(path, sizeof path, "/proc/%ld/setgroups", pid);
    write_file(path, "deny");
    snprintf(path, sizeof path, "/proc/%ld/uid_map", pid);
    write_file(path, "0 0 1");
    snprintf(path, sizeof path, "/proc/%ld/gid_map", pid);
    write_file(path, "0 0 1");
    if (write(sync[1], "x", 1) != 1)
        return -1;
    close(sync[1]);
    int st;
    waitpid(pid, &st, 0);
    if (cg >= 0)
        for (int k = 0; k < 3; k++)
            if (rmdir(job[k]))
                perror(job[k]);
    return st;
}

static int cell(unsigned long flags) {
    return cell_in(flags, -1);
}

static int cell_cgroups(unsigned long flags, int i) {
    make_cgroups(i);
    return cell_in(flags, i);
}

static int plain(void) {
    pid_t p = fork();
    if (p == 0) {
        execl("/bin/true", "true", (char *)NULL);
        _exit(1);
    }
    int st;
    waitpid(p, &st, 0);
    return st;
}

#define REFERENCE (CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET)

/* `floor serve`: one reference cell (every namespace, a new network
 * namespace included) per byte read on stdin; its time in microseconds is
 * written back as a line. benches/spawn.rs interleaves these with its own
 * cells, so both see the same machine at the same moment. */
static int serve(void) {
    char b;
    setvbuf(stdout, NULL, _IOLBF, 0);
    while (read(0, &b, 1) == 1) {
        double a = now_us();
        int st = cell(REFERENCE);
        double t = now_us() - a;
        printf("%.1f\n", st ? -1.0 : t);
    }
    return 0;
}

/* `floor throughput SECONDS WORKERS`: WORKERS processes each run reference
 * cells back to back for SECONDS; prints the jobs per second of all of them
 * and the CPU time (user + system, of every process involved) per job. */
static int throughput(double secs, int workers) {
    double start = now_us(), end = start + secs * 1e6;
    for (int w = 0; w < workers; w++) {
        if (fork() == 0) {
            long n = 0;
            while (now_us() < end) {
                if (cell(REFERENCE))
                    _exit(255);
                n++;
            }
            /* The count travels in the exit status (in units of 8 jobs, up to 2039). */
            _exit(n / 8 > 254 ? 254 : (int)(n / 8));
        }
    }
    long jobs = 0;
    int st;
    while (wait(&st) > 0)
        if (WIFEXITED(st) && WEXITSTATUS(st) != 255)
            jobs += 8L * WEXITSTATUS(st);
    double took = (now_us() - start) / 1e6;
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    printf("%.1f %.1f\n", jobs / took, jobs ? cpu * 1e6 / jobs : 0.0);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "serve")) {
        if (!mkdtemp(root))
            return 1;
        int r = serve();
        rmdir(root);
        return r;
    }
    if (argc > 3 && !strcmp(argv[1], "throughput")) {
        if (!mkdtemp(root))
            return 1;
        int r = throughput(atof(argv[2]), atoi(argv[3]));
        rmdir(root);
        return r;
    }
    int rounds = argc > 1 ? atoi(argv[1]) : 300, warm = 20;
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    unsigned long base = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC;
    int v1 = find_v1();
    double *t[4];
    for (int k = 0; k < 4; k++)
        t[k] = calloc(rounds, sizeof(double));
    for (int i = 0; i < rounds + warm; i++) {
        double a = now_us();
        int s0 = plain();
        double b = now_us();
        int s1 = cell(base);
        double c = now_us();
        int s2 = cell(base | CLONE_NEWNET);
        double d = now_us();
        int s3 = v1 ? cell_cgroups(base | CLONE_NEWNET, i) : 0;
        double e = now_us();
        if (s0 || s1 || s2 || s3) {
            fprintf(stderr, "floor: a run failed (%x %x %x %x)\n", s0, s1, s2, s3);
            rmdir(root);
            return 1;
        }
        if (i >= warm) {
            t[0][i - warm] = b - a;
            t[1][i - warm] = c - b;
            t[2][i - warm] = d - c;
            t[3][i - warm] = e - d;
        }
    }
    rmdir(root);
    for (int k = 0; k < 4; k++)
        qsort(t[k], rounds, sizeof(double), cmp);
    double m = t[0][rounds / 2];
    printf("C floor: fork+exec /bin/true median %.1f us; cell without a new network namespace %.1f us (%.2fx); with one %.1f us (%.2fx)\n",
           m, t[1][rounds / 2], t[1][rounds / 2] / m, t[2][rounds / 2], t[2][rounds / 2] / m);
    if (v1)
        printf("C floor with v1 cgroups (memory, pids, cpu; limits written, joined, removed): %.1f us (%.2fx)\n",
               t[3][rounds / 2], t[3][rounds / 2] / m);
    else
        printf("C floor with v1 cgroups: skipped (no memory, pids and cpu v1 hierarchies here)\n");
    return 0;
}
