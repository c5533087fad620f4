namespace Nozoki.Tracing;

/// <summary>
/// What a feature (output mirror, syscall tracer, probes, ...) is told by a session. Every call runs on the
/// session's ptrace thread while the thread in question is stopped: keep it short and allocation-free, it is the
/// tracee's time. An exception thrown here ends the session: every thread is detached and left running.
/// </summary>
public interface ITraceObserver
{
    /// <summary>The session's control, for observers that must hold threads back (see <see cref="ITraceControl"/>).</summary>
    void OnStarted(ITraceControl control) { }

    /// <summary>Attach: every thread present has stopped once and is now traced; nothing is missed from here on, and
    /// every thread of the process stays in its stop until this call returns (code may be changed: breakpoints).
    /// Launch: the command is about to run its first instruction.</summary>
    void OnAttached(int pid, int threadCount) { }

    /// <summary>Syscall entry (or, with a seccomp filter, the PTRACE_EVENT_SECCOMP stop before it runs).</summary>
    void OnSyscallEnter(in SyscallEnterStop stop) { }

    void OnSyscallExit(in SyscallExitStop stop) { }

    /// <summary>A signal is about to be delivered; the session re-delivers it after this call.</summary>
    void OnSignal(in SignalStop stop) { }

    /// <summary>An int3 trapped. Return true if it was the observer's breakpoint (SIGTRAP is then not delivered).</summary>
    bool OnBreakpoint(in BreakpointStop stop) => false;

    /// <summary>
    /// The thread resumed with <see cref="ITraceControl.SingleStep"/> has executed its one instruction (or is gone,
    /// see <see cref="StepStop.Completed"/>). The other threads of its process are released after this call.
    /// </summary>
    void OnSingleStep(in StepStop stop) { }

    /// <summary>
    /// A new thread, or a new process (fork, vfork, clone without CLONE_THREAD). The new task has not run a single
    /// instruction yet, so its memory can be changed safely (for example to remove inherited breakpoints).
    /// </summary>
    void OnNewTask(int parentTid, int newTid, int newPid, bool isProcess) { }

    /// <summary>
    /// A process replaced its program (execve); its memory map is new. TID is the thread that called execve, by its id
    /// before the call: when that was not the leader, it now carries PID (every other thread, the old leader included,
    /// is gone) and <see cref="OnThreadExited"/> for TID follows.
    /// </summary>
    void OnExec(int pid, int tid) { }

    /// <summary>A traced thread is gone (exited, killed, or replaced by its process's execve).</summary>
    void OnThreadExited(int pid, int tid) { }

    /// <summary>A traced process (thread group) is gone.</summary>
    void OnProcessExited(int pid, ExitStatus status) { }

    /// <summary>Every thread of pid is stopped and about to be detached: the last moment to restore its memory.</summary>
    void OnDetaching(int pid) { }

    /// <summary>Every thread has been detached and left running.</summary>
    void OnDetached(int pid) { }
}

/// <summary>What an observer may ask of the stop loop. Only from inside an observer call (on the ptrace thread).</summary>
public interface ITraceControl
{
    /// <summary>
    /// The session launched its command (<see cref="TraceSession.Launch"/>) rather than attached: its first tasks are
    /// the launch stage's until the command's execve, which an observer may want to pass over.
    /// </summary>
    bool Launched => false;

    /// <summary>Keeps the thread of the current stop stopped when the observer returns, until <see cref="Release"/>.</summary>
    void Park(int tid);

    /// <summary>Resumes a parked thread as it would have been resumed. False if it is not parked (or gone).</summary>
    bool Release(int tid);

    /// <summary>
    /// From any thread: stops every thread of PID (and keeps those born meanwhile stopped) until called again with
    /// false, when each goes on as it would have. For an observer that must not fall behind (a full buffer).
    /// </summary>
    void Hold(int pid, bool hold);

    /// <summary>
    /// Whether thread TID stops at every syscall's entry and exit (PTRACE_SYSCALL) even where the session lets it run
    /// free (PTRACE_CONT: a launch with a seccomp filter stops only at what the filter traps, and the filter cannot
    /// change once the command runs). For an observer that must, for a while, see syscalls the filter does not select.
    /// The setting is per thread and kept until changed (a new thread starts without it). Turned on for a thread that
    /// runs, the thread is interrupted (PTRACE_INTERRUPT) so that it applies from its next syscall on; a thread in a
    /// stop, or on its way to one, takes it when it is resumed. A trapped syscall of a thread with the setting is
    /// reported once, at its entry (its seccomp stop follows the entry stop and is not reported again). On the ptrace
    /// thread only (from an observer call). No effect in a session that stops at every syscall anyway.
    /// </summary>
    void StopAtEverySyscall(int tid, bool on) { }

