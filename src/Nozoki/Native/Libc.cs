using System.Runtime.InteropServices;

namespace Nozoki.Native;

/// <summary>Every libc entry point nozoki calls. Errors come back as -1 with errno in Marshal.GetLastPInvokeError().</summary>
internal static unsafe partial class Libc
{
    // Debian's libc.so is a linker script; the loader needs the real soname.
    private const string Lib = "libc.so.6";

    /// <summary>
    /// The C library's <c>environ</c>: this process's environment as the kernel handed it over, in its order and byte
    /// for byte (the .NET runtime reads it into a dictionary of its own and leaves it alone). What a launched command
    /// must inherit: a dictionary would reorder it and UTF-16 would mangle bytes that are not UTF-8.
    /// </summary>
    internal static byte** Environ => *(byte***)NativeLibrary.GetExport(NativeLibrary.Load(Lib), "environ");

    // glibc's ptrace is variadic; on x86_64 fixed (long, int, void*, void*) arguments are passed the same way.
    [LibraryImport(Lib, EntryPoint = "ptrace", SetLastError = true)]
    internal static partial long ptrace(long request, int pid, nint addr, nint data);

    [LibraryImport(Lib, EntryPoint = "waitpid", SetLastError = true)]
    internal static partial int waitpid(int pid, int* status, int options);

    [LibraryImport(Lib, EntryPoint = "process_vm_readv", SetLastError = true)]
    internal static partial nint process_vm_readv(int pid, Iovec* localIov, ulong liovcnt, Iovec* remoteIov, ulong riovcnt, ulong flags);

    [LibraryImport(Lib, EntryPoint = "process_vm_writev", SetLastError = true)]
    internal static partial nint process_vm_writev(int pid, Iovec* localIov, ulong liovcnt, Iovec* remoteIov, ulong riovcnt, ulong flags);

    [LibraryImport(Lib, EntryPoint = "syscall", SetLastError = true)]
    private static partial long syscall_pidfd(long number, int pid, uint flagsOrSignal, nint info, uint flags);

    /// <summary>pidfd_open(2): a descriptor for exactly this process, immune to PID reuse. -1 with errno.</summary>
    internal static int pidfd_open(int pid) => (int)syscall_pidfd(434, pid, 0, 0, 0);

    /// <summary>pidfd_send_signal(2): signals the process the descriptor refers to (ESRCH once it has been reaped).</summary>
    internal static int pidfd_send_signal(int pidfd, int signal) => (int)syscall_pidfd(424, pidfd, (uint)signal, 0, 0);

    /// <summary>usleep(3): a sleep shorter than Thread.Sleep's millisecond (a thread waiting for another's ptrace stop).</summary>
    [LibraryImport(Lib, EntryPoint = "usleep")]
    internal static partial int usleep(uint microseconds);

    [LibraryImport(Lib, EntryPoint = "kill", SetLastError = true)]
    internal static partial int kill(int pid, int sig);

    [LibraryImport(Lib, EntryPoint = "tgkill", SetLastError = true)]
    internal static partial int tgkill(int tgid, int tid, int sig);

    [LibraryImport(Lib, EntryPoint = "getpid")]
    internal static partial int getpid();

    [LibraryImport(Lib, EntryPoint = "gettid")]
    internal static partial int gettid();

    [LibraryImport(Lib, EntryPoint = "geteuid")]
    internal static partial uint geteuid();

    [LibraryImport(Lib, EntryPoint = "sched_getcpu")]
    internal static partial int sched_getcpu();

    [LibraryImport(Lib, EntryPoint = "sched_setaffinity", SetLastError = true)]
    internal static partial int sched_setaffinity(int pid, nuint cpusetsize, ulong* mask);

    [LibraryImport(Lib, EntryPoint = "sched_getaffinity", SetLastError = true)]
    internal static partial int sched_getaffinity(int pid, nuint cpusetsize, ulong* mask);

