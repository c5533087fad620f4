using System.Buffers.Binary;

namespace Nozoki.Syscalls;

// poll, ppoll, epoll_ctl, epoll_wait.
public sealed partial class SyscallDecoder
{
    private static readonly (ulong, string)[] PollEventNames =
    [
        (1, "POLLIN"), (2, "POLLPRI"), (4, "POLLOUT"), (8, "POLLERR"), (0x10, "POLLHUP"), (0x20, "POLLNVAL"), (0x40, "POLLRDNORM"),
        (0x80, "POLLRDBAND"), (0x100, "POLLWRNORM"), (0x200, "POLLWRBAND"), (0x400, "POLLMSG"), (0x1000, "POLLREMOVE"),
        (0x2000, "POLLRDHUP"),
    ];

    private static readonly (ulong, string)[] EpollEventNames =
    [
        (1, "EPOLLIN"), (2, "EPOLLPRI"), (4, "EPOLLOUT"), (8, "EPOLLERR"), (0x10, "EPOLLHUP"), (0x20, "EPOLLNVAL"),
        (0x40, "EPOLLRDNORM"), (0x80, "EPOLLRDBAND"), (0x100, "EPOLLWRNORM"), (0x200, "EPOLLWRBAND"), (0x400, "EPOLLMSG"),
        (0x2000, "EPOLLRDHUP"), (1UL << 28, "EPOLLEXCLUSIVE"), (1UL << 29, "EPOLLWAKEUP"), (1UL << 30, "EPOLLONESHOT"),
        (1UL << 31, "EPOLLET"),
    ];

    private static readonly (ulong, string)[] EpollOpNames = [(1, "EPOLL_CTL_ADD"), (2, "EPOLL_CTL_DEL"), (3, "EPOLL_CTL_MOD")];

    /// <summary>The pollfd array at entry: [{fd=3, events=POLLIN}, ...].</summary>
    private int Poll(TextBuffer b, int i)
    {
        PollFdArray(b, _a[i], (long)_a[i + 1], revents: false);
        return 1;
    }

    private void PollFdArray(TextBuffer b, ulong address, long count, bool revents)
    {
        if (address == 0)
        {
            b.Append("NULL");
            return;
        }

        b.Append('[');
        var shown = 0;
        Span<byte> e = stackalloc byte[8];
        for (long k = 0; k < count; k++)
        {
            if (!Read(address + (ulong)k * 8, e))
            {
                if (UnreadableArray(b, address, k)) return;
                break;
            }

            var fd = BinaryPrimitives.ReadInt32LittleEndian(e);
            var ev = BinaryPrimitives.ReadUInt16LittleEndian(e[(revents ? 6 : 4)..]);
            if (revents && ev == 0) continue;
            if (shown > 0) b.Append(", ");
            if (shown >= _o.StringLimit)
            {
                b.Append("...");
                break;
            }

            b.Append("{fd=");
            Fd(b, fd);
            b.Append(revents ? ", revents=" : ", events=");
            Flags(b, ev, PollEventNames, "0");
            b.Append('}');
            shown++;
        }

        b.Append(']');
    }

    /// <summary>poll's result: " ([{fd=3, revents=POLLIN}])", or " (Timeout)".</summary>
    private void PollReturn(TextBuffer b)
    {
        if (_ret == 0)
        {
            b.Append(" (Timeout)");
            return;
        }

        b.Append(" (");
        PollFdArray(b, _a[0], (long)_a[1], revents: true);
        b.Append(')');
    }

    /// <summary>count epoll_event structs (packed on x86_64: 4 bytes of events, 8 of data).</summary>
    private void EpollEvents(TextBuffer b, ulong address, long count)
    {
        if (address == 0)
        {
            b.Append("NULL");
            return;
        }

        var single = !_exiting || count == 1 && _nr == Nr.EpollCtl;
        if (!single) b.Append('[');
        Span<byte> e = stackalloc byte[12];
        for (long k = 0; k < count; k++)
        {
            if (!Read(address + (ulong)k * 12, e))
            {
                if (UnreadableArray(b, address, k, bracketWritten: !single)) return;
                break;
            }

            if (k > 0) b.Append(", ");
            if (k >= _o.StringLimit)
            {
                b.Append("...");
                break;
            }

            var data = BinaryPrimitives.ReadUInt64LittleEndian(e[4..]);
            b.Append("{events=");
            Flags(b, BinaryPrimitives.ReadUInt32LittleEndian(e), EpollEventNames, "0");
            b.Append(", data={u32=");
            b.AppendUInt((uint)data);
            b.Append(", u64=");
            b.AppendUInt(data);
            b.Append("}}");
        }

        if (!single) b.Append(']');
    }
}
