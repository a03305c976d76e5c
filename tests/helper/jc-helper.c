/* A tiny static helper for the cgroup tests: it runs inside cells whose root
 * may be a busybox system (the cgroup v2 test VM), so it needs no libraries.
 *
 *   jc-helper mem MIB          allocate and touch MIB mebibytes
 *   jc-helper spin MS          busy-loop for MS milliseconds of wall time
 *   jc-helper burn MS          busy-loop until MS milliseconds of CPU time are used
 *   jc-helper forkbomb         fork forever (retrying when fork fails)
 *   jc-helper dwrite PATH MIB  write MIB mebibytes to PATH with O_DIRECT, print the seconds taken
 *   jc-helper dread PATH MIB   read MIB mebibytes of PATH with O_DIRECT, print the seconds taken
 *   jc-helper dops r|w PATH N  N reads or writes of 4 KiB at distinct offsets of an existing
 *                              file PATH with O_DIRECT, print the seconds taken
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(clockid_t c) {
    struct timespec t;
    clock_gettime(c, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void spin_until(clockid_t c, double end) {
    volatile unsigned long x = 0;
    while (now(c) < end)
        for (int i = 0; i < 100000; i++) x++;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *cmd = argv[1];
    if (!strcmp(cmd, "mem") && argc == 3) {
        size_t n = (size_t)atol(argv[2]) << 20;
        char *p = malloc(n);
        if (!p) return 3;
        for (size_t i = 0; i < n; i += 4096) p[i] = 1;
        printf("touched %s MiB\n", argv[2]);
        return 0;
    }
    if (!strcmp(cmd, "spin") && argc == 3) {
        spin_until(CLOCK_MONOTONIC, now(CLOCK_MONOTONIC) + atol(argv[2]) / 1000.0);
        return 0;
    }
    if (!strcmp(cmd, "burn") && argc == 3) {
        spin_until(CLOCK_PROCESS_CPUTIME_ID, atol(argv[2]) / 1000.0);
        return 0;
    }
    if (!strcmp(cmd, "forkbomb")) {
        for (;;)
            if (fork() < 0) usleep(10000);
    }
    if (!strcmp(cmd, "dwrite") && argc == 4) {
        size_t mib = (size_t)atol(argv[3]);
        int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC | O_DIRECT, 0644);
        if (fd < 0) { perror("open"); return 4; }
        void *buf;
        if (posix_memalign(&buf, 4096, 1 << 20)) return 5;
        memset(buf, 'x', 1 << 20);
        double start = now(CLOCK_MONOTONIC);
        for (size_t i = 0; i < mib; i++)
            if (write(fd, buf, 1 << 20) != 1 << 20) { perror("write"); return 6; }
        if (fsync(fd)) { perror("fsync"); return 7; }
        printf("seconds %.3f\n", now(CLOCK_MONOTONIC) - start);
        return close(fd) ? 8 : 0;
    }
    if (!strcmp(cmd, "dread") && argc == 4) {
        size_t mib = (size_t)atol(argv[3]);
        int fd = open(argv[2], O_RDONLY | O_DIRECT);
        if (fd < 0) { perror("open"); return 4; }
        void *buf;
        if (posix_memalign(&buf, 4096, 1 << 20)) return 5;
        double start = now(CLOCK_MONOTONIC);
        for (size_t i = 0; i < mib; i++)
            if (read(fd, buf, 1 << 20) != 1 << 20) { perror("read"); return 6; }
        printf("seconds %.3f\n", now(CLOCK_MONOTONIC) - start);
        return close(fd) ? 8 : 0;
    }
    if (!strcmp(cmd, "dops") && argc == 5) {
        int writes = !strcmp(argv[2], "w");
        long n = atol(argv[4]);
        int fd = open(argv[3], (writes ? O_WRONLY : O_RDONLY) | O_DIRECT);
        if (fd < 0) { perror("open"); return 4; }
        void *buf;
        if (posix_memalign(&buf, 4096, 4096)) return 5;
        memset(buf, 'x', 4096);
        double start = now(CLOCK_MONOTONIC);
        for (long i = 0; i < n; i++) {
            ssize_t r = writes ? pwrite(fd, buf, 4096, i * 8192) : pread(fd, buf, 4096, i * 8192);
            if (r != 4096) { perror(writes ? "pwrite" : "pread"); return 6; }
        }
        printf("seconds %.3f\n", now(CLOCK_MONOTONIC) - start);
        return close(fd) ? 8 : 0;
    }
    fprintf(stderr, "usage: jc-helper mem|spin|burn|forkbomb|dwrite|dread|dops ...\n");
    return 2;
}
