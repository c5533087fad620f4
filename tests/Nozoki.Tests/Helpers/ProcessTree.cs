using System.Globalization;

namespace Nozoki.Tests.Helpers;

/// <summary>The descendants of a process, found by scanning /proc (PPid links).</summary>
internal static class ProcessTree
{
    /// <summary>All live descendants of <paramref name="pid"/> (children, grandchildren, ...) with their status.</summary>
    public static List<(int Pid, ProcStatus Status)> Descendants(int pid)
    {
        var all = new List<(int Pid, ProcStatus Status)>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out var p)) continue;
            if (ProcStatus.Read(p) is { } st) all.Add((p, st));
        }

        var result = new List<(int Pid, ProcStatus Status)>();
        var parents = new HashSet<int> { pid };
        bool added;
        do
        {
            added = false;
            foreach (var entry in all)
            {
                if (parents.Contains(entry.Status.PPid) && parents.Add(entry.Pid))
                {
                    result.Add(entry);
                    added = true;
                }
            }
        }
        while (added);

        return result;
    }

    /// <summary>A descendant of <paramref name="pid"/> named <paramref name="name"/> (the comm), if any.</summary>
    public static (int Pid, ProcStatus Status)? FindDescendant(int pid, string name)
    {
        foreach (var d in Descendants(pid))
            if (d.Status.Name == name && d.Status.State != 'Z') return d;
        return null;
    }

    /// <summary>Waits until a descendant named <paramref name="name"/> exists; returns its PID.</summary>
    public static int WaitForDescendant(int pid, string name, TimeSpan timeout)
    {
        (int Pid, ProcStatus Status)? found = null;
        Poll.Until(() => (found = FindDescendant(pid, name)) is not null, timeout,
            () => $"a descendant of PID {pid} named '{name}' (descendants: {Describe(pid)})", intervalMs: 20);
        return found!.Value.Pid;
    }

    public static string Describe(int pid)
    {
        var d = Descendants(pid);
        return d.Count == 0 ? "none" : string.Join(", ", d.Select(e => $"{e.Pid} {e.Status.Name} ({e.Status.State}, ppid {e.Status.PPid}, tracer {e.Status.TracerPid})"));
    }
}
