using Nozoki.Native;
using Nozoki.Procfs;

namespace Nozoki.Tracing;

/// <summary>
/// How a session traces. A record: derive variants with `with { ... }`. The library reads no environment variables;
/// a program that wants them (PATH, tuning knobs) reads them itself and sets these.
/// </summary>
public sealed record TraceOptions
{
    /// <summary>Also trace children and their descendants (fork, vfork, clone of new processes). Threads are always traced.</summary>
    public bool FollowForks { get; init; }

    /// <summary>Stop at syscalls (PTRACE_SYSCALL). False: only signals, events and breakpoints stop the tracee (PTRACE_CONT).</summary>
    public bool TraceSyscalls { get; init; } = true;

    /// <summary>Stop children at birth (fork, vfork, clone) so that OnNewTask can act on them, then detach them unless FollowForks.</summary>
    public bool InterceptChildren { get; init; }

    /// <summary>Keep the ptrace thread on the CPU the tracee last ran on: cross-CPU wake-ups dominate the cost of a stop.</summary>
    public bool FollowTraceeCpu { get; init; } = true;

    /// <summary>
    /// For launched commands: only these syscalls stop the tracee (seccomp-bpf, PTRACE_O_TRACESECCOMP); null means
    /// every syscall stops (PTRACE_SYSCALL). A filter is inherited by children, so with one, children are always
    /// traced (an untraced child would get ENOSYS from every filtered syscall).
    /// </summary>
    public SeccompFilter? Filter { get; init; }

    /// <summary>
    /// How to start the launch stage (see <see cref="LaunchStage"/>): a program and its first arguments, which must
    /// call <see cref="LaunchStage.RunIfRequested"/> first thing in its Main. Default (null): this program again,
    /// which then must call it (Launch throws InvalidOperationException if it has not).
    /// </summary>
    public IReadOnlyList<string>? StageCommand { get; init; }

    /// <summary>
    /// Where Launch looks for a command name without a slash, as PATH does (directories separated by ':').
    /// Default (null): /usr/local/bin:/usr/bin:/bin. A program that wants its PATH passes it here.
    /// </summary>
    public string? SearchPath { get; init; }

    /// <summary>
    /// For Launch: the descriptors of this process that the command gets as its 0, 1 and 2 (three numbers); null: 0, 1
    /// and 2 themselves. For a command that must have a description of its own for a standard stream (see
    /// WritePainter.StandardDescriptors).
    /// </summary>
    public IReadOnlyList<int>? StandardDescriptors { get; init; }

    /// <summary>How long the ptrace thread polls for the next stop before it sleeps in waitpid (0: never polls).</summary>
    public int SpinMicroseconds { get; init; } = 50;
}

/// <summary>How a session ended.</summary>
public enum TraceEndReason
{
    /// <summary>Every traced process exited.</summary>
    TargetExited,

    /// <summary>RequestDetach (or Dispose) was called: every thread was detached and left running.</summary>
    Detached,

    /// <summary>An internal error (or an observer's exception); every thread was detached and left running.</summary>
    Failed,
}

public sealed record TraceResult(TraceEndReason Reason, ExitStatus? TargetExit, Exception? Error);

/// <summary>
/// One ptrace session: a dedicated thread that owns every ptrace and waitpid call (the kernel ties a tracee to the
/// thread that attached), feeding an <see cref="ITraceObserver"/>. Disposing detaches every thread and leaves the
/// process running; a session never kills what it attached to.
/// </summary>
public sealed class TraceSession : IDisposable, IAsyncDisposable
{
    private readonly TraceOptions _options;
    private readonly ITraceObserver _observer;
    private readonly TaskCompletionSource<TraceResult> _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _attached = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Thread _thread;
    private volatile bool _detachRequested;

    private TraceSession(int pid, TraceOptions options, ITraceObserver observer)
    {
        Pid = pid;
        _options = options;
        _observer = observer;
        _thread = new Thread(Run) { IsBackground = true, Name = $"nozoki ptrace {pid}" };
    }

    /// <summary>The PID given to Attach (0 for Launch: see TargetPid).</summary>
    public int Pid { get; }

    /// <summary>Completes when the session has ended and nothing is traced any more.</summary>
    public Task<TraceResult> Completion => _completion.Task;

    /// <summary>
    /// Attaches to every thread of PID (PTRACE_SEIZE, then PTRACE_INTERRUPT) and returns once each has stopped and
    /// been resumed under syscall tracing. Throws ProcessNotFoundException, TracePermissionException or
    /// ProcessNotTraceableException. Cancelling <paramref name="cancellationToken"/> detaches (as
    /// <see cref="RequestDetach"/>) at any time; when it is cancelled before Attach returns, Attach waits until
    /// everything is detached and throws OperationCanceledException.
    /// </summary>
    public static TraceSession Attach(int pid, ITraceObserver observer, TraceOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(observer);
        cancellationToken.ThrowIfCancellationRequested();
        Preflight(pid);
        return new TraceSession(pid, options ?? new TraceOptions(), observer).Start(cancellationToken);
    }

