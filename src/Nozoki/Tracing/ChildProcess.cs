using Nozoki.Native;

namespace Nozoki.Tracing;

/// <summary>How a process ended: its exit code, or the signal that killed it.</summary>
public readonly record struct ExitStatus(int Code, int Signal)
{
    public bool Signaled => Signal != 0;

    /// <summary>The status a shell would report: the code, or 128 + the signal.</summary>
    public int ShellStatus => Signaled ? 128 + Signal : Code;

    public override string ToString() => Signaled ? $"killed by {Signals.Name(Signal)}" : $"exited with status {Code}";

    internal static ExitStatus FromWaitStatus(int status) =>
        Wait.IfSignaled(status) ? new ExitStatus(0, Wait.TermSig(status)) : new ExitStatus(Wait.ExitStatus(status), 0);
}

/// <summary>
/// A child started with posix_spawn. System.Diagnostics.Process is never used for tracees: its SIGCHLD handler
/// calls waitpid on its children and would steal ptrace stops.
/// </summary>
public sealed class ChildProcess : IDisposable
{
    private ExitStatus? _exit;

    private ChildProcess(int pid) => Pid = pid;

    public int Pid { get; }

    /// <summary>
    /// Starts argv[0] (a path, or a name looked up in PATH) with the given fds as its stdin/stdout/stderr, and this
    /// process's environment exactly as it came.
    /// </summary>
    public static ChildProcess Start(IReadOnlyList<string> argv, int stdinFd = 0, int stdoutFd = 1, int stderrFd = 2, string? workingDirectory = null)
    {
        ArgumentOutOfRangeException.ThrowIfZero(argv.Count);
        var path = ResolvePath(argv[0]) ?? throw new FileNotFoundException($"{argv[0]}: command not found", argv[0]);
        return new ChildProcess(PosixSpawn.Spawn(path, argv, env: null, stdinFd, stdoutFd, stderrFd, workingDirectory));
    }

    internal static string? ResolvePath(string name)
    {
        if (name.Contains('/')) return File.Exists(name) ? Path.GetFullPath(name) : null;
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "/usr/local/bin:/usr/bin:/bin").Split(':'))
        {
            var candidate = Path.Combine(dir.Length == 0 ? "." : dir, name);
            if (File.Exists(candidate)) return candidate;
        }

        return null;
    }

    public bool HasExited => _exit is not null || TryReap(Wait.WNOHANG);

    public ExitStatus? ExitStatus => _exit;

    /// <summary>Waits (polling, so that a timeout is possible) and reaps the child; null on timeout.</summary>
    public ExitStatus? WaitForExit(TimeSpan timeout)
    {
        var deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        var sleep = 1;
        while (!TryReap(Wait.WNOHANG))
        {
            if (Environment.TickCount64 >= deadline) return null;
            Thread.Sleep(sleep);
            sleep = Math.Min(sleep * 2, 20);
        }

        return _exit;
    }

    /// <summary>Blocks until the child exits and reaps it.</summary>
    public ExitStatus WaitForExit()
    {
        TryReap(0);
        return _exit!.Value;
    }

    private bool TryReap(int options)
    {
        if (_exit is not null) return true;
        var r = PosixSpawn.WaitPid(Pid, options, out var status);
        if (r == 0) return false;
        // r < 0 is ECHILD: reaped elsewhere; the status is unknown.
        _exit = r == Pid ? Tracing.ExitStatus.FromWaitStatus(status) : new ExitStatus(-1, 0);
        return true;
    }

    public void Signal(int signo) => Libc.kill(Pid, signo);

    public void Dispose()
    {
        if (HasExited) return;
        Libc.kill(Pid, Signals.SIGKILL);
        WaitForExit();
    }
}
