using System.Diagnostics;
using Nozoki.Arch;
using Nozoki.Native;
using Nozoki.Procfs;

namespace Nozoki.Tracing;

/// <summary>
/// The ptrace stop loop: waits for stops and dispatches each to the observer, then resumes the task through
/// <see cref="Resume"/>, the one place that decides whether a task goes on and how. Every method runs on the
/// session's dedicated thread. The hot path (a syscall stop) does one waitpid, one PTRACE_GET_SYSCALL_INFO and one
/// resume, and allocates nothing: a GC pause here would leave every tracee stopped. Attach and launch are in
/// StopLoop.Attach.cs, the detach in StopLoop.Detach.cs.
/// </summary>
internal sealed partial class StopLoop(int pid, TraceOptions options, ITraceObserver observer, Func<bool> detachRequested) : ITraceControl
{
    private readonly Dictionary<int, TaskState> _tasks = [];

    // Tasks that exited before their parent's clone/fork event was handled (a vfork child can be born, run and
    // die first): that late event must not bring them back, or the loop would wait for them forever.
    private readonly HashSet<int> _goneEarly = [];
    private int _awaitingParent;
    private readonly bool _seccomp = options.Filter is not null;
    private readonly bool _followForks = options.FollowForks || options.Filter is not null;
    private readonly bool _syscallStops = options.Filter is null && options.TraceSyscalls;
    private readonly int _selfTid = Libc.gettid();
    private readonly CpuFollower? _cpu = options.FollowTraceeCpu ? CpuFollower.TryCreate() : null;
    private readonly long _spinTicks = options.SpinMicroseconds * Stopwatch.Frequency / 1_000_000;
    private readonly Waker _waker = new();
    private readonly HoldRequests _holdRequests = new();

    // While detaching, every stop is kept (HoldReasons.Detach) instead of resumed.
    private bool _detaching;

    // The first ptrace request that failed other than with ESRCH: the session ends and reports it.
    private long _failedRequest;
    private int _failedTid;
    private int _failedErrno;

    public ExitStatus? TargetExit { get; private set; }

    public void Park(int tid)
    {
        if (_tasks.TryGetValue(tid, out var t)) t.Holds |= HoldReasons.ObserverPark;
    }

    public bool Release(int tid)
    {
        if (!_tasks.TryGetValue(tid, out var t) || (t.Holds & HoldReasons.ObserverPark) == 0) return false;
        Unhold(t, HoldReasons.ObserverPark);
        return true;
    }

    public void StopAtEverySyscall(int tid, bool on)
    {
        if (Libc.gettid() != _selfTid || !_tasks.TryGetValue(tid, out var t) || t.EverySyscall == on) return;
        t.EverySyscall = on;
        // A thread that runs free would not stop before its next signal or trapped syscall: bring it to a stop now,
        // and its resume (Resume(t, sig)) takes the new setting. In a stop, or between a syscall's entry and exit
        // (resumed with PTRACE_SYSCALL already), it takes it at its next resume.
        if (on && !_syscallStops && t.Phase == TaskPhase.Running && !_detaching) Interrupt(t);
    }

    public void Hold(int pid, bool hold)
    {
        _holdRequests.Add(pid, hold);
        if (Libc.gettid() != _selfTid) _waker.Wake();
    }

    /// <summary>Stops (interrupts and keeps) or lets go every thread of the processes asked for.</summary>
    private void ProcessHoldRequests()
    {
        while (_holdRequests.TryTake(out var p, out var hold))
        {
            foreach (var t in _tasks.Values)
            {
                if (t.Tgid != p) continue;
                if (hold)
                {
                    if ((t.Holds & HoldReasons.ProcessHold) != 0) continue;
                    // A task in a stop is kept there; one that runs (or listens in a group-stop) is kept at the
                    // stop its interrupt brings.
                    var inStop = t.IsStopped;
                    t.Holds |= HoldReasons.ProcessHold;
                    if (!inStop) Interrupt(t);
                }
                else if ((t.Holds & HoldReasons.ProcessHold) != 0)
                {
                    Unhold(t, HoldReasons.ProcessHold);
                }
            }
        }
    }

