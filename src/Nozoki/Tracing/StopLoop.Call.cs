using System.Diagnostics;
using Nozoki.Native;
using Nozoki.Procfs;

namespace Nozoki.Tracing;

/// <summary>
/// ITraceControl.RunAlone, for a call into the process (Breakpoints/InferiorCall.cs): the observer resumes the thread
/// of its stop and waits for that thread's next stop without leaving its call. The other threads of the process are
/// stopped as for a single-step (StopOthers; their stops replayed after the observer returns), so that nothing else of
/// the process runs meanwhile. The wait polls the one thread for a few microseconds, then sleeps in waitpid(-1) as the
/// main wait does: an event of another task that comes meanwhile (another process of the session) is deferred, as for
/// a step, and handled after the observer returns; the deadline ends the sleep by waking the loop (its waker).
/// </summary>
internal sealed partial class StopLoop
{
    // How long the wait for the thread polls before it sleeps: most stops of a short call (its syscalls, its return)
    // come within microseconds. Without a waker (detaching) it sleeps in short steps instead of blocking (not
    // sched_yield: on a loaded machine a yield hands the CPU to whatever else runs for a whole time slice), growing up
    // to a millisecond for a call that takes long.
    private static readonly long AloneSpinTicks = Stopwatch.Frequency / 50_000;
    private const uint AloneFirstSleepMicroseconds = 10, AloneLongestSleepMicroseconds = 1000;

    // Wakes the loop at a RunAlone deadline (created on first use, re-armed for each wait: no allocation per call).
    private Timer? _aloneTimer;
    private long _aloneDeadline = long.MaxValue;

    // After a PTRACE_INTERRUPT, how long its stop may take (a thread in an uninterruptible sleep answers late).
    private static readonly TimeSpan InterruptGrace = TimeSpan.FromSeconds(2);

    public AloneStop RunAlone(int tid, bool syscallStops, TimeSpan timeout)
    {
        if (_detaching || !_tasks.TryGetValue(tid, out var t) || !t.IsStopped || t.Stepping || t.StepRequested || t.StopDeferred) return default;
        StopOthers(t);
        var request = syscallStops ? Ptrace.SYSCALL : Ptrace.CONT;
        var deadline = Stopwatch.GetTimestamp() + Ticks(timeout);
        var interrupted = false;
        while (true)
        {
            var r = PtraceCalls.Request(request, tid, 0);
            if (!r.IsOk)
            {
                // ESRCH: killed while stopped; its death comes to the main wait. Anything else: the session reports it.
                Check(r, request, t);
                return Lost(t);
            }

            int status;
            while (true)
            {
                var w = WaitAlone(tid, deadline, out status);
                if (w > 0) break;
                if (w < 0 || interrupted) return Lost(t);
                // Too long: PTRACE_INTERRUPT, answered by its next ptrace stop, whatever its kind.
                interrupted = true;
                deadline = Stopwatch.GetTimestamp() + Ticks(InterruptGrace);
                if (!PtraceCalls.Request(Ptrace.INTERRUPT, tid, 0).IsOk) return Lost(t);
            }

            if (!Wait.IfStopped(status)) return HandToLoop(t, status);
            var sig = Wait.StopSig(status);
            var evt = Wait.Event(status);
            if (sig == (Signals.SIGTRAP | 0x80)) return new AloneStop(interrupted ? AloneStopKind.TimedOut : AloneStopKind.Syscall, 0, 0);
            if (evt == 0) return new AloneStop(interrupted ? AloneStopKind.TimedOut : AloneStopKind.Signal, sig, 0);
            switch (evt)
            {
                case Ptrace.EVENT_CLONE or Ptrace.EVENT_FORK or Ptrace.EVENT_VFORK:
                    // What the loop does with it; the new task is the loop's from here.
                    NewChild(t, evt);
                    continue;
                case Ptrace.EVENT_EXEC:
                    return HandToLoop(t, status);
                case Ptrace.EVENT_STOP when !interrupted:
                    // The late answer to an interrupt of before (an earlier stop came first): nothing happened.
                    continue;
                default:
                    if (interrupted) return new AloneStop(AloneStopKind.TimedOut, 0, evt);
                    continue;
            }
        }
    }

    private static long Ticks(TimeSpan span) => (long)(span.TotalSeconds * Stopwatch.Frequency);

    /// <summary>
    /// waitpid on one thread until DEADLINE: 1 when it reported, 0 when the deadline passed, -1 when it cannot report
    /// (not ours any more, or a thread group leader that died: its death waits for the other threads, ours, stopped).
    /// </summary>
    private int WaitAlone(int tid, long deadline, out int status)
    {
        var start = Stopwatch.GetTimestamp();
        while (Stopwatch.GetTimestamp() - start < AloneSpinTicks)
        {
            if (!PosixSpawn.WaitPid(tid, Wait.Tracees | Wait.WNOHANG, out var r, out status).IsOk) return -1;
            if (r == tid) return 1;
        }

        return _waker.Pid > 0 ? BlockAlone(tid, deadline, out status) : PollAlone(tid, deadline, out status);
    }

