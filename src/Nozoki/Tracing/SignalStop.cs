using Nozoki.Memory;
using Nozoki.Native;

namespace Nozoki.Tracing;

/// <summary>
/// A thread stopped because a signal is about to be delivered to it, with the kernel's siginfo
/// (PTRACE_GETSIGINFO). The session re-delivers the signal when the observer returns.
/// </summary>
public readonly struct SignalStop
{
    internal SignalStop(int pid, int tid, int signal, in SigInfo info)
    {
        Pid = pid;
        Tid = tid;
        Signal = signal;
        Info = info;
    }

    public int Pid { get; }

    public int Tid { get; }

    public int Signal { get; }

    public SigInfo Info { get; }

    public MemoryReadResult ReadMemory(ulong address, Span<byte> destination) => ProcessMemory.Read(Tid, address, destination);
}

/// <summary>The fields of siginfo_t, raw: which ones mean something depends on the signal and si_code.</summary>
/// <param name="Pid">si_pid (kill, SIGCHLD) — also si_tid for POSIX timers.</param>
/// <param name="Uid">si_uid (kill, SIGCHLD) — also si_overrun for timers.</param>
/// <param name="Status">si_status (SIGCHLD).</param>
/// <param name="Address">si_addr (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP): the same bytes as si_pid and si_uid.</param>
/// <param name="Value">si_value / si_int / si_ptr (sigqueue, timers).</param>
/// <param name="UserTime">si_utime (SIGCHLD), in clock ticks.</param>
/// <param name="SystemTime">si_stime (SIGCHLD), in clock ticks.</param>
public readonly record struct SigInfo(int Signo, int Errno, int Code, int Pid, uint Uid, int Status, ulong Address, ulong Value, long UserTime, long SystemTime)
{
    /// <summary>si_code SI_KERNEL: what an int3 instruction produces on x86_64.</summary>
    public const int SI_KERNEL = 0x80;

    /// <summary>si_code SI_USER: sent by kill(2).</summary>
    public const int SI_USER = 0;

    /// <summary>si_code SI_TKILL: sent by tkill/tgkill.</summary>
    public const int SI_TKILL = -6;

    internal static SigInfo Read(int tid)
    {
        if (!PtraceCalls.GetSigInfo(tid, out var r).IsOk) return default;
        return new SigInfo(r.Signo, r.Errno, r.Code, r.Pid, r.Uid, r.Status, r.Address, r.Value, r.UserTime, r.SystemTime);
    }
}
