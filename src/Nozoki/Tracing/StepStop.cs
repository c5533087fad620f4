using Nozoki.Memory;
using Nozoki.Native;

namespace Nozoki.Tracing;

/// <summary>
/// A thread that was resumed with <see cref="ITraceControl.SingleStep"/> has executed one instruction (SIGTRAP with
/// si_code TRAP_TRACE). The other threads of its process are still stopped during the observer call; they go on when
/// it returns. Valid only during the observer call.
/// </summary>
public readonly struct StepStop
{
    internal StepStop(int pid, int tid, bool completed) => (Pid, Tid, Completed) = (pid, tid, completed);

    public int Pid { get; }

    public int Tid { get; }

    /// <summary>False when the thread is gone before its step trap (killed, or its process exited or executed a program).</summary>
    public bool Completed { get; }

    /// <summary>The thread's registers (PTRACE_GETREGS); false if they cannot be read (the thread vanished).</summary>
    public bool TryGetRegisters(out X86Registers registers)
    {
        if (!Completed || !PtraceCalls.GetRegs(Tid, out var r))
        {
            registers = default;
            return false;
        }

        registers = X86Registers.From(r);
        return true;
    }

    public MemoryReadResult ReadMemory(ulong address, Span<byte> destination) => ProcessMemory.Read(Tid, address, destination);
}