    /// <summary>Ends the ptrace thread's wait. Any thread.</summary>
    public void Wake() => _waker.Wake();

    public void StartWaker() => _waker.Start();

    public void StopWaker()
    {
        _waker.Stop();
        _aloneTimer?.Dispose();
    }

    /// <summary>
    /// Whether a waitpid status was the waker's: a stop (a wake) resumes it; its death (an untraced waker is killed to
    /// wake, or someone killed it) starts a new one unless the session is ending, so that the next request can wake
    /// this thread too. Hold requests are handled by the caller after any wait.
    /// </summary>
    private bool WakerStatus(int tid, int status, bool restart = true)
    {
        if (tid != _waker.Pid || _waker.Pid == 0) return false;
        if (Wait.IfStopped(status))
        {
            _waker.Resume();
            return true;
        }

        _waker.Reaped();
        if (!restart) return true;
        // What woke us first (starting a process takes a while), then the new waker, then what came meanwhile.
        ProcessHoldRequests();
        if (!detachRequested()) _waker.Start();
        return true;
    }

    /// <summary>Runs until every traced task is gone or a detach is requested.</summary>
    public TraceResult Run(TaskCompletionSource attached)
    {
        // A launch is under way once the command's execve has succeeded (or the stage is gone without it).
        if (_preExec) _commandStarted = attached;
        while (_tasks.Count > 0)
        {
            if (detachRequested())
            {
                DetachAll();
                return new TraceResult(TraceEndReason.Detached, TargetExit, null);
            }

            var waited = WaitForStop(out var tid, out var status);
            if (!waited.IsOk)
            {
                if (waited.Errno == Errno.ECHILD) break;
                throw new TraceException($"waitpid failed: {waited.Message}");
            }

            if (!WakerStatus(tid, status)) HandleStop(tid, status);
            if (!_holdRequests.IsEmpty) ProcessHoldRequests();
            if (_failedRequest != 0) ThrowFailure();
            if (!_attachReported && _initialPending == 0)
            {
                _attachReported = true;
                observer.OnAttached(pid, _initialThreads);
                ReleaseAttached();
                attached.TrySetResult();
            }
        }

        return new TraceResult(TraceEndReason.TargetExited, TargetExit, null);
    }

    /// <summary>
    /// Observers have been told of the attach, every thread in a stop meanwhile (see HoldReasons.Attaching): the
    /// threads go on as they would have, then the stops of threads an observer stopped during that call.
    /// </summary>
    private void ReleaseAttached()
    {
        foreach (var t in _tasks.Values.ToList())
        {
            if ((t.Holds & HoldReasons.Attaching) != 0) Unhold(t, HoldReasons.Attaching);
        }

        if (_deferredStops.Count > 0 && !_detaching) ReplayDeferredStops();
    }

    /// <summary>A ptrace request that was refused: the session ends (detaching the rest) and reports why.</summary>
    private void ThrowFailure()
    {
        var (request, tid, errno) = (_failedRequest, _failedTid, _failedErrno);
        _failedRequest = 0;
        throw new TraceException($"{PtraceCalls.RequestName(request)} of thread {tid} failed: {Libc.StrError(errno)}");
    }

    /// <summary>
    /// Takes in the result of a request on T: ESRCH means T is gone (its death, if still to come, is reaped as a
    /// stranger's); another error is kept for the session to report.
    /// </summary>
    private void Check(SysResult r, long request, TaskState t)
    {
        if (r.IsOk) return;
        if (r.IsGone)
        {
            t.Phase = TaskPhase.Gone;
            return;
        }

        if (_failedRequest != 0) return;
        _failedRequest = request;
        _failedTid = t.Tid;
        _failedErrno = r.Errno;
    }

    private void Interrupt(TaskState t) => Check(PtraceCalls.Request(Ptrace.INTERRUPT, t.Tid, 0), Ptrace.INTERRUPT, t);

