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
    /// process's environment exactly as it came. Throws <see cref="CommandNotStartedException"/> when it cannot run.
    /// <paramref name="searchPath"/>: where to look for a name without a slash, as PATH (default: /usr/local/bin:/usr/bin:/bin).
    /// </summary>
    public static ChildProcess Start(IReadOnlyList<string> argv, int stdinFd = 0, int stdoutFd = 1, int stderrFd = 2, string? workingDirectory = null, string? searchPath = null)
    {
        ArgumentNullException.ThrowIfNull(argv);
        ArgumentOutOfRangeException.ThrowIfZero(argv.Count);
        var path = Resolve(argv[0], searchPath);
        var errno = PosixSpawn.TrySpawn(path, argv, env: null, stdinFd, stdoutFd, stderrFd, workingDirectory, out var pid);
        if (errno != 0) throw ExecFailed(argv[0], path, errno);
        return new ChildProcess(pid);
    }

    /// <summary>
    /// The file argv[0] names, checked as far as can be checked before execve: a name with a slash is that file; any
    /// other name is looked up in PATH, where (as execvp and shells do) a directory or a file we may not execute is
    /// passed over for a later one. Throws <see cref="CommandNotStartedException"/>: not found (ENOENT), a
    /// directory (EISDIR), not executable (EACCES). Whether the kernel can run its format, only execve tells.
    /// </summary>
    internal static string Resolve(string command, string? searchPath = null)
    {
        int errno;
        if (command.Contains('/'))
        {
            errno = Check(command);
            if (errno != 0) throw NotStarted(command, errno);
            return Path.GetFullPath(command);
        }

        string? refused = null;
        var refusedErrno = 0;
        if (command.Length > 0)
        {
            foreach (var dir in (searchPath ?? DefaultSearchPath).Split(':'))
            {
                var candidate = Path.Combine(dir.Length == 0 ? "." : dir, command);
                errno = Check(candidate);
                if (errno == 0) return candidate;
                if (errno is Errno.EACCES && refused is null && File.Exists(candidate)) (refused, refusedErrno) = (candidate, errno);
            }
        }

        if (refused is not null) throw NotStarted(refused, refusedErrno);
        throw new CommandNotStartedException(command, Errno.ENOENT, "command not found");
    }

    /// <summary>Where a name is looked for when no search path is given (the PATH of a login shell, less sbin).</summary>
    public const string DefaultSearchPath = "/usr/local/bin:/usr/bin:/bin";

    /// <summary>Like <see cref="Resolve"/>, null when it throws.</summary>
    internal static string? ResolvePath(string name)
    {
        try
        {
            return Resolve(name);
        }
        catch (CommandNotStartedException)
        {
            return null;
        }
    }

    /// <summary>0 when path is an existing non-directory that we may execute, else ENOENT, EISDIR, EACCES, ...</summary>
    private static int Check(string path)
    {
        if (Directory.Exists(path)) return Errno.EISDIR;
        if (!File.Exists(path)) return Errno.ENOENT;
        return Access.Executable(path).Errno;
    }

    private static CommandNotStartedException NotStarted(string command, int errno) => errno switch
    {
        Errno.ENOENT => new CommandNotStartedException(command, errno, "No such file or directory"),
        Errno.EISDIR => new CommandNotStartedException(command, errno, "Is a directory"),
        _ => new CommandNotStartedException(command, errno, Libc.StrError(errno)),
    };

    /// <summary>
    /// Why execve of path (found and executable) failed, said as a shell would: for ENOEXEC whether it is a script
    /// without a #! line; for ENOENT which file it needs is missing (its #! interpreter or its ELF loader).
    /// </summary>
    internal static CommandNotStartedException ExecFailed(string command, string path, int errno)
    {
        var head = ReadHead(path);
        if (errno == Errno.ENOEXEC)
        {
            var elf = head.AsSpan().StartsWith((ReadOnlySpan<byte>)[0x7f, (byte)'E', (byte)'L', (byte)'F']);
            if (!elf && !head.AsSpan().StartsWith("#!"u8) && LooksLikeText(head))
                return new CommandNotStartedException(command, errno, $"{Libc.StrError(errno)} (no #! line: run it with `sh {command}`)");
            return new CommandNotStartedException(command, errno,
                elf ? $"{Libc.StrError(errno)} (a damaged ELF file, or one for another machine)" : Libc.StrError(errno));
        }

        if (errno == Errno.ENOENT && head.AsSpan().StartsWith("#!"u8))
        {
            var line = System.Text.Encoding.UTF8.GetString(head.AsSpan(2)).Split('\n')[0].Trim();
            var interpreter = line.Split([' ', '\t'], 2)[0];
            return new CommandNotStartedException(command, errno, $"bad interpreter {interpreter}: {Libc.StrError(errno)}");
        }

        if (errno == Errno.ENOENT)
            return new CommandNotStartedException(command, errno, $"cannot execute: a file it needs (its ELF interpreter or loader) was not found");
        return NotStarted(command, errno);
    }

    /// <summary>UTF-8 text without control characters other than whitespace (a cut last character allowed).</summary>
    private static bool LooksLikeText(byte[] head)
    {
        if (head.Length == 0) return true;
        foreach (var b in head)
        {
            if (b < 0x20 && b is not ((byte)'\t' or (byte)'\n' or (byte)'\r' or 0x0c or 0x1b)) return false;
            if (b == 0x7f) return false;
        }

        for (var cut = 0; cut < 4 && cut < head.Length; cut++)
        {
            if (System.Text.Unicode.Utf8.IsValid(head.AsSpan(0, head.Length - cut))) return true;
        }

        return false;
    }

    /// <summary>The first bytes of a file (empty when it cannot be read).</summary>
    private static byte[] ReadHead(string path)
    {
        try
        {
            using var f = File.OpenHandle(path);
            var buffer = new byte[256];
            var n = RandomAccess.Read(f, buffer, 0);
            return buffer[..n];
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return [];
        }
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
        var r = PosixSpawn.WaitPid(Pid, options, out var waited, out var status);
        if (r.IsOk && waited == 0) return false;
        // A failure is ECHILD: reaped elsewhere; the status is unknown.
        _exit = r.IsOk && waited == Pid ? Tracing.ExitStatus.FromWaitStatus(status) : new ExitStatus(-1, 0);
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
