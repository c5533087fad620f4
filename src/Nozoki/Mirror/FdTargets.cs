using Nozoki.Native;

namespace Nozoki.Mirror;

/// <summary>
/// Which watched stream, if any, one process writes to through a descriptor. A watched stream (fd 1, 2 or a --fd) is
/// the open file description its number referred to when nozoki attached; a descriptor writes to it when it refers
/// (now) to that same description, whatever its number: the .NET runtime writes to a dup of fd 1, and a shell's
/// `echo x >&2` is a write to fd 1 after dup2(2, 1), which is stderr, not stdout.
/// <para>
/// A stream is kept as a representative descriptor of the process that refers to its description (at first its own
/// number) and compared with kcmp(KCMP_FILE), exact even for two opens of the same terminal. Before a close, dup2,
/// dup3, close_range or exec takes the representative away, another descriptor of the same description is found
/// (/proc/PID/fd and kcmp); when none is left, the process no longer has the stream. nozoki holds no copy of the
/// description: a pipe the process closes reaches EOF at its reader as it would without nozoki. A forked child
/// starts with a copy of its parent's table, so it inherits the parent's representatives.
/// </para>
/// <para>
/// Where kcmp is refused (a kernel without CONFIG_KCMP, a seccomp profile), a description is recognised by its
/// /proc/PID/fd link and fdinfo flags as they were at attach: two opens of one file or terminal look the same.
/// </para>
/// <para>
/// Streams that are one description at attach (fd 1 and fd 2 dups of one terminal, the usual interactive case)
/// cannot be told apart by description: the number decides (a write to fd 2 is stderr), and any other descriptor
/// of that description counts as the lowest watched number (stdout). A watched number that was not open at attach
/// counts by its number.
/// </para>
/// <para>
/// nozoki may attach while a shell runs a command redirected (dash and bash point their own fd 1 at the target
/// while the command runs, and keep the stream in a close-on-exec descriptor of 10 or more): when such a saved
/// descriptor is put back onto a watched number, that number's stream becomes what it refers to then.
/// </para>
/// The answer for each number is cached and forgotten exactly when the number may change what it refers to (it
/// is closed or replaced: close, close_range, dup2/dup3 onto it, exec); a number that is created (dup, F_DUPFD,
/// open) was closed before, so its answer was already forgotten. No /proc read per write.
/// </summary>
internal sealed class FdTargets
{
    private const sbyte Unknown = 0, NotWatched = -1;
    private readonly int _pid;
    private readonly int[] _watched;
    private readonly bool _exact;

    // Per stream: the stream whose number decides for its group of one description (the lowest watched number).
    private readonly int[] _leader;

    // Per stream, exact mode: a descriptor of this process that refers to its description, or -1 (none left).
    private readonly int[] _rep;

    // Per stream, exact mode: the thread whose close/dup2/dup3/close_range takes away the last descriptor of the
    // description, if it succeeds (known at its exit); 0 when none.
    private readonly int[] _losingTo;

    // Per stream, without kcmp: the description's /proc link and fdinfo flags (without O_CLOEXEC) at attach.
    private readonly string?[] _link;
    private readonly int[] _flags;

    // Per stream: nothing to recognise it by (not open at attach, or /proc unreadable): its number decides.
    private readonly bool[] _byNumber;

    // Shells save a stream in a descriptor of 10 or more, close-on-exec, while a command runs redirected
    // (dash: `cmd >/dev/null` is fcntl(1, F_DUPFD, 10), dup2(null, 1), run, dup2(10, 1), close(10)). Bit k: fd
    // FirstShellSave + k was open at attach and has not been closed since, so it may hold what the stream was before.
    private const int FirstShellSave = 10;
    private ulong _savedBeforeAttach;

    private readonly sbyte[] _low = new sbyte[1024];     // 1 + index into watched, NotWatched, or Unknown
    private readonly Dictionary<int, sbyte> _high = [];
    private byte[]? _dirents;
    private int[] _open = [];

    private FdTargets(int pid, int[] watched, bool exact)
    {
        _pid = pid;
        _watched = watched;
        _exact = exact;
        _leader = new int[watched.Length];
        _rep = new int[watched.Length];
        _losingTo = new int[watched.Length];
        _link = new string?[watched.Length];
        _flags = new int[watched.Length];
        _byNumber = new bool[watched.Length];
    }

    /// <summary>The streams as pid's descriptors refer to them now (at attach).</summary>
    public static FdTargets Attach(int pid, int[] watched, bool useKcmp = true)
    {
        var t = new FdTargets(pid, watched, useKcmp && KcmpWorks(pid, watched));
        for (var i = 0; i < watched.Length; i++) t.Anchor(i);
        t.Regroup();
        // Descriptors a shell may have saved a stream in before redirecting it (see Duplicated).
        t._open = new int[64];
        FdTable.List(pid, t._dirents = new byte[4096], ref t._open, out var n);
        for (var k = 0; k < n; k++)
        {
            if (t._open[k] is >= FirstShellSave and < FirstShellSave + 64) t._savedBeforeAttach |= 1UL << (t._open[k] - FirstShellSave);
        }

        return t;
    }

