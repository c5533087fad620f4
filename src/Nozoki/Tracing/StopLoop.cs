using System.Diagnostics;
using System.Runtime.InteropServices;
using Nozoki.Native;
using Nozoki.Procfs;

namespace Nozoki.Tracing;

/// <summary>
/// The ptrace stop loop. Every method runs on the session's dedicated thread. The hot path (a syscall stop) does one
/// waitpid, one PTRACE_GET_SYSCALL_INFO and one resume, and allocates nothing: a GC pause here would leave every
/// tracee stopped.
/// </summary>
internal sealed class StopLoop(int pid, TraceOptions options, ITraceObserver observer, Func<bool> detachRequested) : ITraceControl
{
    private sealed class TaskState(int tid, int tgid)
    {
        public int Tid = tid;
        public readonly int Tgid = tgid;
        public bool Started;            // has reported its first stop
        public bool Initial;            // present at attach (counts towards OnAttached)
        public bool InSyscall;          // between a syscall-enter (or seccomp) stop and its exit stop
        public long Nr;
        public SyscallArgs Args;
        public bool Held;               // stopped and kept stopped, for detach
        public int PendingSignal;       // to re-inject at detach
        public bool DetachWhenStarted;  // a new process we do not follow
        public bool Parked;             // kept stopped at the observer's request (ITraceControl.Park)
        public bool SeenByParent;       // its parent's clone/fork event has been handled
        public bool AwaitingParent;     // reported its first stop before its parent's event: kept stopped (parked) until then
        public bool HeldForObserver;    // parked because its process is held (ITraceControl.Hold)
        public bool Suspended;          // a resume was skipped because it was parked: Release resumes it
        public int SuspendedSignal;     // the signal that resume would have delivered

        // --- single-step (ITraceControl.SingleStep) ---
        public bool StepRequested;      // the current stop is to be resumed with PTRACE_SINGLESTEP
        public bool Stepping;           // resumed with PTRACE_SINGLESTEP: its next SIGTRAP TRAP_TRACE is the step
        public bool StopDeferred;       // stopped for another thread's step: its stop waits in _deferredStops
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Single-step (ITraceControl.SingleStep), for the breakpoint step-over: the stepping thread must be the only one
    // of its process that runs, or another could run through the site while its original instruction is back in
    // place. The other threads are interrupted and their stops collected at once (waitpid on each), then handled only
    // after the step trap, in the order they came, as if waitpid had returned them then.
    // ---------------------------------------------------------------------------------------------------------------
    private readonly List<(int Tid, int Status)> _deferredStops = [];
    private readonly HashSet<int> _steppingProcesses = [];
    private bool _detaching;

    public bool SingleStep(int tid)
    {
        if (_detaching || _current is not { } t || t.Tid != tid || _steppingProcesses.Contains(t.Tgid)) return false;
        StopOthers(t);
        t.StepRequested = true;
        return true;
    }

    /// <summary>Stops every other thread of t's process that may be running, collecting its stop for later.</summary>
    private void StopOthers(TaskState t)
    {
        foreach (var u in _tasks.Values)
        {
            if (u == t || u.Tgid != t.Tgid || u.Suspended || u.Held || u.AwaitingParent || u.StopDeferred) continue;
            // ESRCH: gone already (a zombie); its death is reported to the main wait.
            if (Libc.ptrace(Ptrace.INTERRUPT, u.Tid, 0, 0) != 0) continue;
            if (!WaitForInterruptStop(u.Tid, out var status)) continue;
            u.StopDeferred = true;
            _deferredStops.Add((u.Tid, status));
        }
    }

    /// <summary>
    /// Waits for the stop of an interrupted thread: it must be seen stopped, as the interrupt reaches a thread running
    /// on another CPU only after a few more of its instructions. It comes within microseconds, except from a thread
    /// group leader that exited meanwhile: its death is not reported while other threads live (ours, stopped), so
    /// waiting for it would never end. Such a one is dead and runs nothing: false.
    /// </summary>
    private static bool WaitForInterruptStop(int tid, out int status)
    {
        for (var spins = 0; ; spins++)
        {
            var r = PosixSpawn.WaitPid(tid, Wait.Tracees | Wait.WNOHANG, out status);
            if (r == tid) return true;
            if (r < 0) return false;
            if (spins < 1000)
            {
                Thread.Yield();
                continue;
            }

            if (ProcessInfo.TryRead(tid) is not { State: not ('Z' or 'X') }) return false;
            Thread.Sleep(1);
        }
    }

