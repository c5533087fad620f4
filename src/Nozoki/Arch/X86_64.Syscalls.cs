namespace Nozoki.Arch;

/// <summary>x86_64 facts the tracing core relies on.</summary>
internal static partial class X86_64
{
    /// <summary>The syscall numbers the stop loop (and a call into the process, for its output) looks at (arch/x86/entry/syscalls/syscall_64.tbl).</summary>
    internal static class Syscalls
    {
        internal const long Write = 1;
        internal const long Writev = 20;
        internal const long Pwritev2 = 328;

        /// <summary>The `syscall` instruction's length: a thread re-executes its syscall with rip moved back by this much (as the kernel restarts one).</summary>
        internal const ulong InstructionLength = 2;

        /// <summary>
        /// The 128 bytes below the stack pointer that a leaf function may use without moving it (System V ABI): memory
        /// a thread may still need when it returns from a syscall, unlike what lies below it.
        /// </summary>
        internal const ulong RedZone = 128;

        /// <summary>The return values by which a syscall asks to be restarted (ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND, ERESTART_RESTARTBLOCK): never seen by the program.</summary>
        internal static bool IsRestart(long returnValue) => returnValue is -512 or -513 or -514 or -516;
        internal const long Execve = 59;
        internal const long Execveat = 322;

        /// <summary>
        /// A syscall's number and arguments as the registers hold them: orig_rax, then rdi, rsi, rdx, r10, r8, r9
        /// (the kernel's order; r10 stands in for rcx, which the syscall instruction overwrites). They survive the
        /// call, so an exit stop without its entry still says what it was called with.
        /// </summary>
        internal static (long Number, Tracing.SyscallArgs Args) Entry(in Native.UserRegs r) =>
            ((long)r.OrigRax, new Tracing.SyscallArgs(r.Rdi, r.Rsi, r.Rdx, r.R10, r.R8, r.R9));
    }
}
