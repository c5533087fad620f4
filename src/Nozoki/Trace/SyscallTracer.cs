using Nozoki.Syscalls;
using Nozoki.Tracing;

namespace Nozoki.Trace;

/// <summary>What a <see cref="SyscallTracer"/> shows and counts.</summary>
public sealed class SyscallTracerOptions
{
    public DecodeOptions Decode { get; init; } = new();

    /// <summary>-e trace=: the syscalls shown (and counted); null means all.</summary>
    public SyscallSet? Syscalls { get; init; }

    /// <summary>-e signal=: the signals shown; null means all.</summary>
    public SignalSet? Signals { get; init; }

    /// <summary>-e status= / -z / -Z.</summary>
    public StatusFilter Status { get; init; } = StatusFilter.All;

    /// <summary>Send syscall records to the sink (false for -c alone).</summary>
    public bool Print { get; init; } = true;

    /// <summary>Keep per-syscall counts and times (-c, -C).</summary>
    public bool Count { get; init; }

    /// <summary>
    /// Split a call interrupted by another thread's event into Unfinished and Resumed records, as strace's text does.
    /// False: every call comes as one Complete record at its exit (JSON, status filters).
    /// </summary>
    public bool SplitInterleaved { get; init; } = true;

    /// <summary>
    /// Show children (fork, vfork, clone of a process) too. When false, other processes the session reports (a
    /// launched command under a seccomp filter has all its descendants traced) are ignored, as strace without -f.
    /// </summary>
    public bool FollowForks { get; init; }

    /// <summary>
    /// Write the start of each line at the call's entry, as strace does, so that a call that blocks shows while it
    /// blocks (for output to a terminal or pipe); needs <see cref="SplitInterleaved"/>.
    /// </summary>
    public bool LiveEntries { get; init; }
}

/// <summary>One row of -c: calls, errors and the total time spent between entry and exit stops.</summary>
public readonly record struct SyscallStat(long Number, string Name, long Calls, long Errors, long Ticks);

/// <summary>
/// strace for one session: pairs each thread's syscall entry with its exit, decodes the arguments as strace does
/// (<see cref="SyscallDecoder"/>), applies the filters, keeps -c statistics, and hands text to a sink. Like strace it
/// starts a line at entry and, when another thread's event comes before the exit, ends it "unfinished" and resumes
/// it at the exit; lines are written only when complete or cut, so the order is strace's.
/// No allocation per stop: each thread has its own reused text buffer.
/// </summary>
public sealed class SyscallTracer : ITraceObserver
{
    private sealed class TaskState(int tid, int pid)
    {
        public readonly int Tid = tid;
        public int Pid = pid;
        public readonly TextBuffer Text = new(1024);
        public CallLayout Layout;
        public long Nr;
        public SyscallArgs Args;
        public int Next;
        public long EnterTs;
        public bool Active;       // inside a traced syscall
        public int CutAt = -1;    // length of the text already written as unfinished
        public int LiveShown = -1; // length of the text written at entry (live entries)
    }

    private readonly ISyscallSink _sink;
    private readonly SyscallTracerOptions _o;
    private readonly SyscallDecoder _decoder;
    private readonly Dictionary<int, TaskState> _tasks = [];
    private readonly long[] _calls = new long[SyscallTable.Count + 1];
    private readonly long[] _errors = new long[SyscallTable.Count + 1];
    private readonly long[] _ticks = new long[SyscallTable.Count + 1];
    private readonly TextBuffer _signalText = new(512);
    private readonly HashSet<int> _ignoredPids = [];
    private int _root;
    private bool _execed;
    private TaskState? _last;
    private TaskState? _open; // the call whose line strace would have started last and not yet ended
    private int _taskCount;

    // Several sessions (-p A -p B) share one tracer, each calling it from its own ptrace thread.
    private readonly Lock _gate = new();

    public SyscallTracer(ISyscallSink sink, SyscallTracerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(sink);
        _sink = sink;
        _o = options ?? new SyscallTracerOptions();
        _decoder = new SyscallDecoder(_o.Decode);
    }

    private bool Split => _o.SplitInterleaved && _o.Status == StatusFilter.All && _o.Print;

