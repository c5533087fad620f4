using System.Globalization;
using System.Net;
using System.Text;
using Nozoki.Native;

namespace Nozoki.Inspection;

/// <summary>
/// The sockets of a process's network namespace, by inode: from sock_diag netlink (ss's source: states, queues, unix
/// peers), one dump per family and only for the families the process has; when netlink is refused (another
/// namespace without CAP_SYS_ADMIN), from the text tables of /proc/PID/net (no unix peers there).
/// </summary>
internal sealed class SocketTable : IDisposable
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;
    private readonly int _pid;
    private readonly ProcSource _src;
    private int _diag = -1;
    private SysResult _diagError;
    private bool _diagTried;
    private readonly Dictionary<string, Dictionary<uint, SocketDetails>> _byFamily = new(StringComparer.Ordinal);

    public SocketTable(int pid, ProcSource src, bool useSockDiag = true)
    {
        _pid = pid;
        _src = src;
        _diagTried = !useSockDiag;
    }

    /// <summary>Why netlink could not be used (then /proc/PID/net was), or null.</summary>
    public string? Fallback { get; private set; }

    /// <summary>The socket of the given inode and protocol (system.sockprotoname), or a bare one with just the protocol.</summary>
    public SocketDetails Describe(uint inode, string protocol)
    {
        var family = protocol switch
        {
            "TCP" => "tcp",
            "TCPv6" => "tcp6",
            "UDP" => "udp",
            "UDPv6" => "udp6",
            "NETLINK" => "netlink",
            // UNIX, UNIX-STREAM, UNIX-SEQPACKET
            _ when protocol.StartsWith("UNIX", StringComparison.Ordinal) => "unix",
            _ => null,
        };
        if (family is not null && Table(family).TryGetValue(inode, out var found)) return found;
        return new SocketDetails { Protocol = protocol };
    }

    /// <summary>A unix socket by inode (a peer), if the table has it.</summary>
    public SocketDetails? Unix(uint inode) => Table("unix").TryGetValue(inode, out var s) ? s : null;

    private Dictionary<uint, SocketDetails> Table(string family)
    {
        if (_byFamily.TryGetValue(family, out var table)) return table;
        table = [];
        _byFamily[family] = table;
        if (Diag() is { } fd)
        {
            var r = family switch
            {
                "unix" => LoadUnix(fd, table),
                "netlink" => LoadNetlink(fd, table),
                _ => LoadInet(fd, family, table),
            };
            if (r.IsOk) return table;
            Fallback ??= $"sock_diag {family}: {r.Message}";
        }

        LoadProcNet(family, table);
        return table;
    }

    private int? Diag()
    {
        if (!_diagTried)
        {
            _diagTried = true;
            var theirs = _src.Link($"/proc/{_pid}/ns/net", out _);
            var ours = _src.Link("/proc/self/ns/net", out _);
            _diagError = theirs is not null && theirs == ours ? SockDiag.Open(out _diag) : SockDiag.OpenIn($"/proc/{_pid}/ns/net", out _diag);
            if (!_diagError.IsOk) Fallback = $"sock_diag in the process's network namespace: {_diagError.Message}";
        }

        return _diag >= 0 ? _diag : null;
    }

    private static SysResult LoadUnix(int fd, Dictionary<uint, SocketDetails> table)
    {
        var list = new List<UnixDiagEntry>();
        var r = SockDiag.DumpUnix(fd, list);
        foreach (var u in list)
        {
            table[u.Inode] = new SocketDetails
            {
                Protocol = "UNIX",
                Type = UnixType(u.Type),
                State = StateName(u.State),
                Local = UnixName(u.Name),
                ReceiveQueue = u.ReceiveQueue,
                SendQueue = u.SendQueue,
                PeerInode = u.Peer,
                Source = "sock_diag",
            };
        }

        return r;
    }

    private static SysResult LoadInet(int fd, string family, Dictionary<uint, SocketDetails> table)
    {
        var v6 = family.EndsWith('6');
        var tcp = family.StartsWith("tcp", StringComparison.Ordinal);
        var list = new List<InetDiagEntry>();
        var r = SockDiag.DumpInet(fd, v6, tcp ? SockDiag.TCP : SockDiag.UDP, list);
        foreach (var e in list)
        {
            var remote = IsAny(e.Destination) && e.DestinationPort == 0 ? null : Endpoint(e.Destination, e.DestinationPort);
            table[e.Inode] = new SocketDetails
            {
                Protocol = (tcp ? "TCP" : "UDP") + (v6 ? "v6" : ""),
                State = StateName(e.State),
                Local = Endpoint(e.Source, e.SourcePort),
                Remote = remote,
                ReceiveQueue = e.ReceiveQueue,
                SendQueue = e.SendQueue,
                Source = "sock_diag",
            };
        }

        return r;
    }

    private static SysResult LoadNetlink(int fd, Dictionary<uint, SocketDetails> table)
    {
        var list = new List<NetlinkDiagEntry>();
        var r = SockDiag.DumpNetlink(fd, list);
        foreach (var n in list)
        {
            table[n.Inode] = new SocketDetails
            {
                Protocol = "NETLINK",
                Type = n.Type == 3 ? "RAW" : n.Type == 2 ? "DGRAM" : n.Type.ToString(Inv),
                NetlinkProtocol = NetlinkProtocolName(n.Protocol),
                PortId = n.PortId,
                Remote = n.DestinationPortId != 0 || n.DestinationGroup != 0
                    ? $"port {n.DestinationPortId}" + (n.DestinationGroup != 0 ? $" groups 0x{n.DestinationGroup:x}" : "") : null,
                Source = "sock_diag",
            };
        }

        return r;
    }

    /// <summary>The fallback: /proc/PID/net/{tcp,tcp6,udp,udp6,unix,netlink} (the process's namespace).</summary>
    private void LoadProcNet(string family, Dictionary<uint, SocketDetails> table)
    {
        var text = _src.Text($"/proc/{_pid}/net/{family}", out _);
        if (text is null) return;
        var first = true;
        foreach (var line in text.AsSpan().EnumerateLines())
        {
            if (first || line.IsEmpty)
            {
                first = false;
                continue;
            }

            var f = line.ToString().Split(' ', StringSplitOptions.RemoveEmptyEntries);
            switch (family)
            {
                case "unix" when f.Length >= 7 && uint.TryParse(f[6], NumberStyles.None, Inv, out var ino):
                    // Num RefCount Protocol Flags Type St Inode [Path]; St is SS_UNCONNECTED 1, SS_CONNECTED 3 (flags 0x10000: listening).
                    var listening = (uint.Parse(f[3], NumberStyles.HexNumber, Inv) & 0x10000) != 0;
                    var st = f[5] switch { "03" => "ESTAB", _ => listening ? "LISTEN" : "UNCONN" };
                    table[ino] = new SocketDetails
                    {
                        Protocol = "UNIX",
                        Type = UnixType((byte)uint.Parse(f[4], NumberStyles.HexNumber, Inv)),
                        State = st,
                        Local = f.Length >= 8 ? string.Join(' ', f[7..]) : null,
                        Source = "/proc/net",
                    };
                    break;
                case "netlink" when f.Length >= 10 && uint.TryParse(f[9], NumberStyles.None, Inv, out var nino):
                    // sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
                    table[nino] = new SocketDetails
                    {
                        Protocol = "NETLINK",
                        NetlinkProtocol = NetlinkProtocolName(byte.Parse(f[1], Inv)),
                        PortId = uint.Parse(f[2], Inv),
                        Source = "/proc/net",
                    };
                    break;
                case not ("unix" or "netlink") when f.Length >= 10 && uint.TryParse(f[9], NumberStyles.None, Inv, out var iino):
                    // sl local rem st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
                    var v6 = family.EndsWith('6');
                    var queues = f[4].Split(':');
                    var remote = ProcEndpoint(f[2], v6, out var remoteAny);
                    var state = byte.Parse(f[3], NumberStyles.HexNumber, Inv);
                    table[iino] = new SocketDetails
                    {
                        Protocol = (family.StartsWith("tcp", StringComparison.Ordinal) ? "TCP" : "UDP") + (v6 ? "v6" : ""),
                        State = StateName(state),
                        Local = ProcEndpoint(f[1], v6, out _),
                        Remote = remoteAny ? null : remote,
                        // A listening socket's backlog is not in /proc/net (sock_diag gives it as the send queue).
                        SendQueue = state == 10 ? null : uint.Parse(queues[0], NumberStyles.HexNumber, Inv),
                        ReceiveQueue = uint.Parse(queues[1], NumberStyles.HexNumber, Inv),
                        Source = "/proc/net",
                    };
                    break;
            }
        }
    }

    /// <summary>A /proc/net address ("0100007F:1F90") as trace -yy shows it; any: the unspecified address and port 0.</summary>
    private static string ProcEndpoint(string hex, bool v6, out bool any)
    {
        any = hex.All(c => c is '0' or ':');
        return Syscalls.SocketInfo.Endpoint(hex, v6);
    }

    private static bool IsAny(byte[] address) => Array.TrueForAll(address, b => b == 0);

    internal static string Endpoint(byte[] address, ushort port)
    {
        var ip = new IPAddress(address);
        return address.Length == 16 ? $"[{ip}]:{port.ToString(Inv)}" : $"{ip}:{port.ToString(Inv)}";
    }

    /// <summary>A unix socket's name: its path, "@name" for an abstract one (a leading NUL), null when unbound.</summary>
    internal static string? UnixName(byte[]? name)
    {
        if (name is null || name.Length == 0) return null;
        if (name[0] == 0) return "@" + Encoding.UTF8.GetString(name, 1, name.Length - 1).Replace('\0', '@');
        var end = Array.IndexOf(name, (byte)0);
        return Encoding.UTF8.GetString(name, 0, end < 0 ? name.Length : end);
    }

    internal static string UnixType(byte type) => type switch
    {
        1 => "STREAM",
        2 => "DGRAM",
        5 => "SEQPACKET",
        _ => type.ToString(Inv),
    };

    /// <summary>The TCP state numbers (net/tcp_states.h) with ss's names; unix and UDP sockets use them too.</summary>
    internal static string StateName(byte state) => state switch
    {
        1 => "ESTAB",
        2 => "SYN-SENT",
        3 => "SYN-RECV",
        4 => "FIN-WAIT-1",
        5 => "FIN-WAIT-2",
        6 => "TIME-WAIT",
        7 => "UNCONN",
        8 => "CLOSE-WAIT",
        9 => "LAST-ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        12 => "NEW-SYN-RECV",
        _ => "state " + state.ToString(Inv),
    };

    internal static string NetlinkProtocolName(byte protocol) => protocol switch
    {
        0 => "ROUTE",
        2 => "USERSOCK",
        3 => "FIREWALL",
        4 => "SOCK_DIAG",
        5 => "NFLOG",
        6 => "XFRM",
        7 => "SELINUX",
        8 => "ISCSI",
        9 => "AUDIT",
        10 => "FIB_LOOKUP",
        11 => "CONNECTOR",
        12 => "NETFILTER",
        13 => "IP6_FW",
        14 => "DNRTMSG",
        15 => "KOBJECT_UEVENT",
        16 => "GENERIC",
        18 => "SCSITRANSPORT",
        19 => "ECRYPTFS",
        20 => "RDMA",
        21 => "CRYPTO",
        22 => "SMC",
        _ => protocol.ToString(Inv),
    };

    public void Dispose()
    {
        SockDiag.Close(_diag);
        _diag = -1;
    }
}