    /// <summary>
    /// waitpid(-1, __WALL), polled for a few microseconds before blocking. A tracee that was just resumed usually
    /// stops again within microseconds (the next syscall boundary); catching that stop while still running spares
    /// the tracer a sleep and a cross-CPU wake-up, which on this kind of machine costs more than the ptrace work.
    /// A tracee that blocks (waiting for input) finds the tracer asleep in waitpid after the short spin.
    /// </summary>
    private SysResult WaitForStop(out int tid, out int status)
    {
        // Adaptive: after a few spins that found nothing (a tracee that blocks, or no CPU free for it to run on) the
        // tracer stops spinning for a while, so that it does not burn a CPU the tracee or others could use.
        if (_spinTicks > 0 && (_spinMisses < 4 || ++_waitsSinceSpin >= 64))
        {
            var deadline = Stopwatch.GetTimestamp() + _spinTicks;
            do
            {
                var r = PosixSpawn.WaitPid(-1, Wait.Tracees | Wait.WNOHANG, out tid, out status);
                if (!r.IsOk || tid != 0)
                {
                    _spinMisses = 0;
                    return r;
                }
            }
            while (Stopwatch.GetTimestamp() < deadline);
            _spinMisses++;
            _waitsSinceSpin = 0;
        }

        return PosixSpawn.WaitPid(-1, Wait.Tracees, out tid, out status);
    }

    private int _spinMisses;
    private int _waitsSinceSpin;

    /// <summary>
    /// The one place that decides whether and how a stopped task goes on. The stop is consumed with the resume asked
    /// (its signal included), unless something holds the task: then that resume waits in <see cref="TaskState.Pending"/>
    /// and <see cref="Unhold"/> carries it out when the last hold is gone. A group-stopped task is let listen even
    /// when an observer holds it: it stays stopped all the same, and must still report its SIGCONT.
    /// </summary>
    private void Resume(TaskState t, ResumeKind kind, int sig)
    {
        if (StepResume(t, ref kind))
        {
            t.Pending = new PendingResume(kind, sig);
            CarryOut(t);
            return;
        }

        if (_detaching) t.Holds |= HoldReasons.Detach;
        t.Pending = new PendingResume(kind, sig);
        var holds = kind == ResumeKind.Listen ? t.Holds & (HoldReasons.Detach | HoldReasons.AwaitingParent) : t.Holds;
        if (holds == HoldReasons.None) CarryOut(t);
    }

    /// <summary>Resume with the session's way of running: PTRACE_SYSCALL for syscall stops (and between a seccomp stop and its syscall's exit), else PTRACE_CONT.</summary>
    private void Resume(TaskState t, int sig) => Resume(t, t.InSyscall || _syscallStops || t.EverySyscall ? ResumeKind.Syscall : ResumeKind.Continue, sig);

    /// <summary>Takes a hold away; when it was the last and the task is in a stop, the resume that waited is carried out.</summary>
    private void Unhold(TaskState t, HoldReasons reason)
    {
        t.Holds &= ~reason;
        if (t.Holds == HoldReasons.None && t.IsStopped) CarryOut(t);
    }

    private void CarryOut(TaskState t)
    {
        if (!TaskStop.Of(t, out var stop)) return;
        var how = t.Pending;
        t.Pending = default;
        // ESRCH: killed while stopped; its death comes next and is handled then.
        var r = stop.Resume(how);
        if (r.IsOk) return;
        if (how.Kind == ResumeKind.SingleStep)
        {
            StepDone(t, completed: false);
            if (r.IsGone) return;
        }

        if (!r.IsGone) Check(r, how.Kind switch
        {
            ResumeKind.Listen => Ptrace.LISTEN,
            ResumeKind.Syscall => Ptrace.SYSCALL,
            ResumeKind.SingleStep => Ptrace.SINGLESTEP,
            _ => Ptrace.CONT,
        }, t);
    }

    private void Detach(TaskState t, int sig)
    {
        if (!TaskStop.Of(t, out var stop)) return;
        Check(stop.Detach(sig), Ptrace.DETACH, t);
        _tasks.Remove(t.Tid);
    }

    private void HandleStop(int tid, int status)
    {
        if (DeferForStep(tid, status)) return;
        HandleStopCore(tid, status);
        if (_deferredStops.Count > 0 && !_detaching) ReplayDeferredStops();
    }