    private TaskState Task(int tid, int pid)
    {
        if (_last is { } l && l.Tid == tid) return l;
        if (!_tasks.TryGetValue(tid, out var t))
        {
            _tasks[tid] = t = new TaskState(tid, pid);
            _taskCount++;
            _sink.OnTaskCount(_taskCount);
        }

        t.Pid = pid;
        return _last = t;
    }

    private bool Traced(long nr) => _o.Syscalls?.Contains(nr) ?? true;

    // A launched command (the session says so): a syscall exit from a thread never seen before is a leftover of the
    // launch stage (a thread of the runtime that re-executed itself), not a call of the command; ignore it. When
    // attaching, such an exit is a call that was in progress at attach time and is shown.
    private bool _launched;

    public void OnStarted(ITraceControl control) => _launched = control.Launched;

    public void OnAttached(int pid, int threadCount)
    {
        lock (_gate)
        {
            if (pid > 0)
            {
                if (_root == 0) _root = pid;
                Task(pid, pid);
            }
            if (threadCount > 1)
            {
                _taskCount = Math.Max(_taskCount, threadCount);
                _sink.OnTaskCount(_taskCount);
            }

            _sink.OnAttached(pid, threadCount);
        }
    }

    public void OnNewTask(int parentTid, int newTid, int newPid, bool isProcess)
    {
        lock (_gate)
        {
            if (_launched && !_execed) return; // a thread of the launch stage
            var parent = _tasks.GetValueOrDefault(parentTid);
            if ((isProcess && !_o.FollowForks) || (parent is not null && _ignoredPids.Contains(parent.Pid)))
            {
                _ignoredPids.Add(newPid);
                return;
            }

            Task(newTid, newPid);
        }
    }

    private bool Ignored(int pid) => _ignoredPids.Count > 0 && _ignoredPids.Contains(pid);

    /// <summary>
    /// Launched commands start as nozoki's launch stage, a .NET process with threads of its own. Until the command's
    /// execve has completed only the thread that calls it counts: the runtime's threads die in that execve, and a call
    /// they were in may still report its exit.
    /// </summary>
    private bool StageLeftover(int tid) => _launched && !_execed && tid != _root;


    public void OnSyscallEnter(in SyscallEnterStop stop)
    {
        lock (_gate)
        {
            if (Ignored(stop.Pid) || StageLeftover(stop.Tid)) return;
            var t = Task(stop.Tid, stop.Pid);
            t.Active = false;
            if (!Traced(stop.Number)) return;
            t.Active = true;
            t.Nr = stop.Number;
            t.Args = stop.Args;
            t.EnterTs = TraceClock.Now();
            t.CutAt = -1;
            t.LiveShown = -1;
            if (!_o.Print) return;

            t.Text.Clear();
            t.Layout = default;
            t.Next = _decoder.Enter(t.Text, ref t.Layout, stop.Pid, stop.Tid, stop.Number, stop.Args);
            if (Split) CutOpenLine(except: t);
            if (SyscallTable.Return(t.Nr) == ReturnKind.None)
            {
                // exit and exit_group never come back: the line is complete now ("exit_group(0) = ?").
                // Like strace -c, a call that never returns is not counted.
                _decoder.ExitUnknown(t.Text, ref t.Layout, 0, t.Next);
                if ((_o.Status & StatusFilter.Successful) != 0) Emit(t, SyscallPhase.Complete, returned: false, 0, 0, t.EnterTs);
                t.Active = false;
                if (_open == t) _open = null;
                return;
            }

            if (!Split) return;
            _open = t;
            if (_o.LiveEntries)
            {
                _sink.OnSyscall(new SyscallRecord
                {
                    Phase = SyscallPhase.Entered, Pid = t.Pid, Tid = t.Tid, Number = t.Nr, Name = SyscallTable.Name(t.Nr),
                    Text = t.Text.Span, Layout = t.Layout, Args = t.Args, EnterTimestamp = t.EnterTs, ExitTimestamp = t.EnterTs,
                });
                t.LiveShown = t.Text.Length;
            }
        }
    }

