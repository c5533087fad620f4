using System.Globalization;

namespace Nozoki.Inspection;

/// <summary>The process states of /proc/PID/stat, as ps(1) explains them.</summary>
public static class ProcessStates
{
    public static string Describe(char state) => state switch
    {
        'R' => "running",
        'S' => "sleeping",
        'D' => "disk sleep",
        'T' => "stopped",
        't' => "tracing stop",
        'Z' => "zombie",
        'X' => "dead",
        'I' => "idle",
        'P' => "parked",
        'W' => "waking",
        _ => "unknown",
    };
}

/// <summary>Capability names (linux/capability.h), by bit number.</summary>
public static class CapabilityNames
{
    private static readonly string[] Names =
    [
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
        "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN",
        "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
        "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
        "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP",
        "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
        "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
    ];

    /// <summary>CAP_SYS_ADMIN, or "cap_41" for a bit this table does not name.</summary>
    public static string Name(int bit) => bit >= 0 && bit < Names.Length ? Names[bit] : "cap_" + bit.ToString(CultureInfo.InvariantCulture);

    /// <summary>The names of the bits set.</summary>
    public static IReadOnlyList<string> Of(ulong set)
    {
        var list = new List<string>();
        for (var bit = 0; bit < 64; bit++)
        {
            if ((set & (1UL << bit)) != 0) list.Add(Name(bit));
        }

        return list;
    }
}

/// <summary>User and group names from /etc/passwd and /etc/group (nozoki's view), read once.</summary>
internal sealed class UserNames
{
    private readonly Lazy<Dictionary<uint, string>> _users = new(() => Read("/etc/passwd"));
    private readonly Lazy<Dictionary<uint, string>> _groups = new(() => Read("/etc/group"));

    public static UserNames Shared { get; } = new();

    public string? User(uint uid) => _users.Value.TryGetValue(uid, out var n) ? n : null;

    public string? Group(uint gid) => _groups.Value.TryGetValue(gid, out var n) ? n : null;

    // name:password:ID:...
    private static Dictionary<uint, string> Read(string path)
    {
        var map = new Dictionary<uint, string>();
        try
        {
            foreach (var line in File.ReadLines(path))
            {
                var f = line.Split(':');
                if (f.Length >= 3 && uint.TryParse(f[2], NumberStyles.None, CultureInfo.InvariantCulture, out var id)) map.TryAdd(id, f[0]);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }

        return map;
    }
}
