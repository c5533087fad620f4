namespace Nozoki.Tracing;

/// <summary>Base of the errors a caller can act on; the message is one line, fit for a user.</summary>
public class TraceException(string message, Exception? inner = null) : NozokiException(message, inner);

/// <summary>No such process (ESRCH, or no /proc entry).</summary>
public sealed class ProcessNotFoundException(int pid)
    : TraceException($"no process with PID {pid}")
{
    public int Pid { get; } = pid;
}

/// <summary>ptrace refused (EPERM); the message says why: another user, Yama's ptrace_scope, or another tracer.</summary>
public sealed class TracePermissionException(int pid, string reason)
    : TraceException($"cannot trace PID {pid}: {reason}")
{
    public int Pid { get; } = pid;
}

/// <summary>The target exists but cannot be traced at all: a zombie, a kernel thread, nozoki itself.</summary>
public sealed class ProcessNotTraceableException(int pid, string reason)
    : TraceException($"cannot trace PID {pid}: {reason}")
{
    public int Pid { get; } = pid;
}

/// <summary>
/// A command could not be started: found to be impossible before launching (not found, a directory, not
/// executable) or refused by execve (not a format the kernel runs, a missing interpreter, ...). The message is
/// "COMMAND: why", as a shell says it; a shell would exit 127 when <see cref="NotFound"/>, else 126.
/// </summary>
public sealed class CommandNotStartedException(string command, int errno, string reason)
    : TraceException($"{command}: {reason}")
{
    /// <summary>argv[0] as given.</summary>
    public string Command { get; } = command;

    /// <summary>Why: the errno of execve (or the one it would give): ENOENT, EACCES, EISDIR, ENOEXEC, ...</summary>
    public int Errno { get; } = errno;

    /// <summary>The command, or a file it needs (its #! interpreter, its ELF loader), does not exist (ENOENT).</summary>
    public bool NotFound => Errno == Native.Errno.ENOENT;
}
