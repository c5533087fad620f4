using System.Globalization;

namespace Nozoki.Inspection;

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
