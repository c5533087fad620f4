// bench/startup.c — start-up timer for bench/run (workload S).
//
//   startup N CMD [ARGS...]              runs CMD N times (stdin /dev/null, stdout and stderr to /dev/null) and
//                                        prints the median wall-clock seconds from spawn to exit
//   startup --until TEXT N CMD [ARGS...] the same, but the time is from spawn until TEXT appears on CMD's stderr;
//                                        CMD then gets SIGINT (100 ms later) and is waited for, untimed
//   startup --rss TEXT CMD [ARGS...]     once: when TEXT appears on CMD's stderr (or at once if TEXT is empty),
//                                        waits 300 ms, prints CMD's VmRSS in KiB, then SIGTERMs it and waits
//
// Timing in C rather than bash: a bash fork+exec costs about as much as the fastest of the measured commands.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// Spawns argv with stdout to /dev/null and stderr to /dev/null or (errfd >= 0) to the write end of a pipe.
static pid_t spawn(char **argv, int errfd) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    if (errfd >= 0) posix_spawn_file_actions_adddup2(&fa, errfd, 2);
    else posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    int err = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (err) { fprintf(stderr, "startup: %s: %s\n", argv[0], strerror(err)); exit(1); }
    return pid;
}

// Reads the pipe until text appears (text "" matches at once); 0 when found, -1 at EOF.
static int wait_for(int fd, const char *text) {
    static char buf[65536];
    size_t len = 0;
    if (!*text) return 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        len += n;
        buf[len] = 0;
        if (strstr(buf, text)) return 0;
        if (len > sizeof buf / 2) { // keep the tail, in case the text spans two reads
            memmove(buf, buf + len - 256, 256);
            len = 256;
        }
    }
}

// Waits for pid; 0 if it exited with status 0 (or, when sigint_ok, was killed by SIGINT).
static int reap(pid_t pid, const char *what, int sigint_ok) {
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) { perror("waitpid"); exit(1); }
    if (sigint_ok && WIFSIGNALED(st) && WTERMSIG(st) == SIGINT) return 0;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "startup: %s: %s %d\n", what, WIFEXITED(st) ? "exit status" : "killed by signal",
                WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
        return -1;
    }
    return 0;
}

static long rss_kib(pid_t pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
    fclose(f);
    return kib;
}

int main(int argc, char **argv) {
    const char *until = NULL, *rss = NULL;
    int i = 1;
    if (i + 1 < argc && !strcmp(argv[i], "--until")) { until = argv[i + 1]; i += 2; }
    else if (i + 1 < argc && !strcmp(argv[i], "--rss")) { rss = argv[i + 1]; i += 2; }
    if (rss) {
        if (i >= argc) { fprintf(stderr, "usage: startup --rss TEXT CMD [ARGS...]\n"); return 2; }
        int p[2];
        if (pipe2(p, O_CLOEXEC)) { perror("pipe"); return 1; }
        pid_t pid = spawn(argv + i, p[1]);
        close(p[1]);
        if (wait_for(p[0], rss)) { fprintf(stderr, "startup: '%s' never appeared\n", rss); return 1; }
        usleep(300 * 1000);
        printf("%ld\n", rss_kib(pid));
        kill(pid, SIGTERM);
        char sink[4096];
        while (read(p[0], sink, sizeof sink) > 0 || errno == EINTR) {}
        close(p[0]);
        int st;
        waitpid(pid, &st, 0);
        return 0;
    }
    if (i + 1 >= argc) { fprintf(stderr, "usage: startup [--until TEXT] N CMD [ARGS...]\n"); return 2; }
    int n = atoi(argv[i++]);
    if (n < 1) { fprintf(stderr, "startup: N must be >= 1\n"); return 2; }
    double *t = calloc(n, sizeof *t);
    for (int r = 0; r < n; r++) {
        int p[2] = {-1, -1};
        if (until && pipe2(p, O_CLOEXEC)) { perror("pipe"); return 1; }
        double t0 = now();
        pid_t pid = spawn(argv + i, p[1]);
        if (until) {
            close(p[1]);
            if (wait_for(p[0], until)) { fprintf(stderr, "startup: '%s' never appeared\n", until); return 1; }
            t[r] = now() - t0;
            // nozoki installs its SIGINT handler only after its "attached" line: give it a moment (untimed), and
            // take a death by SIGINT (a loaded machine can take longer than that) as the end of the run too.
            usleep(100 * 1000);
            kill(pid, SIGINT);
            char sink[4096];
            while (read(p[0], sink, sizeof sink) > 0 || errno == EINTR) {} // its "detached" line must not hit EPIPE
            close(p[0]);
            if (reap(pid, argv[i], 1)) return 1;
        } else {
            if (reap(pid, argv[i], 0)) return 1;
            t[r] = now() - t0;
        }
    }
    qsort(t, n, sizeof *t, cmp);
    printf("%.6f\n", n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2);
    return 0;
}
