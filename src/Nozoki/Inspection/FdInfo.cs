using System.Globalization;
using Nozoki.Syscalls;

namespace Nozoki.Inspection;

/// <summary>
/// Parsers of /proc/PID/fdinfo/N text (Documentation/filesystems/proc.rst, "fdinfo"): the lines every descriptor has
/// (pos, flags, mnt_id, ino) and those of each kind of anonymous object. Pure functions of the text, so that kinds
/// this machine cannot make (KVM without /dev/kvm) are tested from samples.
/// </summary>
internal static class FdInfo
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>pos (decimal), flags (octal), mnt_id, ino of any fdinfo.</summary>
    public static (long? Position, int? Flags, int? MountId, ulong? Inode) Common(ReadOnlySpan<char> text)
    {
        long? pos = null;
        int? flags = null, mnt = null;
        ulong? ino = null;
        foreach (var line in text.EnumerateLines())
        {
            if (line.StartsWith("pos:") && long.TryParse(line[4..].Trim(), NumberStyles.None, Inv, out var p)) pos = p;
            else if (line.StartsWith("flags:")) flags = Octal(line[6..].Trim());
            else if (line.StartsWith("mnt_id:") && int.TryParse(line[7..].Trim(), NumberStyles.None, Inv, out var m)) mnt = m;
            else if (line.StartsWith("ino:") && ulong.TryParse(line[4..].Trim(), NumberStyles.None, Inv, out var i)) ino = i;
        }

        return (pos, flags, mnt, ino);
    }

    /// <summary>The same from the file's bytes, without making a string of them.</summary>
    public static (long? Position, int? Flags, int? MountId, ulong? Inode) Common(ReadOnlySpan<byte> text)
    {
        long? pos = null;
        int? flags = null, mnt = null;
        ulong? ino = null;
        while (!text.IsEmpty)
        {
            var nl = text.IndexOf((byte)'\n');
            var line = nl < 0 ? text : text[..nl];
            text = nl < 0 ? default : text[(nl + 1)..];
            var colon = line.IndexOf((byte)':');
            if (colon < 0) continue;
            var key = line[..colon];
            var value = line[(colon + 1)..].Trim((byte)' ').Trim((byte)'\t');
            if (key.SequenceEqual("pos"u8) && System.Buffers.Text.Utf8Parser.TryParse(value, out long p, out _)) pos = p;
            else if (key.SequenceEqual("flags"u8)) flags = Octal(value);
            else if (key.SequenceEqual("mnt_id"u8) && System.Buffers.Text.Utf8Parser.TryParse(value, out int m, out _)) mnt = m;
            else if (key.SequenceEqual("ino"u8) && System.Buffers.Text.Utf8Parser.TryParse(value, out ulong i, out _)) ino = i;
            // The four common lines come first; what follows is the object's own.
            if (pos is not null && flags is not null && mnt is not null && ino is not null) break;
        }

        return (pos, flags, mnt, ino);
    }

    private static int? Octal(ReadOnlySpan<byte> s)
    {
        if (s.IsEmpty) return null;
        var v = 0;
        foreach (var c in s)
        {
            if (c is < (byte)'0' or > (byte)'7') return null;
            v = v * 8 + (c - '0');
        }

        return v;
    }

    /// <summary>The value of "key:" (the first line that starts with it), trimmed; null when absent.</summary>
    public static string? Value(ReadOnlySpan<char> text, string key)
    {
        foreach (var line in text.EnumerateLines())
        {
            if (line.StartsWith(key) && line.Length > key.Length && line[key.Length] == ':')
                return line[(key.Length + 1)..].Trim().ToString();
        }

        return null;
    }

    /// <summary>eventfd: "eventfd-count: %16llx" (hexadecimal, padded with blanks).</summary>
    public static ulong? EventFdCount(ReadOnlySpan<char> text) =>
        Value(text, "eventfd-count") is { } v && ulong.TryParse(v, NumberStyles.HexNumber, Inv, out var c) ? c : null;

    /// <summary>eventpoll: "tfd: %8d events: %8x data: %16llx  pos:%lli ino:%lx sdev:%x" per watched descriptor.</summary>
    public static List<EpollWatch> Epoll(ReadOnlySpan<char> text)
    {
        var list = new List<EpollWatch>();
        foreach (var line in text.EnumerateLines())
        {
            if (!line.StartsWith("tfd:")) continue;
            var tfd = Field(line, "tfd:");
            var events = Field(line, "events:");
            var data = Field(line, "data:");
            var ino = Field(line, "ino:");
            if (!int.TryParse(tfd, NumberStyles.None, Inv, out var fd)) continue;
            uint.TryParse(events, NumberStyles.HexNumber, Inv, out var ev);
            ulong.TryParse(data, NumberStyles.HexNumber, Inv, out var d);
            ulong.TryParse(ino, NumberStyles.HexNumber, Inv, out var i);
            list.Add(new EpollWatch(fd, ev, d, i, null));
        }

        return list;
    }

    /// <summary>timerfd: "clockid: 1", "ticks: 0", "settime flags: 01", "it_value: (99, 64267)", "it_interval: (100, 0)".</summary>
    public static TimerDetails? Timer(ReadOnlySpan<char> text)
    {
        if (Value(text, "clockid") is not { } clock || !ulong.TryParse(clock, NumberStyles.None, Inv, out var c)) return null;
        ulong.TryParse(Value(text, "ticks"), NumberStyles.None, Inv, out var ticks);
        var flags = Octal(Value(text, "settime flags")) ?? 0;
        return new TimerDetails(SyscallDecoder.ClockText(c), ticks, flags, Pair(Value(text, "it_value")), Pair(Value(text, "it_interval")));
    }

    /// <summary>signalfd: "sigmask: 0000000000000a00" (hexadecimal, bit N-1 for signal N).</summary>
    public static ulong? SignalMask(ReadOnlySpan<char> text) =>
        Value(text, "sigmask") is { } v && ulong.TryParse(v, NumberStyles.HexNumber, Inv, out var m) ? m : null;

    /// <summary>One inotify watch with the file handle that names its inode (for open_by_handle_at).</summary>
    public readonly record struct InotifyLine(int Wd, ulong Inode, uint Device, uint Mask, int HandleType, byte[]? Handle);

    /// <summary>inotify: "inotify wd:1 ino:b1e276 sdev:fe00000 mask:300 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:76e2...".</summary>
    public static List<InotifyLine> Inotify(ReadOnlySpan<char> text)
    {
        var list = new List<InotifyLine>();
        foreach (var line in text.EnumerateLines())
        {
            if (!line.StartsWith("inotify ")) continue;
            if (!int.TryParse(Field(line, "wd:"), NumberStyles.None, Inv, out var wd)) continue;
            ulong.TryParse(Field(line, "ino:"), NumberStyles.HexNumber, Inv, out var ino);
            uint.TryParse(Field(line, "sdev:"), NumberStyles.HexNumber, Inv, out var dev);
            uint.TryParse(Field(line, "mask:"), NumberStyles.HexNumber, Inv, out var mask);
            int.TryParse(Field(line, "fhandle-type:"), NumberStyles.None, Inv, out var type);
            byte[]? handle = null;
            var hex = Field(line, "f_handle:");
            if (hex.Length > 0 && hex.Length % 2 == 0)
            {
                try
                {
                    handle = Convert.FromHexString(hex);
                }
                catch (FormatException)
                {
                }
            }

            list.Add(new InotifyLine(wd, ino, dev, mask, type, handle));
        }

        return list;
    }

    /// <summary>pidfd: "Pid: 587" (-1 once the process has exited and been reaped).</summary>
    public static int? PidFdPid(ReadOnlySpan<char> text) =>
        Value(text, "Pid") is { } v && int.TryParse(v, NumberStyles.AllowLeadingSign, Inv, out var p) ? p : null;

    /// <summary>KVM: "anon_inode:kvm-vcpu:3" is vCPU 3 (the kernel names each vCPU descriptor after its id).</summary>
    public static int? VcpuId(string link)
    {
        const string prefix = "anon_inode:kvm-vcpu:";
        return link.StartsWith(prefix, StringComparison.Ordinal)
            && int.TryParse(link.AsSpan(prefix.Length), NumberStyles.None, Inv, out var id) ? id : null;
    }

    /// <summary>The lines after the common four, as key and value (io_uring, bpf maps and programs, fanotify ...).</summary>
    public static List<KeyValuePair<string, string>> Rest(ReadOnlySpan<char> text)
    {
        var list = new List<KeyValuePair<string, string>>();
        foreach (var line in text.EnumerateLines())
        {
            if (line.IsEmpty || line.StartsWith("pos:") || line.StartsWith("flags:") || line.StartsWith("mnt_id:") || line.StartsWith("ino:")) continue;
            var colon = line.IndexOf(':');
            if (colon <= 0) list.Add(new(line.Trim().ToString(), ""));
            else list.Add(new(line[..colon].Trim().ToString(), line[(colon + 1)..].Trim().ToString()));
        }

        return list;
    }

    private static readonly (uint Bit, string Name)[] InotifyBits =
    [
        (0x1, "IN_ACCESS"), (0x2, "IN_MODIFY"), (0x4, "IN_ATTRIB"), (0x8, "IN_CLOSE_WRITE"), (0x10, "IN_CLOSE_NOWRITE"),
        (0x20, "IN_OPEN"), (0x40, "IN_MOVED_FROM"), (0x80, "IN_MOVED_TO"), (0x100, "IN_CREATE"), (0x200, "IN_DELETE"),
        (0x400, "IN_DELETE_SELF"), (0x800, "IN_MOVE_SELF"), (0x2000, "IN_UNMOUNT"), (0x4000, "IN_Q_OVERFLOW"),
        (0x8000, "IN_IGNORED"), (0x1000000, "IN_ONLYDIR"), (0x2000000, "IN_DONT_FOLLOW"), (0x4000000, "IN_EXCL_UNLINK"),
        (0x10000000, "IN_MASK_CREATE"), (0x20000000, "IN_MASK_ADD"), (0x40000000, "IN_ISDIR"), (0x80000000, "IN_ONESHOT"),
    ];

    public static string InotifyMaskNames(uint mask)
    {
        if (mask == 0) return "0";
        var names = new List<string>();
        foreach (var (bit, name) in InotifyBits)
        {
            if ((mask & bit) == 0) continue;
            names.Add(name);
            mask &= ~bit;
        }

        if (mask != 0) names.Add("0x" + mask.ToString("x", Inv));
        return string.Join('|', names);
    }

    public static string EpollEventNames(uint events) => SyscallDecoder.EpollEventsText(events);

    /// <summary>The value after "key" up to the next blank, in a line of blank-separated key:value fields.</summary>
    private static ReadOnlySpan<char> Field(ReadOnlySpan<char> line, string key)
    {
        var at = line.IndexOf(key, StringComparison.Ordinal);
        // "ino:" must not match inside "sdev:"'s neighbours: a field starts the line or follows a blank.
        while (at > 0 && line[at - 1] != ' ' && line[at - 1] != '\t')
        {
            var next = line[(at + key.Length)..].IndexOf(key, StringComparison.Ordinal);
            if (next < 0) return default;
            at += key.Length + next;
        }

        if (at < 0) return default;
        var rest = line[(at + key.Length)..].TrimStart(' ');
        var end = rest.IndexOfAny(' ', '\t');
        return end < 0 ? rest : rest[..end];
    }

    private static int? Octal(ReadOnlySpan<char> s)
    {
        if (s.IsEmpty) return null;
        var v = 0;
        foreach (var c in s)
        {
            if (c is < '0' or > '7') return null;
            v = v * 8 + (c - '0');
        }

        return v;
    }

    private static int? Octal(string? s) => s is null ? null : Octal(s.AsSpan());

    /// <summary>"(99, 64267)": seconds and nanoseconds.</summary>
    private static TimeSpan Pair(string? text)
    {
        if (text is null) return TimeSpan.Zero;
        var t = text.Trim('(', ')', ' ');
        var comma = t.IndexOf(',', StringComparison.Ordinal);
        if (comma < 0) return TimeSpan.Zero;
        long.TryParse(t.AsSpan(0, comma).Trim(), NumberStyles.None, Inv, out var s);
        long.TryParse(t.AsSpan(comma + 1).Trim(), NumberStyles.None, Inv, out var ns);
        return TimeSpan.FromSeconds(s) + TimeSpan.FromTicks(ns / 100);
    }
}
