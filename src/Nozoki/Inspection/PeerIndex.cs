using System.Text;
using Nozoki.Native;
using Nozoki.Procfs;

namespace Nozoki.Inspection;

/// <summary>
/// Who else holds an object: one pass over every other process's /proc/PID/fd (as lsof +E and ss -p do), looking for
/// the links wanted (pipe:[N], socket:[N], a FIFO's path). Processes whose descriptors nozoki may not read are counted,
/// not guessed at.
/// </summary>
internal static class PeerIndex
{
    public static Dictionary<string, List<DescriptorHolder>> Find(int targetPid, HashSet<string> wanted, out int unreadable)
    {
        unreadable = 0;
        var found = new Dictionary<string, List<DescriptorHolder>>(StringComparer.Ordinal);
        if (wanted.Count == 0) return found;
        if (!ProcFiles.OpenDirectory("/proc", out var proc).IsOk) return found;
        try
        {
            var pids = new List<int>();
            ProcFiles.ListNumbers(proc, new byte[32 << 10], pids);
            var self = Environment.ProcessId;
            pids.RemoveAll(p => p == targetPid || p == self);
            // A few syscalls per process and one per descriptor of the machine: one thread per CPU (at most four)
            // when there are many processes, each with buffers of its own; the parts are merged in /proc's order.
            var parts = pids.Count < 64 ? 1 : Math.Clamp(Environment.ProcessorCount, 1, 4);
            var results = new (List<(string Link, DescriptorHolder Holder)> Found, int Unreadable)[parts];
            var threads = new List<Thread>();
            for (var p = 1; p < parts; p++)
            {
                var part = p;
                var t = new Thread(() => results[part] = Scan(proc, pids, part, parts, wanted)) { IsBackground = true, Name = "inspect peers" };
                t.Start();
                threads.Add(t);
            }

            results[0] = Scan(proc, pids, 0, parts, wanted);
            foreach (var t in threads) t.Join();
            foreach (var (list, denied) in results)
            {
                unreadable += denied;
                foreach (var (link, holder) in list)
                {
                    if (!found.TryGetValue(link, out var holders)) found[link] = holders = [];
                    holders.Add(holder);
                }
            }
        }
        finally
        {
            ProcFiles.Close(proc);
        }

        return found;
    }

    private static (List<(string, DescriptorHolder)> Found, int Unreadable) Scan(int proc, List<int> pids, int part, int parts, HashSet<string> wanted)
    {
        var found = new List<(string, DescriptorHolder)>();
        var unreadable = 0;
        var fds = new List<int>();
        var dirents = new byte[32 << 10];
        var names = new ThreadNames();
        var lookup = wanted.GetAlternateLookup<ReadOnlySpan<char>>();
        var bytes = new byte[4096];
        var text = new char[4096];
        for (var i = pids.Count * part / parts; i < pids.Count * (part + 1) / parts; i++)
        {
            var pid = pids[i];
            var r = ProcFiles.OpenDirectoryAt(proc, $"{pid}/fd", out var dir);
            if (!r.IsOk)
            {
                if (r.IsPermissionDenied) unreadable++;
                continue;
            }

            try
            {
                fds.Clear();
                ProcFiles.ListNumbers(dir, dirents, fds);
                foreach (var fd in fds)
                {
                    // Compared without making a string: most links of the machine are not wanted.
                    if (!ProcFiles.ReadLinkAt(dir, fd, bytes, out var n).IsOk) continue;
                    var chars = text.AsSpan(0, Encoding.UTF8.GetChars(bytes.AsSpan(0, n), text));
                    if (!lookup.TryGetValue(chars, out var link)) continue;
                    FdTable.Flags(pid, fd, out var flags);
                    found.Add((link, new DescriptorHolder(pid, names.Get(pid, pid), fd, AccessOf(flags))));
                }
            }
            finally
            {
                ProcFiles.Close(dir);
            }
        }

        return (found, unreadable);
    }

    /// <summary>"r", "w" or "rw" from open flags; "?" when unknown (negative).</summary>
    internal static string AccessOf(int flags) => flags < 0 ? "?" : (flags & 3) switch { 0 => "r", 1 => "w", _ => "rw" };
}
