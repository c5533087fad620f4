using Nozoki.Native;
using Nozoki.Syscalls;
using Nozoki.Tracing;

namespace Nozoki.Painting;

/// <summary>
/// Told when a painted write starts (before the kernel runs it) and ends (after it returned). The write goes to
/// the file the painting process has as the same fd, so that is where the sequences belong.
/// </summary>
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
    private readonly Queue<(int Pid, int Tid, int Fd)> _waiting = new();
    private ITraceControl? _control;
    private (int Pid, int Tid, int Fd)? _active;

    private readonly int _self = Environment.ProcessId;

    public WritePainter(IPaintSink sink, IEnumerable<int> fds)
    {
        ArgumentNullException.ThrowIfNull(sink);
        ArgumentNullException.ThrowIfNull(fds);
        _sink = sink;
        _fds = [.. fds.Distinct()];
    }

    /// <summary>
    /// Whether the command's fd still is the one it inherited from nozoki: the sequences go to nozoki's own fd, so a
    /// write redirected elsewhere (`2>file`, `2>&1 | less`) must not be bracketed. It also rules out a deadlock: a
    /// painted write in flight never waits on a pipe that a held-back writer should drain. Compared by open file
    /// description (kcmp), which allocates nothing per write, unlike reading and comparing the two /proc links.
    /// </summary>
    private bool StillOurs(int pid, int fd) => Kcmp.IsSameFile(_self, fd, pid, fd);

    /// <summary>The seccomp filter that stops the command only at these writes.</summary>
    public SeccompFilter Filter() => new(WriteSyscalls.Select(nr => new SeccompRule(nr, _fds)));

    public void OnStarted(ITraceControl control) => _control = control;

    /// <summary>
    /// One painted write at a time: while a thread's write is between its start and reset sequences, another
    /// thread that enters a painted write is kept stopped, and released when the first one's syscall returns.
    /// Otherwise the first one's reset could land before the second one's bytes.
    /// </summary>
    public void OnSyscallEnter(in SyscallEnterStop stop)
    {
        if (Array.IndexOf(WriteSyscalls, stop.Number) < 0) return;
        var fd = stop.Args.A0 > int.MaxValue ? -1 : (int)stop.Args.A0;
        if (Array.IndexOf(_fds, fd) < 0 || !StillOurs(stop.Pid, fd)) return;
        if (_active is not null && _control is not null)
        {
            _control.Park(stop.Tid);
            _waiting.Enqueue((stop.Pid, stop.Tid, fd));
            return;
        }

        _active = (stop.Pid, stop.Tid, fd);
        _sink.Begin(stop.Pid, stop.Tid, fd);
    }

    public void OnSyscallExit(in SyscallExitStop stop)
    {
        if (_active is { } a && a.Tid == stop.Tid) Finish(a);
    }

    public void OnThreadExited(int pid, int tid)
    {
        if (_active is { } a && a.Tid == tid) Finish(a);
    }

    private void Finish((int Pid, int Tid, int Fd) done)
    {
        _sink.End(done.Pid, done.Tid, done.Fd);
        _active = null;
        while (_waiting.TryDequeue(out var next))
        {
            // Begin before the release: the thread writes as soon as it runs.
            _sink.Begin(next.Pid, next.Tid, next.Fd);
            if (_control!.Release(next.Tid))
            {
                _active = next;
                return;
            }

            _sink.End(next.Pid, next.Tid, next.Fd); // gone meanwhile
        }
    }
}