    /// <summary>The SIGTRAP of a thread resumed with PTRACE_SINGLESTEP (TRAP_BRKPT when the step was a syscall instruction).</summary>
    private bool StepTrap(TaskState t, int code, bool holding)
    {
        if (!t.Stepping || code is not (Ptrace.TRAP_TRACE or Ptrace.TRAP_BRKPT)) return false;
        StepDone(t, completed: true);
        Resume(t, 0, holding);
        return true;
    }

    private void StepDone(TaskState t, bool completed)
    {
        t.Stepping = false;
        _steppingProcesses.Remove(t.Tgid);
        observer.OnSingleStep(new StepStop(t.Tgid, t.Tid, completed));
    }

    /// <summary>Handles the stops collected by StopOthers once no step is under way in their process.</summary>
    private void ReplayDeferredStops(bool holding)
    {
        for (var i = 0; i < _deferredStops.Count;)
        {
            var (tid, status) = _deferredStops[i];
            if (!_tasks.TryGetValue(tid, out var u))
            {
                _deferredStops.RemoveAt(i);
                continue;
            }

            if (_steppingProcesses.Contains(u.Tgid))
            {
                i++;
                continue;
            }

            _deferredStops.RemoveAt(i);
            u.StopDeferred = false;
            HandleStopCore(tid, status, holding);
            _current = null;
            _currentSignal = 0;
            i = 0; // that stop may have started a step (and deferred more stops)
        }
    }

    // --- end single-step ---

    public void Park(int tid)
    {
        if (_tasks.TryGetValue(tid, out var t)) t.Parked = true;
    }

    public bool Release(int tid)
    {
        if (!_tasks.TryGetValue(tid, out var t) || !t.Parked) return false;
        Unpark(t);
        return true;
    }

    /// <summary>Lets a parked task go on: resumes it as the skipped resume would have (with its signal), if one was skipped.</summary>
    private void Unpark(TaskState t)
    {
        t.Parked = false;
        if (!t.Suspended || t.Held) return;
        t.Suspended = false;
        var sig = t.SuspendedSignal;
        t.SuspendedSignal = 0;
        Resume(t, sig, holding: false);
    }

    // ITraceControl.Hold: requests from any thread, carried out by the ptrace thread (woken for them).
    private readonly System.Collections.Concurrent.ConcurrentQueue<(int Pid, bool Hold)> _holdRequests = new();
    private readonly HashSet<int> _heldProcesses = [];

    public void Hold(int pid, bool hold)
    {
        _holdRequests.Enqueue((pid, hold));
        if (Libc.gettid() != _selfTid) Wake();
    }

    /// <summary>Stops (interrupts and parks) or lets go every thread of the processes asked for.</summary>
    private void ProcessHoldRequests()
    {
        while (_holdRequests.TryDequeue(out var r))
        {
            if (r.Hold)
            {
                if (!_heldProcesses.Add(r.Pid)) continue;
                foreach (var t in _tasks.Values)
                {
                    if (t.Tgid != r.Pid || t.HeldForObserver) continue;
                    t.HeldForObserver = true;
                    if (t.Parked) continue;
                    t.Parked = true;
                    Interrupt(t.Tid);
                }
            }
            else
            {
                if (!_heldProcesses.Remove(r.Pid)) continue;
                foreach (var t in _tasks.Values.Where(x => x.Tgid == r.Pid && x.HeldForObserver).ToList())
                {
                    t.HeldForObserver = false;
                    if (!t.AwaitingParent) Unpark(t);
                }
            }
        }
    }

    private const long NrExecve = 59, NrExecveat = 322;

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
    private int _initialPending;
    private bool _attachReported;
    private int _initialThreads;
    private int _targetPid;

    // Launch: events of the stage (before it execs the command) are not the command's and are not reported.
    private bool _preExec;
    private bool _stageStopSeen;
    private bool _execShown;            // the stage's execve of the command has been reported at its entry: its exit is too
    private bool _commandAttached;      // OnAttached has been called for the command
    private TaskCompletionSource? _commandStarted;

