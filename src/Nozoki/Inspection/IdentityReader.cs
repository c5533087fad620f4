using System.Globalization;

namespace Nozoki.Inspection;

/// <summary>The fields of /proc/PID/stat after the command name (proc(5) numbers them from 3: state is field 3).</summary>
internal sealed class StatFields
{
    private readonly string[] _f;

    private StatFields(string name, string[] fields)
    {
        Name = name;
        _f = fields;
    }

    public string Name { get; }

    public static StatFields? Parse(string? text)
    {
        if (text is null) return null;
        // The name may hold blanks and parentheses: it ends at the last ')'.
        var open = text.IndexOf('(', StringComparison.Ordinal);
        var close = text.LastIndexOf(')');
        if (open < 0 || close < open || close + 2 > text.Length) return null;
        return new StatFields(text[(open + 1)..close], text[(close + 2)..].TrimEnd('\n').Split(' '));
    }

    /// <summary>Field number n of proc(5) (3 = state, 4 = ppid, 14 = utime ...); 0 when absent.</summary>
    public long this[int n] => n - 3 < _f.Length && long.TryParse(_f[n - 3], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var v) ? v : 0;

    public char State => _f.Length > 0 && _f[0].Length > 0 ? _f[0][0] : '?';

    public const int PPid = 4, TtyNr = 7, Flags = 9, UTime = 14, STime = 15, Nice = 19, NumThreads = 20, StartTime = 22,
        VSize = 23, Processor = 39, RtPriority = 40, Policy = 41;

    /// <summary>USER_HZ: the unit of the time fields, 100 on every architecture Linux exports it for (times(2)).</summary>
    public const int ClockTicks = 100;

    public static TimeSpan Ticks(long ticks) => TimeSpan.FromMilliseconds(ticks * 1000.0 / ClockTicks);
}

