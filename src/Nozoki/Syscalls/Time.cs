using System.Buffers.Binary;

namespace Nozoki.Syscalls;

// struct timespec, struct timeval, clock ids.
public sealed partial class SyscallDecoder
{
    private static readonly (ulong, string)[] ClockNames =
    [
        (0, "CLOCK_REALTIME"), (1, "CLOCK_MONOTONIC"), (2, "CLOCK_PROCESS_CPUTIME_ID"), (3, "CLOCK_THREAD_CPUTIME_ID"),
        (4, "CLOCK_MONOTONIC_RAW"), (5, "CLOCK_REALTIME_COARSE"), (6, "CLOCK_MONOTONIC_COARSE"), (7, "CLOCK_BOOTTIME"),
        (8, "CLOCK_REALTIME_ALARM"), (9, "CLOCK_BOOTTIME_ALARM"), (11, "CLOCK_TAI"),
    ];

    /// <summary>{tv_sec=1, tv_nsec=500000000}.</summary>
    private void Timespec(TextBuffer b, ulong address) => TimePair(b, address, "tv_nsec=");

    /// <summary>{tv_sec=1700000000, tv_usec=12345}.</summary>
    private void Timeval(TextBuffer b, ulong address) => TimePair(b, address, "tv_usec=");

    private void TimePair(TextBuffer b, ulong address, string second)
    {
        Span<byte> t = stackalloc byte[16];
        if (address == 0)
        {
            b.Append("NULL");
            return;
        }

        if (!Read(address, t))
        {
            b.AppendHex(address);
            return;
        }

        b.Append("{tv_sec=");
        b.AppendInt(BinaryPrimitives.ReadInt64LittleEndian(t));
        b.Append(", ");
        b.Append(second);
        b.AppendInt(BinaryPrimitives.ReadInt64LittleEndian(t[8..]));
        b.Append('}');
    }
}
