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

    /// <summary>Registers 0..16 of the x86_64 psABI DWARF numbering (the last is the return address column: rip).</summary>
    internal const int DwarfRegisterCount = 17;

    /// <summary>
    /// In x86_64 psABI DWARF order: 0 rax, 1 rdx, 2 rcx, 3 rbx, 4 rsi, 5 rdi, 6 rbp, 7 rsp, 8-15 r8-r15, 16 the return
    /// address column, which holds rip (what an unwinder's initial frame is given).
    /// </summary>
    internal void WriteDwarfRegisters(Span<ulong> d)
    {
        d[0] = Rax;
        d[1] = Rdx;
        d[2] = Rcx;
        d[3] = Rbx;
        d[4] = Rsi;
        d[5] = Rdi;
        d[6] = Rbp;
        d[7] = Rsp;
        d[8] = R8;
        d[9] = R9;
        d[10] = R10;
        d[11] = R11;
        d[12] = R12;
        d[13] = R13;
        d[14] = R14;
        d[15] = R15;
        d[16] = Rip;
    }
}
