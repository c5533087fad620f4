namespace Nozoki.Mirror;

/// <summary>
/// Which of a process's descriptors refer to the same file as the watched ones. Programs do not always write to
/// fd 1 itself: the .NET runtime writes to a dup of it, shells save it with `exec 3>&1`. Two descriptors are the same
/// stream when /proc/PID/fd/N links to the same target (pipe:[ino], socket:[ino], /dev/pts/3, a path).
/// A descriptor number can only change what it refers to by being closed first (close, close_range, dup2/dup3 onto
/// it, exec with close-on-exec), so the cache is invalidated exactly then and never read from /proc per write.
/// </summary>
internal sealed class FdTargets(int pid, int[] watched)
{
    private const sbyte Unknown = 0, NotWatched = -1;
    private readonly sbyte[] _low = new sbyte[1024];     // 1 + index into watched, NotWatched, or Unknown
    private readonly Dictionary<int, sbyte> _high = [];
    private readonly string?[] _watchedTargets = new string?[watched.Length];
    private bool _targetsRead;

    /// <summary>The watched fd (1, 2 or a --fd) that fd writes to, or -1.</summary>
    public int Classify(int fd)
    {
        if (fd < 0) return -1;
        var known = fd < _low.Length ? _low[fd] : _high.GetValueOrDefault(fd);
        if (known == Unknown)
        {
            known = Lookup(fd);
            if (fd < _low.Length) _low[fd] = known;
            else _high[fd] = known;
        }

        return known > 0 ? watched[known - 1] : -1;
    }

    private sbyte Lookup(int fd)
    {
        // The watched numbers themselves always count, even if /proc cannot be read.
        var direct = Array.IndexOf(watched, fd);
        if (direct >= 0) return (sbyte)(direct + 1);
        if (!_targetsRead)
        {
            for (var i = 0; i < watched.Length; i++) _watchedTargets[i] = ReadTarget(watched[i]);
            _targetsRead = true;
        }

        var target = ReadTarget(fd);
        if (target is null) return NotWatched;
        for (var i = 0; i < watched.Length; i++)
        {
            if (_watchedTargets[i] == target) return (sbyte)(i + 1);
        }

        return NotWatched;
    }

    private string? ReadTarget(int fd) => Procfs.FdPaths.Read(pid, fd);

    /// <summary>fd was closed or replaced.</summary>
    public void Invalidate(int fd)
    {
        if (fd < 0) return;
        if (Array.IndexOf(watched, fd) >= 0)
        {
            InvalidateAll();
            return;
        }

        if (fd < _low.Length) _low[fd] = Unknown;
        else _high.Remove(fd);
    }

    public void InvalidateAll()
    {
        Array.Clear(_low);
        _high.Clear();
        _targetsRead = false;
    }
}
