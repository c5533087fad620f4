using System.Runtime.InteropServices;
using Nozoki.Native;
using Nozoki.Procfs;

namespace Nozoki.Tracing;

/// <summary>
/// The ptrace stop loop. Every method runs on the session's dedicated thread. The hot path (a syscall stop) does one
/// waitpid, one PTRACE_GET_SYSCALL_INFO and one PTRACE_SYSCALL, and allocates nothing: a GC pause here would leave
/// every tracee stopped.
/// </summary>
internal sealed class StopLoop(int pid, TraceOptions options, ITraceObserver observer, Func<bool> detachRequested)
{
    private sealed class TaskState(int tid, int tgid)
    {
        public int Tid = tid;
        public readonly int Tgid = tgid;
        public bool Started;            // has reported its first stop
        public bool Initial;            // present at attach (counts towards OnAttached)
        public bool InSyscall;          // between a syscall-enter stop and its exit stop
        public long Nr;
        public SyscallArgs Args;
        public bool Held;               // stopped and kept stopped, for detach
        public int PendingSignal;       // to re-inject at detach
        public bool DetachWhenStarted;  // a new process we do not follow
    }

    private readonly Dictionary<int, TaskState> _tasks = [];
    private readonly int _ptraceOptions = Ptrace.O_TRACESYSGOOD | Ptrace.O_TRACECLONE | Ptrace.O_TRACEEXEC
        | (options.FollowForks ? Ptrace.O_TRACEFORK | Ptrace.O_TRACEVFORK : 0);
    private readonly int _selfTid = Libc.gettid();
    private readonly CpuFollower? _cpu = options.FollowTraceeCpu ? CpuFollower.TryCreate() : null;
    private readonly long _spinTicks = options.SpinMicroseconds * System.Diagnostics.Stopwatch.Frequency / 1_000_000;
    private int _initialPending;
    private bool _attachReported;
    private int _initialThreads;

    public ExitStatus? TargetExit { get; private set; }

    /// <summary>PTRACE_SEIZE every thread of the process, re-scanning /proc/PID/task until no new thread appears, then PTRACE_INTERRUPT each.</summary>
    public void AttachAll()
    {
        var first = true;
        while (true)
        {
            var added = 0;
            foreach (var tid in ProcessInfo.ReadThreadIds(pid))
            {
                if (_tasks.ContainsKey(tid)) continue;
                if (Seize(tid, first)) added++;
                first = false;
            }

            if (first) throw new ProcessNotFoundException(pid);
            if (added == 0) break;
        }

        foreach (var t in _tasks.Values)
        {
            if (t.Initial) Interrupt(t.Tid);
        }

        _initialThreads = _initialPending;
    }

    private bool Seize(int tid, bool isFirst)
    {
        if (Libc.ptrace(Ptrace.SEIZE, tid, 0, _ptraceOptions) == 0)
        {
            _tasks[tid] = new TaskState(tid, pid) { Initial = true };
            _initialPending++;
            return true;
        }

        var errno = Marshal.GetLastPInvokeError();
        if (errno == Errno.ESRCH)
        {
            if (isFirst) throw new ProcessNotFoundException(pid);
            return false; // the thread exited meanwhile
        }

        if (!isFirst && errno == Errno.EPERM && ProcessInfo.TryRead(tid)?.TracerPid == _selfTid)
        {
            // Born during attach and attached automatically (PTRACE_O_TRACECLONE): its first stop is on its way.
            return false;
        }

        if (errno == Errno.EPERM) throw new TracePermissionException(pid, TraceSession.ExplainPermission(pid));
        throw new TraceException($"PTRACE_SEIZE of thread {tid} failed: {Libc.StrError(errno)}");
    }

    private static void Interrupt(int tid) => Libc.ptrace(Ptrace.INTERRUPT, tid, 0, 0);

    /// <summary>Runs until every traced task is gone or a detach is requested.</summary>
    public TraceResult Run(TaskCompletionSource attached)
    {
        while (_tasks.Count > 0)
        {
            if (detachRequested())
            {
                DetachAll();
                return new TraceResult(TraceEndReason.Detached, TargetExit, null);
            }

            var tid = WaitForStop(out var status);
            if (tid < 0)
            {
                if (-tid == Errno.ECHILD) break;
                throw new TraceException($"waitpid failed: {Libc.StrError(-tid)}");
            }

            HandleStop(tid, status, holding: false);
            if (!_attachReported && _initialPending == 0)
            {
                _attachReported = true;
                observer.OnAttached(pid, _initialThreads);
                attached.TrySetResult();
            }
        }

        return new TraceResult(TraceEndReason.TargetExited, TargetExit, null);
    }

