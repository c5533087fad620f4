/* Makes the syscalls of vectors/syscalls.txt with raw syscall instructions, arguments pointing into a fixed
 * arena, and logs for each call: name, number, the six arguments, the raw return value and the arena buffers
 * after the call. gen_syscalls.py runs this under strace 6.1 and pairs each log line with strace's line. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <termios.h>
#include <unistd.h>
#include <linux/sched.h>

#define SA_RESTORER 0x04000000

#define ARENA_ADDR 0x10000000UL
#define ARENA_SIZE 0x10000
static char *const A = (char *)ARENA_ADDR;

static char logbuf[1 << 20];
static size_t loglen;
static struct { unsigned long off, len; } bufs[8];
static int nbufs;

static long raw(long nr, long a, long b, long c, long d, long e, long f)
{
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall" : "=a"(ret) : "0"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}

static void out(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    loglen += vsnprintf(logbuf + loglen, sizeof logbuf - loglen, fmt, ap);
    va_end(ap);
}

/* A buffer of LEN bytes at arena offset OFF that the decoder may read. */
static long B(unsigned long off, unsigned long len)
{
    bufs[nbufs].off = off;
    bufs[nbufs].len = len;
    nbufs++;
    return (long)(ARENA_ADDR + off);
}

static long S(unsigned long off, const char *s) { memcpy(A + off, s, strlen(s) + 1); return B(off, strlen(s) + 1); }

static void reset(void) { memset(A, 0, ARENA_SIZE); nbufs = 0; }

static char before[ARENA_SIZE];

static void dump(char mark, const char *base, int i)
{
    unsigned long end = bufs[i].len;
    while (end > 0 && base[bufs[i].off + end - 1] == 0) end--;
    out("%s%lx%c", loglen && logbuf[loglen - 1] != '|' ? " " : "", ARENA_ADDR + bufs[i].off, mark);
    for (unsigned long k = 0; k < end; k++) out("%02x", (unsigned char)base[bufs[i].off + k]);
    if (end < bufs[i].len) out("+%lu", bufs[i].len - end);
}

/* Memory column: ADDR:HEX for a buffer the call left as it was; ADDR<HEX (at entry) and ADDR>HEX (at exit) for one
 * the kernel wrote to. */
static long call(const char *name, long nr, long a, long b, long c, long d, long e, long f)
{
    memcpy(before, A, ARENA_SIZE);
    long ret = raw(nr, a, b, c, d, e, f);
    out("%s|%lx %lx %lx %lx %lx %lx|%ld|", name, a, b, c, d, e, f, ret);
    for (int i = 0; i < nbufs; i++) {
        if (memcmp(before + bufs[i].off, A + bufs[i].off, bufs[i].len) == 0) {
            dump(':', A, i);
        } else {
            dump('<', before, i);
            dump('>', A, i);
        }
    }
    out("\n");
    reset();
    return ret;
}

#define C0(n) call(#n, SYS_##n, 0, 0, 0, 0, 0, 0)
#define C1(n, a) call(#n, SYS_##n, (long)(a), 0, 0, 0, 0, 0)
#define C2(n, a, b) call(#n, SYS_##n, (long)(a), (long)(b), 0, 0, 0, 0)
#define C3(n, a, b, c) call(#n, SYS_##n, (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define C4(n, a, b, c, d) call(#n, SYS_##n, (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)
#define C5(n, a, b, c, d, e) call(#n, SYS_##n, (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), 0)
#define C6(n, a, b, c, d, e, f) call(#n, SYS_##n, (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), (long)(f))

