using System.Runtime.InteropServices;

namespace Nozoki.Native;

/// <summary>kcmp(2): whether two processes share a kernel resource.</summary>
internal static partial class Kcmp
{
    private const long SYS_kcmp = 312;
    private const int KCMP_FILE = 0;
    private const int KCMP_VM = 1;
    private const int KCMP_FILES = 2;

    [LibraryImport("libc.so.6", EntryPoint = "syscall", SetLastError = true)]
    private static partial long syscall(long number, long pid1, long pid2, long type, long idx1, long idx2);

    /// <summary>True if both run in the same address space (a vfork child before its exec, or threads).</summary>
    internal static bool SameMemory(int pid1, int pid2) => syscall(SYS_kcmp, pid1, pid2, KCMP_VM, 0, 0) == 0;

    /// <summary>
    /// Whether two tasks (thread ids will do) share one file descriptor table: threads, and clone(CLONE_FILES)
    /// children, until one of them calls unshare(CLONE_FILES) or execve. Null when kcmp fails (a task is gone, or kcmp
    /// is not allowed).
    /// </summary>
    internal static bool? SameFileTable(int tid1, int tid2)
    {
        var r = syscall(SYS_kcmp, tid1, tid2, KCMP_FILES, 0, 0);
        return r < 0 ? null : r == 0;
    }

    /// <summary>
    /// Whether fd1 of pid1 and fd2 of pid2 refer to the same open file description (one open(2), and its dups and
    /// inherited copies), in same. The errno on failure (EBADF: one of them is not open; ENOSYS: a kernel without
    /// CONFIG_KCMP; EPERM: not allowed to look, or a seccomp profile that forbids kcmp).
    /// </summary>
    internal static SysResult SameFile(int pid1, int fd1, int pid2, int fd2, out bool same)
    {
        // kcmp orders the two like a comparison (0 equal, 1 less, 2 greater, 3 unequal but unordered), or -1 and errno.
        var r = syscall(SYS_kcmp, pid1, pid2, KCMP_FILE, fd1, fd2);
        same = r == 0;
        return SysResult.Of(r >= 0);
    }

    /// <summary>Whether fd1 of pid1 and fd2 of pid2 are the same open file description; false when kcmp fails too.</summary>
    internal static bool IsSameFile(int pid1, int fd1, int pid2, int fd2) => SameFile(pid1, fd1, pid2, fd2, out var same).IsOk && same;
}