/// <summary>Reads who and what a process is: /proc/PID/stat, status, cmdline, exe, cwd, root, smaps_rollup.</summary>
internal static class IdentityReader
{
    private const uint PF_KTHREAD = 0x00200000;
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static ProcessIdentity Read(int pid, StatFields stat, string status, ProcSource src, ProblemList problems, bool full)
    {
        var s = Status.Parse(status);
        var kernel = ((ulong)stat[StatFields.Flags] & PF_KTHREAD) != 0;
        var identity = new ProcessIdentity
        {
            Pid = pid,
            Name = stat.Name,
            State = stat.State,
            PPid = (int)stat[StatFields.PPid],
            NamespacePids = s.NsPids,
            TracerPid = s.TracerPid,
            IsKernelThread = kernel,
            ThreadCount = (int)stat[StatFields.NumThreads],
            Uids = s.Uid is { Length: 4 } u ? new IdSet(u[0], u[1], u[2], u[3], UserNames.Shared.User(u[0]), UserNames.Shared.User(u[1])) : null,
            Gids = s.Gid is { Length: 4 } g ? new IdSet(g[0], g[1], g[2], g[3], UserNames.Shared.Group(g[0]), UserNames.Shared.Group(g[1])) : null,
        };
        if (!full) return identity;

        const InspectSections section = InspectSections.Identity;
        List<string>? argv = null;
        if (src.Bytes($"/proc/{pid}/cmdline", out var r) is { } cmdline) argv = ProcSource.SplitNul(cmdline);
        else problems.Add(section, "command line", r);

        string? exe = null;
        var deleted = false;
        if (src.Link($"/proc/{pid}/exe", out r) is { } e)
        {
            deleted = e.EndsWith(" (deleted)", StringComparison.Ordinal);
            exe = deleted ? e[..^" (deleted)".Length] : e;
        }
        else if (!(r.IsNotFound && (kernel || identity.IsZombie)))
        {
            problems.Add(section, "executable", r);
        }

        var cwd = src.Link($"/proc/{pid}/cwd", out r);
        if (cwd is null && !(r.IsNotFound && identity.IsZombie)) problems.Add(section, "cwd", r);
        var root = src.Link($"/proc/{pid}/root", out r);
        if (root is null && !(r.IsNotFound && identity.IsZombie)) problems.Add(section, "root", r);

        long? rss = s.VmRssKb * 1024, pss = null, swap = s.VmSwapKb * 1024;
        if (!kernel && !identity.IsZombie)
        {
            if (src.Text($"/proc/{pid}/smaps_rollup", out r) is { } rollup)
            {
                foreach (var line in rollup.AsSpan().EnumerateLines())
                {
                    if (Kb(line, "Rss:") is { } a) rss = a * 1024;
                    else if (Kb(line, "Pss:") is { } b) pss = b * 1024;
                    else if (Kb(line, "Swap:") is { } sw) swap = sw * 1024;
                }
            }
            else
            {
                problems.Add(section, "memory (smaps_rollup: PSS)", r);
            }
        }

        int.TryParse(src.Text("/proc/sys/kernel/cap_last_cap", out _)?.Trim(), NumberStyles.None, Inv, out var lastCap);
        return identity with
        {
            Ancestors = Ancestors(identity.PPid, src),
            CommandLine = argv,
            Executable = exe,
            ExecutableDeleted = deleted,
            Cwd = cwd,
            Root = root,
            SupplementaryGroups = s.Groups,
            StartTime = BootTime(src) is { } boot ? boot + StatFields.Ticks(stat[StatFields.StartTime]) : null,
            CpuUser = StatFields.Ticks(stat[StatFields.UTime]),
            CpuSystem = StatFields.Ticks(stat[StatFields.STime]),
            Rss = kernel ? null : rss,
            Pss = pss,
            Swap = kernel ? null : swap,
            VirtualSize = stat[StatFields.VSize],
            Nice = (int)stat[StatFields.Nice],
            Policy = PolicyName((int)stat[StatFields.Policy]),
            RealtimePriority = (int)stat[StatFields.RtPriority],
            CpuAffinity = s.CpusAllowed,
            Seccomp = s.Seccomp,
            SeccompFilters = s.SeccompFilters,
            NoNewPrivs = s.NoNewPrivs,
            Capabilities = s.Caps is { } c ? new Capabilities(c[2], c[1], c[0], c[3], c[4], lastCap > 0 ? lastCap : 40) : null,
            Terminal = Terminal((int)stat[StatFields.TtyNr]),
        };
    }

    private static long? Kb(ReadOnlySpan<char> line, string key) =>
        line.StartsWith(key) && long.TryParse(line[key.Length..].Trim().TrimEnd("kB").Trim(), NumberStyles.None, Inv, out var v) ? v : null;

    /// <summary>The ppid chain up to PID 1: each process's name and parent (at most 64 steps: a loop would be a kernel bug).</summary>
    private static List<ProcessName> Ancestors(int ppid, ProcSource src)
    {
        var list = new List<ProcessName>();
        for (var p = ppid; p > 0 && list.Count < 64; )
        {
            var st = StatFields.Parse(src.Text($"/proc/{p}/stat", out _));
            if (st is null) break;
            list.Add(new ProcessName(p, st.Name));
            p = (int)st[StatFields.PPid];
        }

        return list;
    }

    private static DateTimeOffset? BootTime(ProcSource src)
    {
        var text = src.Text("/proc/stat", out _);
        if (text is null) return null;
        foreach (var line in text.AsSpan().EnumerateLines())
        {
            if (line.StartsWith("btime ") && long.TryParse(line[6..].Trim(), NumberStyles.None, Inv, out var t))
                return DateTimeOffset.FromUnixTimeSeconds(t);
        }

        return null;
    }

    private static string PolicyName(int policy) => policy switch
    {
        0 => "SCHED_OTHER",
        1 => "SCHED_FIFO",
        2 => "SCHED_RR",
        3 => "SCHED_BATCH",
        5 => "SCHED_IDLE",
        6 => "SCHED_DEADLINE",
        7 => "SCHED_EXT",
        _ => "policy " + policy.ToString(Inv),
    };

