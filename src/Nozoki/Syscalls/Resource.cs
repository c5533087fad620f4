using System.Buffers.Binary;

namespace Nozoki.Syscalls;

// getrlimit, setrlimit, prlimit64, fadvise64.
public sealed partial class SyscallDecoder
{
    private static readonly (ulong, string)[] RlimitNames =
    [
        (0, "RLIMIT_CPU"), (1, "RLIMIT_FSIZE"), (2, "RLIMIT_DATA"), (3, "RLIMIT_STACK"), (4, "RLIMIT_CORE"), (5, "RLIMIT_RSS"),
        (6, "RLIMIT_NPROC"), (7, "RLIMIT_NOFILE"), (8, "RLIMIT_MEMLOCK"), (9, "RLIMIT_AS"), (10, "RLIMIT_LOCKS"),
        (11, "RLIMIT_SIGPENDING"), (12, "RLIMIT_MSGQUEUE"), (13, "RLIMIT_NICE"), (14, "RLIMIT_RTPRIO"), (15, "RLIMIT_RTTIME"),
    ];

    private static readonly (ulong, string)[] FadviceNames =
    [
        (0, "POSIX_FADV_NORMAL"), (1, "POSIX_FADV_RANDOM"), (2, "POSIX_FADV_SEQUENTIAL"), (3, "POSIX_FADV_WILLNEED"),
        (4, "POSIX_FADV_DONTNEED"), (5, "POSIX_FADV_NOREUSE"),
    ];

    /// <summary>{rlim_cur=8192*1024, rlim_max=RLIM64_INFINITY}.</summary>
    private void Rlimit(TextBuffer b, ulong address)
    {
        Span<byte> r = stackalloc byte[16];
        if (address == 0)
        {
            b.Append("NULL");
            return;
        }

        if (!Read(address, r))
        {
            b.AppendHex(address);
            return;
        }

        b.Append("{rlim_cur=");
        RlimitValue(b, BinaryPrimitives.ReadUInt64LittleEndian(r));
        b.Append(", rlim_max=");
        RlimitValue(b, BinaryPrimitives.ReadUInt64LittleEndian(r[8..]));
        b.Append('}');
    }

    private void RlimitValue(TextBuffer b, ulong v)
    {
        if (v == ulong.MaxValue)
        {
            b.Append("RLIM64_INFINITY");
        }
        else if (v > 0 && v % 1024 == 0)
        {
            b.AppendUInt(v / 1024);
            b.Append("*1024");
        }
        else
        {
            b.AppendUInt(v);
        }
    }
}