    /// <summary>
    /// For the thread of the current stop only: stops every other thread of its process now (their stops are handled
    /// later, in order), so that the observer may change code they could run; then, when the observer returns, resumes
    /// the thread with PTRACE_SINGLESTEP. Its step trap is reported as <see cref="ITraceObserver.OnSingleStep"/>, not
    /// as a breakpoint nor a signal, and only after that call do the other threads go on. False (nothing done) when
    /// it cannot be: the session is detaching, or tid is not the thread of the current stop.
    /// </summary>
    bool SingleStep(int tid);

    /// <summary>
    /// From inside an observer call only (on the ptrace thread): brings every thread of process PID that runs into a
    /// ptrace stop now (PTRACE_INTERRUPT, then its stop is waited for), so that no thread of PID runs until the
    /// observer call returns; their stops are then handled in the order they came, as if they had come then. The
    /// window in which to change code the threads could be running (insert or remove a breakpoint). Threads in a stop
    /// already, listening in a group-stop or not started yet run nothing and are left as they are. True when every
    /// thread of PID is in a stop; false when that cannot be: not on the ptrace thread, or another thread of PID is
    /// single-stepping (<see cref="SingleStep"/>) and runs.
    /// </summary>
    bool StopAllThreads(int pid);

    /// <summary>
    /// For the thread of the current stop only, inside the observer call that reported it (to call a function in the
    /// process: <c>InferiorCall</c>): stops every other thread of its process (their stops are handled after the observer
    /// returns, in order, as for <see cref="SingleStep"/>), resumes the thread with no signal (PTRACE_SYSCALL when
    /// <paramref name="syscallStops"/>, else PTRACE_CONT) and waits for its next ptrace stop. A thread that has not
    /// stopped within <paramref name="timeout"/> is interrupted (PTRACE_INTERRUPT) and its next stop awaited. Either
    /// way it is then stopped again, still the observer's, its registers free to change; the observer may call this
    /// again, and when it returns the thread goes on as the loop would have resumed the stop it was told about. Its
    /// clone and fork events are handled as the loop handles them, and not returned. A stop this cannot give back
    /// (its death, an exec) is handed to the loop, and the thread is no longer the observer's (<see cref="AloneStop.Gone"/>).
    /// </summary>
    AloneStop RunAlone(int tid, bool syscallStops, TimeSpan timeout) => default;
}

/// <summary>What a thread run by <see cref="ITraceControl.RunAlone"/> stopped for.</summary>
public enum AloneStopKind
{
    /// <summary>Not done: the session is detaching, the thread is not the one of the current stop, or it is stepping.</summary>
    Refused,

    /// <summary>A signal-delivery stop: <see cref="AloneStop.Signal"/> is about to be delivered (suppressed unless the thread is resumed with it).</summary>
    Signal,

    /// <summary>A syscall entry or exit stop (PTRACE_GET_SYSCALL_INFO tells which).</summary>
    Syscall,

    /// <summary>A PTRACE_EVENT stop other than clone/fork (a PTRACE_INTERRUPT's own stop, PTRACE_EVENT_STOP, counts here too).</summary>
    Event,

    /// <summary>It did not stop within the timeout; it was interrupted and is now in the stop that followed.</summary>
    TimedOut,

    /// <summary>It died, or its process executed a new program: the loop handles that; the thread is not in a stop of the observer's any more.</summary>
    Gone,
}

/// <summary>The stop that <see cref="ITraceControl.RunAlone"/> waited for.</summary>
/// <param name="Kind">What it is.</param>
/// <param name="Signal">The signal of a signal-delivery stop (or of the stop that followed a timeout), else 0.</param>
/// <param name="Event">The PTRACE_EVENT_* of an event stop, else 0.</param>
public readonly record struct AloneStop(AloneStopKind Kind, int Signal, int Event)
{
    /// <summary>The thread is in a ptrace stop that belongs to the observer.</summary>
    public bool Stopped => Kind is AloneStopKind.Signal or AloneStopKind.Syscall or AloneStopKind.Event or AloneStopKind.TimedOut;
}
