namespace Nozoki.Tracing;

/// <summary>Base of the errors a caller can act on; the message is one line, fit for a user.</summary>
public class TraceException(string message, Exception? inner = null) : Exception(message, inner);

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
