using Nozoki.Native;
using Nozoki.Syscalls;
using Nozoki.Tracing;

namespace Nozoki.Painting;

/// <summary>
/// How painted writes are painted. A painted write carries <see cref="StartSequence"/> and <see cref="ResetSequence"/>
/// itself when it can (see <see cref="WritePainter"/>): nothing can then come between them and its bytes. Any other
/// painted write is bracketed from outside: <see cref="Begin"/> before the kernel runs it, <see cref="End"/> after it
/// returned (and after a carried one that stopped short of its reset sequence). FD is the painted descriptor the
/// write descends from (2, or a number given to <see cref="WritePainter"/>), whatever number the command wrote through
/// (a shell's `echo x &gt;&amp;2` writes through fd 1): the painting process has that same file as FD, so that is
/// where the sequences belong.
/// </summary>
public interface IPaintSink
{
    /// <summary>The bytes that start a painted write (an SGR sequence). Empty (the default): writes are only bracketed.</summary>
    ReadOnlySpan<byte> StartSequence => default;

    /// <summary>The bytes that end a painted write.</summary>
    ReadOnlySpan<byte> ResetSequence => default;

    void Begin(int pid, int tid, int fd);

    void End(int pid, int tid, int fd);
}

/// <summary>
/// Paints every write to a copy of a painted descriptor, while the writing thread is stopped at its entry. A write(2),
/// writev(2) or pwritev2(2) at the current offset carries the sequences itself (<see cref="SequencesInWrite"/>: one
/// syscall writes start, bytes and reset, so another writer's unpainted line can never land inside); other write
/// paths (sendfile, splice, copy_file_range, tee, vmsplice, pwrite64, pwritev, send*) are bracketed by the sink's Begin
/// at their entry and End at their exit. Either way the bytes go straight from the command to the terminal, so the
/// order of stdout and stderr is the order the kernel took them in. One painted write at a time: another thread's is
/// held at its entry until the one in progress has returned.
/// <para>
/// Painted is the lineage of a descriptor, not its number: fd 2 as the command started (or each number given), and
/// every descriptor made from a painted one by dup, dup2, dup3, fcntl(F_DUPFD, F_DUPFD_CLOEXEC), inherited by fork and
/// clone (a shared table with CLONE_FILES, a copy without) and kept over execve unless close-on-exec. A number stops
/// being painted when it is closed or replaced (`dup2(11, 1)`, `2&gt;/dev/null`, `2&gt;&amp;1`). A painted write is
/// also checked to go to the painted description still (kcmp KCMP_FILE against nozoki's own reference), so that a
/// label nozoki could not see go (a close it does not stop for) never paints an unrelated file of the same number.
/// </para>
/// <para>
/// How it sees that with a seccomp filter, which cannot change once the command runs: the filter stops the command at
/// writes to the painted numbers themselves and at every dup-family call (rare in a program that does not play with
/// its descriptors: a command that never touches stderr runs at full speed). Each file table's labels are kept here;
/// while a table has a painted descriptor under another number (the filter cannot stop writes to it), its tasks stop
/// at every syscall (<see cref="ITraceControl.StopAtEverySyscall"/>) until that number is closed or replaced.
/// </para>
/// </summary>
public sealed class WritePainter : ITraceObserver, IDisposable
{
    /// <summary>The syscalls that write to a descriptor (the one in <see cref="OutputArgument"/>): buffers, or file-to-file copies the kernel makes.</summary>
    public static readonly long[] WriteSyscalls =
    [
        SyscallNumbers.Write, SyscallNumbers.Writev, SyscallNumbers.Pwrite64, SyscallNumbers.Pwritev, SyscallNumbers.Pwritev2,
        SyscallNumbers.Sendto, SyscallNumbers.Sendmsg, SyscallNumbers.Sendmmsg, SyscallNumbers.Sendfile, SyscallNumbers.Vmsplice,
        SyscallNumbers.Splice, SyscallNumbers.CopyFileRange, Nr.Tee,
    ];

    /// <summary>The syscalls that make a descriptor a copy of another (the filter stops each; fcntl only for F_DUPFD and F_DUPFD_CLOEXEC).</summary>
    private static readonly long[] CopySyscalls = [Nr.Dup, SyscallNumbers.Dup2, SyscallNumbers.Dup3];

