using System.Runtime.InteropServices;

namespace Nozoki.Native;

/// <summary>kcmp(2): whether two processes share a kernel resource.</summary>
internal static partial class Kcmp
{
    private const long SYS_kcmp = 312;
    private const int KCMP_FILE = 0;
    private const int KCMP_VM = 1;

    [LibraryImport("libc.so.6", EntryPoint = "syscall", SetLastError = true)]
    private static partial long syscall(long number, long pid1, long pid2, long type, long idx1, long idx2);

    /// <summary>True if both run in the same address space (a vfork child before its exec, or threads).</summary>
    internal static bool SameMemory(int pid1, int pid2) => syscall(SYS_kcmp, pid1, pid2, KCMP_VM, 0, 0) == 0;

    /// <summary>
    /// Whether fd1 of pid1 and fd2 of pid2 refer to the same open file description (one open(2), and its dups and
    /// inherited copies): 0 if they do, 1 if not, -errno on failure (EBADF: one of them is not open; ENOSYS: a
    /// kernel without CONFIG_KCMP; EPERM: not allowed to look, or a seccomp profile that forbids kcmp).
    /// </summary>
    internal static int SameFile(int pid1, int fd1, int pid2, int fd2)
    {
        var r = syscall(SYS_kcmp, pid1, pid2, KCMP_FILE, fd1, fd2);
        if (r == 0) return 0;
        return r > 0 ? 1 : -Marshal.GetLastPInvokeError();
    }
}