    private void HandleStopCore(int tid, int status)
    {
        if (!_tasks.TryGetValue(tid, out var t))
        {
            if (!Wait.IfStopped(status))
            {
                // A task that died before its first stop and before its parent's clone/fork event was handled: that
                // late event must not bring it back.
                _goneEarly.Add(tid);
                return;
            }

            // A new task reported its first stop before its parent's clone/fork event.
            t = NewTask(tid);
        }

        if (!Wait.IfStopped(status))
        {
            TaskGone(t, status);
            return;
        }

        var first = !t.Started;
        t.Started = true;
        // In a stop from here until resumed: if an observer throws meanwhile, DetachAll finds it stopped, with the
        // signal it was about to get in Pending.
        t.Phase = TaskPhase.Stopped;
        t.Pending = default;
        if (!_attachReported) t.Holds |= HoldReasons.Attaching;
        if (t.Initial && first)
        {
            // PTRACE_INTERRUPT is answered by the next ptrace stop of any kind: a thread that was cloning or in a
            // syscall when we attached reports that event or syscall stop, and no PTRACE_EVENT_STOP follows.
            _initialPending--;
        }

        var sig = Wait.StopSig(status);
        var evt = Wait.Event(status);
        if (sig == (Signals.SIGTRAP | 0x80))
        {
            SyscallStop(t, seccomp: false);
            Resume(t, 0);
            return;
        }

        switch (evt)
        {
            case 0:
                SignalDeliveryStop(t, sig);
                return;
            case Ptrace.EVENT_STOP:
                // A thread present at attach is no newborn: its first stop answers our PTRACE_INTERRUPT.
                if (first && !t.Initial && !t.SeenByParent)
                {
                    // Born, but its parent's clone/fork event is still to come: the observer must see it (OnNewTask)
                    // before it runs a single instruction, so it stays stopped until then.
                    t.Holds |= HoldReasons.AwaitingParent;
                    _awaitingParent++;
                    Resume(t, 0);
                    return;
                }

                if (first && t.DetachWhenStarted)
                {
                    Detach(t, 0);
                    return;
                }

                // Group-stop: stay stopped (kill -CONT resumes it) but keep reporting events.
                if (Signals.IsStopSignal(sig)) Resume(t, ResumeKind.Listen, 0);
                else Resume(t, 0);
                return;
            case Ptrace.EVENT_SECCOMP:
                SyscallStop(t, seccomp: true);
                Resume(t, 0);
                return;
            case Ptrace.EVENT_CLONE or Ptrace.EVENT_FORK or Ptrace.EVENT_VFORK:
                NewChild(t, evt);
                Resume(t, 0);
                return;
            case Ptrace.EVENT_EXEC:
                Resume(Exec(t), 0);
                return;
            default:
                Resume(t, 0);
                return;
        }
    }

    private void SignalDeliveryStop(TaskState t, int sig)
    {
        if (_preExec && !_stageStopSeen && sig == Signals.SIGSTOP && t.Tid == _targetPid)
        {
            // The launch stage's own SIGSTOP: from here on the tracer is in control. Swallow it.
            _stageStopSeen = true;
            Resume(t, 0);
            return;
        }

        var info = SigInfo.Read(t.Tid);
        // SIGTRAP by si_code: an int3 gives SI_KERNEL (maybe an observer's breakpoint), the step of a thread resumed
        // with PTRACE_SINGLESTEP TRAP_TRACE. Anything else (the process's own trap flag, kill -TRAP) is its signal.
        if (sig == Signals.SIGTRAP)
        {
            if (info.Code == SigInfo.SI_KERNEL && observer.OnBreakpoint(new BreakpointStop(t.Tgid, t.Tid)))
            {
                Resume(t, 0);
                return;
            }

            if (StepTrap(t, info.Code)) return;
        }

        // Hand the signal back, never swallow it (nor lose it if the observer throws: Pending has it).
        t.Pending = new PendingResume(ResumeKind.Continue, sig);
        if (!_preExec) observer.OnSignal(new SignalStop(t.Tgid, t.Tid, sig, info));
        Resume(t, sig);
    }

