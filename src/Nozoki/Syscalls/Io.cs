using System.Buffers.Binary;

namespace Nozoki.Syscalls;

// iovec arrays (readv, writev), pipe's pair, getdents, getrandom.
public sealed partial class SyscallDecoder
{
    private static readonly (ulong, string)[] GetrandomFlagNames = [(1, "GRND_NONBLOCK"), (2, "GRND_RANDOM"), (4, "GRND_INSECURE")];
    private static readonly (ulong, string)[] EpollFlagNames = [(0x80000, "EPOLL_CLOEXEC")];

    /// <summary>[{iov_base="...", iov_len=5}, ...]; for reads (total &gt;= 0) only the bytes the call returned.</summary>
    private void Iovecs(TextBuffer b, ulong address, long count, long total)
    {
        if (address == 0)
        {
            b.Append("NULL");
            return;
        }

        b.Append('[');
        Span<byte> e = stackalloc byte[16];
        var left = total;
        for (long k = 0; k < count; k++)
        {
            if (!Read(address + (ulong)k * 16, e))
            {
                if (UnreadableArray(b, address, k)) return;
                break;
            }

            if (k > 0) b.Append(", ");
            if (k >= _o.StringLimit)
            {
                b.Append("...");
                break;
            }

            var iovBase = BinaryPrimitives.ReadUInt64LittleEndian(e);
            var len = (long)BinaryPrimitives.ReadUInt64LittleEndian(e[8..]);
            b.Append("{iov_base=");
            if (total < 0)
            {
                Buffer(b, iovBase, len);
            }
            else
            {
                var got = Math.Min(len, Math.Max(left, 0));
                Buffer(b, iovBase, got);
                left -= got;
            }

            b.Append(", iov_len=");
            b.AppendInt(len);
            b.Append('}');
        }

        b.Append(']');
    }

    private void Pipe(TextBuffer b, ulong address)
    {
        Span<byte> p = stackalloc byte[8];
        if (!Read(address, p))
        {
            Ptr(b, address);
            return;
        }

        b.Append('[');
        Fd(b, BinaryPrimitives.ReadInt32LittleEndian(p));
        b.Append(", ");
        Fd(b, BinaryPrimitives.ReadInt32LittleEndian(p[4..]));
        b.Append(']');
    }

    /// <summary>getdents64: the buffer's address and how many entries the kernel filled in (strace's abbreviation).</summary>
    private void Dirents(TextBuffer b, ulong address)
    {
        b.AppendHex(address);
        if (_ret < 0) return;
        var n = (int)Math.Min(_ret, _scratch.Length);
        if (!Read(address, _scratch.AsSpan(0, n))) return;
        var count = 0;
        var off = 0;
        var reclenAt = _nr == Nr.Getdents64 ? 16 : 16;
        while (off + reclenAt + 2 <= n)
        {
            var reclen = BinaryPrimitives.ReadUInt16LittleEndian(_scratch.AsSpan(off + reclenAt));
            if (reclen == 0) break;
            count++;
            off += reclen;
        }

        b.Append(" /* ");
        b.AppendInt(count);
        b.Append(count == 1 ? " entry */" : " entries */");
    }
}
