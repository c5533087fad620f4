using Nozoki.Native;
using Nozoki.Probes;
using Nozoki.Tracing;

namespace Nozoki.Arch;

/// <summary>
/// x86_64 facts in one place: the breakpoint instruction, the few instructions the tracer recognizes, the register
/// sets of a stopped thread (general, and FPU/SSE/AVX through the XSAVE area), and perf's register numbers.
/// Syscall numbers are in X86_64.Syscalls.cs.
/// </summary>
internal static partial class X86_64
{
    // --- instructions ---

    /// <summary>int3: the one-byte breakpoint. After it traps, rip is the site plus <see cref="BreakpointLength"/>.</summary>
    public const byte Int3 = 0xCC;

    public const int BreakpointLength = 1;

    /// <summary>The one-byte `nop` a USDT site is: with an int3 over it, the thread past the trap is where the nop would have left it.</summary>
    public const byte Nop = 0x90;

    /// <summary>`ret` (near).</summary>
    public const byte Ret = 0xC3;

    /// <summary>endbr64, the first instruction of a function built with CET (-fcf-protection).</summary>
    public static ReadOnlySpan<byte> EndBr64 => [0xF3, 0x0F, 0x1E, 0xFA];

    /// <summary>The address of the int3 that trapped, from the instruction pointer at its SIGTRAP.</summary>
    public static ulong BreakpointSite(ulong ripAfterTrap) => ripAfterTrap - BreakpointLength;

    // --- general registers (struct user_regs_struct) ---

    /// <summary>PTRACE_GETREGS of a stopped thread.</summary>
    public static bool TryGetRegisters(int tid, out X86Registers registers)
    {
        if (!PtraceCalls.GetRegs(tid, out var r).IsOk)
        {
            registers = default;
            return false;
        }

        registers = X86Registers.From(r);
        return true;
    }

    public static bool SetInstructionPointer(int tid, ulong rip)
    {
        if (!PtraceCalls.GetRegs(tid, out var r).IsOk) return false;
        r.Rip = rip;
        return PtraceCalls.SetRegs(tid, r).IsOk;
    }

    /// <summary>Emulates a `ret`: pops the return address into the instruction pointer.</summary>
    public static bool EmulateReturn(int tid)
    {
        if (!PtraceCalls.GetRegs(tid, out var r).IsOk) return false;
        Span<byte> word = stackalloc byte[8];
        if (Memory.ProcessMemory.Read(tid, r.Rsp, word).BytesRead != 8) return false;
        r.Rip = System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(word);
        r.Rsp += 8;
        return PtraceCalls.SetRegs(tid, r).IsOk;
    }

    /// <summary>Size of struct user_regs_struct, the NT_PRSTATUS register set.</summary>
    public const int GeneralRegistersSize = 27 * 8;

    // --- FPU / SSE / AVX: the XSAVE area (NT_X86_XSTATE), or the FXSAVE area (NT_PRFPREG) without XSAVE ---

    /// <summary>The FXSAVE area (struct user_fpregs_struct): x87, MXCSR, xmm0-15.</summary>
    public const int FxsaveSize = 512;

    /// <summary>
    /// Large enough for the XSAVE area of any CPU this runs on: the kernel writes min(buffer, its xstate size) and
    /// says how much. (AMX tile data, the largest component, makes it ~11 KiB.)
    /// </summary>
    public const int MaxXsaveSize = 16384;

    /// <summary>
    /// Reads the thread's whole floating-point/vector state into buffer: the XSAVE area when the kernel has one
    /// (every x86_64 CPU since 2008), else the FXSAVE area. Returns the bytes written and which set it is, or -1.
    /// </summary>
    public static int GetExtendedState(int tid, Span<byte> buffer, out int regset)
    {
        regset = Ptrace.NT_X86_XSTATE;
        if (PtraceCalls.GetRegSet(tid, regset, buffer, out var n).IsOk) return n;
        regset = Ptrace.NT_PRFPREG;
        return PtraceCalls.GetRegSet(tid, regset, buffer, out n).IsOk ? n : -1;
    }

    /// <summary>Writes back a state read by <see cref="GetExtendedState"/> (the same regset, the same bytes).</summary>
    public static bool SetExtendedState(int tid, int regset, ReadOnlySpan<byte> state) => PtraceCalls.SetRegSet(tid, regset, state).IsOk;

    /// <summary>Every register of a stopped thread, general and extended, saved to be put back as it was (around a call into the process).</summary>
    public sealed class RegisterState
    {
        private readonly byte[] _general = new byte[GeneralRegistersSize];
        private readonly byte[] _extended = new byte[MaxXsaveSize];
        private int _extendedLength;
        private int _regset;

        public ReadOnlySpan<byte> General => _general;

        public ReadOnlySpan<byte> Extended => _extended.AsSpan(0, _extendedLength);

        /// <summary>NT_X86_XSTATE or NT_PRFPREG.</summary>
        public int ExtendedRegset => _regset;

        public bool Save(int tid)
        {
            if (!PtraceCalls.GetRegSet(tid, Ptrace.NT_PRSTATUS, _general, out var n).IsOk || n != GeneralRegistersSize) return false;
            _extendedLength = GetExtendedState(tid, _extended, out _regset);
            return _extendedLength > 0;
        }

        public bool Restore(int tid) =>
            PtraceCalls.SetRegSet(tid, Ptrace.NT_PRSTATUS, _general).IsOk && SetExtendedState(tid, _regset, Extended);
    }

    // --- perf_event register numbers (arch/x86/include/uapi/asm/perf_regs.h, PERF_REG_X86_*) ---

    public const int PerfRegSp = 7, PerfRegIp = 8;

    /// <summary>The number of PERF_REG_X86_* slots up to R15 (AX..R15 = 0..23).</summary>
    public const int PerfRegCount = 24;

    /// <summary>The bit of a register in perf_event_attr.sample_regs_user; 0 for none.</summary>
    public static ulong PerfRegBit(X86Register r) => r switch
    {
        // PERF_REG_X86_AX, BX, CX, DX, SI, DI, BP, SP = 0..7, IP = 8, FLAGS = 9, ..., R8..R15 = 16..23
        >= X86Register.Rax and <= X86Register.Rsp => 1UL << ((int)r - (int)X86Register.Rax),
        >= X86Register.R8 and <= X86Register.R15 => 1UL << (16 + (int)r - (int)X86Register.R8),
        X86Register.Rip => 1UL << PerfRegIp,
        _ => 0,
    };

    /// <summary>Registers from a sample's regs_user, indexed by PERF_REG_X86_* number (0 where not sampled).</summary>
    public static X86Registers FromPerfRegisters(ReadOnlySpan<ulong> r) =>
        new(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[16], r[17], r[18], r[19], r[20], r[21], r[22], r[23], r[8], r[9], 0, 0);
}
