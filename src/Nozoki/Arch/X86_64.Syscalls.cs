namespace Nozoki.Arch;

/// <summary>x86_64 facts the tracing core relies on.</summary>
internal static partial class X86_64
{
    /// <summary>The syscall numbers the stop loop itself looks at (arch/x86/entry/syscalls/syscall_64.tbl).</summary>
    internal static class Syscalls
    {
        internal const long Execve = 59;
        internal const long Execveat = 322;
    }
}