    /// <summary>Stream i is the description its number refers to now.</summary>
    private void Anchor(int i)
    {
        var fd = _watched[i];
        if (_exact)
        {
            var open = Kcmp.IsSameFile(_pid, fd, _pid, fd);
            _rep[i] = open ? fd : -1;
            _byNumber[i] = !open;
        }
        else
        {
            _link[i] = Procfs.FdPaths.Read(_pid, fd);
            var known = FdTable.Flags(_pid, fd, out var flags).IsOk;
            _flags[i] = flags & ~FdTable.FdinfoCloexec;
            _byNumber[i] = _link[i] is null || !known;
        }
    }

    /// <summary>Groups of one description: each stream's leader is the lowest watched number among its equals.</summary>
    private void Regroup()
    {
        for (var i = 0; i < _watched.Length; i++)
        {
            _leader[i] = i;
            if (!Known(i)) continue;
            for (var j = 0; j < _watched.Length; j++)
            {
                if (j == i || !Known(j) || _watched[j] >= _watched[_leader[i]]) continue;
                if (SameDescription(i, j)) _leader[i] = j;
            }
        }
    }

    /// <summary>Stream i has a description to recognise it by in this process.</summary>
    private bool Known(int i) => _exact ? _rep[i] >= 0 : !_byNumber[i];

    /// <summary>kcmp is usable on this process (false: fall back to /proc links). Decided on an open watched fd.</summary>
    private static bool KcmpWorks(int pid, int[] watched)
    {
        foreach (var fd in watched)
        {
            var r = Kcmp.SameFile(pid, fd, pid, fd, out var same);
            if (r.IsOk && same) return true;
            if (r.Errno != Errno.EBADF) return false;
        }

        return true; // nothing open to compare: every stream counts by its number either way
    }

    private bool SameDescription(int i, int j) => _exact
        ? Kcmp.IsSameFile(_pid, _rep[i], _pid, _rep[j])
        : _link[i] == _link[j] && _flags[i] == _flags[j];

    /// <summary>The child of a fork: its table is a copy of this one's, so are the streams (and what is known of them).</summary>
    public FdTargets Fork(int childPid)
    {
        var c = new FdTargets(childPid, _watched, _exact);
        Array.Copy(_leader, c._leader, _leader.Length);
        Array.Copy(_rep, c._rep, _rep.Length);
        Array.Copy(_link, c._link, _link.Length);
        Array.Copy(_flags, c._flags, _flags.Length);
        Array.Copy(_byNumber, c._byNumber, _byNumber.Length);
        c._savedBeforeAttach = _savedBeforeAttach;
        Array.Copy(_low, c._low, _low.Length);
        foreach (var (fd, known) in _high) c._high[fd] = known;
        return c;
    }

    /// <summary>The watched fd (1, 2 or a --fd) whose stream fd writes to, or -1.</summary>
    public int Classify(int fd)
    {
        if (fd < 0) return -1;
        var known = fd < _low.Length ? _low[fd] : _high.GetValueOrDefault(fd);
        if (known == Unknown)
        {
            known = Lookup(fd);
            if (known == Unknown) return -1; // fd is not open (closed by another thread meanwhile): nothing to keep
            if (fd < _low.Length) _low[fd] = known;
            else _high[fd] = known;
        }

        return known > 0 ? _watched[known - 1] : -1;
    }

    private sbyte Lookup(int fd)
    {
        var group = -1;
        if (_exact)
        {
            for (var i = 0; i < _watched.Length && group < 0; i++)
            {
                if (_rep[i] < 0) continue;
                var r = Kcmp.SameFile(_pid, _rep[i], _pid, fd, out var same);
                if (r.IsOk && same) group = _leader[i];
                else if (r.Errno == Errno.EBADF && Kcmp.SameFile(_pid, fd, _pid, fd, out _).Errno == Errno.EBADF) return Unknown;
            }
        }
        else
        {
            var link = Procfs.FdPaths.Read(_pid, fd);
            if (link is null) return Unknown;
            FdTable.Flags(_pid, fd, out var flags);
            flags &= ~FdTable.FdinfoCloexec;
            for (var i = 0; i < _watched.Length && group < 0; i++)
            {
                if (!_byNumber[i] && _link[i] == link && _flags[i] == flags) group = _leader[i];
            }
        }

        for (var i = 0; i < _watched.Length; i++)
        {
            if (_watched[i] != fd) continue;
            // The number decides between streams of one description, and for a stream with nothing else to go by.
            if (group >= 0 ? _leader[i] == group : _byNumber[i]) return (sbyte)(i + 1);
        }

        return group >= 0 ? (sbyte)(group + 1) : NotWatched;
    }