    public void OnSyscallExit(in SyscallExitStop stop)
    {
        lock (_gate)
        {
            if (Ignored(stop.Pid)) return;
            if (StageLeftover(stop.Tid) || (_launched && (_last is null || _last.Tid != stop.Tid) && !_tasks.ContainsKey(stop.Tid))) return;
            var t = Task(stop.Tid, stop.Pid);
            if (!t.Active)
            {
                // An exit without its entry (attached mid-call): decode it whole now, as strace does.
                if (!Traced(stop.Number)) return;
                t.Nr = stop.Number;
                t.Args = stop.Args;
                t.EnterTs = TraceClock.Now();
                t.CutAt = -1;
                t.LiveShown = -1;
                if (_o.Print)
                {
                    t.Text.Clear();
                    t.Layout = default;
                    t.Next = _decoder.Enter(t.Text, ref t.Layout, stop.Pid, stop.Tid, stop.Number, stop.Args);
                }
            }

            t.Active = false;
            var now = TraceClock.Now();
            var failed = stop.IsError;
            Count(t, failed, now);
            if (!_o.Print) return;
            if ((_o.Status & (failed ? StatusFilter.Failed : StatusFilter.Successful)) == 0)
            {
                if (_open == t) _open = null;
                return;
            }

            var lineStart = 0;
            _decoder.Exit(t.Text, ref t.Layout, lineStart, stop.Pid, stop.Tid, stop.Number, stop.Args, t.Next, stop.ReturnValue, failed);
            if (Split && t.CutAt >= 0)
            {
                CutOpenLine(except: t);
                Emit(t, SyscallPhase.Resumed, returned: true, stop.ReturnValue, failed ? (int)-stop.ReturnValue : 0, now);
            }
            else
            {
                Emit(t, SyscallPhase.Complete, returned: true, stop.ReturnValue, failed ? (int)-stop.ReturnValue : 0, now);
            }

            if (_open == t) _open = null;
        }
    }

    private void Count(TaskState t, bool failed, long now)
    {
        if (!_o.Count) return;
        var i = t.Nr >= 0 && t.Nr < SyscallTable.Count ? t.Nr : SyscallTable.Count;
        _calls[i]++;
        if (failed) _errors[i]++;
        _ticks[i] += now - t.EnterTs;
    }

    /// <summary>Ends the line strace would have left open (another thread's call) as "unfinished".</summary>
    private void CutOpenLine(TaskState? except)
    {
        var o = _open;
        if (o is null || o == except) return;
        _open = null;
        if (!o.Active || o.CutAt >= 0) return;
        o.CutAt = o.Text.Length;
        var live = o.LiveShown >= 0;
        _sink.OnSyscall(new SyscallRecord
        {
            Phase = SyscallPhase.Unfinished, Pid = o.Pid, Tid = o.Tid, Number = o.Nr, Name = SyscallTable.Name(o.Nr),
            Text = live ? o.Text.Span[o.LiveShown..] : o.Text.Span, TextOffset = live ? o.LiveShown : 0, Continues = live,
            Layout = o.Layout, Args = o.Args, EnterTimestamp = o.EnterTs, ExitTimestamp = o.EnterTs,
        });
    }

    private void Emit(TaskState t, SyscallPhase phase, bool returned, long ret, int errno, long exitTs)
    {
        var from = phase == SyscallPhase.Resumed ? t.CutAt : t.LiveShown >= 0 ? t.LiveShown : 0;
        _sink.OnSyscall(new SyscallRecord
        {
            Phase = phase, Pid = t.Pid, Tid = t.Tid, Number = t.Nr, Name = SyscallTable.Name(t.Nr),
            Text = t.Text.Span[from..],
            TextOffset = from,
            Continues = phase == SyscallPhase.Complete && t.LiveShown >= 0,
            Layout = t.Layout, Args = t.Args, Returned = returned, ReturnValue = ret, Errno = errno,
            EnterTimestamp = t.EnterTs, ExitTimestamp = exitTs,
        });
    }

    public void OnSignal(in SignalStop stop)
    {
        lock (_gate)
        {
            if (!(_o.Signals?.Contains(stop.Signal) ?? true) || !_o.Print || Ignored(stop.Pid) || StageLeftover(stop.Tid)) return;
            if (Split) CutOpenLine(except: null);
            _signalText.Clear();
            SyscallDecoder.FormatSigInfo(_signalText, stop.Signal, stop.Info);
            _sink.OnSignal(new SignalRecord
            {
                Pid = stop.Pid, Tid = stop.Tid, Signal = stop.Signal, Text = _signalText.Span, Timestamp = TraceClock.Now(),
            });
        }
    }

