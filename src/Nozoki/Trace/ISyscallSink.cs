using Nozoki.Syscalls;
using Nozoki.Tracing;

namespace Nozoki.Trace;

/// <summary>Which part of a syscall line a record carries (strace's unfinished/resumed split).</summary>
public enum SyscallPhase
{
    /// <summary>The whole call: "name(args) = ret".</summary>
    Complete,

    /// <summary>Entry only, cut by another thread's event: "name(args" (the sink adds " &lt;unfinished ...&gt;").</summary>
    Unfinished,

    /// <summary>The rest of an unfinished call: "args) = ret" (the sink adds "&lt;... name resumed&gt;").</summary>
    Resumed,

    /// <summary>
    /// Live entries only: the start of a line, written at the call's entry ("read(0, ") so that a call that blocks
    /// shows; the same line is then ended by a Complete or Unfinished record with <see cref="SyscallRecord.Continues"/>.
    /// </summary>
    Entered,
}

/// <summary>
/// One syscall (or a piece of one) as formatted by the tracer. Valid only during the sink call: the text lives in a
/// buffer that is reused for the next call.
/// </summary>
public readonly ref struct SyscallRecord
{
    public SyscallPhase Phase { get; init; }

    public int Pid { get; init; }

    public int Tid { get; init; }

    public long Number { get; init; }

    /// <summary>The name from the table, or null for an unknown number (the text says syscall_0x1c8).</summary>
    public string? Name { get; init; }

    /// <summary>Complete: the whole text; Unfinished: up to the cut; Resumed: from the cut on.</summary>
    public ReadOnlySpan<byte> Text { get; init; }

    /// <summary>The line was started by an Entered record: Text continues it (no leader).</summary>
    public bool Continues { get; init; }

    /// <summary>Where Text starts in the whole line (the cut, for Resumed; else 0).</summary>
    public int TextOffset { get; init; }

    /// <summary>Where the name, arguments and return value sit in Text.</summary>
    public CallLayout Layout { get; init; }

    public SyscallArgs Args { get; init; }

    /// <summary>False for calls that never return (exit_group, or a process gone mid-call): "= ?".</summary>
    public bool Returned { get; init; }

    public long ReturnValue { get; init; }

    /// <summary>The errno of a failed call (0 when it succeeded).</summary>
    public int Errno { get; init; }

    /// <summary>Stopwatch timestamps of the entry and exit stops (see <see cref="TraceClock"/>).</summary>
    public long EnterTimestamp { get; init; }

    public long ExitTimestamp { get; init; }
}

/// <summary>A signal about to be delivered: Text is the siginfo body, "{si_signo=SIGCHLD, si_code=...}".</summary>
public readonly ref struct SignalRecord
{
    public int Pid { get; init; }

    public int Tid { get; init; }

    public int Signal { get; init; }

    public ReadOnlySpan<byte> Text { get; init; }

    public long Timestamp { get; init; }
}

/// <summary>
/// Where a <see cref="SyscallTracer"/> sends what it sees. Called on the session's ptrace thread while the tracee
/// waits: write the text out and return. The lifecycle (attached, exited, detached) is <see cref="ISessionSink"/>'s;
/// a process's exit is shown only when syscalls are printed.
/// </summary>
public interface ISyscallSink : ISessionSink
{
    void OnSyscall(in SyscallRecord record);

    void OnSignal(in SignalRecord record);

    /// <summary>
    /// A thread other than the leader called execve: the kernel gave it the leader's id and ended the leader (and every
    /// other thread). strace prints "+++ superseded by execve in pid FORMER +++" for the leader, between the leader's
    /// last call ("= ?") and the execve resumed under the leader's id.
    /// </summary>
    void OnExecSuperseded(in ExecSuperseded record) { }

    /// <summary>The number of traced tasks (threads and processes) changed; strace prefixes lines with the pid once there is more than one.</summary>
    void OnTaskCount(int count) { }
}

/// <summary>The leader of process <paramref name="Pid"/> was superseded by an execve in thread <paramref name="FormerTid"/>, which now has the id <paramref name="Pid"/>.</summary>
/// <param name="Timestamp">A Stopwatch timestamp (see <see cref="TraceClock"/>).</param>
public readonly record struct ExecSuperseded(int Pid, int FormerTid, long Timestamp);

/// <summary>Converts the tracer's Stopwatch timestamps to wall-clock time.</summary>
public static class TraceClock
{
    private static readonly long BaseTicks = System.Diagnostics.Stopwatch.GetTimestamp();
    private static readonly long BaseUnixMicros = (DateTime.UtcNow.Ticks - DateTime.UnixEpoch.Ticks) / 10;

    public static long Now() => System.Diagnostics.Stopwatch.GetTimestamp();

    /// <summary>Microseconds since the Unix epoch.</summary>
    public static long ToUnixMicros(long timestamp) =>
        BaseUnixMicros + (long)((timestamp - BaseTicks) * (1_000_000.0 / System.Diagnostics.Stopwatch.Frequency));

    public static long ToMicros(long ticks) => (long)(ticks * (1_000_000.0 / System.Diagnostics.Stopwatch.Frequency));
}
