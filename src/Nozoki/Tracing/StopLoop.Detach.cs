using Nozoki.Native;
using Nozoki.Procfs;

namespace Nozoki.Tracing;

/// <summary>The stop loop's end: every task gathered in a stop, then let go.</summary>
internal sealed partial class StopLoop
{
    /// <summary>
    /// Interrupts every running task, lets each report a stop (finishing any syscall exit it was in), and detaches
    /// them all, re-injecting any signal that was about to be delivered. A group-stopped process stays stopped.
    /// </summary>
    public void DetachAll()
    {
        _detaching = true;
        ReplayDeferredStopsWhileDetaching();
        foreach (var t in _tasks.Values)
        {
            // A task in a stop (being handled when an observer threw, or kept by a hold) is kept as it is, with the
            // signal its pending resume would have delivered. One a hold has interrupted has its stop on the way.
            if (t.IsStopped) t.Holds |= HoldReasons.Detach;
            else if ((t.Holds & HoldReasons.ProcessHold) == 0 || t.Phase == TaskPhase.GroupStopped) Interrupt(t);
        }

        while (AnyRunning())
        {
            var waited = PosixSpawn.WaitPid(-1, Wait.Tracees, out var tid, out var status);
            if (!waited.IsOk)
            {
                if (waited.Errno == Errno.ECHILD)
                {
                    _tasks.Clear();
                    break;
                }

                throw new TraceException($"waitpid failed while detaching: {waited.Message}");
            }

            if (!WakerStatus(tid, status, restart: false)) HandleStopWhileDetaching(tid, status);
        }

        DeliverPendingTraps();
        var pids = new HashSet<int>();
        foreach (var t in _tasks.Values) pids.Add(t.Tgid);
        foreach (var p in pids) Guard(() => observer.OnDetaching(p));
        foreach (var t in _tasks.Values.ToList()) Detach(t, t.Pending.Signal);
        _tasks.Clear();
        foreach (var p in pids) Guard(() => observer.OnDetached(p));
        if (_failedRequest != 0) ThrowFailure();
    }

    /// <summary>
    /// While detaching, an observer that throws (it may be what ended the session) must not stop the detach: every
    /// thread still has to be let go. Its exception is dropped; the session reports the first one. The task whose
    /// stop it was stays stopped (and is kept, with its signal, by the loop below).
    /// </summary>
    private void HandleStopWhileDetaching(int tid, int status)
    {
        try
        {
            HandleStop(tid, status);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            if (_tasks.TryGetValue(tid, out var t) && t.IsStopped) t.Holds |= HoldReasons.Detach;
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
                if (t.IsStopped && t.Pending.Signal == 0 && ProcessInfo.HasPendingSignal(t.Tgid, t.Tid, Signals.SIGTRAP))
                {
                    t.Holds &= ~HoldReasons.Detach;
                    t.Pending = new PendingResume(ResumeKind.Continue, 0);
                    CarryOut(t); // whatever else holds it: only to report the trap
                    resumed++;
                }
            }

            if (resumed == 0) return;
            while (AnyRunning())
            {
                if (!PosixSpawn.WaitPid(-1, Wait.Tracees, out var tid, out var status).IsOk) return;
                if (!WakerStatus(tid, status, restart: false)) HandleStopWhileDetaching(tid, status);
            }
        }
    }

    /// <summary>Whether a task is still to report the stop the detach waits for.</summary>
    private bool AnyRunning()
    {
        foreach (var t in _tasks.Values)
        {
            if (t.Phase != TaskPhase.Gone && (t.Holds & HoldReasons.Detach) == 0) return true;
        }

        return false;
    }
}