    private void SyscallStop(TaskState t, bool seccomp)
    {
        if (!PtraceCalls.GetSyscallInfo(t.Tid, out var info).IsOk) return;
        _cpu?.OnStop(t.Tid);
        if (info.Op is Ptrace.SYSCALL_INFO_ENTRY or Ptrace.SYSCALL_INFO_SECCOMP)
        {
            // Resumed with PTRACE_SYSCALL, a thread reports a trapped syscall twice: its entry stop, then (the kernel
            // runs seccomp after the entry stop) its seccomp stop. The entry has been reported: this is the same call.
            if (info.Op == Ptrace.SYSCALL_INFO_SECCOMP && t.InSyscall) return;
            t.InSyscall = true;
            t.Nr = (long)info.Nr;
            t.Args = new SyscallArgs(info.Arg(0), info.Arg(1), info.Arg(2), info.Arg(3), info.Arg(4), info.Arg(5));
            // The stage's execve of the command (after the stage's SIGSTOP) is the command's first syscall.
            if (_preExec && _stageStopSeen && t.Tid == _targetPid && t.Nr is X86_64.Syscalls.Execve or X86_64.Syscalls.Execveat) ShowCommandExec();
            if (Reported(t)) observer.OnSyscallEnter(new SyscallEnterStop(t.Tgid, t.Tid, t.Nr, t.Args));
        }
        else if (info.Op == Ptrace.SYSCALL_INFO_EXIT)
        {
            if (!t.InSyscall && !RecoverEntry(t)) return;
            t.InSyscall = false;
            if (Reported(t)) observer.OnSyscallExit(new SyscallExitStop(t.Tgid, t.Tid, t.Nr, t.Args, info.ReturnValue, info.IsError != 0));
            // Still before the command after its execve returned: that execve failed (a success brings the exec event
            // first). What the stage does next (it exits at once, saying why in its status) is not the command's.
            if (_preExec && _execShown && t.Tid == _targetPid) _execShown = false;
        }
        else if (seccomp)
        {
            t.InSyscall = true;
        }
    }

    /// <summary>
    /// An exit stop without its entry: the thread was inside the syscall when we attached. The argument registers
    /// survive a syscall on x86_64, so they still say what it was called with.
    /// </summary>
    private static bool RecoverEntry(TaskState t)
    {
        if (!PtraceCalls.GetRegs(t.Tid, out var regs).IsOk) return false;
        (t.Nr, t.Args) = X86_64.Syscalls.Entry(regs);
        return true;
    }

    private TaskState NewTask(int tid, int tgid = 0)
    {
        _goneEarly.Remove(tid); // a reused id: the old entry is stale
        if (tgid == 0) tgid = ProcessInfo.ReadTgid(tid);
        if (tgid == 0) tgid = tid;
        var t = new TaskState(tid, tgid);
        if (_holdRequests.Held.Contains(tgid)) t.Holds |= HoldReasons.ProcessHold; // born into a held process
        // A new process we were not asked to follow: stopped at birth only so that the observer could clean it.
        if (!_followForks && !_tasks.Values.Any(x => x.Tgid == tgid)) t.DetachWhenStarted = true;
        _tasks[tid] = t;
        return t;
    }

    private void NewChild(TaskState parent, int evt)
    {
        if (!PtraceCalls.GetEventMsg(parent.Tid, out var msg).IsOk) return;
        var child = (int)msg;
        if (_goneEarly.Remove(child)) return;
        if (!_tasks.TryGetValue(child, out var t))
        {
            // Its first stop is still to come. /proc tells which process it belongs to; a task that is not there
            // any more has been reaped (as a death we could not place) and must not be waited for.
            var tgid = ProcessInfo.ReadTgid(child);
            if (tgid == 0) return;
            t = NewTask(child, tgid);
        }

        t.SeenByParent = true;
        var isProcess = evt != Ptrace.EVENT_CLONE || t.Tgid != parent.Tgid;
        if (!_preExec) observer.OnNewTask(parent.Tid, child, t.Tgid, isProcess);
        ReleaseNewborn(t);
    }

    /// <summary>A task that was kept stopped at birth until its parent's event: now it may run (or go, if not followed).</summary>
    private void ReleaseNewborn(TaskState t)
    {
        if ((t.Holds & HoldReasons.AwaitingParent) == 0) return;
        _awaitingParent--;
        if (t.DetachWhenStarted)
        {
            t.Holds &= ~HoldReasons.AwaitingParent;
            Detach(t, t.Pending.Signal);
        }
        else
        {
            Unhold(t, HoldReasons.AwaitingParent);
        }
    }

