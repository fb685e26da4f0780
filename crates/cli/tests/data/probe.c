/* A probe the tests run inside the sandbox. Each check attempts one thing a job must not
 * be able to do and exits 0 when it was refused, 1 when it worked. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <unistd.h>

static int report(const char *what, long result) {
    printf("%s=%ld errno=%d (%s)\n", what, result, result < 0 ? errno : 0,
           result < 0 ? strerror(errno) : "ok");
    return result < 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: probe ptrace PID | tiocsti | unshare | mount | caps | alloc MB\n");
        return 2;
    }
    const char *check = argv[1];
    if (!strcmp(check, "ptrace") && argc > 2)
        return report("ptrace", ptrace(PTRACE_ATTACH, atoi(argv[2]), 0, 0));
    if (!strcmp(check, "tiocsti")) {
        char c = 'x';
        return report("tiocsti", ioctl(0, TIOCSTI, &c));
    }
    if (!strcmp(check, "unshare"))
        return report("unshare", unshare(CLONE_NEWNS | CLONE_NEWUSER));
    if (!strcmp(check, "mount"))
        return report("mount", mount("none", "/tmp", "tmpfs", 0, 0));
    if (!strcmp(check, "caps")) {
        FILE *status = fopen("/proc/self/status", "r");
        char line[256];
        while (status && fgets(line, sizeof line, status))
            if (!strncmp(line, "Cap", 3) || !strncmp(line, "NoNewPrivs", 10) || !strncmp(line, "Seccomp:", 8))
                fputs(line, stdout);
        return 0;
    }
    if (!strcmp(check, "alloc") && argc > 2) {
        long megabytes = atol(argv[2]);
        for (long i = 0; i < megabytes; i++) {
            char *block = malloc(1 << 20);
            if (!block) return 3;
            memset(block, 1, 1 << 20);
        }
        printf("allocated %ld MiB\n", megabytes);
        return 0;
    }
    fprintf(stderr, "unknown check %s\n", check);
    return 2;
}
