using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace Nozoki.Native;

/// <summary>A unix socket as sock_diag reports it (linux/unix_diag.h).</summary>
internal readonly record struct UnixDiagEntry(uint Inode, byte Type, byte State, uint Peer, byte[]? Name, uint ReceiveQueue, uint SendQueue);

/// <summary>A TCP or UDP socket as inet_diag reports it (linux/inet_diag.h); addresses in network byte order.</summary>
internal readonly record struct InetDiagEntry(
    byte Family, byte Protocol, byte State, ushort SourcePort, ushort DestinationPort, byte[] Source, byte[] Destination,
    uint ReceiveQueue, uint SendQueue, uint Uid, uint Inode);

/// <summary>A netlink socket as netlink_diag reports it (linux/netlink_diag.h).</summary>
internal readonly record struct NetlinkDiagEntry(byte Type, byte Protocol, byte State, uint PortId, uint DestinationPortId, uint DestinationGroup, uint Inode);

/// <summary>
/// A NETLINK_SOCK_DIAG client: the kernel's own table of sockets (what ss reads), one dump per family. A netlink
/// socket answers for the network namespace it was created in, so to see a process's sockets in another namespace
/// (a container) the socket is created there (<see cref="OpenIn"/>: setns on a thread of its own, which needs
/// CAP_SYS_ADMIN).
/// </summary>
internal static unsafe partial class SockDiag
{
    private const int AF_UNIX = 1, AF_INET = 2, AF_INET6 = 10, AF_NETLINK = 16;
    private const int SOCK_RAW = 3, SOCK_CLOEXEC = 0x80000;
    private const int NETLINK_SOCK_DIAG = 4;
    private const ushort SOCK_DIAG_BY_FAMILY = 20;
    private const ushort NLM_F_REQUEST = 1, NLM_F_DUMP = 0x300;
    private const ushort NLMSG_ERROR = 2, NLMSG_DONE = 3;
    private const int CLONE_NEWNET = 0x40000000;

    // unix_diag_req.udiag_show
    private const uint UDIAG_SHOW_NAME = 0x1, UDIAG_SHOW_PEER = 0x4, UDIAG_SHOW_RQLEN = 0x10;

    // unix_diag attributes
    private const ushort UNIX_DIAG_NAME = 0, UNIX_DIAG_PEER = 2, UNIX_DIAG_RQLEN = 4;

    /// <summary>IPPROTO_TCP and IPPROTO_UDP.</summary>
    internal const byte TCP = 6, UDP = 17;

    [LibraryImport("libc.so.6", EntryPoint = "socket", SetLastError = true)]
    private static partial int socket(int domain, int type, int protocol);

    [LibraryImport("libc.so.6", EntryPoint = "send", SetLastError = true)]
    private static partial nint send(int fd, byte* buffer, nuint length, int flags);

    [LibraryImport("libc.so.6", EntryPoint = "recv", SetLastError = true)]
    private static partial nint recv(int fd, byte* buffer, nuint length, int flags);

    [LibraryImport("libc.so.6", EntryPoint = "setns", SetLastError = true)]
    private static partial int setns(int fd, int nstype);

