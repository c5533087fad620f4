using Nozoki.Memory;

namespace Nozoki.Tracing;

/// <summary>
/// A thread stopped at syscall entry. Only valid during the observer call that receives it: the thread is resumed
/// when the call returns, so the stop cannot be used to touch a running thread.
/// </summary>
public readonly struct SyscallEnterStop
{
    internal SyscallEnterStop(int pid, int tid, long nr, SyscallArgs args)
    {
        Pid = pid;
        Tid = tid;
        Number = nr;
        Args = args;
    }

    /// <summary>The process (thread group) id.</summary>
    public int Pid { get; }

    public int Tid { get; }

    /// <summary>The syscall number (x86_64 table).</summary>
    public long Number { get; }

    public SyscallArgs Args { get; }

    public MemoryReadResult ReadMemory(ulong address, Span<byte> destination) => ProcessMemory.Read(Tid, address, destination);
}

/// <summary>A thread stopped at syscall exit, with the arguments it entered with. Valid only during the observer call.</summary>
public readonly struct SyscallExitStop
{
    internal SyscallExitStop(int pid, int tid, long nr, SyscallArgs args, long returnValue, bool isError)
    {
        Pid = pid;
        Tid = tid;
        Number = nr;
        Args = args;
        ReturnValue = returnValue;
        IsError = isError;
    }

    public int Pid { get; }

    public int Tid { get; }

    public long Number { get; }

    public SyscallArgs Args { get; }

    /// <summary>The raw return value: a result, or -errno when IsError.</summary>
    public long ReturnValue { get; }

    public bool IsError { get; }

    public MemoryReadResult ReadMemory(ulong address, Span<byte> destination) => ProcessMemory.Read(Tid, address, destination);
}

/// <summary>The six syscall argument registers.</summary>
public readonly record struct SyscallArgs(ulong A0, ulong A1, ulong A2, ulong A3, ulong A4, ulong A5)
{
    public ulong this[int index] => index switch
    {
        0 => A0, 1 => A1, 2 => A2, 3 => A3, 4 => A4, 5 => A5,
        _ => throw new ArgumentOutOfRangeException(nameof(index)),
    };
}