    /// <summary>Starts the ptrace thread and waits until it has attached (or failed to).</summary>
    private TraceSession Start(CancellationToken cancellationToken)
    {
        if (cancellationToken.CanBeCanceled)
        {
            var registration = cancellationToken.UnsafeRegister(static s => ((TraceSession)s!).RequestDetach(), this);
            _completion.Task.ContinueWith(_ => registration.Dispose(), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }

        _thread.Start();
        try
        {
            _attached.Task.GetAwaiter().GetResult();
        }
        catch
        {
            _thread.Join();
            throw;
        }

        // A launched command is returned even so: it runs on, untraced, and only its session can wait for it.
        if (cancellationToken.IsCancellationRequested && _launch is null)
        {
            Completion.GetAwaiter().GetResult();
            throw new OperationCanceledException(cancellationToken);
        }

        return this;
    }

    /// <summary>
    /// Starts argv under ptrace from its first instruction (through <see cref="LaunchStage"/>), with
    /// PTRACE_O_EXITKILL: if the tracing program dies, the command dies too, because a command left with a seccomp
    /// filter and no tracer would fail every filtered syscall. Returns once the command's execve has succeeded.
    /// Throws <see cref="CommandNotStartedException"/> when the program is not found (in
    /// <see cref="TraceOptions.SearchPath"/>), is a directory or not executable (checked first), or its execve fails
    /// (the observer has seen that call, and nothing after it).
    /// The command starts as this program run again in its launch stage: this program's Main must call
    /// <see cref="LaunchStage.RunIfRequested"/> first (InvalidOperationException otherwise), unless
    /// <see cref="TraceOptions.StageCommand"/> names another program that does.
    /// Cancelling <paramref name="cancellationToken"/> detaches: the command runs on untraced (see <see cref="WaitForCommand"/>).
    /// </summary>
    public static TraceSession Launch(IReadOnlyList<string> argv, ITraceObserver observer, TraceOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(argv);
        ArgumentNullException.ThrowIfNull(observer);
        ArgumentOutOfRangeException.ThrowIfZero(argv.Count);
        cancellationToken.ThrowIfCancellationRequested();
        options ??= new TraceOptions();
        if (options.StageCommand is null && !LaunchStage.IsInstalled)
        {
            throw new InvalidOperationException(
                "TraceSession.Launch starts the command through this program run again as its launch stage: call LaunchStage.RunIfRequested(args) first thing in Main, or set TraceOptions.StageCommand");
        }

        if (options.StandardDescriptors is { Count: not 3 }) throw new ArgumentException("StandardDescriptors must have three numbers (for 0, 1 and 2)", nameof(options));
        var path = ChildProcess.Resolve(argv[0], options.SearchPath);
        var stage = LaunchStage.CommandLine(options.StageCommand ?? LaunchStage.DefaultPrefix(), options.Filter, path, argv);
        return new TraceSession(0, options, observer) { _launch = stage, _command = (argv[0], path) }.Start(cancellationToken);
    }

    /// <summary>
    /// For a launched command: waits until it has exited and reaps it. After a detach (RequestDetach, an error) the
    /// command runs on untraced but is still this process's child: this is how to wait for it, as a shell would.
    /// Call after <see cref="Completion"/>; returns at once when the session saw the command exit.
    /// </summary>
    public ExitStatus WaitForCommand()
    {
        if (_launch is null) throw new InvalidOperationException("only a launched command can be waited for");
        var result = Completion.GetAwaiter().GetResult();
        if (result.TargetExit is { } exit) return exit;
        lock (_reapLock)
        {
            if (_reaped is { } reaped) return reaped;
            var r = PosixSpawn.WaitPid(TargetPid, Wait.WALL, out var waited, out var status);
            // ECHILD: reaped elsewhere; its status is unknown.
            _reaped = r.IsOk && waited == TargetPid ? ExitStatus.FromWaitStatus(status) : new ExitStatus(-1, 0);
            return _reaped.Value;
        }
    }

    private readonly Lock _reapLock = new();
    private ExitStatus? _reaped;
    private (string Command, string Path) _command;

    /// <summary>The traced command's PID (for Launch), or the attached PID.</summary>
    public int TargetPid => _targetPid ?? Pid;

    private List<string>? _launch;
    private int? _targetPid;

    /// <summary>
    /// What Attach checks in /proc before any ptrace call: throws ProcessNotFoundException, or
    /// ProcessNotTraceableException for a thread id, a kernel thread, a zombie or this process itself.
    /// </summary>
    public static void CheckTraceable(int pid) => Preflight(pid);

    /// <summary>Checks /proc before any ptrace call, so that the error says what is wrong.</summary>
    private static void Preflight(int pid)
    {
        if (pid <= 0) throw new ProcessNotFoundException(pid);
        var info = ProcessInfo.TryRead(pid) ?? throw new ProcessNotFoundException(pid);
        if (info.Tgid != pid) throw new ProcessNotTraceableException(pid, $"it is a thread of process {info.Tgid}; give the process id");
        if (info.IsKernelThread) throw new ProcessNotTraceableException(pid, $"'{info.Name}' is a kernel thread");
        if (info.State is 'Z' or 'X') throw new ProcessNotTraceableException(pid, $"'{info.Name}' is a zombie (it has exited and waits for its parent to reap it)");
        if (pid == Environment.ProcessId) throw new ProcessNotTraceableException(pid, "that is nozoki itself");
    }

    /// <summary>Explains an EPERM from PTRACE_SEIZE.</summary>
    internal static string ExplainPermission(int pid)
    {
        var info = ProcessInfo.TryRead(pid);
        if (info is null) return "operation not permitted";
        if (info.TracerPid != 0)
        {
            // TracerPid is the tracing thread's id; name its process, as ps shows it.
            var thread = ProcessInfo.TryRead(info.TracerPid);
            var tracer = thread is null || thread.Tgid == thread.Pid ? thread : ProcessInfo.TryRead(thread.Tgid) ?? thread;
            return $"already traced by PID {tracer?.Pid ?? info.TracerPid}{(tracer is null ? "" : $" ({tracer.Name})")}; a process can have only one tracer";
        }

        var euid = Libc.geteuid();
        var privileged = euid == 0 || ProcessInfo.SelfHasCapSysPtrace();
        if (!privileged && (info.RealUid != euid || info.EffectiveUid != euid))
            return $"it belongs to another user (uid {info.EffectiveUid}) and you are uid {euid}; run as root or with CAP_SYS_PTRACE";
        var scope = ProcessInfo.ReadYamaPtraceScope();
        if (scope is 1 && !privileged)
            return "kernel.yama.ptrace_scope is 1 (only a parent may trace its children); run as root or with CAP_SYS_PTRACE, or set it to 0";
        if (scope is 2 && !privileged) return "kernel.yama.ptrace_scope is 2 (only admins may trace); run as root or with CAP_SYS_PTRACE";
        if (scope is 3) return "kernel.yama.ptrace_scope is 3 (attaching is disabled until reboot)";
        if (!privileged) return "operation not permitted (is it setuid, or not dumpable?); run as root or with CAP_SYS_PTRACE";
        return "operation not permitted (a security module, or a process that is not dumpable)";
    }

    /// <summary>Asks the ptrace thread to detach every thread and end. Thread-safe, idempotent, returns at once.</summary>
    public void RequestDetach()
    {
        _detachRequested = true;
        if (Environment.CurrentManagedThreadId == _thread.ManagedThreadId) return;
        _loopForWake?.Wake();
    }

    private volatile StopLoop? _loopForWake;

    public void Dispose()
    {
        RequestDetach();
        Completion.GetAwaiter().GetResult();
    }

    public async ValueTask DisposeAsync()
    {
        RequestDetach();
        await Completion.ConfigureAwait(false);
    }

    private void Run()
    {
        var loop = new StopLoop(Pid, _options, _observer, () => _detachRequested);
        _observer.OnStarted(new Control(loop, _launch is not null));
        loop.StartWaker();
        _loopForWake = loop;
        try
        {
            RunLoop(loop);
        }
        finally
        {
            _loopForWake = null;
            loop.StopWaker();
        }
    }

    /// <summary>The stop loop's control, and whether the session launched its command.</summary>
    private sealed class Control(ITraceControl loop, bool launched) : ITraceControl
    {
        public bool Launched => launched;

        public void Park(int tid) => loop.Park(tid);

        public bool Release(int tid) => loop.Release(tid);

        public void Hold(int pid, bool hold) => loop.Hold(pid, hold);

        public bool SingleStep(int tid) => loop.SingleStep(tid);

        public AloneStop RunAlone(int tid, bool syscallStops, TimeSpan timeout) => loop.RunAlone(tid, syscallStops, timeout);

        public bool StopAllThreads(int pid) => loop.StopAllThreads(pid);

        public void StopAtEverySyscall(int tid, bool on) => loop.StopAtEverySyscall(tid, on);
    }

    private void RunLoop(StopLoop loop)
    {
        TraceResult result;
        try
        {
            if (_launch is null)
            {
                loop.AttachAll();
            }
            else
            {
                // Launch returns when the command's execve succeeded (see StopLoop.Run), or throws why it failed.
                _targetPid = loop.LaunchStage(_launch);
            }
        }
        catch (Exception e)
        {
            loop.DetachAll();
            _attached.TrySetException(e);
            _completion.TrySetResult(new TraceResult(TraceEndReason.Failed, null, e));
            return;
        }

        try
        {
            result = loop.Run(_attached);
        }
        catch (Exception e)
        {
            try
            {
                loop.DetachAll();
            }
            catch (Exception inner)
            {
                e = new AggregateException(e, inner);
            }

            result = new TraceResult(TraceEndReason.Failed, loop.TargetExit, e);
        }

        if (loop.StageExit is { } stageExit && LaunchStage.Failure(stageExit, loop.StageStopped, _command.Command, _command.Path) is { } failed)
        {
            _attached.TrySetException(failed);
            _completion.TrySetResult(new TraceResult(TraceEndReason.Failed, null, failed));
            return;
        }

        // Attach() may still be waiting if the process exited before every thread stopped once.
        _attached.TrySetResult();
        _completion.TrySetResult(result);
    }
}
