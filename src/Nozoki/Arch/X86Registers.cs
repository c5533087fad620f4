using Nozoki.Native;

// x86_64 facts live in Arch/; the type keeps the namespace it was published in.
namespace Nozoki.Tracing;

/// <summary>x86_64 general registers of a stopped thread (struct user_regs_struct).</summary>
public readonly record struct X86Registers(
    ulong Rax, ulong Rbx, ulong Rcx, ulong Rdx, ulong Rsi, ulong Rdi, ulong Rbp, ulong Rsp,
    ulong R8, ulong R9, ulong R10, ulong R11, ulong R12, ulong R13, ulong R14, ulong R15,
    ulong Rip, ulong Eflags, ulong FsBase, ulong GsBase)
{
    internal static X86Registers From(in UserRegs r) => new(
        r.Rax, r.Rbx, r.Rcx, r.Rdx, r.Rsi, r.Rdi, r.Rbp, r.Rsp, r.R8, r.R9, r.R10, r.R11, r.R12, r.R13, r.R14, r.R15,
        r.Rip, r.Eflags, r.FsBase, r.GsBase);
}