    /// <summary>How the launch stage ended when it ended before its execve of the command succeeded (see LaunchStage.Failure).</summary>
    public ExitStatus? StageExit { get; private set; }

    /// <summary>Whether the launch stage got as far as its SIGSTOP (the tracer was in control from there).</summary>
    public bool StageStopped => _stageStopSeen;

    public ExitStatus? TargetExit { get; private set; }

    /// <summary>The waker: a child of this thread that does nothing until killed; its death ends a blocking wait.</summary>
    private int _wakerPid;
    private int _wakerPidfd = -1;
    private int _wakerPipe = -1;
    private readonly Lock _wakerLock = new();

    /// <summary>
    /// Starts the waker. The ptrace thread sleeps in waitpid, which only a state change of one of its children or
    /// tracees ends. A signal would not do: the runtime installs its handlers with SA_RESTART, so waitpid would just
    /// restart. Killing this child (see <see cref="Wake"/>) ends the wait reliably, and unlike a signal it cannot be
    /// lost between a check and the wait. It reads a pipe only nozoki holds, so it also ends if nozoki dies.
    /// </summary>
    public void StartWaker()
    {
        var path = ChildProcess.ResolvePath("cat");
        if (path is null) return;
        var (read, write) = Pipes.Create();
        using var devnull = File.OpenHandle("/dev/null", FileMode.Open, FileAccess.Write);
        var fd = (int)devnull.DangerousGetHandle();
        try
        {
            lock (_wakerLock)
            {
                _wakerPid = PosixSpawn.Spawn(path, [path], [], read, fd, fd, "/");
                _wakerPidfd = Libc.pidfd_open(_wakerPid);
                _wakerPipe = write;
            }
        }
        catch (IOException)
        {
            // Without a waker a detach request is seen at the tracee's next stop.
            Libc.close(write);
        }
        finally
        {
            Libc.close(read);
        }
    }

    /// <summary>Ends the ptrace thread's wait. Any thread.</summary>
    public void Wake()
    {
        // Through a pidfd: the waker may have been reaped (it dies on every wake) and its PID reused meanwhile.
        lock (_wakerLock)
        {
            if (_wakerPidfd >= 0) Libc.pidfd_send_signal(_wakerPidfd, Signals.SIGKILL);
            else if (_wakerPid > 0) Libc.kill(_wakerPid, Signals.SIGKILL);
        }
    }

    /// <summary>The waker died (it was woken): a new one, so that the next request can wake this thread too.</summary>
    private void RestartWaker()
    {
        lock (_wakerLock)
        {
            if (_wakerPidfd >= 0) Libc.close(_wakerPidfd);
            if (_wakerPipe >= 0) Libc.close(_wakerPipe);
            _wakerPid = 0;
            _wakerPidfd = -1;
            _wakerPipe = -1;
        }

        // What woke us first (starting a process takes a while), then the new waker, then what came meanwhile.
        ProcessHoldRequests();
        if (!detachRequested()) StartWaker();
        ProcessHoldRequests();
    }

    /// <summary>Stops and reaps the waker.</summary>
    public void StopWaker()
    {
        lock (_wakerLock)
        {
            if (_wakerPid <= 0) return;
            Libc.kill(_wakerPid, Signals.SIGKILL);
            PosixSpawn.WaitPid(_wakerPid, Wait.WALL, out _);
            Libc.close(_wakerPipe);
            if (_wakerPidfd >= 0) Libc.close(_wakerPidfd);
            _wakerPid = 0;
            _wakerPidfd = -1;
            _wakerPipe = -1;
        }
    }

    private int PtraceOptions => Ptrace.O_TRACESYSGOOD | Ptrace.O_TRACECLONE | Ptrace.O_TRACEEXEC
        | (_followForks || options.InterceptChildren ? Ptrace.O_TRACEFORK | Ptrace.O_TRACEVFORK : 0)
        | (_seccomp ? Ptrace.O_TRACESECCOMP : 0);