    private const int F_DUPFD = 0, F_DUPFD_CLOEXEC = 1030, PR_SET_SECCOMP = 22;
    private const ulong CloseRangeUnshare = 2, CloseRangeCloexec = 4, CloneFiles = 0x400;

    private readonly IPaintSink _sink;
    private readonly int[] _origins;
    private readonly int[] _references;
    private readonly bool[] _terminal;
    private readonly List<int> _opened = [];
    private readonly Dictionary<int, DescriptorTable> _tables = [];

    // Threads that installed a seccomp filter of their own (or strict mode) since the command started, and their
    // descendants: a write of theirs is not turned into a writev (their filter could refuse it, or trap it to a
    // signal handler whose frame would land on the buffers below the stack pointer), only bracketed.
    private readonly HashSet<int> _ownFilter = [];
    private readonly Queue<HeldWrite> _waiting = new();
    private readonly SequencesInWrite _inWrite;
    private ITraceControl? _control;
    private PaintedWrite? _active;
    private int[]? _standard;
    private int _commandPid;

    private readonly int _self = Environment.ProcessId;

    public WritePainter(IPaintSink sink, IEnumerable<int> fds)
    {
        ArgumentNullException.ThrowIfNull(sink);
        ArgumentNullException.ThrowIfNull(fds);
        _sink = sink;
        _origins = [.. fds.Distinct()];
        _references = [.. _origins];
        _terminal = [.. _origins.Select(Fd.IsTerminal)];
        _inWrite = new SequencesInWrite(sink.StartSequence.ToArray(), sink.ResetSequence.ToArray());
    }

    /// <summary>A painted write held at its entry while another one is in progress.</summary>
    private readonly record struct HeldWrite(int Pid, int Tid, int Fd, long Number, SyscallArgs Args);

    /// <summary>The painted write in progress: carrying its sequences, or bracketed by the sink.</summary>
    private readonly record struct PaintedWrite(int Pid, int Tid, int Fd, bool Carries, CarriedWrite Write);

    /// <summary>
    /// Also paint what the command's own process (the one started, not its children) writes to a terminal while the
    /// terminal is not in canonical mode. Off by default: a line editor (bash's readline, which draws the prompt and
    /// the line being typed on stderr; zsh's zle; python's REPL) turns canonical mode off while it reads a line and
    /// puts it back before the line runs, so those writes are an interactive shell's prompt and editing, not errors.
    /// Everything the shell writes while it runs a command, and everything its children write, is painted as usual.
    /// </summary>
    public bool PaintLineEditor { get; init; }

    /// <summary>The argument that holds the descriptor a write-family syscall writes to; -1 for any other syscall.</summary>
    public static int OutputArgument(long syscall) => syscall switch
    {
        SyscallNumbers.Splice or SyscallNumbers.CopyFileRange => 2,
        Nr.Tee => 1,
        SyscallNumbers.Write or SyscallNumbers.Writev or SyscallNumbers.Pwrite64 or SyscallNumbers.Pwritev or SyscallNumbers.Pwritev2
            or SyscallNumbers.Sendto or SyscallNumbers.Sendmsg or SyscallNumbers.Sendmmsg or SyscallNumbers.Sendfile or SyscallNumbers.Vmsplice => 0,
        _ => -1,
    };

    /// <summary>
    /// The seccomp filter that stops the command only where painting needs it: writes to the painted numbers, the
    /// calls that copy a descriptor (dup, dup2, dup3, fcntl F_DUPFD and F_DUPFD_CLOEXEC), and the rare ones that split a
    /// shared descriptor table (unshare, close_range) or install a seccomp filter (seccomp, prctl PR_SET_SECCOMP).
    /// </summary>
    public SeccompFilter Filter() => new(
        WriteSyscalls.Select(nr => new SeccompRule(nr, _origins, Argument: OutputArgument(nr)))
            .Concat(CopySyscalls.Select(nr => new SeccompRule(nr)))
            .Append(new SeccompRule(Nr.Fcntl, [F_DUPFD, F_DUPFD_CLOEXEC], Argument: 1))
            .Append(new SeccompRule(Nr.Unshare))
            .Append(new SeccompRule(SyscallNumbers.CloseRange))
            .Append(new SeccompRule(Nr.Seccomp))
            .Append(new SeccompRule(Nr.Prctl, [PR_SET_SECCOMP])));