    public void OnExec(int pid, int tid)
    {
        lock (_gate)
        {
            _execed = true;
            // After execve every other thread of the process is gone; the execing thread now has the leader's id.
            foreach (var t in _tasks.Values)
            {
                if (t.Pid == pid && t.Tid != pid && t.Active && t != _tasks.GetValueOrDefault(tid)) t.Active = false;
            }

            if (tid != pid && _tasks.Remove(tid, out var execing))
            {
                // The old leader vanished inside whatever call it was in: strace shows that call "= ?".
                // strace ends the execing thread's line first ("execve(... <unfinished ...>"), as any other
                // thread's line cuts it, and resumes it under the leader's id after the pid change.
                var leader = Task(pid, pid);
                if (Split) CutOpenLine(except: null);
                var now = TraceClock.Now();
                Finish(leader, now);
                _taskCount = _tasks.Count;
                _sink.OnTaskCount(Math.Max(_taskCount, 1));
                if (_o.Print && !Ignored(pid)) _sink.OnExecSuperseded(new ExecSuperseded(pid, tid, now));
                leader.Active = execing.Active;
                leader.Nr = execing.Nr;
                leader.Args = execing.Args;
                leader.Next = execing.Next;
                leader.EnterTs = execing.EnterTs;
                leader.CutAt = execing.CutAt;
                leader.LiveShown = execing.LiveShown;
                leader.Text.Clear();
                leader.Text.Append(execing.Text.Span);
                leader.Layout = execing.Layout;
                if (_open == execing) _open = leader;
                if (_last == execing) _last = null;
            }
        }
    }

    public void OnThreadExited(int pid, int tid)
    {
        lock (_gate)
        {
            // The leader's end is the process's: OnProcessExited follows and reports it.
            if (tid == pid || !_tasks.TryGetValue(tid, out var t)) return;
            if (Split) CutOpenLine(except: null);
            Finish(t, TraceClock.Now());
            _tasks.Remove(tid);
            if (_last == t) _last = null;
            if (_open == t) _open = null;
            _taskCount = _tasks.Count;
            _sink.OnTaskCount(Math.Max(_taskCount, 1));
        }
    }

    /// <summary>A call cut short by the thread's or process's end: strace shows "= ?".</summary>
    private void Finish(TaskState t, long now)
    {
        if (t.Active && _o.Print)
        {
            var cut = Split && t.CutAt >= 0;
            _decoder.ExitUnknown(t.Text, ref t.Layout, 0, t.Pid, t.Tid, t.Nr, t.Args, t.Next);
            Emit(t, cut ? SyscallPhase.Resumed : SyscallPhase.Complete, returned: false, 0, 0, now);
        }

        t.Active = false;
    }

    public void OnProcessExited(int pid, ExitStatus status)
    {
        lock (_gate)
        {
            if (_ignoredPids.Remove(pid)) return;
            if (Split) CutOpenLine(except: null);
            var now = TraceClock.Now();
            var gone = false;
            foreach (var t in _tasks.Values)
            {
                if (t.Pid != pid) continue;
                Finish(t, now);
                gone = true;
            }

            if (gone)
            {
                foreach (var tid in _tasks.Where(kv => kv.Value.Pid == pid).Select(kv => kv.Key).ToList()) _tasks.Remove(tid);
                _last = null;
                _open = null;
            }

            if (_o.Print) _sink.OnProcessExited(new ProcessExit(pid, status, now));
            _taskCount = _tasks.Count;
            _sink.OnTaskCount(Math.Max(_taskCount, 1));
        }
    }

    public void OnDetached(int pid)
    {
        lock (_gate)
        {
            if (Split) CutOpenLine(except: null);
            _sink.OnDetached(pid);
        }
    }

    /// <summary>The -c table's rows: every syscall seen at least once (unknown numbers together as one row).</summary>
    public IReadOnlyList<SyscallStat> Statistics()
    {
        var rows = new List<SyscallStat>();
        lock (_gate)
        {
            for (var i = 0; i < _calls.Length; i++)
            {
                // strace -c leaves out numbers its table does not know.
                if (_calls[i] == 0 || i >= SyscallTable.Count || SyscallTable.Name(i) is null) continue;
                var name = i < SyscallTable.Count ? SyscallTable.Name(i) ?? $"syscall_{i:x}" : "(unknown)";
                rows.Add(new SyscallStat(i, name, _calls[i], _errors[i], _ticks[i]));
            }
        }

        return rows;
    }
}
