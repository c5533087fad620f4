using System.Buffers.Binary;

namespace Nozoki.Syscalls;

// socket, connect, bind, accept, send*/recv*: domains, types, protocols, flags, struct sockaddr.
public sealed partial class SyscallDecoder
{
    private static readonly (ulong, string)[] DomainNames =
    [
        (0, "AF_UNSPEC"), (1, "AF_UNIX"), (2, "AF_INET"), (3, "AF_AX25"), (4, "AF_IPX"), (5, "AF_APPLETALK"), (9, "AF_X25"),
        (10, "AF_INET6"), (15, "AF_KEY"), (16, "AF_NETLINK"), (17, "AF_PACKET"), (29, "AF_CAN"), (31, "AF_BLUETOOTH"),
        (38, "AF_ALG"), (40, "AF_VSOCK"), (44, "AF_XDP"), (45, "AF_MCTP"),
    ];

    private static readonly (ulong, string)[] SockTypeNames =
        [(1, "SOCK_STREAM"), (2, "SOCK_DGRAM"), (3, "SOCK_RAW"), (4, "SOCK_RDM"), (5, "SOCK_SEQPACKET"), (6, "SOCK_DCCP"), (10, "SOCK_PACKET")];

    private static readonly (ulong, string)[] SockTypeFlagNames = [(0x80000, "SOCK_CLOEXEC"), (0x800, "SOCK_NONBLOCK")];

    private static readonly (ulong, string)[] IpProtoNames =
    [
        (0, "IPPROTO_IP"), (1, "IPPROTO_ICMP"), (2, "IPPROTO_IGMP"), (6, "IPPROTO_TCP"), (17, "IPPROTO_UDP"), (41, "IPPROTO_IPV6"),
        (47, "IPPROTO_GRE"), (58, "IPPROTO_ICMPV6"), (132, "IPPROTO_SCTP"), (136, "IPPROTO_UDPLITE"), (255, "IPPROTO_RAW"),
        (262, "IPPROTO_MPTCP"),
    ];

    private static readonly (ulong, string)[] NetlinkProtoNames =
    [
        (0, "NETLINK_ROUTE"), (2, "NETLINK_USERSOCK"), (4, "NETLINK_SOCK_DIAG"), (6, "NETLINK_XFRM"), (7, "NETLINK_SELINUX"),
        (9, "NETLINK_AUDIT"), (10, "NETLINK_FIB_LOOKUP"), (11, "NETLINK_CONNECTOR"), (12, "NETLINK_NETFILTER"),
        (15, "NETLINK_KOBJECT_UEVENT"), (16, "NETLINK_GENERIC"),
    ];

    private static readonly (ulong, string)[] MsgFlagNames =
    [
        (1, "MSG_OOB"), (2, "MSG_PEEK"), (4, "MSG_DONTROUTE"), (8, "MSG_CTRUNC"), (0x10, "MSG_PROXY"), (0x20, "MSG_TRUNC"),
        (0x40, "MSG_DONTWAIT"), (0x80, "MSG_EOR"), (0x100, "MSG_WAITALL"), (0x200, "MSG_FIN"), (0x400, "MSG_SYN"),
        (0x800, "MSG_CONFIRM"), (0x1000, "MSG_RST"), (0x2000, "MSG_ERRQUEUE"), (0x4000, "MSG_NOSIGNAL"), (0x8000, "MSG_MORE"),
        (0x10000, "MSG_WAITFORONE"), (0x20000, "MSG_BATCH"), (0x4000000, "MSG_ZEROCOPY"), (0x20000000, "MSG_FASTOPEN"),
        (0x40000000, "MSG_CMSG_CLOEXEC"),
    ];

    private static readonly (ulong, string)[] ShutdownNames = [(0, "SHUT_RD"), (1, "SHUT_WR"), (2, "SHUT_RDWR")];

    private static void SockType(TextBuffer b, ulong v)
    {
        var type = v & 0xf;
        Enum(b, type, SockTypeNames, "SOCK_???");
        v &= ~0xfUL;
        if (v == 0) return;
        b.Append('|');
        Flags(b, v, SockTypeFlagNames, "0");
    }