    /// <summary>
    /// For <see cref="TraceSession.Launch"/> (<see cref="TraceOptions.StandardDescriptors"/>): the descriptors to give
    /// the command as its 0, 1 and 2. A painted one among them that is one open file description with another of
    /// them (a terminal opened once and dup'ed to 0, 1 and 2; `&gt;out 2&gt;&amp;1` onto a pipe) is given a description
    /// of its own, of the same terminal or pipe, so that stdout and stderr can be told apart by description as well as
    /// by lineage (a label a shell's `2&gt;&amp;1` left stale would otherwise pass the kcmp check). Not possible for a
    /// regular file (a second description would have an offset of its own) nor a socket: there lineage alone decides.
    /// The new descriptors stay open in this process (as the references the painted writes are compared with) until
    /// Dispose. Called once; later calls return the same.
    /// </summary>
    public IReadOnlyList<int> StandardDescriptors()
    {
        if (_standard is not null) return _standard;
        int[] standard = [0, 1, 2];
        for (var i = 0; i < _origins.Length; i++)
        {
            var n = _origins[i];
            if (n is < 0 or > 2) continue;
            var shared = false;
            for (var m = 0; m <= 2; m++) shared |= m != n && Kcmp.IsSameFile(_self, n, _self, m);
            if (!shared || !Fd.OpenAnew(n, out var fresh).IsOk) continue;
            standard[n] = fresh;
            _references[i] = fresh;
            _opened.Add(fresh);
        }

        return _standard = standard;
    }

    public void Dispose()
    {
        foreach (var fd in _opened) Libc.close(fd);
        _opened.Clear();
    }

    public void OnStarted(ITraceControl control) => _control = control;

    public void OnAttached(int pid, int threadCount)
    {
        if (_commandPid == 0) _commandPid = pid;
        TableOf(pid, pid);
    }

    /// <summary>
    /// One painted write at a time: while a thread's write is between its start and reset sequences, another
    /// thread that enters a painted write is kept stopped, and released when the first one's syscall returns.
    /// Otherwise the first one's reset could land before the second one's bytes.
    /// </summary>
    public void OnSyscallEnter(in SyscallEnterStop stop)
    {
        var argument = OutputArgument(stop.Number);
        if (argument < 0) return;
        var fd = FdArgument(stop.Args[argument]);
        var table = TableOf(stop.Pid, stop.Tid);
        var origin = table.OriginOf(fd);
        if (origin < 0) return;
        var index = Array.IndexOf(_origins, origin);
        // By thread: a thread may have a table of its own (unshare), and kcmp looks the fd up in the task it is given.
        if (!Kcmp.IsSameFile(_self, _references[index], stop.Tid, fd))
        {
            // Closed or replaced where nozoki does not stop (fd 2 itself is closed without a stop): a stale label.
            if (table.Set(fd, -1)) UpdateMode(table);
            return;
        }

        if (!PaintLineEditor && stop.Pid == _commandPid && _terminal[index] &&
            Termios.IsCanonical(_references[index], out var canonical).IsOk && !canonical) return;

        if (_active is not null && _control is not null)
        {
            _control.Park(stop.Tid);
            _waiting.Enqueue(new HeldWrite(stop.Pid, stop.Tid, origin, stop.Number, stop.Args));
            return;
        }

        Start(stop.Pid, stop.Tid, origin, stop.Number, stop.Args);
    }

    /// <summary>Starts painting a write whose thread is in its entry stop; false when there is nothing to paint (no bytes).</summary>
    private bool Start(int pid, int tid, int fd, long number, in SyscallArgs args)
    {
        var carried = default(CarriedWrite);
        var how = _ownFilter.Contains(tid) ? (number == SyscallNumbers.Write && args.A2 == 0 ? InWrite.Empty : InWrite.NotPossible)
            : _inWrite.Begin(tid, number, args, out carried);
        switch (how)
        {
            case InWrite.Carried:
                _active = new PaintedWrite(pid, tid, fd, true, carried);
                return true;
            case InWrite.Empty:
                return false;
            default:
                _sink.Begin(pid, tid, fd);
                _active = new PaintedWrite(pid, tid, fd, false, default);
                return true;
        }
    }

