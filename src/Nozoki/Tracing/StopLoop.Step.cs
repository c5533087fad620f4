using Nozoki.Native;
using Nozoki.Procfs;

namespace Nozoki.Tracing;

/// <summary>
/// Single-step (ITraceControl.SingleStep), for a breakpoint's step-over: the stepping thread must be the only one of
/// its process that runs, or another could run through the site while its original instruction is back in place.
/// The other threads are interrupted and their stops collected at once (waitpid on each), then handled only after
/// the step trap, in the order they came, as if waitpid had returned them then. ITraceControl.StopAllThreads uses the
/// same interrupt-and-defer for the length of one observer call (to insert or remove breakpoints).
/// </summary>
internal sealed partial class StopLoop
{
    // Known: the task was in the table when its stop was deferred (if it is not any more, it died: the stop is stale).
    private readonly List<(int Tid, int Tgid, bool Known, int Status)> _deferredStops = [];
    private readonly HashSet<int> _steppingProcesses = [];

    public bool SingleStep(int tid)
    {
        if (_detaching || !_tasks.TryGetValue(tid, out var t) || !t.IsStopped || _steppingProcesses.Contains(t.Tgid)) return false;
        StopOthers(t);
        t.StepRequested = true;
        return true;
    }

    public bool StopAllThreads(int pid)
    {
        if (Libc.gettid() != _selfTid) return false;
        foreach (var u in _tasks.Values)
        {
            // A step under way runs one instruction with the site's original byte back: it is not to be interrupted,
            // and the code must not change under it.
            if (u.Tgid == pid && u.Stepping && !u.IsStopped) return false;
        }

        // Detaching: every thread is gathered in a stop before observers are told (OnDetaching).
        if (!_detaching) StopOthers(pid, except: null);
        return true;
    }

    /// <summary>Stops every other thread of t's process that may run, collecting its stop for later.</summary>
    private void StopOthers(TaskState t) => StopOthers(t.Tgid, t);

    private void StopOthers(int tgid, TaskState? except)
    {
        foreach (var u in _tasks.Values)
        {
            // In a stop already, listening in a group-stop or gone: it runs no instruction of the process meanwhile.
            // Nor does a newborn before its first stop (which DeferForStep keeps back); a thread present at attach
            // runs until its first stop, so it is interrupted like a running one.
            if (u == except || u.Tgid != tgid || u.StopDeferred) continue;
            if (u.Phase is not (TaskPhase.Running or TaskPhase.InSyscall) && !(u.Phase == TaskPhase.New && u.Initial)) continue;
            // ESRCH: gone already (a zombie); its death is reported to the main wait.
            if (!PtraceCalls.Request(Ptrace.INTERRUPT, u.Tid, 0).IsOk) continue;
            if (!WaitForInterruptStop(u.Tid, out var status)) continue;
            u.StopDeferred = true;
            _deferredStops.Add((u.Tid, u.Tgid, true, status));
        }
    }

    /// <summary>
    /// A stop that comes while another thread of its process steps (a newborn's first stop, a stop of a thread that
    /// was already on its way) must not be handled now: handling ends in a resume, and the thread would run through
    /// the site while its original instruction is exposed. It waits with the others. Deaths are handled at once.
    /// </summary>
    private bool DeferForStep(int tid, int status)
    {
        if (_steppingProcesses.Count == 0 || !Wait.IfStopped(status)) return false;
        var known = _tasks.TryGetValue(tid, out var t);
        if (t is { Stepping: true }) return false;
        var tgid = t?.Tgid ?? ProcessInfo.ReadTgid(tid);
        if (!_steppingProcesses.Contains(tgid)) return false;
        if (t is not null) t.StopDeferred = true;
        _deferredStops.Add((tid, tgid, known, status));
        return true;
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
            var r = PosixSpawn.WaitPid(tid, Wait.Tracees | Wait.WNOHANG, out var waited, out status);
            if (!r.IsOk) return false;
            if (waited == tid) return true;
            if (spins < 1000)
            {
                Thread.Yield();
                continue;
            }

            if (ProcessInfo.TryRead(tid) is not { State: not ('Z' or 'X') }) return false;
            Thread.Sleep(1);
        }
    }

    /// <summary>
    /// The resume of a thread that asked to step (or whose step a signal stop interrupted: the step goes on, as the
    /// other threads wait for it) is a single-step, whatever holds it, unless the session is detaching.
    /// </summary>
    private bool StepResume(TaskState t, ref ResumeKind kind)
    {
        if (t.StepRequested)
        {
            t.StepRequested = false;
            if (_detaching) return false;
            t.Stepping = true;
            _steppingProcesses.Add(t.Tgid);
        }

        if (!t.Stepping || _detaching) return false;
        kind = ResumeKind.SingleStep;
        return true;
    }

    /// <summary>The SIGTRAP of a thread resumed with PTRACE_SINGLESTEP (TRAP_BRKPT when the step was a syscall instruction).</summary>
    private bool StepTrap(TaskState t, int code)
    {
        if (!t.Stepping || code is not (Ptrace.TRAP_TRACE or Ptrace.TRAP_BRKPT)) return false;
        StepDone(t, completed: true);
        Resume(t, 0);
        return true;
    }

    private void StepDone(TaskState t, bool completed)
    {
        t.Stepping = false;
        _steppingProcesses.Remove(t.Tgid);
        observer.OnSingleStep(new StepStop(t.Tgid, t.Tid, completed));
    }

    /// <summary>Handles the stops collected by StopOthers once no step is under way in their process.</summary>
    private void ReplayDeferredStops()
    {
        for (var i = 0; i < _deferredStops.Count;)
        {
            var (tid, tgid, known, status) = _deferredStops[i];
            // A stepping thread's own stop (its step trap, deferred by a RunAlone wait) ends the step: it goes first.
            if (_steppingProcesses.Contains(tgid) && !(_tasks.TryGetValue(tid, out var stepping) && stepping.Stepping))
            {
                i++;
                continue;
            }

            _deferredStops.RemoveAt(i);
            if (TakeDeferred(tid, known)) HandleStopCore(tid, status);
            i = 0; // that stop may have started a step (and deferred more stops)
        }
    }

    /// <summary>Whether a deferred stop is still to be handled: not if its task died meanwhile.</summary>
    private bool TakeDeferred(int tid, bool known)
    {
        if (_tasks.TryGetValue(tid, out var u))
        {
            u.StopDeferred = false;
            return true;
        }

        // A newborn not in the table when its first stop came: handled as such, unless it died meanwhile.
        return !known && !_goneEarly.Contains(tid);
    }

    /// <summary>At detach: a step under way will not be waited for; the stops it deferred are handled (and kept) first.</summary>
    private void ReplayDeferredStopsWhileDetaching()
    {
        _steppingProcesses.Clear();
        while (_deferredStops.Count > 0)
        {
            var (tid, _, known, status) = _deferredStops[0];
            _deferredStops.RemoveAt(0);
            if (TakeDeferred(tid, known)) HandleStopWhileDetaching(tid, status);
        }
    }
}
