namespace Nozoki.Syscalls;

// mmap, mprotect, mremap, msync, madvise.
public sealed partial class SyscallDecoder
{
    private static readonly (ulong, string)[] ProtNames =
        [(1, "PROT_READ"), (2, "PROT_WRITE"), (4, "PROT_EXEC"), (0x10, "PROT_SEM"), (0x01000000, "PROT_GROWSDOWN"), (0x02000000, "PROT_GROWSUP")];

    private static readonly (ulong, string)[] MapFlagNames =
    [
        (0x10, "MAP_FIXED"), (0x20, "MAP_ANONYMOUS"), (0x40, "MAP_32BIT"), (0x100, "MAP_GROWSDOWN"), (0x800, "MAP_DENYWRITE"),
        (0x1000, "MAP_EXECUTABLE"), (0x2000, "MAP_LOCKED"), (0x4000, "MAP_NORESERVE"), (0x8000, "MAP_POPULATE"),
        (0x10000, "MAP_NONBLOCK"), (0x20000, "MAP_STACK"), (0x40000, "MAP_HUGETLB"), (0x80000, "MAP_SYNC"),
        (0x100000, "MAP_FIXED_NOREPLACE"), (0x4000000, "MAP_UNINITIALIZED"),
    ];

    private static readonly (ulong, string)[] MremapFlagNames = [(1, "MREMAP_MAYMOVE"), (2, "MREMAP_FIXED"), (4, "MREMAP_DONTUNMAP")];

    private static readonly (ulong, string)[] MsyncFlagNames = [(1, "MS_ASYNC"), (4, "MS_SYNC"), (2, "MS_INVALIDATE")];

    private static readonly (ulong, string)[] MadviceNames =
    [
        (0, "MADV_NORMAL"), (1, "MADV_RANDOM"), (2, "MADV_SEQUENTIAL"), (3, "MADV_WILLNEED"), (4, "MADV_DONTNEED"),
        (8, "MADV_FREE"), (9, "MADV_REMOVE"), (10, "MADV_DONTFORK"), (11, "MADV_DOFORK"), (12, "MADV_MERGEABLE"),
        (13, "MADV_UNMERGEABLE"), (14, "MADV_HUGEPAGE"), (15, "MADV_NOHUGEPAGE"), (16, "MADV_DONTDUMP"), (17, "MADV_DODUMP"),
        (18, "MADV_WIPEONFORK"), (19, "MADV_KEEPONFORK"), (20, "MADV_COLD"), (21, "MADV_PAGEOUT"),
        (22, "MADV_POPULATE_READ"), (23, "MADV_POPULATE_WRITE"), (24, "MADV_DONTNEED_LOCKED"), (25, "MADV_COLLAPSE"),
        (100, "MADV_HWPOISON"), (101, "MADV_SOFT_OFFLINE"),
    ];

    private static void Prot(TextBuffer b, ulong v) => Flags(b, v, ProtNames, "PROT_NONE");

    /// <summary>The mapping type (MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE) first, then the flags.</summary>
    private static void MapFlags(TextBuffer b, ulong v)
    {
        var type = v & 0xf;
        switch (type)
        {
            case 1: b.Append("MAP_SHARED"); break;
            case 2: b.Append("MAP_PRIVATE"); break;
            case 3: b.Append("MAP_SHARED_VALIDATE"); break;
            default: b.AppendHex(type); break;
        }

        v &= ~0xfUL;
        if (v == 0) return;
        b.Append('|');
        Flags(b, v, MapFlagNames, "0");
    }
}
