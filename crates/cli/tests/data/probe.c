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
#include <fcntl.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int report(const char *what, long result) {
    printf("%s=%ld errno=%d (%s)\n", what, result, result < 0 ? errno : 0,
           result < 0 ? strerror(errno) : "ok");
    return result < 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: probe ptrace PID | tiocsti | unshare | mount | caps | alloc MB\n"
                        "       | io_uring | io_uring-register | chmod-suid FILE | fchmodat2-suid FILE\n"
                        "       | open-suid FILE | mkdir-sgid DIR | mknod-suid FILE | fill FILE MB\n");
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
    if (!strcmp(check, "io_uring")) {
        /* struct io_uring_params: 120 bytes, all zero asks for defaults. */
        long params[15] = {0};
        return report("io_uring_setup", syscall(__NR_io_uring_setup, 8, params));
    }
    if (!strcmp(check, "io_uring-register"))
        return report("io_uring_register", syscall(__NR_io_uring_register, -1, 0, 0, 0));
    if (!strcmp(check, "chmod-suid") && argc > 2)
        return report("chmod", chmod(argv[2], 04755));
    if (!strcmp(check, "fchmodat2-suid") && argc > 2)
        return report("fchmodat2", syscall(452, AT_FDCWD, argv[2], 02755, 0));
    if (!strcmp(check, "open-suid") && argc > 2)
        return report("open", open(argv[2], O_CREAT | O_WRONLY, 04755));
    if (!strcmp(check, "mkdir-sgid") && argc > 2)
        return report("mkdir", mkdir(argv[2], 02775));
    if (!strcmp(check, "mknod-suid") && argc > 2)
        return report("mknod", mknod(argv[2], S_IFREG | 04755, 0));
    if (!strcmp(check, "fill") && argc > 3) {
        /* Writes MB mebibytes; a full filesystem shows as the write that failed. */
        int fd = open(argv[2], O_CREAT | O_WRONLY | O_TRUNC, 0644);
        if (fd < 0) return report("open", fd);
        static char block[1 << 20];
        memset(block, 1, sizeof block);
        for (long i = 0; i < atol(argv[3]); i++) {
            if (write(fd, block, sizeof block) < 0) {
                printf("wrote %ld MiB\n", i);
                return report("write", -1);
            }
        }
        printf("wrote %s MiB\n", argv[3]);
        return 1;
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
