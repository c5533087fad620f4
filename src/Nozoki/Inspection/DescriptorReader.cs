using System.Globalization;
using System.Text;
using Nozoki.Native;
using Nozoki.Syscalls;

namespace Nozoki.Inspection;

/// <summary>
/// Every open descriptor of a process, decoded by kind: the /proc/PID/fd link, its fdinfo (position, flags, and the
/// lines of each kind of anonymous object), stat for files, sock_diag for sockets, and the other holders of pipes,
/// FIFOs and unix peers. Read relative to open /proc directories, a few syscalls per descriptor; a descriptor that
/// closes (or is replaced) while it is read is counted and left out, never shown half-read.
/// </summary>
internal static class DescriptorReader
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    private sealed class Raw
    {
        public int Fd;
        public string Link = "";
        public string Info = "";
        public long? Position;
        public int? Flags;
        public int? MountId;
        public ulong Inode;
        public DescriptorKind Kind;
        public StatBuf? Stat;
        public string? Protocol;
        public SocketDetails? Socket;
    }

    public static List<DescriptorSnapshot> Read(int pid, ProcSource src, ProblemList problems, InspectOptions options, out int closedMeanwhile)
    {
        closedMeanwhile = 0;
        const InspectSections section = InspectSections.Descriptors;
        var result = new List<DescriptorSnapshot>();
        var r = ProcFiles.OpenDirectory($"/proc/{pid}/fd", out var fdDir);
        if (!r.IsOk)
        {
            problems.Add(section, "descriptors", r);
            return result;
        }

        var infoDir = -1;
        var raws = new List<Raw>();
        try
        {
            r = ProcFiles.OpenDirectory($"/proc/{pid}/fdinfo", out infoDir);
            if (!r.IsOk)
            {
                problems.Add(section, "descriptors", r);
                return result;
            }

            var numbers = new List<int>();
            r = ProcFiles.ListNumbers(fdDir, new byte[32 << 10], numbers);
            if (!r.IsOk) problems.Add(section, "descriptors", r);
            numbers.Sort();
            var (read, closed, denied) = ReadAll(pid, numbers, fdDir, infoDir, src);
            raws = read;
            closedMeanwhile = closed;
            if (denied > 0)
                problems.Add(section, ProblemKind.PermissionDenied, "descriptors", $"permission denied for {denied} of them");
        }
        finally
        {
            ProcFiles.Close(fdDir);
            ProcFiles.Close(infoDir);
        }

        using var sockets = new SocketTable(pid, src, options.UseSockDiag);
        foreach (var raw in raws)
        {
            if (raw.Kind == DescriptorKind.Socket) raw.Socket = sockets.Describe((uint)raw.Inode, raw.Protocol ?? "?");
        }

        if (sockets.Fallback is { } why) problems.Add(section, ProblemKind.Other, "socket details", why + "; read from /proc/PID/net instead");

        // Who else holds each pipe, FIFO, and unix peer: this process's other descriptors, then every other process's.
        var wanted = new HashSet<string>(StringComparer.Ordinal);
        foreach (var raw in raws)
        {
            if (raw.Kind is DescriptorKind.Pipe or DescriptorKind.Fifo) wanted.Add(raw.Link);
            else if (raw.Socket is { PeerInode: > 0 } s) wanted.Add($"socket:[{s.PeerInode}]");
        }

        var others = new Dictionary<string, List<DescriptorHolder>>(StringComparer.Ordinal);
        if (options.FindPeers && wanted.Count > 0)
        {
            others = PeerIndex.Find(pid, wanted, out var unreadable);
            if (unreadable > 0)
                // Not an error of this process's reading (a user looking at their own process meets it): a note.
                problems.Add(section, ProblemKind.Other, "other ends",
                    $"the descriptors of {unreadable} other process{(unreadable == 1 ? "" : "es")} could not be read: holders of pipe ends and socket peers among them are not shown");
        }

        var name = src.Text($"/proc/{pid}/comm", out _)?.TrimEnd('\n') ?? "?";
        var own = new Dictionary<string, List<Raw>>(StringComparer.Ordinal);
        foreach (var raw in raws)
        {
            if (raw.Kind is DescriptorKind.Pipe or DescriptorKind.Fifo or DescriptorKind.Socket)
            {
                if (!own.TryGetValue(raw.Link, out var l)) own[raw.Link] = l = [];
                l.Add(raw);
            }
        }

        List<DescriptorHolder> Holders(string link, int exceptFd)
        {
            var list = new List<DescriptorHolder>();
            if (own.TryGetValue(link, out var mine))
            {
                foreach (var m in mine)
                {
                    if (m.Fd != exceptFd) list.Add(new DescriptorHolder(pid, name, m.Fd, PeerIndex.AccessOf(m.Flags ?? -1)));
                }
            }

            if (others.TryGetValue(link, out var theirs)) list.AddRange(theirs);
            return list;
        }

        var byFd = raws.ToDictionary(x => x.Fd);
        foreach (var raw in raws) result.Add(Build(raw, Holders, byFd, sockets));
        return result;
    }

    /// <summary>
    /// Every descriptor's link, fdinfo and stat, in the order given: a few syscalls each, so many descriptors are
    /// read by one thread per CPU (at most four), each with buffers of its own.
    /// </summary>
    private static (List<Raw> Read, int Closed, int Denied) ReadAll(int pid, List<int> numbers, int fdDir, int infoDir, ProcSource src)
    {
        var parts = numbers.Count < 2000 ? 1 : Math.Clamp(Environment.ProcessorCount, 1, 4);
        var results = new (List<Raw> Read, int Closed, int Denied)[parts];
        void Part(int p, ProcSource own)
        {
            var from = numbers.Count * p / parts;
            var to = numbers.Count * (p + 1) / parts;
            var list = new List<Raw>(to - from);
            int closed = 0, denied = 0;
            for (var i = from; i < to; i++)
            {
                var raw = ReadOne(pid, numbers[i], fdDir, infoDir, own, out var r);
                if (raw is not null) list.Add(raw);
                else if (r.IsPermissionDenied) denied++;
                else closed++;
            }

            results[p] = (list, closed, denied);
        }

        var threads = new List<Thread>();
        for (var p = 1; p < parts; p++)
        {
            var part = p;
            var t = new Thread(() => Part(part, new ProcSource())) { IsBackground = true, Name = "inspect descriptors" };
            t.Start();
            threads.Add(t);
        }

        Part(0, src);
        foreach (var t in threads) t.Join();
        var all = new List<Raw>(numbers.Count);
        int closedAll = 0, deniedAll = 0;
        foreach (var (read, closed, denied) in results)
        {
            all.AddRange(read);
            closedAll += closed;
            deniedAll += denied;
        }

        return (all, closedAll, deniedAll);
    }

    /// <summary>The link, fdinfo and (for paths) stat of one descriptor; null when it closed or changed meanwhile (or is refused: see result).</summary>
    private static Raw? ReadOne(int pid, int fd, int fdDir, int infoDir, ProcSource src, out SysResult result)
    {
        result = SysResult.Ok;
        for (var attempt = 0; attempt < 2; attempt++)
        {
            var link = src.LinkAt(fdDir, fd, out var r);
            if (link is null)
            {
                result = r;
                return null;
            }

            r = src.ReadAt(infoDir, fd, out var info, singleShow: true);
            if (!r.IsOk) return null;
            var (pos, flags, mnt, ino) = FdInfo.Common(info);
            var raw = new Raw { Fd = fd, Link = link, Position = pos, Flags = flags, MountId = mnt, Inode = ino ?? 0 };
            raw.Kind = Classify(link);
            // The lines after the common four are read only for the kinds that have some worth decoding.
            if (raw.Kind is not (DescriptorKind.File or DescriptorKind.Memfd or DescriptorKind.Pipe or DescriptorKind.Socket)) raw.Info = Encoding.UTF8.GetString(info);
            if (link.StartsWith('/'))
            {
                if (ProcFiles.StatAt(fdDir, fd, 0, out var st).IsOk)
                {
                    raw.Stat = st;
                    raw.Kind = (st.Mode & Libc.S_IFMT) switch
                    {
                        Libc.S_IFDIR => DescriptorKind.Directory,
                        Libc.S_IFCHR => DescriptorKind.CharacterDevice,
                        0x6000 => DescriptorKind.BlockDevice,
                        Libc.S_IFIFO => DescriptorKind.Fifo,
                        Libc.S_IFSOCK => DescriptorKind.Socket,
                        _ => link.StartsWith("/memfd:", StringComparison.Ordinal) ? DescriptorKind.Memfd : DescriptorKind.File,
                    };
                    // The descriptor was closed and its number reused between the two reads: read it again.
                    if (ino is { } i && i != st.Ino) continue;
                }
            }
            else if (BracketInode(link) is { } linkInode)
            {
                if (ino is { } i && i != linkInode) continue;
                raw.Inode = linkInode;
            }

            if (raw.Kind == DescriptorKind.Socket)
            {
                Span<byte> proto = stackalloc byte[64];
                var got = ProcFiles.SocketProtocol(pid, fd, proto, out var n);
                if (got.IsNotFound) return null; // closed since
                raw.Protocol = got.IsOk ? Encoding.ASCII.GetString(proto[..n]) : "?";
            }

            return raw;
        }

        return null;
    }

    internal static DescriptorKind Classify(string link)
    {
        if (link.StartsWith('/')) return link.StartsWith("/memfd:", StringComparison.Ordinal) ? DescriptorKind.Memfd : DescriptorKind.File;
        if (link.StartsWith("pipe:[", StringComparison.Ordinal)) return DescriptorKind.Pipe;
        if (link.StartsWith("socket:[", StringComparison.Ordinal)) return DescriptorKind.Socket;
        if (link.StartsWith("pidfd:", StringComparison.Ordinal)) return DescriptorKind.PidFd;
        if (link.StartsWith("anon_inode:", StringComparison.Ordinal))
        {
            var what = link["anon_inode:".Length..];
            return what switch
            {
                "[eventfd]" => DescriptorKind.EventFd,
                "[eventpoll]" => DescriptorKind.EventPoll,
                "[timerfd]" => DescriptorKind.TimerFd,
                "[signalfd]" => DescriptorKind.SignalFd,
                "inotify" => DescriptorKind.Inotify,
                "[fanotify]" => DescriptorKind.Fanotify,
                "[pidfd]" => DescriptorKind.PidFd,
                "kvm-vm" => DescriptorKind.KvmVm,
                "[io_uring]" => DescriptorKind.IoUring,
                _ when what.StartsWith("kvm-vcpu:", StringComparison.Ordinal) => DescriptorKind.KvmVcpu,
                _ when what.StartsWith("bpf", StringComparison.Ordinal) => DescriptorKind.Bpf,
                _ => DescriptorKind.AnonInode,
            };
        }

        var bracket = link.IndexOf(":[", StringComparison.Ordinal);
        if (bracket > 0 && link[..bracket] is "cgroup" or "ipc" or "mnt" or "net" or "pid" or "time" or "user" or "uts") return DescriptorKind.Namespace;
        return DescriptorKind.Other;
    }

    /// <summary>N of "pipe:[N]", "socket:[N]", "net:[N]".</summary>
    internal static ulong? BracketInode(string link)
    {
        var open = link.IndexOf(":[", StringComparison.Ordinal);
        return open > 0 && link.EndsWith(']') && ulong.TryParse(link.AsSpan(open + 2, link.Length - open - 3), NumberStyles.None, Inv, out var ino)
            ? ino : null;
    }

    private static DescriptorSnapshot Build(Raw raw, Func<string, int, List<DescriptorHolder>> holders, Dictionary<int, Raw> byFd, SocketTable sockets)
    {
        var d = new DescriptorSnapshot
        {
            Fd = raw.Fd,
            Target = raw.Link,
            Kind = raw.Kind,
            Flags = raw.Flags,
            Position = raw.Position,
            MountId = raw.MountId,
            Inode = raw.Inode,
        };
        var info = raw.Info.AsSpan();
        switch (raw.Kind)
        {
            case DescriptorKind.File or DescriptorKind.Directory or DescriptorKind.Memfd or DescriptorKind.CharacterDevice or DescriptorKind.BlockDevice:
            {
                var deleted = raw.Link.EndsWith(" (deleted)", StringComparison.Ordinal);
                var path = deleted ? raw.Link[..^" (deleted)".Length] : raw.Link;
                var st = raw.Stat;
                string? device = st is { } s && raw.Kind is DescriptorKind.CharacterDevice or DescriptorKind.BlockDevice
                    ? $"{Major(s.Rdev)}:{Minor(s.Rdev)}" : null;
                long? size = st is { } s2 && raw.Kind is DescriptorKind.File or DescriptorKind.Memfd ? s2.Size : null;
                d = d with
                {
                    Path = path,
                    Deleted = deleted && raw.Kind != DescriptorKind.Memfd,
                    Size = size,
                    Device = device,
                    Description = raw.Kind switch
                    {
                        DescriptorKind.Memfd => $"memfd:{path["/memfd:".Length..]}" + (size is { } m ? $" ({Bytes(m)})" : ""),
                        DescriptorKind.Directory => path + " (directory)",
                        DescriptorKind.CharacterDevice => $"{path} (character device {device})",
                        DescriptorKind.BlockDevice => $"{path} (block device {device})",
                        _ => path + (deleted ? " (deleted" + (size is { } z ? ", " + Bytes(z) : "") + ")" : size is { } z2 ? $" ({Bytes(z2)})" : ""),
                    },
                };
                break;
            }

            case DescriptorKind.Pipe or DescriptorKind.Fifo:
            {
                var list = holders(raw.Link, raw.Fd);
                var end = d.Access switch { "r" => "read end", "w" => "write end", _ => "both ends" };
                var what = raw.Kind == DescriptorKind.Pipe ? raw.Link : raw.Link + " (FIFO)";
                d = d with
                {
                    Path = raw.Kind == DescriptorKind.Fifo ? raw.Link : null,
                    Holders = list,
                    Description = $"{what} {end}; " + (list.Count == 0 ? "nobody else holds it" : "also held by " + string.Join(", ", list.Select(Holder))),
                };
                break;
            }

            case DescriptorKind.Socket:
            {
                var s = raw.Socket ?? new SocketDetails { Protocol = raw.Protocol ?? "?" };
                if (s.PeerInode > 0) s = s with { Peers = holders($"socket:[{s.PeerInode}]", -1) };
                d = d with { Socket = s, Description = SocketText(s, raw.Inode) };
                break;
            }

            case DescriptorKind.EventFd:
            {
                var count = FdInfo.EventFdCount(info);
                d = d with { EventFdCount = count, Description = "eventfd" + (count is { } c ? " count " + c.ToString(Inv) : "") };
                break;
            }

            case DescriptorKind.EventPoll:
            {
                var watches = FdInfo.Epoll(info).Select(w => w with { Target = byFd.TryGetValue(w.Fd, out var t) && (w.Inode == 0 || t.Inode == w.Inode) ? Short(t, sockets) : null }).ToList();
                d = d with
                {
                    EpollWatches = watches,
                    Description = $"eventpoll watching {watches.Count}" + (watches.Count == 0 ? "" : ": " + string.Join(", ", watches.Select(w =>
                        $"{w.Fd}<{w.Target ?? "closed"}> {w.EventNames}"))),
                };
                break;
            }

            case DescriptorKind.TimerFd:
            {
                var t = FdInfo.Timer(info);
                d = d with
                {
                    Timer = t,
                    Description = t is null ? "timerfd" : $"timerfd {t.Clock}" + (t.Value == TimeSpan.Zero ? " disarmed" : $" next in {Seconds(t.Value)}")
                        + (t.Interval == TimeSpan.Zero ? "" : $", every {Seconds(t.Interval)}") + $", {t.Ticks} expirations unread"
                        + ((t.SettimeFlags & 1) != 0 ? ", absolute" : ""),
                };
                break;
            }

            case DescriptorKind.SignalFd:
            {
                var mask = FdInfo.SignalMask(info);
                d = d with { SignalMask = mask, Description = "signalfd " + (mask is { } m ? SyscallDecoder.SignalSetText(m) : "?") };
                break;
            }

            case DescriptorKind.Inotify:
            {
                var watches = FdInfo.Inotify(info).Select(w => new InotifyWatch(w.Wd, w.Inode, w.Device, w.Mask, ResolveHandle(w))).ToList();
                d = d with
                {
                    InotifyWatches = watches,
                    Description = $"inotify {watches.Count} watch{(watches.Count == 1 ? "" : "es")}" + (watches.Count == 0 ? "" : ": " + string.Join(", ", watches.Select(w =>
                        $"{w.Path ?? $"inode {w.Inode} on {w.Device >> 20}:{w.Device & 0xfffff}"} {w.MaskNames}"))),
                };
                break;
            }

            case DescriptorKind.PidFd:
            {
                var p = FdInfo.PidFdPid(info);
                var who = p is > 0 ? $"PID {p} ({new Procfs.ThreadNames().Get(p.Value, p.Value)})" : p == -1 ? "a process that has exited" : "?";
                d = d with { PidFdPid = p, Description = "pidfd of " + who };
                break;
            }

            case DescriptorKind.KvmVm:
                d = d with { Info = FdInfo.Rest(info), Description = "KVM virtual machine" };
                break;

            case DescriptorKind.KvmVcpu:
            {
                var id = FdInfo.VcpuId(raw.Link);
                d = d with { VcpuId = id, Info = FdInfo.Rest(info), Description = "KVM vCPU " + (id?.ToString(Inv) ?? "?") };
                break;
            }

            case DescriptorKind.IoUring:
            {
                var rest = FdInfo.Rest(info);
                string Get(string k) => rest.FirstOrDefault(kv => kv.Key == k).Value ?? "?";
                static string Entries(string mask) =>
                    mask.StartsWith("0x", StringComparison.Ordinal) && uint.TryParse(mask.AsSpan(2), NumberStyles.HexNumber, Inv, out var m) ? (m + 1).ToString(Inv) : "?";
                d = d with
                {
                    Info = rest,
                    Description = $"io_uring {Entries(Get("SqMask"))} submission and {Entries(Get("CqMask"))} completion entries"
                        + $", {Get("SQEs")} submissions and {Get("CQEs")} completions pending" + (Get("SqThread") is "-1" or "?" ? "" : $", polled by thread {Get("SqThread")}"),
                };
                break;
            }

            case DescriptorKind.Bpf:
            {
                var rest = FdInfo.Rest(info).Where(kv => kv.Key is not ("fdinfo" or "")).ToList();
                d = d with { Info = rest, Description = raw.Link["anon_inode:".Length..] + (rest.Count == 0 ? "" : " " + string.Join(' ', rest.Select(kv => $"{kv.Key}={kv.Value}"))) };
                break;
            }

            case DescriptorKind.Namespace:
                d = d with { Description = raw.Link[..raw.Link.IndexOf(':', StringComparison.Ordinal)] + " namespace " + raw.Link[raw.Link.IndexOf('[', StringComparison.Ordinal)..] };
                break;

            default:
            {
                var rest = FdInfo.Rest(info);
                d = d with { Info = rest, Description = raw.Link + (rest.Count == 0 ? "" : " " + string.Join(' ', rest.Select(kv => kv.Value.Length == 0 ? kv.Key : $"{kv.Key}={kv.Value}"))) };
                break;
            }
        }

        return d;
    }

    private static string Holder(DescriptorHolder h) => $"{h.Pid} ({h.Name}) fd {h.Fd}{(h.Access.Length > 0 ? " " + h.Access : "")}";

    /// <summary>A socket in one line: "TCP 127.0.0.1:41234->127.0.0.1:80 ESTAB", "UNIX STREAM ESTAB peer socket:[N] of 4321 (x) fd 5".</summary>
    private static string SocketText(SocketDetails s, ulong inode)
    {
        var b = new StringBuilder(s.Protocol);
        if (s.Protocol == "NETLINK")
        {
            b.Append(' ').Append(s.NetlinkProtocol ?? "?");
            if (s.PortId is { } port) b.Append(" port ").Append(port.ToString(Inv));
            if (s.Remote is { } to) b.Append(" to ").Append(to);
            return b.ToString();
        }

        if (s.Type is { } type) b.Append(' ').Append(type);
        if (s.Local is { } local) b.Append(' ').Append(local);
        if (s.Remote is { } remote) b.Append(s.Local is null ? " ->" : "->").Append(remote);
        if (s.State is { } state) b.Append(' ').Append(state);
        if (s.ReceiveQueue is > 0) b.Append(" recv-q ").Append(s.ReceiveQueue.Value.ToString(Inv));
        if (s.SendQueue is > 0) b.Append(s.State == "LISTEN" ? " backlog " : " send-q ").Append(s.SendQueue.Value.ToString(Inv));
        if (s.PeerInode > 0)
        {
            b.Append(" peer socket:[").Append(s.PeerInode.ToString(Inv)).Append(']');
            if (s.Peers.Count > 0) b.Append(" held by ").Append(string.Join(", ", s.Peers.Select(Holder)));
        }

        if (s.Source is null && s.Protocol is not "?") b.Append(" socket:[").Append(inode.ToString(Inv)).Append(']');
        return b.ToString();
    }

    /// <summary>A descriptor as trace -yy names it inside another's line: a path, pipe:[N], TCP:[a->b], UNIX:[N->M].</summary>
    private static string Short(Raw t, SocketTable sockets)
    {
        if (t.Kind != DescriptorKind.Socket || t.Socket is not { Source: not null } s) return t.Link;
        if (s.Protocol == "UNIX")
            return s.PeerInode > 0 ? $"UNIX:[{t.Inode}->{s.PeerInode}]" : s.Local is { } name ? $"UNIX:[{t.Inode},\"{name}\"]" : $"UNIX:[{t.Inode}]";
        if (s.Protocol == "NETLINK") return $"NETLINK:[{s.NetlinkProtocol}:{s.PortId}]";
        return s.Remote is { } r ? $"{s.Protocol}:[{s.Local}->{r}]" : $"{s.Protocol}:[{s.Local}]";
    }

    private static string? ResolveHandle(FdInfo.InotifyLine w)
    {
        if (w.Handle is null) return null;
        var mountPoint = MountPointOf(w.Device);
        return mountPoint is not null && FileHandles.PathOf(mountPoint, w.HandleType, w.Handle, out var path).IsOk ? path : null;
    }

    /// <summary>
    /// A mount point (in nozoki's view) of the filesystem with the kernel device number dev (MAJOR &lt;&lt; 20 | MINOR,
    /// as fdinfo prints s_dev), from /proc/self/mountinfo.
    /// </summary>
    private static string? MountPointOf(uint dev)
    {
        var want = $"{dev >> 20}:{dev & 0xfffff}";
        try
        {
            foreach (var line in File.ReadLines("/proc/self/mountinfo"))
            {
                var f = line.Split(' ');
                if (f.Length > 4 && f[2] == want) return f[4].Replace("\\040", " ", StringComparison.Ordinal);
            }
        }
        catch (IOException)
        {
        }

        return null;
    }

    // glibc's dev_t encoding (sys/sysmacros.h): major in bits 8-19 and 32-43, minor in bits 0-7 and 20-31.
    private static ulong Major(ulong dev) => ((dev >> 8) & 0xfff) | ((dev >> 32) & 0xfffff000);

    private static ulong Minor(ulong dev) => (dev & 0xff) | ((dev >> 12) & 0xffffff00);

    internal static string Bytes(long n) => n == 1 ? "1 byte" : n.ToString(Inv) + " bytes";

    private static string Seconds(TimeSpan t) => t.TotalSeconds.ToString("0.###", Inv) + "s";
}