    [LibraryImport("libc.so.6", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open(string path, int flags);

    /// <summary>A sock_diag socket in nozoki's own network namespace.</summary>
    internal static SysResult Open(out int fd)
    {
        fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
        return fd >= 0 ? SysResult.Ok : SysResult.LastPInvokeError();
    }

    /// <summary>
    /// A sock_diag socket in the network namespace of the file <paramref name="namespacePath"/> (/proc/PID/ns/net):
    /// a short-lived thread enters that namespace, creates the socket and goes back. EPERM without CAP_SYS_ADMIN.
    /// </summary>
    internal static SysResult OpenIn(string namespacePath, out int fd)
    {
        var result = SysResult.Ok;
        var created = -1;
        var thread = new Thread(() =>
        {
            var target = open(namespacePath, Libc.O_RDONLY | Libc.O_CLOEXEC);
            if (target < 0)
            {
                result = SysResult.LastPInvokeError();
                return;
            }

            var own = open("/proc/thread-self/ns/net", Libc.O_RDONLY | Libc.O_CLOEXEC);
            try
            {
                if (own < 0 || setns(target, CLONE_NEWNET) != 0)
                {
                    result = SysResult.LastPInvokeError();
                    return;
                }

                created = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
                if (created < 0) result = SysResult.LastPInvokeError();
                // Back home; should that fail, this thread ends now anyway and nothing else runs on it.
                setns(own, CLONE_NEWNET);
            }
            finally
            {
                Libc.close(target);
                if (own >= 0) Libc.close(own);
            }
        }) { IsBackground = true, Name = "sock_diag setns" };
        thread.Start();
        thread.Join();
        fd = created;
        return result;
    }

    internal static void Close(int fd)
    {
        if (fd >= 0) Libc.close(fd);
    }

    /// <summary>Every unix socket of the namespace, with its name, peer and queue lengths.</summary>
    internal static SysResult DumpUnix(int fd, List<UnixDiagEntry> into)
    {
        // struct unix_diag_req: family, protocol, pad(2), states, ino, show, cookie[2] = 24 bytes.
        Span<byte> req = stackalloc byte[24];
        req.Clear();
        req[0] = AF_UNIX;
        BinaryPrimitives.WriteUInt32LittleEndian(req[4..], 0xffffffff);
        BinaryPrimitives.WriteUInt32LittleEndian(req[12..], UDIAG_SHOW_NAME | UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN);
        return Dump(fd, req, msg =>
        {
            // struct unix_diag_msg: family, type, state, pad, ino, cookie[2] = 16 bytes, then attributes.
            if (msg.Length < 16) return;
            var inode = BinaryPrimitives.ReadUInt32LittleEndian(msg[4..]);
            uint peer = 0, rq = 0, wq = 0;
            byte[]? name = null;
            foreach (var (type, data) in Attributes(msg[16..]))
            {
                switch (type)
                {
                    case UNIX_DIAG_NAME: name = data.ToArray(); break;
                    case UNIX_DIAG_PEER when data.Length >= 4: peer = BinaryPrimitives.ReadUInt32LittleEndian(data); break;
                    case UNIX_DIAG_RQLEN when data.Length >= 8:
                        rq = BinaryPrimitives.ReadUInt32LittleEndian(data);
                        wq = BinaryPrimitives.ReadUInt32LittleEndian(data.AsSpan(4));
                        break;
                }
            }

            into.Add(new UnixDiagEntry(inode, msg[1], msg[2], peer, name, rq, wq));
        });
    }

    /// <summary>Every TCP or UDP socket of one family (AF_INET 2, AF_INET6 10) of the namespace.</summary>
    internal static SysResult DumpInet(int fd, bool v6, byte protocol, List<InetDiagEntry> into)
    {
        // struct inet_diag_req_v2: family, protocol, ext, pad, states, inet_diag_sockid (48) = 56 bytes.
        Span<byte> req = stackalloc byte[56];
        req.Clear();
        req[0] = (byte)(v6 ? AF_INET6 : AF_INET);
        req[1] = protocol;
        BinaryPrimitives.WriteUInt32LittleEndian(req[4..], 0xffffffff);
        return Dump(fd, req, msg =>
        {
            // struct inet_diag_msg: family, state, timer, retrans, sockid (sport, dport: big-endian; src[16], dst[16],
            // if, cookie[2]), expires, rqueue, wqueue, uid, inode = 72 bytes.
            if (msg.Length < 72) return;
            var length = msg[0] == AF_INET6 ? 16 : 4;
            into.Add(new InetDiagEntry(
                msg[0], protocol, msg[1],
                BinaryPrimitives.ReadUInt16BigEndian(msg[4..]), BinaryPrimitives.ReadUInt16BigEndian(msg[6..]),
                msg.Slice(8, length).ToArray(), msg.Slice(24, length).ToArray(),
                BinaryPrimitives.ReadUInt32LittleEndian(msg[56..]), BinaryPrimitives.ReadUInt32LittleEndian(msg[60..]),
                BinaryPrimitives.ReadUInt32LittleEndian(msg[64..]), BinaryPrimitives.ReadUInt32LittleEndian(msg[68..])));
        });
    }

    /// <summary>Every netlink socket of the namespace.</summary>
    internal static SysResult DumpNetlink(int fd, List<NetlinkDiagEntry> into)
    {
        // struct netlink_diag_req: family, protocol (NDIAG_PROTO_ALL 255), pad(2), ino, show, cookie[2] = 20 bytes.
        Span<byte> req = stackalloc byte[20];
        req.Clear();
        req[0] = AF_NETLINK;
        req[1] = 255;
        return Dump(fd, req, msg =>
        {
            // struct netlink_diag_msg: family, type, protocol, state, portid, dst_portid, dst_group, ino, cookie[2] = 28.
            if (msg.Length < 28) return;
            into.Add(new NetlinkDiagEntry(msg[1], msg[2], msg[3],
                BinaryPrimitives.ReadUInt32LittleEndian(msg[4..]), BinaryPrimitives.ReadUInt32LittleEndian(msg[8..]),
                BinaryPrimitives.ReadUInt32LittleEndian(msg[12..]), BinaryPrimitives.ReadUInt32LittleEndian(msg[16..])));
        });
    }

    private delegate void MessageHandler(ReadOnlySpan<byte> payload);

    /// <summary>Sends one SOCK_DIAG_BY_FAMILY dump request and hands each answer's payload to the handler until NLMSG_DONE.</summary>
    private static SysResult Dump(int fd, ReadOnlySpan<byte> request, MessageHandler handler)
    {
        var seq = (uint)Environment.TickCount;
        Span<byte> msg = stackalloc byte[16 + request.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(msg, (uint)msg.Length);
        BinaryPrimitives.WriteUInt16LittleEndian(msg[4..], SOCK_DIAG_BY_FAMILY);
        BinaryPrimitives.WriteUInt16LittleEndian(msg[6..], NLM_F_REQUEST | NLM_F_DUMP);
        BinaryPrimitives.WriteUInt32LittleEndian(msg[8..], seq);
        BinaryPrimitives.WriteUInt32LittleEndian(msg[12..], 0);
        request.CopyTo(msg[16..]);
        nint sent;
        fixed (byte* m = msg)
        {
            do sent = send(fd, m, (nuint)msg.Length, 0);
            while (sent < 0 && Marshal.GetLastPInvokeError() == Errno.EINTR);
        }

        if (sent < 0) return SysResult.LastPInvokeError();
        var buffer = new byte[64 << 10];
        while (true)
        {
            nint got;
            fixed (byte* b = buffer) got = recv(fd, b, (nuint)buffer.Length, 0);
            if (got < 0)
            {
                if (Marshal.GetLastPInvokeError() == Errno.EINTR) continue;
                return SysResult.LastPInvokeError();
            }

            if (got == 0) return new SysResult(Errno.EIO);
            var data = buffer.AsSpan(0, (int)got);
            while (data.Length >= 16)
            {
                var len = (int)BinaryPrimitives.ReadUInt32LittleEndian(data);
                var type = BinaryPrimitives.ReadUInt16LittleEndian(data[4..]);
                if (len < 16 || len > data.Length) return new SysResult(Errno.EIO);
                if (BinaryPrimitives.ReadUInt32LittleEndian(data[8..]) == seq)
                {
                    if (type == NLMSG_DONE) return SysResult.Ok;
                    if (type == NLMSG_ERROR)
                    {
                        // struct nlmsgerr: int error (negative errno), then the request's header.
                        var error = len >= 20 ? -BinaryPrimitives.ReadInt32LittleEndian(data[16..]) : Errno.EIO;
                        return error == 0 ? SysResult.Ok : new SysResult(error);
                    }

                    if (type == SOCK_DIAG_BY_FAMILY) handler(data[16..len]);
                }

                data = data[Math.Min(data.Length, (len + 3) & ~3)..];
            }
        }
    }

    /// <summary>The netlink attributes (struct rtattr: u16 len, u16 type, payload, padded to 4) of a message's tail.</summary>
    private static List<(ushort Type, byte[] Data)> Attributes(ReadOnlySpan<byte> tail)
    {
        var list = new List<(ushort, byte[])>();
        while (tail.Length >= 4)
        {
            var len = BinaryPrimitives.ReadUInt16LittleEndian(tail);
            var type = BinaryPrimitives.ReadUInt16LittleEndian(tail[2..]);
            if (len < 4 || len > tail.Length) break;
            list.Add(((ushort)(type & 0x3fff), tail[4..len].ToArray()));
            tail = tail[Math.Min(tail.Length, (len + 3) & ~3)..];
        }

        return list;
    }
}
