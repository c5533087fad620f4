using System.Buffers.Binary;

namespace Nozoki.Syscalls;

// uname, sysinfo, statfs, group lists, CPU sets.
public sealed partial class SyscallDecoder
{
    private static readonly (ulong, string)[] FsMagicNames =
    [
        (0xef53, "EXT2_SUPER_MAGIC"), (0x01021994, "TMPFS_MAGIC"), (0x9fa0, "PROC_SUPER_MAGIC"), (0x62656572, "SYSFS_MAGIC"),
        (0x794c7630, "OVERLAYFS_SUPER_MAGIC"), (0x58465342, "XFS_SUPER_MAGIC"), (0x9123683e, "BTRFS_SUPER_MAGIC"),
        (0x63677270, "CGROUP2_SUPER_MAGIC"), (0x27e0eb, "CGROUP_SUPER_MAGIC"), (0x1cd1, "DEVPTS_SUPER_MAGIC"),
        (0x6969, "NFS_SUPER_MAGIC"), (0xf97cff8c, "SELINUX_MAGIC"), (0x73636673, "SECURITYFS_MAGIC"), (0x64626720, "DEBUGFS_MAGIC"),
        (0x74726163, "TRACEFS_MAGIC"), (0x958458f6, "HUGETLBFS_MAGIC"), (0x19800202, "MQUEUE_MAGIC"), (0x6e736673, "NSFS_MAGIC"),
        (0xcafe4a11, "BPF_FS_MAGIC"), (0x65735546, "FUSE_SUPER_MAGIC"), (0x4d44, "MSDOS_SUPER_MAGIC"), (0x2011bab0, "EXFAT_SUPER_MAGIC"),
        (0x9660, "ISOFS_SUPER_MAGIC"), (0x73717368, "SQUASHFS_MAGIC"), (0x01021997, "V9FS_MAGIC"), (0x858458f6, "RAMFS_MAGIC"),
    ];

    private static readonly (ulong, string)[] StatfsFlagNames =
    [
        (0x20, "ST_VALID"), (1, "ST_RDONLY"), (2, "ST_NOSUID"), (4, "ST_NODEV"), (8, "ST_NOEXEC"), (0x10, "ST_SYNCHRONOUS"),
        (0x40, "ST_MANDLOCK"), (0x80, "ST_WRITE"), (0x100, "ST_APPEND"), (0x200, "ST_IMMUTABLE"), (0x400, "ST_NOATIME"),
        (0x800, "ST_NODIRATIME"), (0x1000, "ST_RELATIME"), (0x2000, "ST_NOSYMFOLLOW"),
    ];

    /// <summary>struct utsname: {sysname="Linux", nodename="host", ...} (all six fields with -v).</summary>
    private void Utsname(TextBuffer b, ulong address)
    {
        var u = _small.AsSpan(0, 6 * 65);
        if (!Read(address, u))
        {
            Ptr(b, address);
            return;
        }

        ReadOnlySpan<string> names = ["sysname", "nodename", "release", "version", "machine", "domainname"];
        b.Append('{');
        var shown = _o.Verbose ? 6 : 2;
        for (var i = 0; i < shown; i++)
        {
            if (i > 0) b.Append(", ");
            b.Append(names[i]);
            b.Append('=');
            var field = u.Slice(i * 65, 65);
            var nul = field.IndexOf((byte)0);
            Quote(b, nul >= 0 ? field[..nul] : field, cut: false);
        }

        b.Append(_o.Verbose ? "}" : ", ...}");
    }

