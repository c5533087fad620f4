using System.Globalization;
using System.Text;
using Nozoki.Inspection;

namespace Nozoki.Cli.Output;

internal enum LineStyle
{
    Plain,
    Header,
    Warning,
}

/// <summary>One line of the human view; Key names what the line is about (a thread, a descriptor), for --watch's diff.</summary>
internal readonly record struct ViewLine(string Key, string Text, LineStyle Style);

/// <summary>
/// The human view of a snapshot: a block of "label value" lines about the process, then one table per section whose
/// rows start with what they are about (a thread id, a descriptor number, as ps -L and ls -l /proc/PID/fd do), so
/// that grep and awk work on them.
/// </summary>
internal static class InspectText
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static List<ViewLine> Render(ProcessSnapshot s)
    {
        var lines = new List<ViewLine>();
        var k = $"{s.Pid}:";
        Identity(s, lines, k);
        var asked = s.Sections;
        if ((asked & InspectSections.Threads) != 0) Threads(s, lines, k);
        if ((asked & InspectSections.Descriptors) != 0) Descriptors(s, lines, k);
        if ((asked & InspectSections.Namespaces) != 0) Namespaces(s, lines, k);
        if ((asked & InspectSections.Cgroup) != 0) Cgroups(s, lines, k);
        if ((asked & InspectSections.Limits) != 0) Limits(s, lines, k);
        if ((asked & InspectSections.Mappings) != 0) Mappings(s, lines, k);
        if ((asked & InspectSections.Environment) != 0) Environment(s, lines, k);
        if (s.Problems.Count > 0)
        {
            lines.Add(new(k + "h:problems", "", LineStyle.Plain));
            lines.Add(new(k + "h:problems", "NOT READ", LineStyle.Header));
            var i = 0;
            foreach (var p in s.Problems) lines.Add(new($"{k}p:{i++}", $"  {p.What}: {p.Message}", LineStyle.Warning));
        }

        return lines;
    }

    private static void Identity(ProcessSnapshot s, List<ViewLine> lines, string k)
    {
        var id = s.Identity;
        var head = new StringBuilder($"PID {s.Pid} ({id.Name}) {id.State} {id.StateName}");
        if (id.IsKernelThread) head.Append(", kernel thread");
        head.Append(", ").Append(Plural(id.ThreadCount, "thread"));
        if (id.Uids is { } u) head.Append(", user ").Append(u.RealName ?? "?").Append(" (").Append(u.Real.ToString(Inv)).Append(')');
        if (id.Gids is { } g) head.Append(", group ").Append(g.RealName ?? "?").Append(" (").Append(g.Real.ToString(Inv)).Append(')');
        lines.Add(new(k + "id", head.ToString(), LineStyle.Header));
        if ((s.Sections & InspectSections.Identity) == 0) return;

        void Row(string label, string? value)
        {
            if (value is not null) lines.Add(new($"{k}id:{label}", $"  {label,-9} {value}", LineStyle.Plain));
        }

        Row("command", id.CommandLine is null ? "?" : id.CommandLine.Count == 0 ? "-" : string.Join(' ', id.CommandLine.Select(Quote)));
        Row("exe", id.Executable is null ? id.IsKernelThread ? "-" : "?" : id.Executable + (id.ExecutableDeleted ? " (deleted)" : ""));
        Row("parents", id.Ancestors.Count == 0 ? "-" : string.Join(" < ", id.Ancestors.Select(a => $"{a.Pid} ({a.Name})")));
        Row("cwd", id.Cwd ?? "?");
        Row("root", id.Root ?? "?");
        if (id.Uids is { } uids && (uids.Effective != uids.Real || uids.Saved != uids.Real))
            Row("uids", $"real {uids.Real}, effective {uids.Effective} ({uids.EffectiveName ?? "?"}), saved {uids.Saved}, fs {uids.Filesystem}");
        if (id.SupplementaryGroups.Count > 0) Row("groups", string.Join(' ', id.SupplementaryGroups));
        if (id.StartTime is { } start)
            Row("started", $"{start.ToLocalTime():yyyy-MM-dd HH:mm:ss}, {Age(s.Taken - start)} ago");
        Row("cpu", $"user {Secs(id.CpuUser)}, system {Secs(id.CpuSystem)}");
        if (!id.IsKernelThread)
            Row("memory", $"rss {Size(id.Rss)}, pss {Size(id.Pss)}, swap {Size(id.Swap)}, virtual {Size(id.VirtualSize)}");
        Row("sched", $"nice {id.Nice}, {id.Policy}" + (id.RealtimePriority != 0 ? $" priority {id.RealtimePriority}" : "") + $", cpus {id.CpuAffinity ?? "?"}");
        Row("security", $"seccomp {Seccomp(id.Seccomp, id.SeccompFilters)}, no_new_privs {(id.NoNewPrivs is { } n ? n ? "on" : "off" : "?")}");
        if (id.Capabilities is { } c)
        {
            var text = $"effective {Caps(c.Effective, c)}; permitted {(c.Permitted == c.Effective ? "the same" : Caps(c.Permitted, c))}; bounding {(c.Bounding == c.Permitted ? "the same" : Caps(c.Bounding, c))}";
            if (c.Inheritable != 0) text += $"; inheritable {Caps(c.Inheritable, c)}";
            if (c.Ambient != 0) text += $"; ambient {Caps(c.Ambient, c)}";
            Row("caps", text);
        }

        if (id.NamespacePids.Count > 1) Row("nspid", string.Join(' ', id.NamespacePids) + $" (PID {id.NamespacePids[^1]} in its own pid namespace)");
        Row("tty", id.Terminal);
        if (id.TracerPid != 0) Row("tracer", id.TracerPid.ToString(Inv));
    }

    private static void Threads(ProcessSnapshot s, List<ViewLine> lines, string k)
    {
        Section(lines, k, "THREADS", s.Threads.Count);
        var rows = new List<(string Key, string[] Cells)> { (k + "th", ["TID", "NAME", "STATE", "CPU", "USER", "SYS", "DOING"]) };
        foreach (var t in s.Threads)
        {
            var doing = t.Activity switch
            {
                ThreadActivity.Syscall => t.Call ?? t.SyscallName ?? "?",
                ThreadActivity.Running => "running",
                ThreadActivity.NotInSyscall => "not in a system call" + (t.Wchan is { } w ? ", waiting in " + w : ""),
                _ => "? (" + (t.Problem ?? "unknown") + ")",
            };
            rows.Add(($"{k}t:{t.Tid}", [t.Tid.ToString(Inv), t.Name, t.State.ToString(), t.Cpu.ToString(Inv), Secs(t.CpuUser), Secs(t.CpuSystem), doing]));
        }

        Table(lines, rows);
    }

    private static void Descriptors(ProcessSnapshot s, List<ViewLine> lines, string k)
    {
        Section(lines, k, "DESCRIPTORS", s.Descriptors.Count);
        var rows = new List<(string Key, string[] Cells)> { (k + "fh", ["FD", "MODE", "FLAGS", "POS", "TYPE", "WHAT"]) };
        foreach (var d in s.Descriptors)
        {
            rows.Add(($"{k}fd:{d.Fd}", [d.Fd.ToString(Inv), d.Access.Length == 0 ? "?" : d.Access, Flags(d), d.Position?.ToString(Inv) ?? "?", d.TypeName, d.Description]));
        }

        Table(lines, rows);
        if (s.DescriptorsClosedMeanwhile > 0)
            lines.Add(new(k + "fd:closed", $"  ({Plural(s.DescriptorsClosedMeanwhile, "descriptor")} closed while being read, not shown)", LineStyle.Plain));
    }

    private static void Namespaces(ProcessSnapshot s, List<ViewLine> lines, string k)
    {
        Section(lines, k, "NAMESPACES", null);
        var rows = new List<(string Key, string[] Cells)> { (k + "nh", ["TYPE", "INODE", "AS PID 1", "AS NOZOKI"]) };
        foreach (var n in s.Namespaces)
        {
            string Same(bool? same, ulong? other) => n.Problem is { } p ? "? (" + p + ")" : same switch
            {
                true => "same",
                false => $"different ({other})",
                _ => "? (not readable)",
            };
            rows.Add(($"{k}ns:{n.Type}", [n.Type, n.Problem is null ? n.Inode.ToString(Inv) : "?", Same(n.SameAsInit, n.InitInode), Same(n.SameAsNozoki, n.NozokiInode)]));
        }

        Table(lines, rows);
        if (s.NamespacePids.Count > 1)
            lines.Add(new(k + "ns:nspid", $"  pid {string.Join(' ', s.NamespacePids)}: PID {s.NamespacePids[^1]} inside its pid namespace", LineStyle.Plain));
    }

    private static void Cgroups(ProcessSnapshot s, List<ViewLine> lines, string k)
    {
        Section(lines, k, "CGROUP", null);
        var i = 0;
        foreach (var c in s.Cgroups)
        {
            var name = c.Version == 2 ? "v2" : "v1 " + c.Controllers;
            lines.Add(new($"{k}cg:{i}", $"{name} {c.Path}" + (c.Directory is { } d ? $" at {d}" : $" ({c.Problem})"), LineStyle.Plain));
            foreach (var v in c.Values)
                lines.Add(new($"{k}cg:{i}:{v.File}:{v.Key}", $"  {v.File}{(v.Key is null ? "" : " " + v.Key)} {v.Value}{Human(v)}", LineStyle.Plain));
            i++;
        }
    }

    private static void Limits(ProcessSnapshot s, List<ViewLine> lines, string k)
    {
        var differing = s.Limits.Where(l => l.DiffersFromInit).ToList();
        lines.Add(new(k + "h:limits", "", LineStyle.Plain));
        lines.Add(new(k + "h:limits", differing.Count == 0 && s.Limits.Count > 0 ? "LIMITS all as PID 1's" : "LIMITS differing from PID 1's", LineStyle.Header));
        if (differing.Count == 0) return;
        var rows = new List<(string Key, string[] Cells)> { (k + "lh", ["RESOURCE", "SOFT", "HARD", "UNITS", "PID 1 SOFT", "PID 1 HARD"]) };
        foreach (var l in differing)
            rows.Add(($"{k}lim:{l.Resource}", [l.Resource, Limit(l.Soft), Limit(l.Hard), l.Units, Limit(l.InitSoft), Limit(l.InitHard)]));
        Table(lines, rows);
    }

    private static void Mappings(ProcessSnapshot s, List<ViewLine> lines, string k)
    {
        lines.Add(new(k + "h:maps", "", LineStyle.Plain));
        if (s.Mappings is not { } m)
        {
            lines.Add(new(k + "h:maps", "MAPPINGS none" + (s.Identity.IsKernelThread ? " (kernel thread)" : ""), LineStyle.Header));
            return;
        }

        lines.Add(new(k + "h:maps", $"MAPPINGS {m.Count} ({m.FileMappings} of files, {m.AnonymousMappings} anonymous), {Size((long)m.VirtualSize)} virtual", LineStyle.Header));
        var i = 0;
        foreach (var e in m.Largest)
            lines.Add(new($"{k}map:{i++}", $"  largest  {e.Start:x12}-{e.End:x12} {e.Permissions} {Size((long)e.Size),10}  {(e.Path.Length == 0 ? "[anonymous]" : e.Path)}", LineStyle.Plain));
        foreach (var lib in m.Libraries) lines.Add(new($"{k}lib:{lib}", $"  library  {lib}", LineStyle.Plain));
    }

    private static void Environment(ProcessSnapshot s, List<ViewLine> lines, string k)
    {
        Section(lines, k, "ENVIRONMENT", s.Environment?.Count);
        foreach (var e in s.Environment ?? [])
        {
            var eq = e.IndexOf('=', StringComparison.Ordinal);
            lines.Add(new($"{k}env:{(eq < 0 ? e : e[..eq])}", e, LineStyle.Plain));
        }
    }

    private static void Section(List<ViewLine> lines, string k, string title, int? count)
    {
        lines.Add(new(k + "h:" + title, "", LineStyle.Plain));
        lines.Add(new(k + "h:" + title, count is { } n ? $"{title} {n}" : title, LineStyle.Header));
    }

    /// <summary>Columns padded to the widest cell; the last column as it is.</summary>
    private static void Table(List<ViewLine> lines, List<(string Key, string[] Cells)> rows)
    {
        var columns = rows[0].Cells.Length;
        var widths = new int[columns];
        foreach (var (_, cells) in rows)
        {
            for (var c = 0; c < columns - 1; c++) widths[c] = Math.Max(widths[c], cells[c].Length);
        }

        var b = new StringBuilder(256);
        foreach (var (key, cells) in rows)
        {
            b.Clear();
            for (var c = 0; c < columns; c++)
            {
                b.Append(cells[c]);
                if (c < columns - 1) b.Append(' ', widths[c] + 2 - cells[c].Length);
            }

            while (b.Length > 0 && b[^1] == ' ') b.Length--;
            lines.Add(new(key, b.ToString(), LineStyle.Plain));
        }
    }

    /// <summary>The flags beyond the access mode, without O_LARGEFILE (always set on 64-bit) and the O_ prefixes; "-" for none.</summary>
    private static string Flags(DescriptorSnapshot d)
    {
        if (d.Flags is not { } flags) return "?";
        if (FlagTexts.TryGetValue(flags, out var text)) return text;
        var names = d.FlagNames.Split('|').Skip(1).Where(n => n != "O_LARGEFILE").Select(n => n.StartsWith("O_", StringComparison.Ordinal) ? n[2..] : n).ToList();
        return FlagTexts[flags] = names.Count == 0 ? "-" : string.Join('|', names);
    }

    // Thousands of descriptors share a handful of flag words.
    private static readonly Dictionary<int, string> FlagTexts = [];

    private static string Quote(string word) =>
        word.Length > 0 && word.All(c => char.IsAsciiLetterOrDigit(c) || "-_./:=,+@%".Contains(c)) ? word : "'" + word.Replace("'", "'\\''", StringComparison.Ordinal) + "'";

    private static string Plural(int n, string word) => $"{n} {word}{(n == 1 ? "" : "s")}";

    private static string Secs(TimeSpan t) => t.TotalSeconds.ToString("0.00", Inv) + "s";

    internal static string Size(long? bytes)
    {
        if (bytes is not { } b) return "?";
        if (b < 1024) return b.ToString(Inv) + " B";
        string[] units = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        var v = b / 1024.0;
        var u = 0;
        while (v >= 1024 && u < units.Length - 1)
        {
            v /= 1024;
            u++;
        }

        return v.ToString("0.0", Inv) + " " + units[u];
    }

    internal static string Age(TimeSpan t)
    {
        if (t < TimeSpan.Zero) t = TimeSpan.Zero;
        if (t.TotalMinutes < 1) return $"{(int)t.TotalSeconds}s";
        if (t.TotalHours < 1) return $"{t.Minutes}m{t.Seconds:00}s";
        if (t.TotalDays < 1) return $"{(int)t.TotalHours}h{t.Minutes:00}m";
        return $"{(int)t.TotalDays}d{t.Hours:00}h";
    }

    private static string Seccomp(int? mode, int? filters) => mode switch
    {
        0 => "disabled",
        1 => "strict",
        2 => "filter" + (filters is > 0 ? $" ({Plural(filters.Value, "filter")})" : ""),
        null => "?",
        _ => mode.Value.ToString(Inv),
    };

    /// <summary>A capability set: "all" (every capability this kernel has, as root gets), "none", "all but X, Y", or the names.</summary>
    private static string Caps(ulong set, Capabilities c)
    {
        if (set == c.All) return "all";
        if (set == 0) return "none";
        var missing = c.All & ~set;
        if (System.Numerics.BitOperations.PopCount(missing) < System.Numerics.BitOperations.PopCount(set) && (set & ~c.All) == 0)
            return "all but " + string.Join(", ", CapabilityNames.Of(missing));
        return string.Join(", ", CapabilityNames.Of(set));
    }

    private static string Limit(ulong? v) => v?.ToString(Inv) ?? "unlimited";

    /// <summary>Byte counts of memory files in binary units; v1's "no limit" (page counter max) as unlimited.</summary>
    private static string Human(CgroupValue v)
    {
        if (v.Key is not null || !long.TryParse(v.Value, NumberStyles.None, Inv, out var n)) return "";
        var bytes = v.File is "memory.max" or "memory.high" or "memory.current" or "memory.peak" or "memory.swap.max" or "memory.swap.current"
            or "memory.limit_in_bytes" or "memory.usage_in_bytes" or "memory.max_usage_in_bytes";
        if (!bytes) return "";
        return n >= 0x7FFFFFFFFFFFF000 ? " (unlimited)" : $" ({Size(n)})";
    }
}