    /// <summary>The end of a painted write; and, on a copy's return, the new number's label (the result says which number it is).</summary>
    public void OnSyscallExit(in SyscallExitStop stop)
    {
        if (_active is { } a && a.Tid == stop.Tid) Finish(a, stop.ReturnValue);
        var args = stop.Args;
        switch (stop.Number)
        {
            case Nr.Dup:
                if (!stop.IsError) Copied(stop.Pid, stop.Tid, FdArgument(args.A0), (int)stop.ReturnValue);
                return;
            case SyscallNumbers.Dup2 or SyscallNumbers.Dup3:
                if (!stop.IsError && args.A0 != args.A1) Copied(stop.Pid, stop.Tid, FdArgument(args.A0), FdArgument(args.A1));
                return;
            case Nr.Fcntl:
                if (!stop.IsError && (uint)args.A1 is F_DUPFD or F_DUPFD_CLOEXEC) Copied(stop.Pid, stop.Tid, FdArgument(args.A0), (int)stop.ReturnValue);
                return;
            case SyscallNumbers.Close:
                // Whatever it returns (EINTR, EIO), close has released the number.
                Copied(stop.Pid, stop.Tid, -1, FdArgument(args.A0));
                return;
            case SyscallNumbers.CloseRange:
                if (stop.IsError) return;
                if ((args.A2 & CloseRangeUnshare) != 0) Unshared(stop.Pid, stop.Tid);
                if ((args.A2 & CloseRangeCloexec) == 0)
                {
                    var table = TableOf(stop.Pid, stop.Tid);
                    if (table.RemoveRange((uint)args.A0, (uint)args.A1)) UpdateMode(table);
                }

                return;
            case Nr.Unshare:
                if (!stop.IsError && (args.A0 & CloneFiles) != 0) Unshared(stop.Pid, stop.Tid);
                return;
            case Nr.Seccomp or Nr.Prctl:
                // seccomp(SET_MODE_STRICT or SET_MODE_FILTER, ...), prctl(PR_SET_SECCOMP, ...): with TSYNC a filter
                // applies to every thread of the process; the threads that share the table stand in for them.
                if (stop.IsError || (stop.Number == Nr.Seccomp ? args.A0 > 1 : (uint)args.A0 != PR_SET_SECCOMP)) return;
                foreach (var tid in TableOf(stop.Pid, stop.Tid).Tasks) _ownFilter.Add(tid);
                _ownFilter.Add(stop.Tid);
                return;
        }
    }

    /// <summary>Threads share their parent's table; a new process gets a copy, unless clone shared it (CLONE_FILES): kcmp says which.</summary>
    public void OnNewTask(int parentTid, int newTid, int newPid, bool isProcess)
    {
        if (_ownFilter.Contains(parentTid)) _ownFilter.Add(newTid);
        var parent = _tables.TryGetValue(parentTid, out var p) ? p : TableOf(parentTid, parentTid);
        var shared = Kcmp.SameFileTable(parentTid, newTid) ?? !isProcess;
        Leave(newTid);
        if (shared)
        {
            Join(newTid, parent);
            return;
        }

        Join(newTid, CopyOf(parent));
    }

    /// <summary>
    /// execve gives the process a table of its own (unshared from any other process) without its close-on-exec
    /// descriptors: a label is kept when its number still refers to the painted description (nothing else can have
    /// taken the number during execve).
    /// </summary>
    public void OnExec(int pid, int tid)
    {
        var old = _tables.GetValueOrDefault(tid) ?? _tables.GetValueOrDefault(pid);
        var table = old?.Copy() ?? new DescriptorTable(_origins);
        for (var i = table.Count - 1; i >= 0; i--)
        {
            var fd = table.FdAt(i);
            if (!Kcmp.IsSameFile(_self, _references[Array.IndexOf(_origins, table.OriginAt(i))], pid, fd)) table.Set(fd, -1);
        }

        table.EverySyscall = table.HasUntrapped(_origins);
        Leave(tid);
        Leave(pid);
        Join(pid, table);
        if (_ownFilter.Remove(tid)) _ownFilter.Add(pid); // a filter outlives execve
    }

