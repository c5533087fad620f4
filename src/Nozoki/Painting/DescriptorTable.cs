namespace Nozoki.Painting;

/// <summary>
/// One file descriptor table as nozoki models it: which of its descriptor numbers are copies (by dup, dup2, dup3,
/// fcntl F_DUPFD, inheritance) of a painted descriptor, and of which one (its origin: 2, or a --fd number). Shared by
/// the tasks that share the kernel's table (threads, clone with CLONE_FILES); fork gives the child a copy; execve a
/// private copy without the close-on-exec descriptors. A handful of numbers at most, so plain arrays: a lookup
/// allocates nothing.
/// </summary>
internal sealed class DescriptorTable
{
    private int[] _fds;
    private int[] _origins;

    public DescriptorTable(ReadOnlySpan<int> origins)
    {
        _fds = new int[Math.Max(4, origins.Length)];
        _origins = new int[_fds.Length];
        foreach (var o in origins) Set(o, o);
    }

    private DescriptorTable(DescriptorTable from)
    {
        _fds = (int[])from._fds.Clone();
        _origins = (int[])from._origins.Clone();
        Count = from.Count;
    }

    /// <summary>How many numbers are labelled.</summary>
    public int Count { get; private set; }

    /// <summary>The tasks (thread ids) that share this table.</summary>
    public List<int> Tasks { get; } = new(1);

    /// <summary>Whether its tasks are resumed with a stop at every syscall (some labelled number is one the filter does not trap).</summary>
    public bool EverySyscall { get; set; }

    public int FdAt(int index) => _fds[index];

    public int OriginAt(int index) => _origins[index];

    /// <summary>The origin fd number whose copy fd is, or -1 when fd is not one.</summary>
    public int OriginOf(int fd)
    {
        for (var i = 0; i < Count; i++)
        {
            if (_fds[i] == fd) return _origins[i];
        }

        return -1;
    }

    /// <summary>Labels fd as a copy of origin, or (origin -1) takes its label away. True when that changed anything.</summary>
    public bool Set(int fd, int origin)
    {
        for (var i = 0; i < Count; i++)
        {
            if (_fds[i] != fd) continue;
            if (origin >= 0)
            {
                if (_origins[i] == origin) return false;
                _origins[i] = origin;
                return true;
            }

            Count--;
            _fds[i] = _fds[Count];
            _origins[i] = _origins[Count];
            return true;
        }

        if (origin < 0) return false;
        if (Count == _fds.Length)
        {
            Array.Resize(ref _fds, Count * 2);
            Array.Resize(ref _origins, Count * 2);
        }

        _fds[Count] = fd;
        _origins[Count] = origin;
        Count++;
        return true;
    }

    /// <summary>Takes the labels of every number from first to last (inclusive) away (close_range). True when that changed anything.</summary>
    public bool RemoveRange(uint first, uint last)
    {
        var changed = false;
        for (var i = Count - 1; i >= 0; i--)
        {
            if ((uint)_fds[i] < first || (uint)_fds[i] > last) continue;
            Set(_fds[i], -1);
            changed = true;
        }

        return changed;
    }

    /// <summary>Whether some labelled number is not among <paramref name="trapped"/> (the numbers whose writes the filter stops).</summary>
    public bool HasUntrapped(ReadOnlySpan<int> trapped)
    {
        for (var i = 0; i < Count; i++)
        {
            if (!trapped.Contains(_fds[i])) return true;
        }

        return false;
    }

    /// <summary>A copy of the labels, with no tasks (fork, unshare, exec).</summary>
    public DescriptorTable Copy() => new(this);
}
