/* The floor for benches/spawn.rs: the least a program can do to run
 * /bin/true in a cell, hand-written in C. clone3 into new user, mount, PID,
 * UTS, IPC (and network) namespaces, uid/gid maps written by the parent, a
 * tmpfs root with /usr bound read-only and a fresh /proc, pivot_root, the
 * old root detached, then fork + exec /bin/true and wait. No /etc, no /dev,
 * no seccomp, no rlimits, no cgroup, no supervision.
 *
 * Measured interleaved with fork + exec of /bin/true (what
 * std::process::Command does), so the ratio compares like with like.
 * Build and run: cc -O2 -o floor benches/floor.c && ./floor [rounds]
 * (as root; benches/spawn.rs does this when a C compiler is at hand). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
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

/* One cell: 0 on success. */
static int cell(unsigned long flags) {
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
    return st;
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

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 300, warm = 20;
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    unsigned long base = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC;
    double *t[3];
    for (int k = 0; k < 3; k++)
        t[k] = calloc(rounds, sizeof(double));
    for (int i = 0; i < rounds + warm; i++) {
        double a = now_us();
        int s0 = plain();
        double b = now_us();
        int s1 = cell(base);
        double c = now_us();
        int s2 = cell(base | CLONE_NEWNET);
        double d = now_us();
        if (s0 || s1 || s2) {
            fprintf(stderr, "floor: a run failed (%x %x %x)\n", s0, s1, s2);
            rmdir(root);
            return 1;
        }
        if (i >= warm) {
            t[0][i - warm] = b - a;
            t[1][i - warm] = c - b;
            t[2][i - warm] = d - c;
        }
    }
    rmdir(root);
    for (int k = 0; k < 3; k++)
        qsort(t[k], rounds, sizeof(double), cmp);
    double m = t[0][rounds / 2];
    printf("C floor: fork+exec /bin/true median %.1f us; cell without a new network namespace %.1f us (%.2fx); with one %.1f us (%.2fx)\n",
           m, t[1][rounds / 2], t[1][rounds / 2] / m, t[2][rounds / 2], t[2][rounds / 2] / m);
    return 0;
}
