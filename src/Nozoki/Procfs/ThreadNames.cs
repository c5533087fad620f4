namespace Nozoki.Procfs;

/// <summary>
/// Threads' names (/proc/PID/task/TID/comm), read once per thread and kept: a hit reader names every hit's thread,
/// and /proc is read only when a thread is new (<see cref="Refresh"/>) or gone from the cache. Not thread-safe:
/// callers hold their own lock.
/// </summary>
internal sealed class ThreadNames
{
    private readonly Dictionary<int, string> _names = [];

    /// <summary>The thread's name, "?" when it cannot be read (the thread is gone).</summary>
    public string Get(int pid, int tid)
    {
        if (_names.TryGetValue(tid, out var name)) return name;
        try
        {
            name = File.ReadAllText($"/proc/{pid}/task/{tid}/comm").TrimEnd('\n');
        }
        catch (IOException)
        {
            name = "?";
        }

        return _names[tid] = name;
    }

    /// <summary>Reads the name again (a new thread, or a reused thread id).</summary>
    public void Refresh(int pid, int tid)
    {
        _names.Remove(tid);
        Get(pid, tid);
    }

    /// <summary>A program was replaced (execve): every name may have changed.</summary>
    public void Clear() => _names.Clear();
}