    /// <summary>
    /// Syscall entry of thread tid: descriptors first..last are about to be closed or replaced (close, dup2/dup3
    /// onto last, close_range). A stream kept by one of them moves to another descriptor of its description first.
    /// </summary>
    public void Closing(int tid, int first, int last)
    {
        if (!_exact) return;
        for (var i = 0; i < _watched.Length; i++)
        {
            var rep = _rep[i];
            if (rep < first || rep > last) continue;
            var other = FindOther(rep, first, last, keptAcrossExec: false);
            if (other >= 0) _rep[i] = other;
            else _losingTo[i] = tid;
        }
    }

    /// <summary>
    /// Syscall exit of the close/dup2/dup3/close_range that <see cref="Closing"/> saw: a stream whose last
    /// descriptor it took is gone from the process, unless the call failed without closing (close always closes).
    /// Forgets the answers for first..last.
    /// </summary>
    public void Closed(int tid, int first, int last, bool closedNothing)
    {
        for (var i = 0; i < _losingTo.Length; i++)
        {
            if (_losingTo[i] != tid) continue;
            _losingTo[i] = 0;
            if (!closedNothing) _rep[i] = -1;
        }

        for (var fd = Math.Max(first, FirstShellSave); fd <= last && fd < FirstShellSave + 64; fd++)
            _savedBeforeAttach &= ~(1UL << (fd - FirstShellSave));
        if (last - first > 64)
        {
            InvalidateAll();
            return;
        }

        for (var fd = first; fd <= last && fd >= 0; fd++) Invalidate(fd);
    }

    /// <summary>
    /// Exit of a successful dup2/dup3(from, to). When `to` is a watched number and `from` a close-on-exec descriptor
    /// of 10 or more that was open at attach, a shell is putting back a stream it had redirected before nozoki
    /// attached: the stream is what `to` refers to now, not what it referred to at attach (/dev/null, a file).
    /// </summary>
    public void Duplicated(int from, int to)
    {
        if (from < FirstShellSave || from >= FirstShellSave + 64 || (_savedBeforeAttach & (1UL << (from - FirstShellSave))) == 0) return;
        if (Array.IndexOf(_watched, to) < 0) return;
        if (!FdTable.Flags(_pid, from, out var f).IsOk || (f & FdTable.FdinfoCloexec) == 0) return;
        for (var i = 0; i < _watched.Length; i++)
        {
            if (_watched[i] == to) Anchor(i);
        }

        Regroup();
        InvalidateAll();
    }

    /// <summary>Entry of execve/execveat: a stream kept by a close-on-exec descriptor moves to one that survives.</summary>
    public void Execing()
    {
        if (!_exact) return;
        for (var i = 0; i < _watched.Length; i++)
        {
            if (_rep[i] < 0 || !FdTable.Flags(_pid, _rep[i], out var f).IsOk || (f & FdTable.FdinfoCloexec) == 0) continue;
            var other = FindOther(_rep[i], -1, -1, keptAcrossExec: true);
            if (other >= 0) _rep[i] = other;
        }
    }

    /// <summary>The process replaced its program: close-on-exec descriptors are gone.</summary>
    public void Execed()
    {
        InvalidateAll();
        _savedBeforeAttach = 0; // a new program, not a shell in the middle of a redirection
        if (!_exact) return;
        for (var i = 0; i < _watched.Length; i++)
        {
            _losingTo[i] = 0;
            if (_rep[i] >= 0 && !Kcmp.IsSameFile(_pid, _rep[i], _pid, _rep[i])) _rep[i] = -1;
        }
    }

    /// <summary>Another descriptor of the process, outside first..last, that refers to the same description as fd; -1 if none.</summary>
    private int FindOther(int fd, int first, int last, bool keptAcrossExec)
    {
        if (_dirents is null)
        {
            _dirents = new byte[4096];
            _open = new int[64];
        }

        FdTable.List(_pid, _dirents, ref _open, out var n);
        for (var k = 0; k < n; k++)
        {
            var other = _open[k];
            if (other == fd || (other >= first && other <= last)) continue;
            if (!Kcmp.IsSameFile(_pid, fd, _pid, other)) continue;
            if (keptAcrossExec && (!FdTable.Flags(_pid, other, out var f).IsOk || (f & FdTable.FdinfoCloexec) != 0)) continue;
            return other;
        }

        return -1;
    }

    private void Invalidate(int fd)
    {
        if (fd < _low.Length) _low[fd] = Unknown;
        else _high.Remove(fd);
    }

    private void InvalidateAll()
    {
        Array.Clear(_low);
        _high.Clear();
    }
}
