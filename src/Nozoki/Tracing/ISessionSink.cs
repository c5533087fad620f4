namespace Nozoki.Tracing;

/// <summary>The end of a traced process, as a sink is told of it.</summary>
/// <param name="Pid">The process (thread group) that ended.</param>
/// <param name="Status">How it ended: an exit status or a signal.</param>
/// <param name="Timestamp">When the session saw it, a Stopwatch timestamp (see Nozoki.Trace.TraceClock).</param>
public readonly record struct ProcessExit(int Pid, ExitStatus Status, long Timestamp);

/// <summary>
/// The lifecycle every feature's sink shares (<see cref="Mirror.IMirrorSink"/>, <see cref="Trace.ISyscallSink"/>,
/// <see cref="Usdt.IUsdtSink"/>): a process attached, ended, detached. Each feature adds its own event methods.
/// Called on the session's ptrace thread (or, for USDT uprobe hits, on the tracer's reader thread; calls never
/// overlap) while the tracee waits: keep them short. Throwing ends the session: every thread is detached.
/// </summary>
public interface ISessionSink
{
    /// <summary>Attach: every thread of pid present has stopped once and is now traced. Launch: the command is about to run.</summary>
    void OnAttached(int pid, int threadCount) { }

    /// <summary>A traced process is gone (it exited, or a signal killed it).</summary>
    void OnProcessExited(in ProcessExit exit) { }

    /// <summary>The session detached from pid and left it running (or it had exited).</summary>
    void OnDetached(int pid) { }
}