struct ksigaction { unsigned long handler, flags, restorer, mask; };

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/tmp/nzv";
    char path[256];
    if (mmap(A, ARENA_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != A) return 1;
    reset();
    int ptm = posix_openpt(O_RDWR | O_NOCTTY);
    grantpt(ptm);
    unlockpt(ptm);
    struct winsize ws = { .ws_row = 24, .ws_col = 80 };
    ioctl(ptm, TIOCSWINSZ, &ws);
    int devnull = open("/dev/null", O_RDWR);
    int p[2];
    pipe(p);
    write(p[1], "hello", 5);
    snprintf(path, sizeof path, "%s/f", dir);
    int f = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    write(f, "hello world\0" "1\t\001", 15);
    snprintf(path, sizeof path, "%s/l", dir);
    symlink("f", path);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    int ufd = socket(AF_UNIX, SOCK_DGRAM, 0);
    int ifd = socket(AF_INET, SOCK_DGRAM, 0);
    int sp[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sp);
    write(sp[1], "ping\n", 5);
    void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    int e1 = dup(devnull);
    long me = getpid();

    C0(getppid); /* start marker */

    /* open family */
    C4(openat, AT_FDCWD, S(0, "/dev/null"), O_RDONLY, 0);
    C4(openat, AT_FDCWD, S(0, "/dev/null"), O_WRONLY | O_CLOEXEC, 0);
    snprintf(path, sizeof path, "%s/new", dir);
    C4(openat, AT_FDCWD, S(0, path), O_RDWR | O_CREAT | O_TRUNC, 0644);
    C4(openat, AT_FDCWD, S(0, "/nonexistent/file"), O_RDONLY, 0);
    C4(openat, AT_FDCWD, S(0, dir), O_RDONLY | O_DIRECTORY | O_NONBLOCK | O_CLOEXEC, 0);
    snprintf(path, sizeof path, "%s/excl", dir);
    C4(openat, AT_FDCWD, S(0, path), O_WRONLY | O_CREAT | O_EXCL | O_APPEND, 0600);
    C4(openat, AT_FDCWD, S(0, path), O_WRONLY | O_CREAT | O_EXCL, 0600);
    C3(open, S(0, "/dev/null"), O_RDONLY | O_NOCTTY, 0);
    C4(openat, dfd, S(0, "f"), O_PATH, 0);
    C4(openat, dfd, S(0, "a\nb\"c\\d\te"), O_RDONLY, 0);
    C4(openat, AT_FDCWD, 0, O_RDONLY, 0);
    C4(openat, AT_FDCWD, S(0, "/dev/null"), O_RDWR | O_SYNC | O_NOFOLLOW, 0);
    C4(openat, AT_FDCWD, S(0, "/tmp"), O_RDWR | O_TMPFILE, 0600);
    C2(creat, S(0, "/proc/nonexistent"), 0755);
    C2(access, S(0, "/nonexistent"), F_OK);
    C2(access, S(0, "/dev/null"), R_OK | W_OK);
    C3(faccessat2, AT_FDCWD, S(0, "/dev/null"), X_OK) ;
    C1(close, 99);

    /* stat family */
    C2(fstat, f, B(0, 144));
    C4(newfstatat, AT_FDCWD, S(512, "/dev/null"), B(0, 144), 0);
    C4(newfstatat, AT_FDCWD, S(512, "/nonexistent"), B(0, 144), 0);
    C2(stat, S(512, dir), B(0, 144));
    snprintf(path, sizeof path, "%s/l", dir);
    C2(lstat, S(512, path), B(0, 144));
    C4(newfstatat, f, S(512, ""), B(0, 144), AT_EMPTY_PATH);
    C4(newfstatat, dfd, S(512, "l"), B(0, 144), AT_SYMLINK_NOFOLLOW);

    /* read/write: strings, escapes, -s cuts */
    C3(write, devnull, S(0, "hello\n"), 6);
    memcpy(A, "\0\1\2\t\r\n\\\"\x7f\xff\x1b", 11);
    C3(write, devnull, B(0, 11), 11);
    C3(write, devnull, S(0, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"), 62);
    C3(write, devnull, S(0, "exactly thirty-two bytes long..."), 32);
    C3(write, devnull, S(0, "thirty-three bytes long, one more"), 33);
    C3(write, devnull, S(0, "\x01" "0\x02" "9a"), 5);
    C3(write, devnull, S(0, "caf\xc3\xa9 \xe2\x82\xac"), 10);
    C3(write, devnull, S(0, ""), 0);
    C4(pread64, f, B(0, 100), 100, 0);
    C4(pread64, f, B(0, 100), 5, 6);
    C4(pread64, f, B(0, 100), 100, 1000);
    C3(read, 99, B(0, 10), 10);
    C3(read, p[0], B(0, 100), 100);
    C4(pwrite64, devnull, S(0, "at offset"), 9, 4096);
    C3(read, devnull, 0, 10);
    {
        long iov = B(0, 32);
        long *v = (long *)A;
        v[0] = S(64, "abc"); v[1] = 3; v[2] = S(128, "defgh"); v[3] = 5;
        C3(writev, devnull, iov, 2);
    }
    C3(write, sp[1], S(0, "ping\n"), 5);
    {
        long iov = B(0, 32);
        long *v = (long *)A;
        v[0] = B(64, 2); v[1] = 2; v[2] = B(128, 16); v[3] = 16;
        C3(readv, sp[0], iov, 2);
    }
    C3(lseek, f, 0, SEEK_END);
    C3(lseek, f, -3, SEEK_CUR);
    C3(lseek, p[0], 0, SEEK_SET);

    /* mmap family */
    long a = C6(mmap, 0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    C3(mprotect, a, 4096, PROT_READ);
    C3(madvise, a, 4096, MADV_DONTNEED);
    C2(munmap, a, 4096);
    C6(mmap, 0, 8192, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    C6(mmap, 0, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_DENYWRITE, f, 0);
    C6(mmap, 0x20000000, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_SHARED | MAP_FIXED | MAP_ANONYMOUS, -1, 0);
    C6(mmap, 0, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    C6(mmap, 0, 4096, PROT_READ, MAP_SHARED, p[0], 0);
    C6(mmap, 0, 2 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_GROWSDOWN, -1, 0);
    C3(mprotect, (long)m, 4096, PROT_NONE);
    C3(madvise, (long)m, 4096, MADV_WILLNEED);
    C1(brk, 0);

    /* sockets */
    C3(socket, AF_INET, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
    C3(socket, AF_INET6, SOCK_DGRAM, 0);
    long us = C3(socket, AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    C3(socket, AF_NETLINK, SOCK_RAW, 0);
    C3(socket, 12345, SOCK_STREAM, 0);
    {
        struct sockaddr_in *sin = (struct sockaddr_in *)A;
        sin->sin_family = AF_INET; sin->sin_port = htons(9); sin->sin_addr.s_addr = htonl(0x7f000001);
        long s4 = raw(SYS_socket, AF_INET, SOCK_STREAM, 0, 0, 0, 0);
        out("#skip\n");
        C3(connect, s4, B(0, 16), 16);
    }
    {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)A;
        s6->sin6_family = AF_INET6; s6->sin6_port = htons(9); s6->sin6_addr = in6addr_loopback;
        long s = raw(SYS_socket, AF_INET6, SOCK_STREAM, 0, 0, 0, 0);
        out("#skip\n");
        C3(connect, s, B(0, 28), 28);
    }
    {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)A;
        s6->sin6_family = AF_INET6; s6->sin6_port = htons(53); inet_pton(AF_INET6, "2001:db8::1", &s6->sin6_addr);
        s6->sin6_flowinfo = htonl(7); s6->sin6_scope_id = 0;
        C3(connect, ifd, B(0, 28), 28);
    }
    {
        struct sockaddr_un *sun = (struct sockaddr_un *)A;
        sun->sun_family = AF_UNIX; strcpy(sun->sun_path, "/nonexistent/sock");
        C3(connect, us, B(0, 110), 2 + strlen(sun->sun_path) + 1);
    }
    {
        struct sockaddr_un *sun = (struct sockaddr_un *)A;
        sun->sun_family = AF_UNIX; memcpy(sun->sun_path, "\0nozoki-vec", 11);
        C3(connect, us, B(0, 110), 2 + 11);
    }
    {
        struct sockaddr_in *sin = (struct sockaddr_in *)A;
        sin->sin_family = AF_INET; sin->sin_port = 0; sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        C3(bind, ifd, B(0, 16), 16);
    }
    {
        *(int *)(A + 64) = 16;
        C3(getsockname, ufd, B(0, 16), B(64, 4));
        *(int *)(A + 64) = 16;
        C3(getpeername, ufd, B(0, 16), B(64, 4));
    }
    *(int *)A = 1;
    C5(setsockopt, ifd, SOL_SOCKET, SO_REUSEADDR, B(0, 4), 4);
    C4(socketpair, AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, B(0, 8));
    C2(shutdown, sp[1], SHUT_WR);
    C2(listen, ufd, 5);
    C6(sendto, sp[0], S(0, "datagram"), 8, MSG_DONTWAIT | MSG_NOSIGNAL, 0, 0);
    C6(recvfrom, sp[0], B(0, 64), 64, MSG_DONTWAIT, 0, 0);

    /* poll */
    {
        struct pollfd *pf = (struct pollfd *)A;
        pf[0].fd = p[0]; pf[0].events = POLLIN;
        C3(poll, B(0, 8), 1, 0);
        pf[0].fd = e1; pf[0].events = POLLIN | POLLPRI;
        pf[1].fd = p[1]; pf[1].events = POLLOUT;
        C3(poll, B(0, 16), 2, 0);
        pf[0].fd = sp[0]; pf[0].events = POLLIN | POLLRDHUP;
        C3(poll, B(0, 8), 1, 100);
        pf[0].fd = -1; pf[0].events = POLLIN;
        pf[1].fd = 99; pf[1].events = POLLIN;
        C3(poll, B(0, 16), 2, 0);
        pf[0].fd = p[1]; pf[0].events = POLLOUT;
        long *ts = (long *)(A + 64); ts[0] = 1; ts[1] = 500;
        C5(ppoll, B(0, 8), 1, B(64, 16), 0, 8);
    }

    /* signals */
    {
        struct ksigaction *sa = (struct ksigaction *)A;
        sa->handler = 0x401000; sa->flags = SA_RESTORER | SA_RESTART; sa->restorer = 0x402000;
        sa->mask = 1UL << (SIGUSR2 - 1);
        C4(rt_sigaction, SIGUSR1, B(0, 32), 0, 8);
        C4(rt_sigaction, SIGUSR1, 0, B(64, 32), 8);
        sa->handler = (unsigned long)SIG_IGN; sa->flags = SA_RESTORER; sa->restorer = 0x402000; sa->mask = 0;
        C4(rt_sigaction, SIGINT, B(0, 32), B(64, 32), 8);
        sa->handler = 0x401000; sa->flags = SA_RESTORER | SA_SIGINFO | SA_ONSTACK | SA_NODEFER; sa->restorer = 0x402000;
        sa->mask = ~0UL;
        C4(rt_sigaction, SIGSEGV, B(0, 32), 0, 8);
        sa->handler = (unsigned long)SIG_DFL; sa->flags = 0; sa->mask = 0;
        C4(rt_sigaction, SIGKILL, B(0, 32), 0, 8);
        C4(rt_sigaction, SIGRTMIN + 2, 0, B(64, 32), 8);
        *(unsigned long *)A = (1UL << (SIGHUP - 1)) | (1UL << (SIGINT - 1));
        C4(rt_sigprocmask, SIG_BLOCK, B(0, 8), 0, 8);
        *(unsigned long *)A = 0;
        C4(rt_sigprocmask, SIG_SETMASK, B(0, 8), B(64, 8), 8);
        *(unsigned long *)A = ~((1UL << 31) | (1UL << 32) | (1UL << (SIGKILL - 1)) | (1UL << (SIGSTOP - 1)));
        C4(rt_sigprocmask, SIG_BLOCK, B(0, 8), 0, 8);
        *(unsigned long *)A = 1UL << 33;
        C4(rt_sigprocmask, SIG_UNBLOCK, B(0, 8), B(64, 8), 8);
        C4(rt_sigprocmask, SIG_SETMASK, B(64, 8), 0, 8);
        C4(rt_sigprocmask, 7, 0, 0, 8);
        C2(kill, me, 0);
        C2(kill, 1 << 22, SIGTERM);
        C2(kill, 0, 65);
        C3(tgkill, me, me, 0);
    }

    /* ioctl */
    C3(ioctl, p[0], FIONREAD, B(0, 4));
    C3(ioctl, devnull, TCGETS, B(0, 60));
    C3(ioctl, ptm, TIOCGWINSZ, B(0, 8));
    *(int *)A = 1;
    C3(ioctl, e1, FIONBIO, B(0, 4));
    C3(ioctl, ptm, TIOCGPTN, B(0, 4));
    C3(ioctl, devnull, 0x5401 + 0x1000, 0);
    C3(ioctl, 99, FIOCLEX, 0);

    /* process: clone, wait4 */
    {
        long pid = C5(clone, SIGCHLD, 0, 0, 0, 0);
        if (pid == 0) raw(SYS_exit, 3, 0, 0, 0, 0, 0);
        C4(wait4, pid, B(0, 4), 0, 0);
        pid = C5(clone, CLONE_CHILD_CLEARTID | CLONE_CHILD_SETTID | SIGCHLD, 0, 0, B(64, 4), 0);
        if (pid == 0) raw(SYS_kill, raw(SYS_getpid, 0, 0, 0, 0, 0, 0), SIGKILL, 0, 0, 0, 0);
        C4(wait4, -1, B(0, 4), 0, 0);
        C4(wait4, -1, B(0, 4), WNOHANG, 0);
        /* CLONE_NEWNS with CLONE_FS is EINVAL: no child. */
        C5(clone, CLONE_FS | CLONE_NEWNS | CLONE_SETTLS | CLONE_PARENT_SETTID | CLONE_SYSVSEM | SIGCHLD, 0, B(0, 4), 0, 0x1234);
    }

    /* descriptors */
    C2(fcntl, f, F_GETFL);
    C3(fcntl, f, F_SETFD, FD_CLOEXEC);
    C2(fcntl, f, F_GETFD);
    C3(fcntl, f, F_DUPFD_CLOEXEC, 10);
    C3(fcntl, f, F_SETFL, O_RDWR | O_NONBLOCK | O_APPEND);
    C2(pipe2, B(0, 8), O_CLOEXEC | O_NONBLOCK);
    C3(dup3, e1, 50, O_CLOEXEC);
    C2(dup2, 99, 50);
    C3(unlinkat, dfd, S(0, "excl"), 0);
    C3(mkdirat, dfd, S(0, "sub"), 0755);
    C3(unlinkat, dfd, S(0, "sub"), AT_REMOVEDIR);
    C4(readlinkat, dfd, S(0, "l"), B(64, 64), 64);

    C0(getppid); /* end marker */
    fflush(stdout);
    write(3, logbuf, loglen);
    return 0;
}
