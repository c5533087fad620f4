using System.Collections.Concurrent;

namespace Nozoki.Tracing;

/// <summary>
/// ITraceControl.Hold requests: asked from any thread, carried out by the ptrace thread (woken for them when asked
/// from elsewhere), in the order asked.
/// </summary>
internal sealed class HoldRequests
{
    private readonly ConcurrentQueue<(int Pid, bool Hold)> _queue = new();

    /// <summary>The processes held now (ptrace thread only).</summary>
    public HashSet<int> Held { get; } = [];

    public bool IsEmpty => _queue.IsEmpty;

    public void Add(int pid, bool hold) => _queue.Enqueue((pid, hold));

    /// <summary>The next request that changes something (a second hold of a held process does not); ptrace thread only.</summary>
    public bool TryTake(out int pid, out bool hold)
    {
        while (_queue.TryDequeue(out var r))
        {
            if (r.Hold ? Held.Add(r.Pid) : Held.Remove(r.Pid))
            {
                (pid, hold) = r;
                return true;
            }
        }

        (pid, hold) = (0, false);
        return false;
    }
}
