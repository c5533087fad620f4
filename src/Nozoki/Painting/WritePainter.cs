using Nozoki.Syscalls;
using Nozoki.Tracing;

namespace Nozoki.Painting;

/// <summary>Told when a painted write starts (before the kernel runs it) and ends (after it returned).</summary>
public interface IPaintSink
{
    void Begin(int pid, int tid, int fd);

    void End(int pid, int tid, int fd);
}

/// <summary>
/// Brackets every write-family syscall to the chosen fds: Begin at its entry, End at its exit, while the writing
/// thread is stopped. The bytes themselves go straight from the command to the terminal, so the order of stdout and
/// stderr is kept by construction; only the brackets come from nozoki.
/// </summary>
public sealed class WritePainter : ITraceObserver
{
    /// <summary>The syscalls that write a process's buffer to a descriptor (first argument: the fd).</summary>
    public static readonly long[] WriteSyscalls =
        [SyscallNumbers.Write, SyscallNumbers.Writev, SyscallNumbers.Pwrite64, SyscallNumbers.Pwritev, SyscallNumbers.Pwritev2];

    private readonly IPaintSink _sink;
    private readonly int[] _fds;
    private readonly Dictionary<int, int> _open = []; // tid -> fd whose write is in progress

    public WritePainter(IPaintSink sink, IEnumerable<int> fds)
    {
        ArgumentNullException.ThrowIfNull(sink);
        ArgumentNullException.ThrowIfNull(fds);
        _sink = sink;
        _fds = [.. fds.Distinct()];
    }

    /// <summary>The seccomp filter that stops the command only at these writes.</summary>
    public SeccompFilter Filter() => new(WriteSyscalls.Select(nr => new SeccompRule(nr, _fds)));

    public void OnSyscallEnter(in SyscallEnterStop stop)
    {
        if (Array.IndexOf(WriteSyscalls, stop.Number) < 0) return;
        var fd = stop.Args.A0 > int.MaxValue ? -1 : (int)stop.Args.A0;
        if (Array.IndexOf(_fds, fd) < 0) return;
        _open[stop.Tid] = fd;
        _sink.Begin(stop.Pid, stop.Tid, fd);
    }

    public void OnSyscallExit(in SyscallExitStop stop)
    {
        if (_open.Remove(stop.Tid, out var fd)) _sink.End(stop.Pid, stop.Tid, fd);
    }
}
