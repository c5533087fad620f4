using Nozoki.Native;

namespace Nozoki.Tracing;

/// <summary>Where a traced task is, as the stop loop knows it.</summary>
internal enum TaskPhase : byte
{
    /// <summary>Traced, its first stop not reported yet.</summary>
    New,

    /// <summary>Resumed outside a syscall (or with no syscall stops asked).</summary>
    Running,

    /// <summary>Resumed between a syscall-entry (or seccomp) stop and its exit stop: it must be resumed with PTRACE_SYSCALL.</summary>
    InSyscall,

    /// <summary>In a ptrace stop the loop has not resumed: being handled, or kept by its <see cref="HoldReasons"/>.</summary>
    Stopped,

    /// <summary>In a group-stop, resumed with PTRACE_LISTEN: it stays stopped until SIGCONT but reports events.</summary>
    GroupStopped,

    /// <summary>Detached or dead: nothing may be asked of it any more.</summary>
    Gone,
}

/// <summary>Why a stopped task is kept stopped. Its resume waits (in <see cref="TaskState.Pending"/>) until the set is empty.</summary>
[Flags]
internal enum HoldReasons : byte
{
    None = 0,

    /// <summary>The session is detaching: every task is gathered in a stop and let go with PTRACE_DETACH.</summary>
    Detach = 1,

    /// <summary>An observer keeps this thread (ITraceControl.Park, until Release).</summary>
    ObserverPark = 2,

    /// <summary>An observer keeps the whole process (ITraceControl.Hold), threads born meanwhile included.</summary>
    ProcessHold = 4,

    /// <summary>Born, but its parent's clone/fork event is still to come: the observer must see it first.</summary>
    AwaitingParent = 8,

    /// <summary>
    /// Attaching: stopped once, while other threads present at attach are still to report their first stop. Every
    /// thread is kept in its stop until observers have been told (OnAttached), so that they can change code no
    /// thread runs (insert breakpoints).
    /// </summary>
    Attaching = 16,
}

/// <summary>How a task is resumed from a ptrace stop.</summary>
internal enum ResumeKind : byte
{
    /// <summary>PTRACE_SYSCALL: stop again at the next syscall boundary.</summary>
    Syscall,

    /// <summary>PTRACE_CONT: run free until a signal or event.</summary>
    Continue,

    /// <summary>PTRACE_LISTEN: a group-stopped task stays stopped but reports events (SIGCONT, death).</summary>
    Listen,

    /// <summary>PTRACE_SINGLESTEP: one instruction, then a SIGTRAP (TRAP_TRACE); asked with ITraceControl.SingleStep.</summary>
    SingleStep,
}

/// <summary>The resume a stopped task will get when nothing holds it any more: how, and the signal to deliver.</summary>
internal readonly record struct PendingResume(ResumeKind Kind, int Signal);

/// <summary>What the stop loop knows of one traced thread.</summary>
internal sealed class TaskState(int tid, int tgid)
{
    public int Tid = tid;
    public readonly int Tgid = tgid;
    public TaskPhase Phase;
    public HoldReasons Holds;

    /// <summary>Meaningful while <see cref="Phase"/> is Stopped: how it goes on (its signal is also the one re-injected at detach).</summary>
    public PendingResume Pending;

    public bool Started;            // has reported its first stop (Phase says New only until something else happens to it)
    public bool Initial;            // present at attach (counts towards OnAttached)
    public bool InSyscall;          // between a syscall-entry (or seccomp) stop and its exit stop
    public long Nr;
    public SyscallArgs Args;
    public bool DetachWhenStarted;  // a new process we do not follow
    public bool SeenByParent;       // its parent's clone/fork event has been handled
    public bool EverySyscall;       // resumed with PTRACE_SYSCALL even where the session runs free (ITraceControl.StopAtEverySyscall)

    // ITraceControl.SingleStep (StopLoop.Step.cs).
    public bool StepRequested;      // the current stop is to be resumed with PTRACE_SINGLESTEP
    public bool Stepping;           // resumed with PTRACE_SINGLESTEP: its next SIGTRAP TRAP_TRACE is the step
    public bool StopDeferred;       // stopped for another thread's step: its wait status waits in the deferred list

    public bool IsStopped => Phase == TaskPhase.Stopped;
}

/// <summary>
/// A task in a ptrace stop the loop has seen and not resumed: the only way to resume, listen to or detach a thread,
/// so that no code can ask ptrace to act on a thread that runs (the kernel would answer ESRCH, or worse, act on
/// the stop after the next). Obtained with <see cref="Of"/>; each use consumes the stop (the task leaves
/// <see cref="TaskPhase.Stopped"/>), and a second use of the same value is a bug that throws.
/// </summary>
internal readonly ref struct TaskStop
{
    private readonly TaskState _task;

    private TaskStop(TaskState task) => _task = task;

    public int Tid => _task.Tid;

    public static bool Of(TaskState task, out TaskStop stop)
    {
        stop = task.IsStopped ? new TaskStop(task) : default;
        return task.IsStopped;
    }

    /// <summary>Carries out a resume: the task runs (or listens) from here.</summary>
    public SysResult Resume(PendingResume how)
    {
        var t = Consume();
        var request = how.Kind switch
        {
            ResumeKind.Syscall => Ptrace.SYSCALL,
            ResumeKind.Listen => Ptrace.LISTEN,
            ResumeKind.SingleStep => Ptrace.SINGLESTEP,
            _ => Ptrace.CONT,
        };
        // ESRCH: killed while stopped; its death is reported next, so it counts as running until then.
        t.Phase = how.Kind == ResumeKind.Listen ? TaskPhase.GroupStopped : t.InSyscall ? TaskPhase.InSyscall : TaskPhase.Running;
        return PtraceCalls.Request(request, t.Tid, how.Kind == ResumeKind.Listen ? 0 : how.Signal);
    }

    /// <summary>PTRACE_DETACH, delivering SIGNAL (0: none).</summary>
    public SysResult Detach(int signal)
    {
        var t = Consume();
        t.Phase = TaskPhase.Gone;
        return PtraceCalls.Request(Ptrace.DETACH, t.Tid, signal);
    }

    private TaskState Consume()
    {
        if (_task is null || !_task.IsStopped) throw new InvalidOperationException("a task stop was used after its task was resumed");
        return _task;
    }
}