    public void OnThreadExited(int pid, int tid)
    {
        if (_active is { } a && a.Tid == tid) Finish(a, null);
        Leave(tid);
        _ownFilter.Remove(tid);
    }

    /// <summary>Number TO is now a copy of number FROM (-1: closed): painted when FROM is.</summary>
    private void Copied(int pid, int tid, int from, int to)
    {
        var table = TableOf(pid, tid);
        if (table.Set(to, from < 0 ? -1 : table.OriginOf(from))) UpdateMode(table);
    }

    /// <summary>unshare(CLONE_FILES), close_range(CLOSE_RANGE_UNSHARE): the thread now has a copy of the table to itself.</summary>
    private void Unshared(int pid, int tid)
    {
        var table = TableOf(pid, tid);
        if (table.Tasks.Count == 1) return;
        Leave(tid);
        Join(tid, CopyOf(table));
        UpdateMode(table);
    }

    /// <summary>A copy of a table's labels for a task of its own, its mode decided by them.</summary>
    private DescriptorTable CopyOf(DescriptorTable table)
    {
        var copy = table.Copy();
        copy.EverySyscall = copy.HasUntrapped(_origins);
        return copy;
    }

    /// <summary>The table of a task; a task nozoki was not told about (attached threads) gets its process's, or one as the command started.</summary>
    private DescriptorTable TableOf(int pid, int tid)
    {
        if (_tables.TryGetValue(tid, out var table)) return table;
        if (!_tables.TryGetValue(pid, out table)) table = new DescriptorTable(_origins);
        Join(tid, table);
        return table;
    }

    /// <summary>TID uses TABLE from now on, and stops at syscalls as its tasks do.</summary>
    private void Join(int tid, DescriptorTable table)
    {
        table.Tasks.Add(tid);
        _tables[tid] = table;
        _control?.StopAtEverySyscall(tid, table.EverySyscall);
    }

    private void Leave(int tid)
    {
        if (_tables.Remove(tid, out var table)) table.Tasks.Remove(tid);
    }

    /// <summary>
    /// The filter stops writes to the painted numbers only: while the table has a painted descriptor under any other
    /// number, its tasks stop at every syscall, so that writes to it (and its close) are seen.
    /// </summary>
    private void UpdateMode(DescriptorTable table)
    {
        var every = table.HasUntrapped(_origins);
        if (every == table.EverySyscall) return;
        table.EverySyscall = every;
        if (_control is null) return;
        foreach (var tid in table.Tasks) _control.StopAtEverySyscall(tid, every);
    }

    /// <summary>An fd argument (an unsigned int to the kernel) as a number; beyond int.MaxValue: -1 (no painted number).</summary>
    private static int FdArgument(ulong arg) => (uint)arg > int.MaxValue ? -1 : (int)(uint)arg;

    /// <summary>
    /// The painted write in progress has returned (RESULT: what the kernel returned), or its thread is gone (null):
    /// its end, then the next held one's start.
    /// </summary>
    private void Finish(PaintedWrite done, long? result)
    {
        // A carried write that stopped short of its reset, or whose thread died in it, gets the reset from outside.
        if (!done.Carries || result is not { } r || _inWrite.End(done.Tid, done.Write, r)) _sink.End(done.Pid, done.Tid, done.Fd);
        _active = null;
        while (_waiting.TryDequeue(out var next))
        {
            // Started before the release: the thread writes as soon as it runs.
            if (!Start(next.Pid, next.Tid, next.Fd, next.Number, next.Args))
            {
                _control!.Release(next.Tid);
                continue;
            }

            if (_control!.Release(next.Tid)) return;
            if (_active is { Carries: false } gone) _sink.End(gone.Pid, gone.Tid, gone.Fd); // gone meanwhile
            _active = null;
        }
    }
}