    /// <summary>PTRACE_SEIZE every thread of the process, re-scanning /proc/PID/task until no new thread appears, then PTRACE_INTERRUPT each.</summary>
    public void AttachAll()
    {
        _targetPid = pid;
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

    /// <summary>Starts the launch stage and seizes it; returns its PID, which the command keeps after execve.</summary>
    public int LaunchStage(IReadOnlyList<string> stageArgv)
    {
        var child = PosixSpawn.Spawn(stageArgv[0], stageArgv, env: null, 0, 1, 2, null);
        // EXITKILL: a launched command must not outlive nozoki with a seccomp filter and no tracer.
        if (Libc.ptrace(Ptrace.SEIZE, child, 0, PtraceOptions | Ptrace.O_EXITKILL) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            Libc.kill(child, Signals.SIGKILL);
            PosixSpawn.WaitPid(child, 0, out _);
            throw new TraceException($"cannot trace the command: PTRACE_SEIZE failed: {Libc.StrError(errno)}");
        }

        _targetPid = child;
        _tasks[child] = new TaskState(child, child) { Started = true, SeenByParent = true };
        _preExec = true;
        _attachReported = true;
        return child;
    }

    private bool Seize(int tid, bool isFirst)
    {
        if (Libc.ptrace(Ptrace.SEIZE, tid, 0, PtraceOptions) == 0)
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

        if (!isFirst && errno == Errno.EPERM && (ProcessInfo.TryRead(tid)?.TracerPid is null or 0 || TracedByUs(tid)))
        {
            // Born during attach and attached automatically (PTRACE_O_TRACECLONE): its first stop is on its way.
            // Or gone already: such a thread answers EPERM, not ESRCH, while it is a zombie that is ours to reap.
            return false;
        }

        if (errno == Errno.EPERM) throw new TracePermissionException(pid, TraceSession.ExplainPermission(pid));
        throw new TraceException($"PTRACE_SEIZE of thread {tid} failed: {Libc.StrError(errno)}");
    }

    private bool TracedByUs(int tid) => ProcessInfo.TryRead(tid)?.TracerPid == _selfTid;

    private static void Interrupt(int tid) => Libc.ptrace(Ptrace.INTERRUPT, tid, 0, 0);

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

            var tid = WaitForStop(out var status);
            if (tid < 0)
            {
                if (-tid == Errno.ECHILD) break;
                throw new TraceException($"waitpid failed: {Libc.StrError(-tid)}");
            }

            if (tid == _wakerPid && !Wait.IfStopped(status))
                RestartWaker();
            else
                HandleStop(tid, status, holding: false);
            if (!_holdRequests.IsEmpty) ProcessHoldRequests();
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
        // Adaptive: after a few spins that found nothing (a tracee that blocks, or no CPU free for it to run on) the
        // tracer stops spinning for a while, so that it does not burn a CPU the tracee or others could use.
        if (_spinTicks > 0 && (_spinMisses < 4 || ++_waitsSinceSpin >= 64))
        {
            var deadline = Stopwatch.GetTimestamp() + _spinTicks;
            do
            {
                var r = PosixSpawn.WaitPid(-1, Wait.Tracees | Wait.WNOHANG, out status);
                if (r != 0)
                {
                    _spinMisses = 0;
                    return r;
                }
            }
            while (Stopwatch.GetTimestamp() < deadline);
            _spinMisses++;
            _waitsSinceSpin = 0;
        }

        return PosixSpawn.WaitPid(-1, Wait.Tracees, out status);
    }

    private int _spinMisses;
    private int _waitsSinceSpin;

