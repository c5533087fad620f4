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
        var pids = new List<int>();
        var fds = new List<int>();
        var dirents = new byte[32 << 10];
        var names = new ThreadNames();
        var lookup = wanted.GetAlternateLookup<ReadOnlySpan<char>>();
        var bytes = new byte[4096];
        var text = new char[4096];
        var self = Environment.ProcessId;
        try
        {
            ProcFiles.ListNumbers(proc, dirents, pids);
            foreach (var pid in pids)
            {
                if (pid == targetPid || pid == self) continue;
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
                        if (!found.TryGetValue(link, out var list)) found[link] = list = [];
                        list.Add(new DescriptorHolder(pid, names.Get(pid, pid), fd, AccessOf(flags)));
                    }
                }
                finally
                {
                    ProcFiles.Close(dir);
                }
            }
        }
        finally
        {
            ProcFiles.Close(proc);
        }

        return found;
    }

    /// <summary>"r", "w" or "rw" from open flags; "?" when unknown (negative).</summary>
    internal static string AccessOf(int flags) => flags < 0 ? "?" : (flags & 3) switch { 0 => "r", 1 => "w", _ => "rw" };
}