    private static void SockProto(TextBuffer b, ulong domain, ulong v)
    {
        switch (domain)
        {
            case 2 or 10:
                Enum(b, v, IpProtoNames, "IPPROTO_???");
                return;
            case 16:
                Enum(b, v, NetlinkProtoNames, "NETLINK_???");
                return;
            case 17:
                // AF_PACKET: an ethertype in network order, e.g. htons(ETH_P_ALL).
                b.Append("htons(");
                b.AppendHex(BinaryPrimitives.ReverseEndianness((ushort)v));
                b.Append(')');
                return;
            default:
                b.AppendUInt(v);
                return;
        }
    }

    /// <summary>An input sockaddr of length len.</summary>
    private void SockAddr(TextBuffer b, ulong address, long len)
    {
        if (address == 0)
        {
            b.Append("NULL");
            return;
        }

        var n = (int)Math.Clamp(len, 0, 128);
        var s = _small.AsSpan(0, n);
        if (n < 2 || !Read(address, s))
        {
            b.AppendHex(address);
            return;
        }

        FormatSockAddr(b, s);
    }

    /// <summary>accept/getsockname/recvfrom: the address the kernel wrote, and its length pointer as [len].</summary>
    private int OutSockAddr(TextBuffer b, ulong address, ulong lenPtr)
    {
        if (address == 0)
        {
            b.Append("NULL, ");
            Ptr(b, lenPtr);
            return 2;
        }

        if (!ReadI32(lenPtr, out var len))
        {
            b.AppendHex(address);
            b.Append(", ");
            Ptr(b, lenPtr);
            return 2;
        }

        SockAddr(b, address, len);
        b.Append(", [");
        b.AppendInt(len);
        b.Append(']');
        return 2;
    }

    internal static void FormatSockAddr(TextBuffer b, ReadOnlySpan<byte> s)
    {
        var family = BinaryPrimitives.ReadUInt16LittleEndian(s);
        b.Append("{sa_family=");
        Enum(b, family, DomainNames, "AF_???");
        switch (family)
        {
            case 1: // AF_UNIX
            {
                var path = s[2..];
                if (path.IsEmpty) break;
                b.Append(", sun_path=");
                if (path[0] == 0)
                {
                    b.Append('@');
                    Quote(b, path[1..], cut: false);
                }
                else
                {
                    var nul = path.IndexOf((byte)0);
                    Quote(b, nul >= 0 ? path[..nul] : path, cut: false);
                }

                break;
            }

            case 2 when s.Length >= 8: // AF_INET
                b.Append(", sin_port=htons(");
                b.AppendUInt(BinaryPrimitives.ReadUInt16BigEndian(s[2..]));
                b.Append("), sin_addr=inet_addr(\"");
                AppendIPv4(b, s[4..8]);
                b.Append("\")");
                break;
            case 10 when s.Length >= 24: // AF_INET6
                b.Append(", sin6_port=htons(");
                b.AppendUInt(BinaryPrimitives.ReadUInt16BigEndian(s[2..]));
                b.Append("), sin6_flowinfo=htonl(");
                b.AppendUInt(BinaryPrimitives.ReadUInt32BigEndian(s[4..]));
                b.Append("), inet_pton(AF_INET6, \"");
                AppendIPv6(b, s[8..24]);
                b.Append("\", &sin6_addr)");
                if (s.Length >= 28)
                {
                    b.Append(", sin6_scope_id=");
                    b.AppendUInt(BinaryPrimitives.ReadUInt32LittleEndian(s[24..]));
                }

                break;
            case 16 when s.Length >= 12: // AF_NETLINK
                b.Append(", nl_pid=");
                b.AppendInt(BinaryPrimitives.ReadInt32LittleEndian(s[4..]));
                b.Append(", nl_groups=");
                Span<byte> hex = stackalloc byte[8];
                System.Buffers.Text.Utf8Formatter.TryFormat(BinaryPrimitives.ReadUInt32LittleEndian(s[8..]), hex, out _, new System.Buffers.StandardFormat('x', 8));
                b.Append(hex);
                break;
            default:
                b.Append(", sa_data=");
                Quote(b, s[2..], cut: false);
                break;
        }

        b.Append('}');
    }

    internal static void AppendIPv4(TextBuffer b, ReadOnlySpan<byte> a)
    {
        for (var i = 0; i < 4; i++)
        {
            if (i > 0) b.Append('.');
            b.AppendUInt(a[i]);
        }
    }

    internal static void AppendIPv6(TextBuffer b, ReadOnlySpan<byte> a)
    {
        Span<char> text = stackalloc char[64];
        new System.Net.IPAddress(a).TryFormat(text, out var n);
        b.Append(text[..n]);
    }
}
