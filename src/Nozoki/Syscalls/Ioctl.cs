using System.Buffers.Binary;

namespace Nozoki.Syscalls;

// ioctl: request names (terminal, KVM; others as _IOC(...)) and the arguments of the terminal ones.
public sealed partial class SyscallDecoder
{
    private static void IoctlRequest(TextBuffer b, uint request)
    {
        if (Ioctls.Name(request) is { } name) b.Append(name);
        else Ioctls.FormatUnknown(b, request);
    }

    private static readonly (ulong, string)[] IflagNames =
    [
        (1, "IGNBRK"), (2, "BRKINT"), (4, "IGNPAR"), (8, "PARMRK"), (0x10, "INPCK"), (0x20, "ISTRIP"), (0x40, "INLCR"),
        (0x80, "IGNCR"), (0x100, "ICRNL"), (0x200, "IUCLC"), (0x400, "IXON"), (0x800, "IXANY"), (0x1000, "IXOFF"),
        (0x2000, "IMAXBEL"), (0x4000, "IUTF8"),
    ];

    private static readonly (ulong, string)[] OflagNames =
    [
        (1, "OPOST"), (2, "OLCUC"), (4, "ONLCR"), (8, "OCRNL"), (0x10, "ONOCR"), (0x20, "ONLRET"), (0x40, "OFILL"), (0x80, "OFDEL"),
    ];

    private static readonly (ulong, string)[] CflagNames =
    [
        (0x40, "CSTOPB"), (0x80, "CREAD"), (0x100, "PARENB"), (0x200, "PARODD"), (0x400, "HUPCL"), (0x800, "CLOCAL"),
        (0x40000000, "CMSPAR"), (0x80000000, "CRTSCTS"),
    ];

    private static readonly (ulong, string)[] LflagNames =
    [
        (1, "ISIG"), (2, "ICANON"), (4, "XCASE"), (8, "ECHO"), (0x10, "ECHOE"), (0x20, "ECHOK"), (0x40, "ECHONL"), (0x80, "NOFLSH"),
        (0x100, "TOSTOP"), (0x8000, "IEXTEN"), (0x200, "ECHOCTL"), (0x400, "ECHOPRT"), (0x800, "ECHOKE"), (0x1000, "FLUSHO"),
        (0x4000, "PENDIN"), (0x10000, "EXTPROC"),
    ];

    private static readonly string[] Bauds =
    [
        "B0", "B50", "B75", "B110", "B134", "B150", "B200", "B300", "B600", "B1200", "B1800", "B2400", "B4800", "B9600", "B19200", "B38400",
    ];

    private static readonly string[] HighBauds =
    [
        "BOTHER", "B57600", "B115200", "B230400", "B460800", "B500000", "B576000", "B921600", "B1000000", "B1152000", "B1500000",
        "B2000000", "B2500000", "B3000000", "B3500000", "B4000000",
    ];

    private void IoctlArg(TextBuffer b, uint request, ulong arg)
    {
        var name = Ioctls.Name(request);
        switch (name)
        {
            case "TCGETS" or "TCSETS" or "TCSETSW" or "TCSETSF":
                Termios(b, arg);
                return;
            case "TIOCGWINSZ" or "TIOCSWINSZ":
            {
                Span<byte> w = stackalloc byte[8];
                if (!Read(arg, w))
                {
                    Ptr(b, arg);
                    return;
                }

                b.Append("{ws_row=");
                b.AppendUInt(BinaryPrimitives.ReadUInt16LittleEndian(w));
                b.Append(", ws_col=");
                b.AppendUInt(BinaryPrimitives.ReadUInt16LittleEndian(w[2..]));
                b.Append(", ws_xpixel=");
                b.AppendUInt(BinaryPrimitives.ReadUInt16LittleEndian(w[4..]));
                b.Append(", ws_ypixel=");
                b.AppendUInt(BinaryPrimitives.ReadUInt16LittleEndian(w[6..]));
                b.Append('}');
                return;
            }

            case "TIOCGPGRP" or "TIOCSPGRP" or "FIONREAD" or "FIONBIO" or "TIOCGSID" or "TIOCGPTN" or "TIOCSPTLCK" or "FIOASYNC"
                or "TIOCOUTQ" or "TIOCGETD" or "TIOCSETD" or "TIOCGPTLCK" or "TIOCGEXCL" or "TIOCGPKT" or "TIOCPKT":
                if (!ReadI32(arg, out var v))
                {
                    Ptr(b, arg);
                    return;
                }

                b.Append('[');
                b.AppendInt(v);
                b.Append(']');
                return;
            case "KVM_CHECK_EXTENSION":
                if (Ioctls.KvmCap((uint)arg) is { } cap) b.Append(cap);
                else b.AppendHex(arg);
                return;
            case "FIONCLEX" or "FIOCLEX" or "TIOCNOTTY" or "TIOCEXCL" or "TIOCNXCL" or "TIOCCONS":
                return;
        }

        // _IO requests (no data, like KVM_RUN or KVM_CREATE_VM) take a number; others a pointer.
        if (request >> 30 == 0) b.AppendUInt(arg);
        else Ptr(b, arg);
    }

    /// <summary>struct termios, abbreviated as strace does: {c_iflag=..., c_oflag=..., c_cflag=..., c_lflag=..., ...}.</summary>
    private void Termios(TextBuffer b, ulong address)
    {
        Span<byte> t = stackalloc byte[36];
        if (!Read(address, t))
        {
            Ptr(b, address);
            return;
        }

        var iflag = BinaryPrimitives.ReadUInt32LittleEndian(t);
        var oflag = BinaryPrimitives.ReadUInt32LittleEndian(t[4..]);
        var cflag = BinaryPrimitives.ReadUInt32LittleEndian(t[8..]);
        var lflag = BinaryPrimitives.ReadUInt32LittleEndian(t[12..]);
        b.Append("{c_iflag=");
        Flags(b, iflag, IflagNames, "0");
        b.Append(", c_oflag=");
        b.Append((oflag & 0x100) != 0 ? "NL1|" : "NL0|");
        b.Append(((oflag >> 9) & 3) switch { 0 => "CR0|", 1 => "CR1|", 2 => "CR2|", _ => "CR3|" });
        b.Append(((oflag >> 11) & 3) switch { 0 => "TAB0|", 1 => "TAB1|", 2 => "TAB2|", _ => "TAB3|" });
        b.Append((oflag & 0x2000) != 0 ? "BS1|" : "BS0|");
        b.Append((oflag & 0x4000) != 0 ? "VT1|" : "VT0|");
        b.Append((oflag & 0x8000) != 0 ? "FF1" : "FF0");
        if ((oflag & 0xff) != 0)
        {
            b.Append('|');
            Flags(b, oflag & 0xff, OflagNames, "0");
        }

        b.Append(", c_cflag=");
        var baud = cflag & 0x100f;
        b.Append(baud < 16 ? Bauds[baud] : (baud & 0xf) < 16 && baud >= 0x1000 ? HighBauds[baud & 0xf] : "B?");
        b.Append(((cflag >> 4) & 3) switch { 0 => "|CS5", 1 => "|CS6", 2 => "|CS7", _ => "|CS8" });
        var rest = cflag & ~0x100fUL & ~0x30UL & ~0x100f0000UL;
        if (rest != 0)
        {
            b.Append('|');
            Flags(b, rest, CflagNames, "0");
        }

        b.Append(", c_lflag=");
        Flags(b, lflag, LflagNames, "0");
        b.Append(", ...}");
    }
}
