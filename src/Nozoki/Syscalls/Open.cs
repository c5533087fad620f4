using Nozoki.Procfs;

namespace Nozoki.Syscalls;

// open, openat, access, the *at flags, lseek, fcntl, and file descriptors (-y).
public sealed partial class SyscallDecoder
{
    private const ulong OCreat = 0x40, OTmpfile = 0x410000;

    private static readonly (ulong, string)[] OpenFlagNames =
    [
        (0x40, "O_CREAT"), (0x80, "O_EXCL"), (0x100, "O_NOCTTY"), (0x200, "O_TRUNC"), (0x400, "O_APPEND"),
        (0x800, "O_NONBLOCK"), (0x101000, "O_SYNC"), (0x1000, "O_DSYNC"), (0x2000, "O_ASYNC"), (0x4000, "O_DIRECT"),
        (0x8000, "O_LARGEFILE"), (0x20000, "O_NOFOLLOW"), (0x40000, "O_NOATIME"), (0x80000, "O_CLOEXEC"), (0x200000, "O_PATH"),
        (0x410000, "O_TMPFILE"), (0x10000, "O_DIRECTORY"),
    ];

    private static readonly (ulong, string)[] AtFlagNames =
    [
        (0x100, "AT_SYMLINK_NOFOLLOW"), (0x200, "AT_REMOVEDIR"), (0x400, "AT_SYMLINK_FOLLOW"), (0x800, "AT_NO_AUTOMOUNT"),
        (0x1000, "AT_EMPTY_PATH"), (0x2000, "AT_STATX_FORCE_SYNC"), (0x4000, "AT_STATX_DONT_SYNC"), (0x8000, "AT_RECURSIVE"),
    ];

    private static readonly (ulong, string)[] WhenceNames =
        [(0, "SEEK_SET"), (1, "SEEK_CUR"), (2, "SEEK_END"), (3, "SEEK_DATA"), (4, "SEEK_HOLE")];

    private static readonly (ulong, string)[] FcntlNames =
    [
        (0, "F_DUPFD"), (1, "F_GETFD"), (2, "F_SETFD"), (3, "F_GETFL"), (4, "F_SETFL"), (5, "F_GETLK"), (6, "F_SETLK"),
        (7, "F_SETLKW"), (8, "F_SETOWN"), (9, "F_GETOWN"), (10, "F_SETSIG"), (11, "F_GETSIG"), (15, "F_SETOWN_EX"),
        (16, "F_GETOWN_EX"), (36, "F_OFD_GETLK"), (37, "F_OFD_SETLK"), (38, "F_OFD_SETLKW"), (1024, "F_SETLEASE"),
        (1025, "F_GETLEASE"), (1026, "F_NOTIFY"), (1030, "F_DUPFD_CLOEXEC"), (1031, "F_SETPIPE_SZ"), (1032, "F_GETPIPE_SZ"),
        (1033, "F_ADD_SEALS"), (1034, "F_GET_SEALS"),
    ];

    private static readonly (ulong, string)[] FdFlagNames = [(1, "FD_CLOEXEC")];
    private static readonly (ulong, string)[] AccessModeNames = [(4, "R_OK"), (2, "W_OK"), (1, "X_OK")];

    private static readonly (ulong, string)[] SealNames =
        [(1, "F_SEAL_SEAL"), (2, "F_SEAL_SHRINK"), (4, "F_SEAL_GROW"), (8, "F_SEAL_WRITE"), (16, "F_SEAL_FUTURE_WRITE")];

    private static readonly (ulong, string)[] LeaseNames = [(0, "F_RDLCK"), (1, "F_WRLCK"), (2, "F_UNLCK")];

    /// <summary>open flags: the access mode first (O_RDONLY is 0), then the others.</summary>
    private static void OpenFlags(TextBuffer b, ulong v)
    {
        b.Append((v & 3) switch { 0 => "O_RDONLY", 1 => "O_WRONLY", 2 => "O_RDWR", _ => "O_ACCMODE" });
        v &= ~3UL;
        if (v == 0) return;
        b.Append('|');
        Flags(b, v, OpenFlagNames, "0");
    }

    /// <summary>The mode of open/openat: shown only with O_CREAT or O_TMPFILE, as strace does.</summary>
    private int OpenMode(TextBuffer b, int i)
    {
        var flags = _a[i - 1];
        if ((flags & OCreat) == 0 && (flags & OTmpfile) != OTmpfile) return 0;
        Mode(b, _a[i]);
        return 1;
    }

    /// <summary>A mode argument (mkdir, chmod, open): plain octal, as strace prints it (04755).</summary>
    private static void Mode(TextBuffer b, ulong v) => b.AppendOctal(v);

    /// <summary>A mode in a structure (st_mode): the special bits by name, then the permissions in octal.</summary>
    private static void SymbolicMode(TextBuffer b, ulong v)
    {
        var special = v & ~0x1ffUL;
        foreach (var (bit, name) in ModeSpecialNames)
        {
            if ((special & bit) == 0) continue;
            b.Append(name);
            b.Append('|');
            special &= ~bit;
        }

        if (special != 0)
        {
            b.AppendOctal(special);
            b.Append('|');
        }

        b.AppendOctal(v & 0x1ff);
        if ((v & 0x1ff) == 0) b.Append("00");
    }