    /// <summary>
    /// waitpid(-1, __WALL), polled for a few microseconds before blocking. A tracee that was just resumed usually
    /// stops again within microseconds (the next syscall boundary); catching that stop while still running spares
    /// the tracer a sleep and a cross-CPU wake-up, which on this kind of machine costs more than the ptrace work.
    /// A tracee that blocks (waiting for input) finds the tracer asleep in waitpid after the short spin.
    /// </summary>
    private int WaitForStop(out int status)
    {
        if (_spinTicks > 0)
        {
            var deadline = System.Diagnostics.Stopwatch.GetTimestamp() + _spinTicks;
            do
            {
                var r = PosixSpawn.WaitPid(-1, Wait.WALL | Wait.WNOHANG, out status);
                if (r != 0) return r;
            }
            while (System.Diagnostics.Stopwatch.GetTimestamp() < deadline);
        }

        return PosixSpawn.WaitPid(-1, Wait.WALL, out status);
    }

    /// <summary>
    /// Interrupts every running task, lets each report a stop (finishing any syscall exit it was in), and detaches
    /// them all, re-injecting any signal that was about to be delivered. A group-stopped process stays stopped.
    /// </summary>
    public void DetachAll()
    {
        foreach (var t in _tasks.Values)
        {
            if (!t.Held) Interrupt(t.Tid);
        }

        while (true)
        {
            var waiting = false;
            foreach (var t in _tasks.Values)
            {
                if (!t.Held)
                {
                    waiting = true;
                    break;
                }
            }

            if (!waiting) break;
            var tid = PosixSpawn.WaitPid(-1, Wait.WALL, out var status);
            if (tid < 0)
            {
                if (-tid == Errno.ECHILD)
                {
                    _tasks.Clear();
                    break;
                }

                throw new TraceException($"waitpid failed while detaching: {Libc.StrError(-tid)}");
            }

            HandleStop(tid, status, holding: true);
        }

        foreach (var t in _tasks.Values) Libc.ptrace(Ptrace.DETACH, t.Tid, 0, t.PendingSignal);
        var pids = new HashSet<int>();
        foreach (var t in _tasks.Values) pids.Add(t.Tgid);
        _tasks.Clear();
        foreach (var p in pids) observer.OnDetached(p);
    }

    private void HandleStop(int tid, int status, bool holding)
    {
        if (!_tasks.TryGetValue(tid, out var t))
        {
            if (!Wait.IfStopped(status)) return; // a child of ours that is not a tracee (the waker) has exited
            // A new task reported its first stop before its parent's clone/fork event.
            t = NewTask(tid);
        }

        if (!Wait.IfStopped(status))
        {
            TaskGone(t, status);
            return;
        }

        var sig = Wait.StopSig(status);
        var evt = Wait.Event(status);
        if (sig == (Signals.SIGTRAP | 0x80))
        {
            SyscallStop(t);
            Resume(t, 0, holding);
            return;
        }

        switch (evt)
        {
            case 0:
                // Signal-delivery-stop: hand the signal back, never swallow it.
                observer.OnSignal(t.Tgid, tid, sig);
                if (holding) t.PendingSignal = sig;
                Resume(t, sig, holding);
                return;
            case Ptrace.EVENT_STOP:
                var first = !t.Started;
                t.Started = true;
                if (first && t.Initial) _initialPending--;
                if (first && t.DetachWhenStarted)
                {
                    Libc.ptrace(Ptrace.DETACH, tid, 0, 0);
                    _tasks.Remove(tid);
                    return;
                }

                if (holding)
                {
                    t.Held = true;
                }
                else if (Signals.IsStopSignal(sig))
                {
                    // Group-stop: stay stopped (kill -CONT resumes it) but keep reporting events.
                    Libc.ptrace(Ptrace.LISTEN, tid, 0, 0);
                }
                else
                {
                    Resume(t, 0, holding: false);
                }

                return;
            case Ptrace.EVENT_CLONE or Ptrace.EVENT_FORK or Ptrace.EVENT_VFORK:
                NewChild(t, evt);
                Resume(t, 0, holding);
                return;
            case Ptrace.EVENT_EXEC:
                Exec(t);
                Resume(_tasks[t.Tgid], 0, holding);
                return;
            default:
                Resume(t, 0, holding);
                return;
        }
    }