    /// <summary>
    /// waitpid(-1) until TID reports or DEADLINE passes (the timer wakes the waker then): a block on the one thread
    /// alone could not be ended. Another task's event is deferred for the loop; the waker's stop (a wake) is resumed
    /// here, its death taken here (a new waker started, unless detaching: the rest is polled then), and what woke it
    /// (a hold, a detach request) is seen by the loop after the observer returns.
    /// </summary>
    private int BlockAlone(int tid, long deadline, out int status)
    {
        _aloneTimer ??= new Timer(_ =>
        {
            // A timer may fire a little before its time (its clock is not the Stopwatch's): then it waits again,
            // since without a wake the block would last as long as the call does, maybe for ever.
            var deadlineNow = Volatile.Read(ref _aloneDeadline);
            if (deadlineNow == long.MaxValue) return;
            var left = deadlineNow - Stopwatch.GetTimestamp();
            if (left <= 0) _waker.Wake();
            else _aloneTimer?.Change(TimeSpan.FromSeconds(left / (double)Stopwatch.Frequency) + TimeSpan.FromMilliseconds(1), Timeout.InfiniteTimeSpan);
        });
        Volatile.Write(ref _aloneDeadline, deadline);
        var due = TimeSpan.FromSeconds(Math.Max(0, deadline - Stopwatch.GetTimestamp()) / (double)Stopwatch.Frequency);
        _aloneTimer.Change(due + TimeSpan.FromMilliseconds(1), Timeout.InfiniteTimeSpan);
        try
        {
            while (true)
            {
                status = 0;
                if (Stopwatch.GetTimestamp() >= deadline) return 0;
                var r = PosixSpawn.WaitPid(-1, Wait.Tracees, out var other, out status);
                if (!r.IsOk) return r.Errno == Errno.EINTR ? 0 : -1;
                if (other == tid) return 1;
                if (other == _waker.Pid && Wait.IfStopped(status))
                {
                    // A wake (the deadline's timer, a hold or detach request): the waker goes on; the deadline is
                    // checked above, the rest is seen by the loop after the observer returns.
                    _waker.Resume();
                    continue;
                }

                if (other == _waker.Pid)
                {
                    _waker.Reaped();
                    if (detachRequested()) return PollAlone(tid, deadline, out status);
                    _waker.Start();
                    if (_waker.Pid == 0) return PollAlone(tid, deadline, out status);
                    continue;
                }

                var known = _tasks.TryGetValue(other, out var u);
                if (u is not null) u.StopDeferred = true;
                _deferredStops.Add((other, u?.Tgid ?? ProcessInfo.ReadTgid(other), known, status));
            }
        }
        finally
        {
            Volatile.Write(ref _aloneDeadline, long.MaxValue);
            _aloneTimer.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        }
    }

    /// <summary>waitpid on the one thread, polled with short sleeps, until DEADLINE (see WaitAlone).</summary>
    private static int PollAlone(int tid, long deadline, out int status)
    {
        var start = Stopwatch.GetTimestamp();
        var sleep = AloneFirstSleepMicroseconds;
        for (var sleeps = 0; ; )
        {
            if (!PosixSpawn.WaitPid(tid, Wait.Tracees | Wait.WNOHANG, out var r, out status).IsOk) return -1;
            if (r == tid) return 1;
            var now = Stopwatch.GetTimestamp();
            if (now >= deadline) return 0;
            if (now - start < AloneSpinTicks) continue;
            if ((++sleeps & 255) == 0 && ProcessInfo.TryRead(tid) is not { State: not ('Z' or 'X') }) return -1;
            Libc.usleep(sleep);
            sleep = Math.Min(sleep * 2, AloneLongestSleepMicroseconds);
        }
    }

    /// <summary>The thread left the observer's hands while running: the loop treats it as running, its next report is the main wait's.</summary>
    private static AloneStop Lost(TaskState t)
    {
        if (t.Phase == TaskPhase.Stopped) t.Phase = TaskPhase.Running;
        return new AloneStop(AloneStopKind.Gone, 0, 0);
    }

    /// <summary>A report only the loop can act on (a death, an exec): handled after the observer returns, as a deferred stop.</summary>
    private AloneStop HandToLoop(TaskState t, int status)
    {
        t.Phase = TaskPhase.Running;
        t.StopDeferred = true;
        _deferredStops.Add((t.Tid, t.Tgid, true, status));
        return new AloneStop(AloneStopKind.Gone, 0, Wait.IfStopped(status) ? Wait.Event(status) : 0);
    }
}
