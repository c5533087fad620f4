using Nozoki.Memory;
using Nozoki.Arch;

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
        registers = default;
        return Completed && X86_64.TryGetRegisters(Tid, out registers);
    }

    public MemoryReadResult ReadMemory(ulong address, Span<byte> destination) => ProcessMemory.Read(Tid, address, destination);
}