    private static readonly (ulong, string)[] ModeSpecialNames = [(0x800, "S_ISUID"), (0x400, "S_ISGID"), (0x200, "S_ISVTX")];

    private static void AccessMode(TextBuffer b, ulong v)
    {
        if (v == 0)
        {
            b.Append("F_OK");
            return;
        }

        Flags(b, v, AccessModeNames, "F_OK");
    }

    private void AtFlags(TextBuffer b, ulong v)
    {
        if (_nr == Nr.Statx && (v & 0x6000) == 0)
        {
            b.Append("AT_STATX_SYNC_AS_STAT");
            if (v == 0) return;
            b.Append('|');
        }
        else if (_nr is Nr.Faccessat2 && (v & 0x200) != 0)
        {
            v &= ~0x200UL;
            if (v != 0)
            {
                Flags(b, v, AtFlagNames, "0");
                b.Append('|');
            }

            b.Append("AT_EACCESS");
            return;
        }

        Flags(b, v, AtFlagNames, "0");
    }

    private static void Whence(TextBuffer b, ulong v) => Enum(b, v, WhenceNames, "SEEK_???");

    /// <summary>fcntl(fd, cmd[, arg]): the third argument only for the commands that take one.</summary>
    private int Fcntl(TextBuffer b, int i)
    {
        var cmd = _a[i];
        Enum(b, cmd, FcntlNames, "F_???");
        var arg = _a[i + 1];
        switch (cmd)
        {
            case 1 or 3 or 9 or 11 or 1025 or 1032 or 1034: // F_GETFD, F_GETFL, F_GETOWN, F_GETSIG, F_GETLEASE, F_GETPIPE_SZ, F_GET_SEALS
                return ConsumedAll;
            case 2: // F_SETFD
                b.Append(", ");
                Flags(b, arg, FdFlagNames, "0");
                return ConsumedAll;
            case 4: // F_SETFL
                b.Append(", ");
                OpenFlags(b, arg);
                return ConsumedAll;
            case 10: // F_SETSIG
                b.Append(", ");
                SignalName(b, (int)arg);
                return ConsumedAll;
            case 1024: // F_SETLEASE
                b.Append(", ");
                Enum(b, arg, LeaseNames, "F_???");
                return ConsumedAll;
            case 1033: // F_ADD_SEALS
                b.Append(", ");
                Flags(b, arg, SealNames, "0");
                return ConsumedAll;
            case 0 or 1030 or 8 or 1031: // F_DUPFD, F_DUPFD_CLOEXEC, F_SETOWN, F_SETPIPE_SZ
                b.Append(", ");
                b.AppendInt((int)arg);
                return ConsumedAll;
            default:
                b.Append(", ");
                Ptr(b, arg);
                return ConsumedAll;
        }
    }

    /// <summary>fcntl's result: a descriptor for F_DUPFD*, flags for F_GETFD/F_GETFL ("0x1 (flags FD_CLOEXEC)").</summary>
    private void FcntlReturn(TextBuffer b)
    {
        var cmd = _a[1];
        var r = (ulong)_ret;
        switch (cmd)
        {
            case 0 or 1030:
                Fd(b, (int)_ret);
                return;
            case 1:
                b.AppendHex(r);
                if (r == 0) return;
                b.Append(" (flags ");
                Flags(b, r, FdFlagNames, "0");
                b.Append(')');
                return;
            case 3:
                b.AppendHex(r);
                b.Append(" (flags ");
                OpenFlags(b, r);
                b.Append(')');
                return;
            case 1034:
                b.AppendHex(r);
                if (r == 0) return;
                b.Append(" (seals ");
                Flags(b, r, SealNames, "0");
                b.Append(')');
                return;
            default:
                b.AppendInt(_ret);
                return;
        }
    }

    /// <summary>A file descriptor; with -y its path ("3&lt;/etc/passwd&gt;"), with -yy a socket's protocol and addresses.</summary>
    private void Fd(TextBuffer b, int fd)
    {
        b.AppendInt(fd);
        if (_o.DecorateFds == 0 || fd < 0) return;
        var target = FdPaths.Read(_pid, fd);
        if (target is null) return;
        b.Append('<');
        if (_o.DecorateFds >= 2 && target.StartsWith("socket:[", StringComparison.Ordinal)
            && ulong.TryParse(target.AsSpan(8, target.Length - 9), out var inode) && SocketInfo.Describe(_pid, inode) is { } sock)
        {
            AppendUtf8(b, sock);
        }
        else
        {
            AppendUtf8(b, target);
        }

        b.Append('>');
    }

    private static void AppendUtf8(TextBuffer b, string s)
    {
        Span<byte> tmp = stackalloc byte[System.Text.Encoding.UTF8.GetMaxByteCount(Math.Min(s.Length, 1024))];
        var n = System.Text.Encoding.UTF8.GetBytes(s.AsSpan(0, Math.Min(s.Length, 1024)), tmp);
        b.Append(tmp[..n]);
    }
}
