using System.Globalization;
using Nozoki.Elf;

namespace Nozoki.Procfs;

/// <summary>One line of /proc/PID/maps.</summary>
public sealed record MemoryMapping(
    ulong Start, ulong End, string Permissions, ulong Offset, uint DeviceMajor, uint DeviceMinor, ulong Inode, string Path)
{
    public ulong Size => End - Start;

    public bool IsExecutable => Permissions.Length > 2 && Permissions[2] == 'x';

    /// <summary>The kernel appends " (deleted)" to the path of a file that was unlinked after being mapped.</summary>
    public bool IsDeleted => Path.EndsWith(" (deleted)", StringComparison.Ordinal);

    /// <summary>Backed by a file (not anonymous, not [heap]/[stack]/[vdso]).</summary>
    public bool IsFile => Inode != 0 && Path.StartsWith('/');

    /// <summary>The path without " (deleted)".</summary>
    public string FilePath => IsDeleted ? Path[..^" (deleted)".Length] : Path;

    /// <summary>Whether both mappings show the same file (device and inode).</summary>
    public bool SameFile(MemoryMapping other) =>
        Inode == other.Inode && DeviceMajor == other.DeviceMajor && DeviceMinor == other.DeviceMinor;
}

/// <summary>
/// One ELF object as loaded in a process: the mappings of one file that the loader made for it, starting with the one
/// at file offset 0. A file mapped twice (dlopen of a copy, a debugger's mmap) gives two objects.
/// </summary>
public sealed record MappedObject(int Pid, string Path, IReadOnlyList<MemoryMapping> Mappings)
{
    public ulong Start => Mappings[0].Start;

    public ulong End => Mappings[^1].End;

    /// <summary>/proc/PID/map_files/START-END: the very file the process mapped, even when deleted or in another
    /// mount namespace (opening it needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE, i.e. root in practice).</summary>
    public string MapFilesPath =>
        string.Create(CultureInfo.InvariantCulture, $"/proc/{Pid}/map_files/{Mappings[0].Start:x}-{Mappings[0].End:x}");

    /// <summary>
    /// The load bias: what to add to a link-time virtual address of <paramref name="elf"/> to get the address in this
    /// process. Found from the first PT_LOAD segment that one of the object's mappings covers (by file offset):
    /// that mapping shows file offset M at address S, the segment says file offset O belongs at vaddr V, so the byte
    /// at O is at S + (O - M), and bias = S + (O - M) - V. 0 for a non-PIE executable. Null when no mapping fits.
    /// </summary>
    public ulong? LoadBias(ElfFile elf) => LoadBias(elf.Segments);

    /// <summary>The load bias from the object's program headers (see <see cref="LoadBias(ElfFile)"/>).</summary>
    public ulong? LoadBias(IReadOnlyList<ElfSegment> segments)
    {
        foreach (var seg in segments)
        {
            if (seg.Type != ElfConstants.PT_LOAD || seg.FileSize == 0) continue;
            foreach (var m in Mappings)
            {
                if (seg.Offset >= m.Offset && seg.Offset - m.Offset < m.Size)
                    return unchecked(m.Start + (seg.Offset - m.Offset) - seg.VirtualAddress);
            }
        }

        return null;
    }
}

/// <summary>Reads /proc/PID/maps.</summary>
public static class MemoryMaps
{
    /// <summary>Every mapping of PID, in address order. Throws FileNotFoundException/DirectoryNotFoundException
    /// when there is no such process and UnauthorizedAccessException when its maps may not be read.</summary>
    public static List<MemoryMapping> Read(int pid) => Parse(File.ReadAllText($"/proc/{pid}/maps"));

    /// <summary>Parses the text of a maps file; lines that do not parse are skipped.</summary>
    public static List<MemoryMapping> Parse(string text)
    {
        var list = new List<MemoryMapping>();
        foreach (var line in text.AsSpan().EnumerateLines())
        {
            if (TryParseLine(line, out var m)) list.Add(m);
        }

        return list;
    }

    // 7f1c2a400000-7f1c2a428000 r--p 00000000 08:01 1835 /usr/lib/x86_64-linux-gnu/libc.so.6
    private static bool TryParseLine(ReadOnlySpan<char> line, out MemoryMapping mapping)
    {
        mapping = null!;
        var rest = line;
        if (!Field(ref rest, out var range) || !Field(ref rest, out var perms) || !Field(ref rest, out var offset)
            || !Field(ref rest, out var dev) || !Field(ref rest, out var inode))
            return false;
        var dash = range.IndexOf('-');
        var colon = dev.IndexOf(':');
        if (dash < 0 || colon < 0) return false;
        const NumberStyles hex = NumberStyles.AllowHexSpecifier;
        var ic = CultureInfo.InvariantCulture;
        if (!ulong.TryParse(range[..dash], hex, ic, out var start) || !ulong.TryParse(range[(dash + 1)..], hex, ic, out var end)
            || !ulong.TryParse(offset, hex, ic, out var off) || !uint.TryParse(dev[..colon], hex, ic, out var major)
            || !uint.TryParse(dev[(colon + 1)..], hex, ic, out var minor) || !ulong.TryParse(inode, NumberStyles.None, ic, out var ino))
            return false;
        // The path is the rest of the line after the padding; it may contain spaces.
        mapping = new MemoryMapping(start, end, perms.ToString(), off, major, minor, ino, rest.TrimStart(' ').ToString());
        return true;
    }

    private static bool Field(ref ReadOnlySpan<char> rest, out ReadOnlySpan<char> field)
    {
        rest = rest.TrimStart(' ');
        var space = rest.IndexOf(' ');
        if (space < 0)
        {
            field = rest;
            rest = default;
            return !field.IsEmpty;
        }

        field = rest[..space];
        rest = rest[(space + 1)..];
        return true;
    }

    /// <summary>
    /// Groups the file mappings into loaded objects: a mapping at file offset 0 starts an object; later mappings of
    /// the same file (device and inode) at other offsets belong to the latest object of that file. Files that are
    /// mapped without an offset-0 mapping (a data file mapped in part) are left out.
    /// </summary>
    public static List<MappedObject> GroupObjects(int pid, IReadOnlyList<MemoryMapping> mappings)
    {
        var objects = new List<(MemoryMapping First, List<MemoryMapping> Maps)>();
        foreach (var m in mappings)
        {
            if (!m.IsFile) continue;
            if (m.Offset == 0)
            {
                objects.Add((m, [m]));
                continue;
            }

            for (var i = objects.Count - 1; i >= 0; i--)
            {
                if (objects[i].First.SameFile(m) && objects[i].First.FilePath == m.FilePath)
                {
                    objects[i].Maps.Add(m);
                    break;
                }
            }
        }

        return objects.Select(o => new MappedObject(pid, o.First.FilePath, o.Maps)).ToList();
    }
}
