namespace Nozoki.Tracing;

/// <summary>
/// What a feature (output mirror, syscall tracer, ...) is told by a session. Every call runs on the session's ptrace
/// thread while the thread in question is stopped: keep it short and allocation-free, it is the tracee's time.
/// An exception thrown here ends the session: every thread is detached and left running.
/// </summary>
public interface ITraceObserver
{
    /// <summary>Every thread present at attach has stopped once and is now traced: from here on nothing is missed.</summary>
    void OnAttached(int pid, int threadCount) { }

    void OnSyscallEnter(in SyscallEnterStop stop) { }

    void OnSyscallExit(in SyscallExitStop stop) { }

    /// <summary>A signal is about to be delivered to tid; the session re-injects it after this call.</summary>
    void OnSignal(int pid, int tid, int signo) { }

    /// <summary>A new thread (or, when following forks, a new process) is being traced.</summary>
    void OnNewTask(int parentTid, int newTid, int newPid, bool isProcess) { }

    void OnExec(int pid, int tid) { }

    /// <summary>A traced process (thread group) is gone.</summary>
    void OnProcessExited(int pid, ExitStatus status) { }

    /// <summary>Every thread has been detached and left running.</summary>
    void OnDetached(int pid) { }
}