    /// <summary>The controlling terminal from stat's tty_nr (proc(5): major in bits 15-8, minor in bits 31-20 and 7-0).</summary>
    private static string? Terminal(int ttyNr)
    {
        if (ttyNr == 0) return null;
        var major = (ttyNr >> 8) & 0xff;
        var minor = (ttyNr & 0xff) | ((ttyNr >> 12) & 0xfff00);
        return major switch
        {
            >= 136 and <= 143 => "/dev/pts/" + ((major - 136) * 256 + minor).ToString(Inv),
            4 when minor < 64 => "/dev/tty" + minor.ToString(Inv),
            4 => "/dev/ttyS" + (minor - 64).ToString(Inv),
            5 when minor == 1 => "/dev/console",
            _ => major.ToString(Inv) + ":" + minor.ToString(Inv),
        };
    }

    /// <summary>The lines of /proc/PID/status nozoki shows.</summary>
    internal sealed class Status
    {
        public uint[]? Uid, Gid;
        public List<uint> Groups = [];
        public long? VmRssKb, VmSwapKb;
        public List<int> NsPids = [];
        public int TracerPid, Tgid;
        public int? Seccomp, SeccompFilters;
        public bool? NoNewPrivs;
        public string? CpusAllowed;

        /// <summary>CapInh, CapPrm, CapEff, CapBnd, CapAmb.</summary>
        public ulong[]? Caps;

        public static Status Parse(string text)
        {
            var s = new Status();
            var caps = new ulong[5];
            var capsSeen = 0;
            foreach (var raw in text.AsSpan().EnumerateLines())
            {
                var colon = raw.IndexOf(':');
                if (colon < 0) continue;
                var key = raw[..colon];
                var value = raw[(colon + 1)..].Trim();
                switch (key)
                {
                    case "Uid": s.Uid = Ids(value); break;
                    case "Gid": s.Gid = Ids(value); break;
                    case "Groups": s.Groups = [.. Ids(value)]; break;
                    case "VmRSS": s.VmRssKb = Long(value.TrimEnd("kB").Trim()); break;
                    case "VmSwap": s.VmSwapKb = Long(value.TrimEnd("kB").Trim()); break;
                    case "NSpid": s.NsPids = [.. Ids(value).Select(v => (int)v)]; break;
                    case "TracerPid": s.TracerPid = (int)(Long(value) ?? 0); break;
                    case "Tgid": s.Tgid = (int)(Long(value) ?? 0); break;
                    case "Seccomp": s.Seccomp = (int?)Long(value); break;
                    case "Seccomp_filters": s.SeccompFilters = (int?)Long(value); break;
                    case "NoNewPrivs": s.NoNewPrivs = Long(value) is { } n ? n != 0 : null; break;
                    case "Cpus_allowed_list": s.CpusAllowed = value.ToString(); break;
                    case "CapInh": capsSeen += Cap(value, ref caps[0]); break;
                    case "CapPrm": capsSeen += Cap(value, ref caps[1]); break;
                    case "CapEff": capsSeen += Cap(value, ref caps[2]); break;
                    case "CapBnd": capsSeen += Cap(value, ref caps[3]); break;
                    case "CapAmb": capsSeen += Cap(value, ref caps[4]); break;
                }
            }

            if (capsSeen == 5) s.Caps = caps;
            return s;
        }

        private static int Cap(ReadOnlySpan<char> v, ref ulong into) =>
            ulong.TryParse(v, NumberStyles.HexNumber, Inv, out into) ? 1 : 0;

        private static long? Long(ReadOnlySpan<char> v) => long.TryParse(v, NumberStyles.AllowLeadingSign, Inv, out var n) ? n : null;

        private static uint[] Ids(ReadOnlySpan<char> v)
        {
            var list = new List<uint>();
            foreach (var range in v.SplitAny(" \t"))
            {
                if (uint.TryParse(v[range], NumberStyles.None, Inv, out var id)) list.Add(id);
            }

            return [.. list];
        }
    }
}
