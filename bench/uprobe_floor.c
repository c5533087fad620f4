// uprobe_floor: what a kernel uprobe costs the probed thread here, with no tracer at all (bench/run workload K's
// floor). The program opens a uprobe (perf_event_open on the uprobe PMU, as nozoki does) on one of its own functions,
// for itself, and times N calls of that function back to back.
//
//   uprobe_floor MODE STACK N
//     MODE   none     no probe (the loop alone)
//            count    a probe that only counts (no sample written)
//            sample   a probe whose samples carry the registers and STACK bytes of stack, written into an 8 MiB ring
//                     that a second thread empties as fast as it can without looking at it (nozoki's ring, minus
//                     nozoki)
//     target first instruction of the probed function: "mov" (must be single-stepped out of line, as at most
//            function entries) or "nop" (emulated by the kernel, as at a USDT site); give it as MODE:target
//
// Prints "ns_per_call=X calls=N".
#define _GNU_SOURCE
#include <linux/perf_event.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

__attribute__((noinline, used)) unsigned long target_mov(unsigned long x)
{
    __asm__ volatile("" ::: "memory");
    return x * 2654435761UL + 1;
}

__attribute__((noinline, used, naked)) unsigned long target_nop(unsigned long x)
{
    __asm__ volatile("nop\n\tlea 1(%rdi), %rax\n\tret\n");
}

static volatile int stop;
static struct perf_event_mmap_page *meta;
static size_t ring_size;

static void *drain(void *arg)
{
    (void)arg;
    while (!stop) {
        uint64_t head = __atomic_load_n(&meta->data_head, __ATOMIC_ACQUIRE);
        __atomic_store_n(&meta->data_tail, head, __ATOMIC_RELEASE);
    }
    return NULL;
}

static uint64_t file_offset(void *fn)
{
    FILE *m = fopen("/proc/self/maps", "r");
    char line[512];
    uintptr_t a = (uintptr_t)fn;
    while (m && fgets(line, sizeof line, m)) {
        unsigned long start, end, off;
        if (sscanf(line, "%lx-%lx %*s %lx", &start, &end, &off) == 3 && a >= start && a < end) {
            fclose(m);
            return a - start + off;
        }
    }
    fprintf(stderr, "uprobe_floor: %p not in /proc/self/maps\n", fn);
    exit(1);
}

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: uprobe_floor none|count|sample[:mov|:nop] STACK N\n");
        return 2;
    }
    char mode[32];
    snprintf(mode, sizeof mode, "%s", argv[1]);
    char *colon = strchr(mode, ':');
    int nop = colon && !strcmp(colon + 1, "nop");
    if (colon) *colon = 0;
    unsigned stack = (unsigned)atoi(argv[2]);
    long n = atol(argv[3]);
    unsigned long (*fn)(unsigned long) = nop ? target_nop : target_mov;
    pthread_t reader;
    int fd = -1;

    if (strcmp(mode, "none")) {
        FILE *t = fopen("/sys/bus/event_source/devices/uprobe/type", "r");
        int type;
        if (!t || fscanf(t, "%d", &type) != 1) { perror("uprobe type"); return 1; }
        fclose(t);
        char exe[4096];
        ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (len < 0) { perror("readlink"); return 1; }
        exe[len] = 0;
        struct perf_event_attr attr;
        memset(&attr, 0, sizeof attr);
        attr.type = (uint32_t)type;
        attr.size = sizeof attr;
        attr.config1 = (uint64_t)(uintptr_t)exe;
        attr.config2 = file_offset((void *)fn);
        if (!strcmp(mode, "sample")) {
            attr.sample_period = 1;
            attr.sample_type = PERF_SAMPLE_IDENTIFIER | PERF_SAMPLE_TID | PERF_SAMPLE_TIME | PERF_SAMPLE_REGS_USER |
                               (stack ? PERF_SAMPLE_STACK_USER : 0);
            attr.sample_regs_user = 0xff0fffULL; // the general registers (as nozoki asks for an unwind)
            attr.sample_stack_user = stack;
            attr.use_clockid = 1;
            attr.clockid = CLOCK_MONOTONIC;
            attr.watermark = 1;
            attr.wakeup_watermark = 1 << 20;
        }
        fd = (int)syscall(SYS_perf_event_open, &attr, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
        if (fd < 0) { perror("perf_event_open"); return 1; }
        if (!strcmp(mode, "sample")) {
            ring_size = (size_t)(1 + 2048) * 4096;
            meta = mmap(NULL, ring_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            if (meta == MAP_FAILED) { perror("mmap"); return 1; }
            pthread_create(&reader, NULL, drain, NULL);
        }
    }

    unsigned long x = 0;
    double t0 = now_ns();
    for (long i = 0; i < n; i++) x = fn(x);
    double t1 = now_ns();
    if (meta) {
        stop = 1;
        pthread_join(reader, NULL);
    }
    uint64_t hits = 0;
    if (fd >= 0 && read(fd, &hits, sizeof hits) != sizeof hits) hits = 0;
    printf("ns_per_call=%.1f calls=%ld hits=%llu x=%lu\n", (t1 - t0) / n, n, (unsigned long long)hits, x & 1);
    return 0;
}
