using System.Globalization;
using Nozoki.Procfs;

namespace Nozoki.Inspection;

/// <summary>/proc/PID/ns: each namespace's inode, next to PID 1's.</summary>
internal static class NamespaceReader
{
    public static readonly string[] Types = ["cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"];

    public static List<NamespaceSnapshot> Read(int pid, ProcSource src, ProblemList problems)
    {
        var list = new List<NamespaceSnapshot>();
        var denied = false;
        foreach (var type in Types)
        {
            var link = src.Link($"/proc/{pid}/ns/{type}", out var r);
            var init = DescriptorReader.BracketInode(src.Link($"/proc/1/ns/{type}", out _) ?? "");
            var self = DescriptorReader.BracketInode(src.Link($"/proc/self/ns/{type}", out _) ?? "");
            if (link is null)
            {
                // A kernel without time namespaces has no ns/time: not a problem of this process.
                if (r.IsNotFound && problems.ProcessGone?.Invoke() != true) continue;
                if (r.IsPermissionDenied && !denied)
                {
                    denied = true;
                    problems.Add(InspectSections.Namespaces, "namespaces", r);
                }
                else if (!r.IsPermissionDenied)
                {
                    problems.Add(InspectSections.Namespaces, "namespace " + type, r);
                }

                list.Add(new NamespaceSnapshot(type, 0, init, self, r.IsPermissionDenied ? "permission denied" : r.Message));
                continue;
            }

            list.Add(new NamespaceSnapshot(type, DescriptorReader.BracketInode(link) ?? 0, init, self, null));
        }

        return list;
    }
}

/// <summary>/proc/PID/limits next to PID 1's.</summary>
internal static class LimitsReader
{
    private static readonly Dictionary<string, string> Resources = new(StringComparer.Ordinal)
    {
        ["Max cpu time"] = "RLIMIT_CPU", ["Max file size"] = "RLIMIT_FSIZE", ["Max data size"] = "RLIMIT_DATA",
        ["Max stack size"] = "RLIMIT_STACK", ["Max core file size"] = "RLIMIT_CORE", ["Max resident set"] = "RLIMIT_RSS",
        ["Max processes"] = "RLIMIT_NPROC", ["Max open files"] = "RLIMIT_NOFILE", ["Max locked memory"] = "RLIMIT_MEMLOCK",
        ["Max address space"] = "RLIMIT_AS", ["Max file locks"] = "RLIMIT_LOCKS", ["Max pending signals"] = "RLIMIT_SIGPENDING",
        ["Max msgqueue size"] = "RLIMIT_MSGQUEUE", ["Max nice priority"] = "RLIMIT_NICE", ["Max realtime priority"] = "RLIMIT_RTPRIO",
        ["Max realtime timeout"] = "RLIMIT_RTTIME",
    };

    public static List<ResourceLimit> Read(int pid, ProcSource src, ProblemList problems)
    {
        var text = src.Text($"/proc/{pid}/limits", out var r);
        if (text is null)
        {
            problems.Add(InspectSections.Limits, "limits", r);
            return [];
        }

        var init = Parse(src.Text("/proc/1/limits", out _) ?? "").ToDictionary(l => l.Name, StringComparer.Ordinal);
        return Parse(text).Select(l => init.TryGetValue(l.Name, out var i)
            ? l with { InitSoft = i.Soft, InitHard = i.Hard, DiffersFromInit = l.Soft != i.Soft || l.Hard != i.Hard }
            : l with { DiffersFromInit = true }).ToList();
    }

    /// <summary>"Max open files            1024                 4096                 files     " (fixed columns: name 26 wide).</summary>
    internal static List<ResourceLimit> Parse(string text)
    {
        var list = new List<ResourceLimit>();
        foreach (var raw in text.AsSpan().EnumerateLines())
        {
            var line = raw.ToString();
            if (line.Length < 27 || line.StartsWith("Limit", StringComparison.Ordinal)) continue;
            var name = line[..26].Trim();
            var f = line[26..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (f.Length < 2) continue;
            list.Add(new ResourceLimit(name, Resources.GetValueOrDefault(name, name), Value(f[0]), Value(f[1]), f.Length > 2 ? f[2] : "", null, null, false));
        }

        return list;
    }

    private static ulong? Value(string s) => ulong.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out var v) ? v : null;
}

/// <summary>A summary of /proc/PID/maps: counts, the largest mappings, the shared libraries.</summary>
internal static class MappingsReader
{
    public static MappingsSummary? Read(int pid, int largest, ProblemList problems)
    {
        List<MemoryMapping> maps;
        try
        {
            maps = MemoryMaps.Read(pid);
        }
        catch (UnauthorizedAccessException)
        {
            problems.Add(InspectSections.Mappings, ProblemKind.PermissionDenied, "mappings", "permission denied");
            return null;
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException or IOException)
        {
            problems.Add(InspectSections.Mappings, "mappings", new SysResult(Native.Errno.ENOENT));
            return null;
        }

        ulong total = 0;
        var files = 0;
        foreach (var m in maps)
        {
            total += m.Size;
            if (m.IsFile) files++;
        }

        var top = maps.OrderByDescending(m => m.Size).Take(Math.Max(0, largest))
            .Select(m => new MappingEntry(m.Start, m.End, m.Permissions, m.Path)).ToList();
        var libraries = MemoryMaps.GroupObjects(pid, maps).Select(o => o.Path)
            .Where(p => Path.GetFileName(p).Contains(".so", StringComparison.Ordinal)).Distinct(StringComparer.Ordinal).ToList();
        return new MappingsSummary(maps.Count, total, top, libraries, files, maps.Count - files);
    }
}
