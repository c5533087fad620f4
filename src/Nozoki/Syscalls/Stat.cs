using System.Buffers.Binary;

namespace Nozoki.Syscalls;

// struct stat and struct statx, abbreviated as strace does unless -v.
public sealed partial class SyscallDecoder
{
    private static readonly (ulong, string)[] StatxMaskNames =
    [
        (0xfff, "STATX_ALL"), (0x7ff, "STATX_BASIC_STATS"), (1, "STATX_TYPE"), (2, "STATX_MODE"), (4, "STATX_NLINK"),
        (8, "STATX_UID"), (0x10, "STATX_GID"), (0x20, "STATX_ATIME"), (0x40, "STATX_MTIME"), (0x80, "STATX_CTIME"),
        (0x100, "STATX_INO"), (0x200, "STATX_SIZE"), (0x400, "STATX_BLOCKS"), (0x800, "STATX_BTIME"), (0x1000, "STATX_MNT_ID"),
        (0x2000, "STATX_DIOALIGN"),
    ];

    private static readonly string[] FileTypes =
        ["0", "S_IFIFO", "S_IFCHR", "0", "S_IFDIR", "0", "S_IFBLK", "0", "S_IFREG", "0", "S_IFLNK", "0", "S_IFSOCK", "0", "0", "0"];

    /// <summary>st_mode: S_IFREG|0644 (and S_ISUID etc. when set).</summary>
    private static void FileMode(TextBuffer b, uint mode)
    {
        var type = (mode >> 12) & 0xf;
        if (type != 0)
        {
            b.Append(FileTypes[type]);
            b.Append('|');
        }

        SymbolicMode(b, mode & 0xfff);
    }

    private static void MakeDev(TextBuffer b, ulong major, ulong minor)
    {
        b.Append("makedev(");
        b.AppendHex(major);
        b.Append(", ");
        b.AppendHex(minor);
        b.Append(')');
    }

    private static void DevT(TextBuffer b, ulong dev) => MakeDev(b, ((dev >> 32) & 0xfffff000) | ((dev >> 8) & 0xfff), ((dev >> 12) & 0xffffff00) | (dev & 0xff));

    private void Stat(TextBuffer b, ulong address)
    {
        var s = _small.AsSpan(0, 144);
        if (!Read(address, s))
        {
            Ptr(b, address);
            return;
        }

        var mode = BinaryPrimitives.ReadUInt32LittleEndian(s[24..]);
        var type = (mode >> 12) & 0xf;
        b.Append('{');
        if (_o.Verbose)
        {
            b.Append("st_dev=");
            DevT(b, BinaryPrimitives.ReadUInt64LittleEndian(s));
            b.Append(", st_ino=");
            b.AppendUInt(BinaryPrimitives.ReadUInt64LittleEndian(s[8..]));
            b.Append(", st_mode=");
            FileMode(b, mode);
            b.Append(", st_nlink=");
            b.AppendUInt(BinaryPrimitives.ReadUInt64LittleEndian(s[16..]));
            b.Append(", st_uid=");
            b.AppendUInt(BinaryPrimitives.ReadUInt32LittleEndian(s[28..]));
            b.Append(", st_gid=");
            b.AppendUInt(BinaryPrimitives.ReadUInt32LittleEndian(s[32..]));
            b.Append(", st_blksize=");
            b.AppendInt(BinaryPrimitives.ReadInt64LittleEndian(s[56..]));
            b.Append(", st_blocks=");
            b.AppendInt(BinaryPrimitives.ReadInt64LittleEndian(s[64..]));
            if (type is 2 or 6)
            {
                b.Append(", st_rdev=");
                DevT(b, BinaryPrimitives.ReadUInt64LittleEndian(s[40..]));
            }
            else
            {
                b.Append(", st_size=");
                b.AppendInt(BinaryPrimitives.ReadInt64LittleEndian(s[48..]));
            }

            StatTime(b, "st_atime", s[72..]);
            StatTime(b, "st_mtime", s[88..]);
            StatTime(b, "st_ctime", s[104..]);
            b.Append('}');
            return;
        }

        b.Append("st_mode=");
        FileMode(b, mode);
        if (type is 2 or 6)
        {
            b.Append(", st_rdev=");
            DevT(b, BinaryPrimitives.ReadUInt64LittleEndian(s[40..]));
        }
        else
        {
            b.Append(", st_size=");
            b.AppendInt(BinaryPrimitives.ReadInt64LittleEndian(s[48..]));
        }

        b.Append(", ...}");
    }

    private static void StatTime(TextBuffer b, string name, ReadOnlySpan<byte> ts)
    {
        b.Append(", ");
        b.Append(name);
        b.Append('=');
        b.AppendInt(BinaryPrimitives.ReadInt64LittleEndian(ts));
        TimeComment(b, BinaryPrimitives.ReadInt64LittleEndian(ts), BinaryPrimitives.ReadInt64LittleEndian(ts[8..]));
        b.Append(", ");
        b.Append(name);
        b.Append("_nsec=");
        b.AppendInt(BinaryPrimitives.ReadInt64LittleEndian(ts[8..]));
    }

    private static readonly long UtcOffsetSeconds = (long)TimeZoneInfo.Local.GetUtcOffset(DateTime.UtcNow).TotalSeconds;

