namespace Nozoki.Inspection;

/// <summary>
/// A process's cgroups (/proc/PID/cgroup) and their limits and use: cgroup v2 ("0::/path") and each mounted v1
/// hierarchy ("4:memory:/path"), found through nozoki's own mounts (/proc/self/mountinfo). Only files that exist are
/// shown. The inputs are text and a file reader, so that a v2 tree can be tested where the machine mounts v1.
/// </summary>
internal static class CgroupReader
{
    /// <summary>cgroup v2: the files read from a cgroup's directory, and whether each is "key value" lines.</summary>
    private static readonly (string File, bool Keyed)[] V2Files =
    [
        ("memory.max", false), ("memory.high", false), ("memory.current", false), ("memory.peak", false),
        ("memory.swap.max", false), ("memory.swap.current", false), ("memory.events", true),
        ("cpu.max", false), ("cpu.weight", false), ("cpu.stat", true),
        ("pids.max", false), ("pids.current", false), ("io.max", true),
        ("memory.pressure", true), ("cpu.pressure", true), ("io.pressure", true),
    ];

    /// <summary>cgroup v1: per controller, the files read.</summary>
    private static readonly Dictionary<string, (string File, bool Keyed)[]> V1Files = new(StringComparer.Ordinal)
    {
        ["memory"] = [("memory.limit_in_bytes", false), ("memory.usage_in_bytes", false), ("memory.max_usage_in_bytes", false),
            ("memory.failcnt", false), ("memory.oom_control", true)],
        ["cpu"] = [("cpu.cfs_quota_us", false), ("cpu.cfs_period_us", false), ("cpu.shares", false), ("cpu.stat", true)],
        ["cpuacct"] = [("cpuacct.usage", false)],
        ["pids"] = [("pids.max", false), ("pids.current", false)],
        ["cpuset"] = [("cpuset.cpus", false), ("cpuset.mems", false)],
        ["blkio"] = [("blkio.throttle.read_bps_device", true), ("blkio.throttle.write_bps_device", true)],
        ["freezer"] = [("freezer.state", false)],
    };

    private sealed record Mount(string Root, string Point, string FsType, HashSet<string> Options);

    /// <param name="procCgroup">the text of /proc/PID/cgroup</param>
    /// <param name="mountinfo">the text of /proc/self/mountinfo</param>
    /// <param name="readFile">reads a file (null when it does not exist or cannot be read)</param>
    public static List<CgroupSnapshot> Read(string procCgroup, string mountinfo, Func<string, string?> readFile)
    {
        var mounts = Mounts(mountinfo);
        var list = new List<CgroupSnapshot>();
        foreach (var raw in procCgroup.AsSpan().EnumerateLines())
        {
            var line = raw.ToString();
            if (line.Length == 0) continue;
            var first = line.IndexOf(':', StringComparison.Ordinal);
            var second = first < 0 ? -1 : line.IndexOf(':', first + 1);
            if (second < 0) continue;
            var id = line[..first];
            var controllers = line[(first + 1)..second];
            var path = line[(second + 1)..];
            var v2 = id == "0" && controllers.Length == 0;
            var wanted = controllers.Split(',', StringSplitOptions.RemoveEmptyEntries);
            var mount = v2
                ? mounts.FirstOrDefault(m => m.FsType == "cgroup2")
                : mounts.FirstOrDefault(m => m.FsType == "cgroup" && wanted.All(m.Options.Contains));
            if (mount is null)
            {
                list.Add(new CgroupSnapshot(v2 ? 2 : 1, controllers, path, null, [], "not mounted in nozoki's mount namespace"));
                continue;
            }

            // A mount of a subtree (a container's view) shows its root as the path the mount starts at.
            string? dir = null;
            var root = mount.Root == "/" ? "" : mount.Root;
            if (path == mount.Root || path.StartsWith(root + "/", StringComparison.Ordinal) || root.Length == 0)
            {
                var rest = path.Length > root.Length ? path[root.Length..] : "";
                dir = rest is "" or "/" ? mount.Point : mount.Point.TrimEnd('/') + rest;
            }

            if (dir is null)
            {
                list.Add(new CgroupSnapshot(v2 ? 2 : 1, controllers, path, null, [], $"outside the part of the hierarchy mounted at {mount.Point}"));
                continue;
            }

            var values = new List<CgroupValue>();
            var files = v2 ? V2Files : wanted.SelectMany(c => V1Files.TryGetValue(c, out var f) ? f : []).ToArray();
            foreach (var (file, keyed) in files)
            {
                if (readFile(dir + "/" + file) is not { } text) continue;
                if (!keyed)
                {
                    values.Add(new CgroupValue(file, null, text.Trim()));
                    continue;
                }

                foreach (var l in text.AsSpan().EnumerateLines())
                {
                    var t = l.Trim();
                    if (t.IsEmpty) continue;
                    var space = t.IndexOf(' ');
                    values.Add(space < 0 ? new CgroupValue(file, t.ToString(), "") : new CgroupValue(file, t[..space].ToString(), t[(space + 1)..].Trim().ToString()));
                }
            }

            list.Add(new CgroupSnapshot(v2 ? 2 : 1, controllers, path, dir, values, null));
        }

        return list;
    }

    /// <summary>The cgroup and cgroup2 mounts of a mountinfo text (proc(5): fields, " - ", fstype, source, super options).</summary>
    private static List<Mount> Mounts(string mountinfo)
    {
        var list = new List<Mount>();
        foreach (var raw in mountinfo.AsSpan().EnumerateLines())
        {
            var line = raw.ToString();
            var dash = line.IndexOf(" - ", StringComparison.Ordinal);
            if (dash < 0) continue;
            var f = line[..dash].Split(' ');
            var tail = line[(dash + 3)..].Split(' ');
            if (f.Length < 5 || tail.Length < 3 || tail[0] is not ("cgroup" or "cgroup2")) continue;
            list.Add(new Mount(Unescape(f[3]), Unescape(f[4]), tail[0], new HashSet<string>(tail[2].Split(','), StringComparer.Ordinal)));
        }

        return list;
    }

    /// <summary>mountinfo escapes blanks, tabs, newlines and backslashes in paths as \ooo.</summary>
    private static string Unescape(string s) =>
        s.Replace("\\040", " ", StringComparison.Ordinal).Replace("\\011", "\t", StringComparison.Ordinal)
            .Replace("\\012", "\n", StringComparison.Ordinal).Replace("\\134", "\\", StringComparison.Ordinal);
}