    /// <summary>
    /// Interrupts every running task, lets each report a stop (finishing any syscall exit it was in), and detaches
    /// them all, re-injecting any signal that was about to be delivered. A group-stopped process stays stopped.
    /// </summary>
    public void DetachAll()
    {
        _detaching = true;
        if (_current is { } stopped && _tasks.ContainsKey(stopped.Tid))
        {
            stopped.Held = true;
            if (_currentSignal != 0) stopped.PendingSignal = _currentSignal;
        }

        _current = null;
        // Stopped for a step that will not finish now: handled as the others (a step under way is interrupted below).
        _steppingProcesses.Clear();
        ReplayDeferredStopsWhileDetaching();
        foreach (var t in _tasks.Values)
        {
            // A parked thread is in a ptrace stop already (or its interrupt is on the way): held as it is.
            if (t.Parked && t.Suspended)
            {
                t.Held = true;
                if (t.PendingSignal == 0) t.PendingSignal = t.SuspendedSignal;
            }
            else if (t.Parked && !t.AwaitingParent)
            {
                // Parked while running (a held process): its interrupt stop is still to come.
                t.Parked = false;
            }
            else if (t.Parked)
            {
                t.Held = true;
            }
            else if (!t.Held) Interrupt(t.Tid);
        }

        while (AnyRunning())
        {
            var tid = PosixSpawn.WaitPid(-1, Wait.Tracees, out var status);
            if (tid < 0)
            {
                if (-tid == Errno.ECHILD)
                {
                    _tasks.Clear();
                    break;
                }

                throw new TraceException($"waitpid failed while detaching: {Libc.StrError(-tid)}");
            }

            HandleStopWhileDetaching(tid, status);
        }

        DeliverPendingTraps();
        var pids = new HashSet<int>();
        foreach (var t in _tasks.Values) pids.Add(t.Tgid);
        foreach (var p in pids) Guard(() => observer.OnDetaching(p));
        foreach (var t in _tasks.Values) Libc.ptrace(Ptrace.DETACH, t.Tid, 0, t.PendingSignal);
        _tasks.Clear();
        foreach (var p in pids) Guard(() => observer.OnDetached(p));
    }

    /// <summary>
    /// While detaching, an observer that throws (it may be what ended the session) must not stop the detach: every
    /// thread still has to be let go. Its exception is dropped; the session reports the first one.
    /// </summary>
    private void HandleStopWhileDetaching(int tid, int status)
    {
        try
        {
            HandleStop(tid, status, holding: true);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            if (_current is { } stopped && _tasks.ContainsKey(stopped.Tid))
            {
                stopped.Held = true;
                if (_currentSignal != 0) stopped.PendingSignal = _currentSignal;
            }

            _current = null;
            _currentSignal = 0;
        }
    }

    private void ReplayDeferredStopsWhileDetaching()
    {
        while (_deferredStops.Count > 0)
        {
            var (tid, status) = _deferredStops[0];
            _deferredStops.RemoveAt(0);
            if (!_tasks.TryGetValue(tid, out var u)) continue;
            u.StopDeferred = false;
            HandleStopWhileDetaching(tid, status);
        }
    }

    private static void Guard(Action action)
    {
        try
        {
            action();
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
        }
    }

    /// <summary>
    /// A thread can execute an int3 just as it is interrupted: its interrupt stop is reported first and the SIGTRAP
    /// stays pending. Detached like that, it would die of SIGTRAP after the breakpoint is gone. So each held thread
    /// with a SIGTRAP pending is let run once more, to report it while still traced (the observer handles it).
    /// </summary>
    private void DeliverPendingTraps()
    {
        for (var round = 0; round < 8; round++)
        {
            var resumed = 0;
            foreach (var t in _tasks.Values)
            {
                if (t.Held && t.PendingSignal == 0 && ProcessInfo.HasPendingSignal(t.Tgid, t.Tid, Signals.SIGTRAP))
                {
                    t.Held = false;
                    Libc.ptrace(Ptrace.CONT, t.Tid, 0, 0);
                    resumed++;
                }
            }

            if (resumed == 0) return;
            while (AnyRunning())
            {
                var tid = PosixSpawn.WaitPid(-1, Wait.Tracees, out var status);
                if (tid < 0) return;
                HandleStopWhileDetaching(tid, status);
            }
        }
    }

    private bool AnyRunning()
    {
        foreach (var t in _tasks.Values)
        {
            if (!t.Held) return true;
        }

        return false;
    }

    // The task whose stop is being handled, until it has been resumed or held: if an observer throws meanwhile, it is
    // stopped without anything to report any more, so DetachAll must take it as held (with its signal) rather than
    // wait for a stop that will not come.
    private TaskState? _current;
    private int _currentSignal;

    private void HandleStop(int tid, int status, bool holding)
    {
        HandleStopCore(tid, status, holding);
        _current = null;
        _currentSignal = 0;
        if (_deferredStops.Count > 0 && !_detaching) ReplayDeferredStops(holding);
    }