    /// <summary>struct sysinfo, every field, as strace prints it.</summary>
    private void Sysinfo(TextBuffer b, ulong address)
    {
        var s = _small.AsSpan(0, 112);
        if (!Read(address, s))
        {
            Ptr(b, address);
            return;
        }

        ulong U(ReadOnlySpan<byte> x, int off) => BinaryPrimitives.ReadUInt64LittleEndian(x[off..]);
        b.Append("{uptime=");
        b.AppendInt((long)U(s, 0));
        b.Append(", loads=[");
        b.AppendUInt(U(s, 8));
        b.Append(", ");
        b.AppendUInt(U(s, 16));
        b.Append(", ");
        b.AppendUInt(U(s, 24));
        b.Append("], totalram=");
        b.AppendUInt(U(s, 32));
        b.Append(", freeram=");
        b.AppendUInt(U(s, 40));
        b.Append(", sharedram=");
        b.AppendUInt(U(s, 48));
        b.Append(", bufferram=");
        b.AppendUInt(U(s, 56));
        b.Append(", totalswap=");
        b.AppendUInt(U(s, 64));
        b.Append(", freeswap=");
        b.AppendUInt(U(s, 72));
        b.Append(", procs=");
        b.AppendUInt(BinaryPrimitives.ReadUInt16LittleEndian(s[80..]));
        b.Append(", totalhigh=");
        b.AppendUInt(U(s, 88));
        b.Append(", freehigh=");
        b.AppendUInt(U(s, 96));
        b.Append(", mem_unit=");
        b.AppendUInt(BinaryPrimitives.ReadUInt32LittleEndian(s[104..]));
        b.Append('}');
    }

    /// <summary>struct statfs: {f_type=EXT2_SUPER_MAGIC, f_bsize=4096, ..., f_flags=ST_VALID|ST_RELATIME}.</summary>
    private void Statfs(TextBuffer b, ulong address)
    {
        var s = _small.AsSpan(0, 120);
        if (!Read(address, s))
        {
            Ptr(b, address);
            return;
        }

        long L(ReadOnlySpan<byte> x, int off) => BinaryPrimitives.ReadInt64LittleEndian(x[off..]);
        b.Append("{f_type=");
        var type = (ulong)L(s, 0);
        if (Lookup(type, FsMagicNames) is { } magic) b.Append(magic);
        else b.AppendHex(type);
        b.Append(", f_bsize=");
        b.AppendInt(L(s, 8));
        b.Append(", f_blocks=");
        b.AppendInt(L(s, 16));
        b.Append(", f_bfree=");
        b.AppendInt(L(s, 24));
        b.Append(", f_bavail=");
        b.AppendInt(L(s, 32));
        b.Append(", f_files=");
        b.AppendInt(L(s, 40));
        b.Append(", f_ffree=");
        b.AppendInt(L(s, 48));
        b.Append(", f_fsid={val=[");
        b.AppendHex(BinaryPrimitives.ReadUInt32LittleEndian(s[56..]));
        b.Append(", ");
        b.AppendHex(BinaryPrimitives.ReadUInt32LittleEndian(s[60..]));
        b.Append("]}, f_namelen=");
        b.AppendInt(L(s, 64));
        b.Append(", f_frsize=");
        b.AppendInt(L(s, 72));
        b.Append(", f_flags=");
        Flags(b, (ulong)L(s, 80), StatfsFlagNames, "0");
        b.Append('}');
    }

    /// <summary>An array of 32-bit ids: [0, 4, 27].</summary>
    private void IntArray(TextBuffer b, ulong address, long count)
    {
        if (count < 0) count = 0;
        if (address == 0 && count == 0)
        {
            b.Append("NULL");
            return;
        }

        b.Append('[');
        for (long k = 0; k < count; k++)
        {
            if (k >= _o.StringLimit)
            {
                b.Append(", ...");
                break;
            }

            if (!ReadI32(address + (ulong)k * 4, out var v))
            {
                if (UnreadableArray(b, address, k)) return;
                break;
            }

            if (k > 0) b.Append(", ");
            b.AppendUInt((uint)v);
        }

        b.Append(']');
    }

    /// <summary>A CPU set of size bytes: the numbers of the CPUs in it, [0 1].</summary>
    private void CpuSet(TextBuffer b, ulong address, long size)
    {
        var n = (int)Math.Clamp(size, 0, 512);
        var set = _small.AsSpan(0, n);
        if (n == 0 || !Read(address, set))
        {
            Ptr(b, address);
            return;
        }

        b.Append('[');
        var first = true;
        for (var cpu = 0; cpu < n * 8; cpu++)
        {
            if ((set[cpu / 8] & (1 << (cpu % 8))) == 0) continue;
            if (!first) b.Append(' ');
            first = false;
            b.AppendInt(cpu);
        }

        b.Append(']');
    }
}