    /// <summary>
    /// A task died: newborns still waiting for its fork/clone event will never get it (a parent killed between its
    /// fork and the event): tell the observer about them now and let them run.
    /// </summary>
    private void ReleaseOrphans(TaskState gone)
    {
        if (_awaitingParent == 0) return;
        foreach (var t in _tasks.Values.Where(x => (x.Holds & HoldReasons.AwaitingParent) != 0).ToList())
        {
            // A new thread's clone event is lost only when its creator is killed inside clone(), and that takes a
            // fatal signal or an exec that kills the whole thread group, the newborn with it: it reports its own
            // death. Releasing it when some other thread of the process exits would let it run unseen, and its
            // clone event, still to come, would then bring back a thread that is gone.
            if (t.Tid != t.Tgid) continue;
            if (ProcessInfo.TryRead(t.Tgid)?.PPid is { } ppid && _tasks.Values.Any(x => x.Tgid == ppid)) continue;
            t.SeenByParent = true;
            if (!_preExec) observer.OnNewTask(gone.Tid, t.Tid, t.Tgid, true);
            ReleaseNewborn(t);
        }
    }

    /// <summary>PTRACE_EVENT_EXEC, reported under the leader's id: returns the task that carries it now, to resume.</summary>
    private TaskState Exec(TaskState t)
    {
        // After a successful execve the thread carries the thread group leader's id, whatever it had before.
        PtraceCalls.GetEventMsg(t.Tid, out var msg);
        var former = (int)msg;
        var execingThread = former != t.Tgid && _tasks.ContainsKey(former) ? former : t.Tgid;
        if (former != t.Tgid && _tasks.Remove(former, out var execing))
        {
            if (_tasks.TryGetValue(t.Tgid, out var leader))
            {
                leader.InSyscall = execing.InSyscall;
                leader.Nr = execing.Nr;
                leader.Args = execing.Args;
                leader.Phase = TaskPhase.Stopped;
            }
            else
            {
                execing.Tid = t.Tgid;
                execing.Phase = TaskPhase.Stopped;
                _tasks[t.Tgid] = execing;
            }
        }

        // posix_spawn returns as soon as the stage's own execve has released the parent's memory, before that execve
        // completes: seized that early, the stage reports its own exec first. Only an exec after its SIGSTOP counts.
        if (_preExec && _stageStopSeen && t.Tgid == _targetPid) CommandStarted();
        var now = _tasks[t.Tgid];
        // The stage's own exec (of nozoki) is no exec of the command's: observers must not arm a .NET runtime.
        if (_preExec) return now;
        // The thread that called execve, by its former id: observers hand its open call over to the leader's id
        // (strace shows it resumed there, "= 0"). Under its former id it is gone.
        observer.OnExec(t.Tgid, execingThread);
        if (execingThread != t.Tgid) observer.OnThreadExited(t.Tgid, execingThread);
        return now;
    }

    private void TaskGone(TaskState t, int status)
    {
        _tasks.Remove(t.Tid);
        if (t.Stepping) StepDone(t, completed: false);
        if ((t.Holds & HoldReasons.AwaitingParent) != 0) _awaitingParent--;
        t.Phase = TaskPhase.Gone;
        if (_tasks.Count > 0) ReleaseOrphans(t);
        if (!t.Initial && !t.SeenByParent) _goneEarly.Add(t.Tid);
        // The launch stage's threads (before the command's exec) are not the command's.
        if (!_preExec) observer.OnThreadExited(t.Tgid, t.Tid);
        if (t.Initial && !t.Started) _initialPending--;
        if (t.Tid != t.Tgid) return;
        var exit = ExitStatus.FromWaitStatus(status);
        if (t.Tgid == _targetPid) TargetExit = exit;
        if (_preExec && t.Tgid == _targetPid)
        {
            // The stage ended without starting the command; its status says why (LaunchStage.Failure).
            StageExit = exit;
            return;
        }

        observer.OnProcessExited(t.Tgid, exit);
    }
}