    [LibraryImport(Lib, EntryPoint = "write", SetLastError = true)]
    internal static partial nint write(int fd, byte* buf, nuint count);

    [LibraryImport(Lib, EntryPoint = "send", SetLastError = true)]
    internal static partial nint send(int fd, byte* buf, nuint count, int flags);

    [LibraryImport(Lib, EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    internal static partial int open(string path, int flags);

    [LibraryImport(Lib, EntryPoint = "fcntl", SetLastError = true)]
    internal static partial int fcntl(int fd, int cmd, int arg);

    internal const int F_GETFL = 3, F_SETFL = 4, O_ACCMODE = 3;

    [LibraryImport(Lib, EntryPoint = "fstat", SetLastError = true)]
    internal static partial int fstat(int fd, StatBuf* buf);

    [LibraryImport(Lib, EntryPoint = "eventfd", SetLastError = true)]
    internal static partial int eventfd(uint initval, int flags);

    [LibraryImport(Lib, EntryPoint = "close", SetLastError = true)]
    internal static partial int close(int fd);

    [LibraryImport(Lib, EntryPoint = "pipe2", SetLastError = true)]
    internal static partial int pipe2(int* fds, int flags);

    [LibraryImport(Lib, EntryPoint = "poll", SetLastError = true)]
    internal static partial int poll(PollFd* fds, ulong nfds, int timeout);

    [LibraryImport(Lib, EntryPoint = "isatty")]
    internal static partial int isatty(int fd);

    [LibraryImport(Lib, EntryPoint = "signal", SetLastError = true)]
    internal static partial nint signal(int sig, nint handler);

    [LibraryImport(Lib, EntryPoint = "prctl", SetLastError = true)]
    internal static partial int prctl(int option, nuint arg2, nuint arg3, nuint arg4, nuint arg5);

    [LibraryImport(Lib, EntryPoint = "faccessat", SetLastError = true)]
    internal static partial int faccessat(int dirfd, byte* path, int mode, int flags);

    internal const int AT_FDCWD = -100, AT_EACCESS = 0x200, X_OK = 1;

    [LibraryImport(Lib, EntryPoint = "execve", SetLastError = true)]
    internal static partial int execve(byte* path, byte** argv, byte** envp);

    [LibraryImport(Lib, EntryPoint = "sigprocmask", SetLastError = true)]
    internal static partial int sigprocmask(int how, SigSet* set, SigSet* oldset);

    [LibraryImport(Lib, EntryPoint = "raise")]
    internal static partial int raise(int sig);

    [LibraryImport(Lib, EntryPoint = "_exit")]
    internal static partial void _exit(int status);

    [LibraryImport(Lib, EntryPoint = "strerror")]
    internal static partial byte* strerror(int errnum);

    // posix_spawn: the only way nozoki starts processes (System.Diagnostics.Process reaps ptrace stops).
    [LibraryImport(Lib, EntryPoint = "posix_spawn", SetLastError = false)]
    internal static partial int posix_spawn(int* pid, byte* path, void* fileActions, void* attr, byte** argv, byte** envp);

    [LibraryImport(Lib, EntryPoint = "posix_spawnattr_init")]
    internal static partial int posix_spawnattr_init(void* attr);

    [LibraryImport(Lib, EntryPoint = "posix_spawnattr_destroy")]
    internal static partial int posix_spawnattr_destroy(void* attr);

    [LibraryImport(Lib, EntryPoint = "posix_spawnattr_setflags")]
    internal static partial int posix_spawnattr_setflags(void* attr, short flags);

    [LibraryImport(Lib, EntryPoint = "posix_spawnattr_setsigdefault")]
    internal static partial int posix_spawnattr_setsigdefault(void* attr, SigSet* sigdefault);

    [LibraryImport(Lib, EntryPoint = "posix_spawnattr_setsigmask")]
    internal static partial int posix_spawnattr_setsigmask(void* attr, SigSet* sigmask);

    [LibraryImport(Lib, EntryPoint = "posix_spawn_file_actions_init")]
    internal static partial int posix_spawn_file_actions_init(void* actions);

    [LibraryImport(Lib, EntryPoint = "posix_spawn_file_actions_destroy")]
    internal static partial int posix_spawn_file_actions_destroy(void* actions);

    [LibraryImport(Lib, EntryPoint = "posix_spawn_file_actions_adddup2")]
    internal static partial int posix_spawn_file_actions_adddup2(void* actions, int fd, int newfd);

    [LibraryImport(Lib, EntryPoint = "posix_spawn_file_actions_addchdir_np")]
    internal static partial int posix_spawn_file_actions_addchdir_np(void* actions, byte* path);

    [LibraryImport(Lib, EntryPoint = "posix_spawn_file_actions_addopen")]
    internal static partial int posix_spawn_file_actions_addopen(void* actions, int fd, byte* path, int oflag, uint mode);

    internal const short POSIX_SPAWN_SETSIGDEF = 0x04;
    internal const short POSIX_SPAWN_SETSIGMASK = 0x08;

    internal const int O_RDONLY = 0;
    internal const int O_WRONLY = 1;
    internal const int O_CREAT = 0x40;
    internal const int O_TRUNC = 0x200;
    internal const int O_CLOEXEC = 0x80000;
    internal const int O_NONBLOCK = 0x800;
    internal const int O_NOCTTY = 0x100;
    internal const int MSG_DONTWAIT = 0x40;
    internal const int EFD_CLOEXEC = 0x80000;
    internal const int EFD_NONBLOCK = 0x800;
    internal const uint S_IFMT = 0xF000, S_IFIFO = 0x1000, S_IFCHR = 0x2000, S_IFSOCK = 0xC000, S_IFREG = 0x8000, S_IFDIR = 0x4000;

    internal const short POLLIN = 0x1;
    internal const short POLLOUT = 0x4;
    internal const short POLLERR = 0x8;
    internal const short POLLHUP = 0x10;

    internal const nint SIG_DFL = 0;
    internal const int SIG_SETMASK = 2;
    internal const int PR_SET_NO_NEW_PRIVS = 38;
    internal const int PR_SET_SECCOMP = 22;
    internal const int SECCOMP_MODE_FILTER = 2;

    internal static string StrError(int errno)
    {
        var p = strerror(errno);
        return p == null ? $"errno {errno}" : Marshal.PtrToStringUTF8((nint)p) ?? $"errno {errno}";
    }
}

[StructLayout(LayoutKind.Sequential)]
internal struct Iovec
{
    public ulong Base;
    public ulong Length;
}

/// <summary>x86_64 struct stat (144 bytes); only what nozoki reads is named.</summary>
[StructLayout(LayoutKind.Explicit, Size = 144)]
internal struct StatBuf
{
    [FieldOffset(0)] public ulong Dev;
    [FieldOffset(8)] public ulong Ino;
    [FieldOffset(24)] public uint Mode;
    [FieldOffset(40)] public ulong Rdev;
    [FieldOffset(48)] public long Size;
}

[StructLayout(LayoutKind.Sequential)]
internal struct PollFd
{
    public int Fd;
    public short Events;
    public short Revents;
}

/// <summary>glibc's sigset_t: 1024 bits.</summary>
[StructLayout(LayoutKind.Sequential, Size = 128)]
internal unsafe struct SigSet
{
    public fixed ulong Bits[16];

    public void FillAll()
    {
        for (var i = 0; i < 16; i++) Bits[i] = ulong.MaxValue;
    }
}

/// <summary>Opaque storage large enough for glibc's posix_spawnattr_t (336 bytes) and posix_spawn_file_actions_t (80 bytes).</summary>
[StructLayout(LayoutKind.Sequential, Size = 512)]
internal struct SpawnStorage
{
    private long _first;
}