    private void HandleStopCore(int tid, int status, bool holding)
    {
        if (!_tasks.TryGetValue(tid, out var t))
        {
            if (!Wait.IfStopped(status))
            {
                // A task that died before its first stop and before its parent's clone/fork event was handled (or the
                // waker): that late event must not bring it back.
                if (tid != _wakerPid) _goneEarly.Add(tid);
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

        _current = t;
        if (t.Initial && !t.Started)
        {
            // PTRACE_INTERRUPT is answered by the next ptrace stop of any kind: a thread that was cloning or in a
            // syscall when we attached reports that event or syscall stop, and no PTRACE_EVENT_STOP follows.
            t.Started = true;
            _initialPending--;
        }

        var sig = Wait.StopSig(status);
        var evt = Wait.Event(status);
        if (sig == (Signals.SIGTRAP | 0x80))
        {
            SyscallStop(t, seccomp: false);
            Resume(t, 0, holding);
            return;
        }

        switch (evt)
        {
            case 0:
                SignalDeliveryStop(t, sig, holding);
                return;
            case Ptrace.EVENT_STOP:
                var first = !t.Started;
                t.Started = true;
                if (first && !t.SeenByParent)
                {
                    // Born, but its parent's clone/fork event is still to come: the observer must see it (OnNewTask)
                    // before it runs a single instruction, so it stays stopped until then.
                    t.AwaitingParent = true;
                    _awaitingParent++;
                    t.Parked = true;
                    if (holding) t.Held = true;
                    return;
                }

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
            case Ptrace.EVENT_SECCOMP:
                SyscallStop(t, seccomp: true);
                Resume(t, 0, holding);
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

    private void SignalDeliveryStop(TaskState t, int sig, bool holding)
    {
        if (_preExec && !_stageStopSeen && sig == Signals.SIGSTOP && t.Tid == _targetPid)
        {
            // The launch stage's own SIGSTOP: from here on the tracer is in control. Swallow it.
            _stageStopSeen = true;
            Resume(t, 0, holding);
            return;
        }

        var info = SigInfo.Read(t.Tid);
        // SIGTRAP by si_code: an int3 gives SI_KERNEL (maybe an observer's breakpoint), the step of a thread resumed
        // with PTRACE_SINGLESTEP TRAP_TRACE. Anything else (the process's own int3 or trap flag, kill) is its signal.
        if (sig == Signals.SIGTRAP)
        {
            if (info.Code == SigInfo.SI_KERNEL && observer.OnBreakpoint(new BreakpointStop(t.Tgid, t.Tid)))
            {
                Resume(t, 0, holding);
                return;
            }

            if (StepTrap(t, info.Code, holding)) return;
        }

        // Hand the signal back, never swallow it.
        _currentSignal = sig;
        if (!_preExec) observer.OnSignal(new SignalStop(t.Tgid, t.Tid, sig, info));
        if (holding) t.PendingSignal = sig;
        Resume(t, sig, holding);
    }

    private void Resume(TaskState t, int sig, bool holding)
    {
        // Asked by the observer of this stop (ITraceControl.SingleStep), or a step interrupted by another stop (a
        // signal for it): the step goes on, whatever else is asked, as the other threads wait for it.
        if (t.StepRequested && !holding)
        {
            t.StepRequested = false;
            t.Stepping = true;
            _steppingProcesses.Add(t.Tgid);
        }

        t.StepRequested = false;
        if (t.Stepping && !holding)
        {
            if (Libc.ptrace(Ptrace.SINGLESTEP, t.Tid, 0, sig) != 0) StepDone(t, completed: false);
            return;
        }

        if (holding)
        {
            t.Held = true;
            return;
        }

        if (t.Parked)
        {
            t.Suspended = true;
            t.SuspendedSignal = sig;
            return;
        }

        // Between a seccomp stop and its syscall's exit, PTRACE_SYSCALL brings the exit stop; otherwise a filtered
        // or breakpoint-only session runs free with PTRACE_CONT. ESRCH: killed while stopped; its exit comes next.
        Libc.ptrace(t.InSyscall || _syscallStops ? Ptrace.SYSCALL : Ptrace.CONT, t.Tid, 0, sig);
    }

    private void SyscallStop(TaskState t, bool seccomp)
    {
        if (!PtraceCalls.GetSyscallInfo(t.Tid, out var info)) return;
        _cpu?.OnStop(t.Tid);
        if (info.Op is Ptrace.SYSCALL_INFO_ENTRY or Ptrace.SYSCALL_INFO_SECCOMP)
        {
            t.InSyscall = true;
            t.Nr = (long)info.Nr;
            t.Args = new SyscallArgs(info.Arg(0), info.Arg(1), info.Arg(2), info.Arg(3), info.Arg(4), info.Arg(5));
            // The stage's execve of the command (after the stage's SIGSTOP) is the command's first syscall.
            if (_preExec && _stageStopSeen && t.Tid == _targetPid && t.Nr is NrExecve or NrExecveat) ShowCommandExec();
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
        if (!PtraceCalls.GetRegs(t.Tid, out var regs)) return false;
        t.Nr = (long)regs.OrigRax;
        t.Args = new SyscallArgs(regs.Rdi, regs.Rsi, regs.Rdx, regs.R10, regs.R8, regs.R9);
        return true;
    }

    private TaskState NewTask(int tid, int tgid = 0)
    {
        _goneEarly.Remove(tid); // a reused id: the old entry is stale
        if (tgid == 0) tgid = ProcessInfo.ReadTgid(tid);
        if (tgid == 0) tgid = tid;
        var t = new TaskState(tid, tgid);
        if (_heldProcesses.Contains(tgid)) t.Parked = t.HeldForObserver = true; // born into a held process
        // A new process we were not asked to follow: stopped at birth only so that the observer could clean it.
        if (!_followForks && !_tasks.Values.Any(x => x.Tgid == tgid)) t.DetachWhenStarted = true;
        _tasks[tid] = t;
        return t;
    }

    private void NewChild(TaskState parent, int evt)
    {
        if (!PtraceCalls.GetEventMsg(parent.Tid, out var msg)) return;
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
        if (!t.AwaitingParent) return;
        _awaitingParent--;
        t.AwaitingParent = false;
        t.Parked = t.HeldForObserver;
        if (t.DetachWhenStarted)
        {
            Libc.ptrace(Ptrace.DETACH, t.Tid, 0, t.Held ? (nint)t.PendingSignal : 0);
            _tasks.Remove(t.Tid);
        }
        else if (!t.Held)
        {
            Resume(t, 0, holding: false);
        }
    }

    /// <summary>
    /// A task died: newborns still waiting for its fork/clone event will never get it (a parent killed between its
    /// fork and the event): tell the observer about them now and let them run.
    /// </summary>
    private void ReleaseOrphans(TaskState gone)
    {
        if (_awaitingParent == 0) return;
        foreach (var t in _tasks.Values.Where(x => x.AwaitingParent).ToList())
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

    private void Exec(TaskState t)
    {
        // After a successful execve the thread carries the thread group leader's id, whatever it had before.
        PtraceCalls.GetEventMsg(t.Tid, out var msg);
        var former = (int)msg;
        if (former != t.Tgid && _tasks.Remove(former, out var execing))
        {
            if (!_preExec) observer.OnThreadExited(t.Tgid, former);
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

        // posix_spawn returns as soon as the stage's own execve has released the parent's memory, before that execve
        // completes: seized that early, the stage reports its own exec first. Only an exec after its SIGSTOP counts.
        if (_preExec && _stageStopSeen && t.Tgid == _targetPid) CommandStarted();
        // The stage's own exec (of nozoki) is no exec of the command's: observers must not arm a .NET runtime.
        if (!_preExec) observer.OnExec(t.Tgid, t.Tgid);
    }

    /// <summary>Events of this task are the command's: after its exec, or its execve call itself (whose exit may fail).</summary>
    private bool Reported(TaskState t) => !_preExec || (_execShown && t.Tid == _targetPid);

    /// <summary>The stage calls execve of the command: from here that call is shown, as strace shows its child's.</summary>
    private void ShowCommandExec()
    {
        _execShown = true;
        AttachCommand();
    }

    private void AttachCommand()
    {
        if (_commandAttached) return;
        _commandAttached = true;
        observer.OnAttached(_targetPid, 1);
    }

    private void CommandStarted()
    {
        _preExec = false;
        _execShown = false;
        AttachCommand();
        _commandStarted?.TrySetResult();
    }

    private void TaskGone(TaskState t, int status)
    {
        _tasks.Remove(t.Tid);
        if (t.Stepping) StepDone(t, completed: false);
        if (t.AwaitingParent) _awaitingParent--;
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
