namespace Nozoki.Syscalls;

// The decoder's names for flags and constants, as strings, for code outside a trace (nozoki inspect's fdinfo).
public sealed partial class SyscallDecoder
{
    /// <summary>Open flags as strace shows them: O_RDWR|O_NONBLOCK|O_CLOEXEC.</summary>
    internal static string OpenFlagsText(ulong flags) => Text(b => OpenFlags(b, flags));

    /// <summary>Epoll event bits: EPOLLIN|EPOLLET.</summary>
    internal static string EpollEventsText(ulong events) => Text(b => Flags(b, events, EpollEventNames, "0"));

    /// <summary>A signal set as strace shows it: [USR1 USR2].</summary>
    internal static string SignalSetText(ulong set) => Text(b => SigSet(b, set));

    /// <summary>CLOCK_MONOTONIC, or the number.</summary>
    internal static string ClockText(ulong clock) => Lookup(clock, ClockNames) ?? clock.ToString(System.Globalization.CultureInfo.InvariantCulture);

    private static string Text(Action<TextBuffer> write)
    {
        var b = new TextBuffer(128);
        write(b);
        return System.Text.Encoding.UTF8.GetString(b.Span);
    }
}
