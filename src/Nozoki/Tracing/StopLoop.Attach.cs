using System.Runtime.InteropServices;
using Nozoki.Native;
using Nozoki.Procfs;

namespace Nozoki.Tracing;

/// <summary>The stop loop's start: attaching to a running process, or launching a command through the launch stage.</summary>
internal sealed partial class StopLoop
{
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
            if (t.Initial) Interrupt(t);
        }

        _initialThreads = _initialPending;
    }

    /// <summary>Starts the launch stage and seizes it; returns its PID, which the command keeps after execve.</summary>
    public int LaunchStage(IReadOnlyList<string> stageArgv)
    {
        var stdio = options.StandardDescriptors ?? [0, 1, 2];
        var child = PosixSpawn.Spawn(stageArgv[0], stageArgv, env: null, stdio[0], stdio[1], stdio[2], null);
        // EXITKILL: a launched command must not outlive nozoki with a seccomp filter and no tracer.
        if (Libc.ptrace(Ptrace.SEIZE, child, 0, PtraceOptions | Ptrace.O_EXITKILL) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            Libc.kill(child, Signals.SIGKILL);
            PosixSpawn.WaitPid(child, 0, out _, out _);
            throw new TraceException($"cannot trace the command: PTRACE_SEIZE failed: {Libc.StrError(errno)}");
        }

        _targetPid = child;
        _tasks[child] = new TaskState(child, child) { Phase = TaskPhase.Running, Started = true, SeenByParent = true };
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
}