    /// <summary>strace -v's reading aid after a time: " /* 2026-11-21T23:48:51.918839995+0000 */" (local time).</summary>
    private static void TimeComment(TextBuffer b, long seconds, long nanoseconds)
    {
        if (seconds < -62135596800 || seconds > 253402300799 - UtcOffsetSeconds) return;
        var t = DateTime.UnixEpoch.AddSeconds(seconds + UtcOffsetSeconds);
        b.Append(" /* ");
        b.AppendPadded(t.Year, 4);
        b.Append('-');
        b.AppendPadded(t.Month, 2);
        b.Append('-');
        b.AppendPadded(t.Day, 2);
        b.Append('T');
        b.AppendPadded(t.Hour, 2);
        b.Append(':');
        b.AppendPadded(t.Minute, 2);
        b.Append(':');
        b.AppendPadded(t.Second, 2);
        if (nanoseconds is > 0 and < 1_000_000_000)
        {
            b.Append('.');
            b.AppendPadded(nanoseconds, 9);
        }

        var off = Math.Abs(UtcOffsetSeconds) / 60;
        b.Append(UtcOffsetSeconds < 0 ? '-' : '+');
        b.AppendPadded(off / 60 * 100 + off % 60, 4);
        b.Append(" */");
    }

    private static readonly (ulong, string)[] StatxAttrNames =
    [
        (0x4, "STATX_ATTR_COMPRESSED"), (0x10, "STATX_ATTR_IMMUTABLE"), (0x20, "STATX_ATTR_APPEND"), (0x40, "STATX_ATTR_NODUMP"),
        (0x800, "STATX_ATTR_ENCRYPTED"), (0x1000, "STATX_ATTR_AUTOMOUNT"), (0x2000, "STATX_ATTR_MOUNT_ROOT"),
        (0x100000, "STATX_ATTR_VERITY"), (0x200000, "STATX_ATTR_DAX"),
    ];

    private static void StatxTime(TextBuffer b, string name, ReadOnlySpan<byte> ts)
    {
        b.Append(", ");
        b.Append(name);
        b.Append("={tv_sec=");
        var sec = BinaryPrimitives.ReadInt64LittleEndian(ts);
        var nsec = BinaryPrimitives.ReadUInt32LittleEndian(ts[8..]);
        b.AppendInt(sec);
        b.Append(", tv_nsec=");
        b.AppendUInt(nsec);
        b.Append('}');
        TimeComment(b, sec, nsec);
    }

    private void Statx(TextBuffer b, ulong address)
    {
        var s = _small.AsSpan(0, 256);
        if (!Read(address, s))
        {
            Ptr(b, address);
            return;
        }

        var mode = BinaryPrimitives.ReadUInt16LittleEndian(s[28..]);
        b.Append("{stx_mask=");
        Flags(b, BinaryPrimitives.ReadUInt32LittleEndian(s), StatxMaskNames, "0");
        if (_o.Verbose)
        {
            b.Append(", stx_blksize=");
            b.AppendUInt(BinaryPrimitives.ReadUInt32LittleEndian(s[4..]));
        }

        b.Append(", stx_attributes=");
        Flags(b, BinaryPrimitives.ReadUInt64LittleEndian(s[8..]), StatxAttrNames, "0");
        if (_o.Verbose)
        {
            b.Append(", stx_nlink=");
            b.AppendUInt(BinaryPrimitives.ReadUInt32LittleEndian(s[16..]));
            b.Append(", stx_uid=");
            b.AppendUInt(BinaryPrimitives.ReadUInt32LittleEndian(s[20..]));
            b.Append(", stx_gid=");
            b.AppendUInt(BinaryPrimitives.ReadUInt32LittleEndian(s[24..]));
        }

        b.Append(", stx_mode=");
        FileMode(b, mode);
        if (_o.Verbose)
        {
            b.Append(", stx_ino=");
            b.AppendUInt(BinaryPrimitives.ReadUInt64LittleEndian(s[32..]));
        }

        b.Append(", stx_size=");
        b.AppendUInt(BinaryPrimitives.ReadUInt64LittleEndian(s[40..]));
        if (!_o.Verbose)
        {
            b.Append(", ...}");
            return;
        }

        b.Append(", stx_blocks=");
        b.AppendUInt(BinaryPrimitives.ReadUInt64LittleEndian(s[48..]));
        b.Append(", stx_attributes_mask=");
        Flags(b, BinaryPrimitives.ReadUInt64LittleEndian(s[56..]), StatxAttrNames, "0");
        var mask = BinaryPrimitives.ReadUInt32LittleEndian(s);
        StatxTime(b, "stx_atime", s[64..]);
        if ((mask & 0x800) != 0) StatxTime(b, "stx_btime", s[80..]);
        StatxTime(b, "stx_ctime", s[96..]);
        StatxTime(b, "stx_mtime", s[112..]);
        b.Append(", stx_rdev_major=");
        b.AppendUInt(BinaryPrimitives.ReadUInt32LittleEndian(s[128..]));
        b.Append(", stx_rdev_minor=");
        b.AppendUInt(BinaryPrimitives.ReadUInt32LittleEndian(s[132..]));
        b.Append(", stx_dev_major=");
        b.AppendUInt(BinaryPrimitives.ReadUInt32LittleEndian(s[136..]));
        b.Append(", stx_dev_minor=");
        b.AppendUInt(BinaryPrimitives.ReadUInt32LittleEndian(s[140..]));
        if ((mask & 0x1000) != 0)
        {
            b.Append(", stx_mnt_id=");
            b.AppendHex(BinaryPrimitives.ReadUInt64LittleEndian(s[144..]));
        }

        b.Append('}');
    }
}
