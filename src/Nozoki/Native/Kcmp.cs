using System.Runtime.InteropServices;

namespace Nozoki.Native;

/// <summary>kcmp(2): whether two processes share a kernel resource.</summary>
internal static partial class Kcmp
{
    private const long SYS_kcmp = 312;
    private const int KCMP_VM = 1;

    [LibraryImport("libc.so.6", EntryPoint = "syscall", SetLastError = true)]
    private static partial long syscall(long number, long pid1, long pid2, long type, long idx1, long idx2);

    /// <summary>True if both run in the same address space (a vfork child before its exec, or threads).</summary>
    internal static bool SameMemory(int pid1, int pid2) => syscall(SYS_kcmp, pid1, pid2, KCMP_VM, 0, 0) == 0;
}
