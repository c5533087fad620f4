namespace Nozoki.Arch;

/// <summary>x86_64 facts the tracing core relies on.</summary>
internal static partial class X86_64
{
    /// <summary>The syscall numbers the stop loop (and a call into the process, for its output) looks at (arch/x86/entry/syscalls/syscall_64.tbl).</summary>
    internal static class Syscalls
    {
        internal const long Write = 1;
        internal const long Writev = 20;
        internal const long Execve = 59;
        internal const long Execveat = 322;
    }
}