    private void Resume(TaskState t, int sig, bool holding)
    {
        if (holding)
        {
            t.Held = true;
            return;
        }

        // ESRCH: the task was killed while stopped; its exit is reported next.
        Libc.ptrace(Ptrace.SYSCALL, t.Tid, 0, sig);
    }

    private unsafe void SyscallStop(TaskState t)
    {
        PtraceSyscallInfo info;
        if (Libc.ptrace(Ptrace.GET_SYSCALL_INFO, t.Tid, sizeof(PtraceSyscallInfo), (nint)(&info)) <= 0) return;
        _cpu?.OnStop(t.Tid);
        if (info.Op == Ptrace.SYSCALL_INFO_ENTRY)
        {
            t.InSyscall = true;
            t.Nr = (long)info.Nr;
            t.Args = new SyscallArgs(info.Args[0], info.Args[1], info.Args[2], info.Args[3], info.Args[4], info.Args[5]);
            observer.OnSyscallEnter(new SyscallEnterStop(t.Tgid, t.Tid, t.Nr, t.Args));
        }
        else if (info.Op == Ptrace.SYSCALL_INFO_EXIT)
        {
            if (!t.InSyscall && !RecoverEntry(t)) return;
            t.InSyscall = false;
            observer.OnSyscallExit(new SyscallExitStop(t.Tgid, t.Tid, t.Nr, t.Args, info.ReturnValue, info.IsError != 0));
        }
    }

    /// <summary>
    /// An exit stop without its entry: the thread was inside the syscall when we attached. The argument registers
    /// survive a syscall on x86_64, so they still say what it was called with.
    /// </summary>
    private unsafe bool RecoverEntry(TaskState t)
    {
        UserRegs regs;
        if (Libc.ptrace(Ptrace.GETREGS, t.Tid, 0, (nint)(&regs)) != 0) return false;
        t.Nr = (long)regs.OrigRax;
        t.Args = new SyscallArgs(regs.Rdi, regs.Rsi, regs.Rdx, regs.R10, regs.R8, regs.R9);
        return true;
    }

    private TaskState NewTask(int tid)
    {
        var tgid = ProcessInfo.ReadTgid(tid);
        if (tgid == 0) tgid = tid;
        var t = new TaskState(tid, tgid);
        // A process we were not asked to follow (clone without CLONE_THREAD, caught by PTRACE_O_TRACECLONE).
        if (!options.FollowForks && !_tasks.Values.Any(x => x.Tgid == tgid)) t.DetachWhenStarted = true;
        _tasks[tid] = t;
        return t;
    }

    private unsafe void NewChild(TaskState parent, int evt)
    {
        ulong msg;
        if (Libc.ptrace(Ptrace.GETEVENTMSG, parent.Tid, 0, (nint)(&msg)) != 0) return;
        var child = (int)msg;
        if (!_tasks.TryGetValue(child, out var t)) t = NewTask(child);
        observer.OnNewTask(parent.Tid, child, t.Tgid, evt != Ptrace.EVENT_CLONE || t.Tgid != parent.Tgid);
    }

    private unsafe void Exec(TaskState t)
    {
        // After a successful execve the thread carries the thread group leader's id, whatever it had before.
        ulong msg;
        Libc.ptrace(Ptrace.GETEVENTMSG, t.Tid, 0, (nint)(&msg));
        var former = (int)msg;
        if (former != t.Tgid && _tasks.Remove(former, out var execing))
        {
            if (_tasks.TryGetValue(t.Tgid, out var leader))
            {
                leader.InSyscall = execing.InSyscall;
                leader.Nr = execing.Nr;
                leader.Args = execing.Args;
                leader.Started = true;
            }
            else
            {
                execing.Tid = t.Tgid;
                _tasks[t.Tgid] = execing;
            }
        }

        observer.OnExec(t.Tgid, t.Tgid);
    }

    private void TaskGone(TaskState t, int status)
    {
        _tasks.Remove(t.Tid);
        if (t.Initial && !t.Started) _initialPending--;
        if (t.Tid != t.Tgid) return;
        var exit = ExitStatus.FromWaitStatus(status);
        if (t.Tgid == pid) TargetExit = exit;
        observer.OnProcessExited(t.Tgid, exit);
    }
}
