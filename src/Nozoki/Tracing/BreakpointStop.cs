using Nozoki.Arch;
using Nozoki.Memory;

namespace Nozoki.Tracing;

/// <summary>
/// A thread stopped by an int3 (SIGTRAP with si_code SI_KERNEL). Its instruction pointer is one past the int3.
/// Valid only during the observer call; return true from OnBreakpoint when the trap was one of yours (it is then
/// not delivered), false to deliver SIGTRAP to the process as if nozoki were not there.
/// </summary>
public readonly struct BreakpointStop
{
    internal BreakpointStop(int pid, int tid) => (Pid, Tid) = (pid, tid);

    public int Pid { get; }

    public int Tid { get; }

    /// <summary>The thread's registers (PTRACE_GETREGS); false if they cannot be read (the thread vanished).</summary>
    public bool TryGetRegisters(out X86Registers registers) => X86_64.TryGetRegisters(Tid, out registers);

    /// <summary>Moves the thread's instruction pointer (to step over an emulated instruction).</summary>
    public bool SetInstructionPointer(ulong rip) => X86_64.SetInstructionPointer(Tid, rip);

    /// <summary>Emulates a `ret`: pops the return address into the instruction pointer.</summary>
    public bool EmulateReturn() => X86_64.EmulateReturn(Tid);

    public MemoryReadResult ReadMemory(ulong address, Span<byte> destination) => ProcessMemory.Read(Tid, address, destination);
}
