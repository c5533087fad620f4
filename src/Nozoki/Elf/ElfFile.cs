using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using static Nozoki.Elf.ElfConstants;

namespace Nozoki.Elf;

/// <summary>
/// A 64-bit little-endian ELF object read from a file: header, program headers, section headers, notes and symbols.
/// Every offset and size taken from the file is checked against the file's length before it is used, so a truncated
/// or corrupted file gives an <see cref="ElfFormatException"/> with one line saying what is wrong, never another
/// exception, and every loop is bounded by the file's size. The file is read with pread on demand, never whole.
/// </summary>
public sealed class ElfFile : IDisposable
{
    private const int EhdrSize = 64, PhdrSize = 56, ShdrSize = 64, SymSize = 24, NoteHeaderSize = 12;

    private readonly ElfSource _source;
    private IReadOnlyList<ElfSymbol>? _symbols;
    private Dictionary<string, ElfSymbol>? _symbolsByName;

    private ElfFile(ElfSource source, string path)
    {
        _source = source;
        Path = path;
        try
        {
            Header = ReadHeader();
            Segments = ReadSegments();
            Sections = ReadSections();
        }
        catch
        {
            source.Dispose();
            throw;
        }
    }

    /// <summary>The name used in messages (the path as the user or /proc/PID/maps gave it).</summary>
    public string Path { get; }

    public long Length => _source.Length;

    public ElfHeader Header { get; }

    public IReadOnlyList<ElfSegment> Segments { get; }

    public IReadOnlyList<ElfSection> Sections { get; }

    /// <summary>
    /// Opens <paramref name="path"/> (or <paramref name="readFrom"/>, e.g. /proc/PID/map_files/..., when given, with
    /// messages still naming <paramref name="path"/>). I/O errors (no such file, permission) come as the usual
    /// IOException/UnauthorizedAccessException; anything wrong with the contents as <see cref="ElfFormatException"/>.
    /// </summary>
    public static ElfFile Open(string path, string? readFrom = null)
    {
        var handle = File.OpenHandle(readFrom ?? path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        ElfSource source;
        try
        {
            source = new ElfSource.File(handle);
        }
        catch
        {
            handle.Dispose();
            throw;
        }

        return new ElfFile(source, path);
    }

    /// <summary>An ELF object held in memory (tests, or bytes read from a process).</summary>
    public static ElfFile FromBytes(ReadOnlyMemory<byte> bytes, string name) => new(new ElfSource.Memory(bytes), name);

    /// <summary>Whether the file starts with the ELF magic (false for short or unreadable files).</summary>
    public static bool HasElfMagic(ReadOnlySpan<byte> start) => start is [0x7f, (byte)'E', (byte)'L', (byte)'F', ..];

    public void Dispose() => _source.Dispose();

    /// <summary>The first section called <paramref name="name"/>, or null.</summary>
    public ElfSection? FindSection(string name)
    {
        foreach (var s in Sections)
        {
            if (s.Name == name) return s;
        }

        return null;
    }

    /// <summary>The bytes of a section (empty for SHT_NOBITS).</summary>
    public byte[] ReadSection(ElfSection section) =>
        section.Type == SHT_NOBITS ? [] : ReadBytes(section.Offset, section.Size, $"section {Describe(section)}");

    /// <summary>Bytes [offset, offset+count) of the file; <paramref name="what"/> names them in the error.</summary>
    public byte[] ReadBytes(ulong offset, ulong count, string what)
    {
        CheckRange(offset, count, what);
        var bytes = new byte[count];
        if (!_source.TryRead((long)offset, bytes)) throw Malformed($"{what} could not be read: the file changed while being read");
        return bytes;
    }

    /// <summary>
    /// Every note, in the order `readelf -n` shows them: those of the SHT_NOTE sections, or, when the file has no
    /// note sections (or is a core file), those of the PT_NOTE segments.
    /// </summary>
    public IReadOnlyList<ElfNote> ReadNotes()
    {
        var notes = new List<ElfNote>();
        var any = false;
        if (Header.Type != ET_CORE)
        {
            foreach (var s in Sections)
            {
                if (s.Type != SHT_NOTE) continue;
                any = true;
                ParseNotes(ReadSection(s), s.AddressAlign == 8 ? 8 : 4, $"section {Describe(s)}", notes);
            }
        }

        if (!any)
        {
            foreach (var p in Segments)
            {
                if (p.Type != PT_NOTE) continue;
                var what = $"PT_NOTE segment at file offset 0x{p.Offset:x}";
                ParseNotes(ReadBytes(p.Offset, p.FileSize, what), p.Align == 8 ? 8 : 4, what, notes);
            }
        }

        return notes;
    }

    /// <summary>The symbols of .symtab then .dynsym (the null symbol 0 of each left out).</summary>
    public IReadOnlyList<ElfSymbol> Symbols => _symbols ??= ReadSymbols();

    /// <summary>A defined symbol called <paramref name="name"/> (.symtab first, then .dynsym).</summary>
    public bool TryFindSymbol(string name, out ElfSymbol symbol)
    {
        if (_symbolsByName is null)
        {
            var map = new Dictionary<string, ElfSymbol>(StringComparer.Ordinal);
            foreach (var s in Symbols)
            {
                if (s.IsDefined && s.Name.Length > 0 && s.Type != STT_SECTION && s.Type != STT_FILE) map.TryAdd(s.Name, s);
            }

            _symbolsByName = map;
        }

        return _symbolsByName.TryGetValue(name, out symbol);
    }

    /// <summary>The PT_LOAD segments in file order.</summary>
    public IEnumerable<ElfSegment> LoadSegments => Segments.Where(p => p.Type == PT_LOAD);

    private ElfHeader ReadHeader()
    {
        Span<byte> h = stackalloc byte[EhdrSize];
        var have = (int)Math.Min(_source.Length, EhdrSize);
        if (have < 4 || !_source.TryRead(0, h[..have]) || !HasElfMagic(h))
            throw new ElfFormatException(Path, ElfErrorKind.NotElf, "not an ELF file (no \\x7fELF magic)");
        if (have >= 5 && h[4] != 2)
            throw new ElfFormatException(Path, ElfErrorKind.Unsupported, h[4] == 1 ? "32-bit ELF files (ELFCLASS32) are not supported" : $"unknown ELF class {h[4]}");
        if (have >= 6 && h[5] != 1)
            throw new ElfFormatException(Path, ElfErrorKind.Unsupported, h[5] == 2 ? "big-endian ELF files are not supported" : $"unknown ELF data encoding {h[5]}");
        if (have < EhdrSize) throw Malformed($"truncated ELF header: the file has {_source.Length} bytes, the header needs {EhdrSize}");

        var type = U16(h, 16);
        var machine = U16(h, 18);
        var phoff = U64(h, 32);
        var shoff = U64(h, 40);
        var phentsize = U16(h, 54);
        int phnum = U16(h, 56);
        var shentsize = U16(h, 58);
        int shnum = U16(h, 60);
        int shstrndx = U16(h, 62);

        // Extended numbering (gABI): counts that do not fit 16 bits live in section header 0.
        if (shoff != 0 && (shnum == 0 || phnum == 0xffff || shstrndx == SHN_XINDEX))
        {
            if (shentsize != ShdrSize) throw Malformed($"section header entry size is {shentsize}, expected {ShdrSize}");
            var s0 = ReadBytes(shoff, ShdrSize, "section header 0");
            if (shnum == 0) shnum = CountFrom(U64(s0, 32), "section count (section header 0 sh_size)");
            if (phnum == 0xffff) phnum = (int)Math.Min(U32(s0, 44), int.MaxValue);
            if (shstrndx == SHN_XINDEX) shstrndx = (int)Math.Min(U32(s0, 40), int.MaxValue);
        }

        if (phnum > 0 && phentsize != PhdrSize) throw Malformed($"program header entry size is {phentsize}, expected {PhdrSize}");
        if (shoff != 0 && shnum > 0 && shentsize != ShdrSize) throw Malformed($"section header entry size is {shentsize}, expected {ShdrSize}");
        if (shoff == 0) shnum = 0;
        return new ElfHeader(type, machine, U64(h, 24), phoff, shoff, phentsize, phnum, shentsize, shnum, shstrndx);
    }

    private int CountFrom(ulong value, string what) =>
        value <= (ulong)(_source.Length / ShdrSize) ? (int)value : throw Malformed($"{what} {value} is larger than the file can hold");

    private List<ElfSegment> ReadSegments()
    {
        var count = Header.ProgramHeaderCount;
        var list = new List<ElfSegment>();
        if (count == 0) return list;
        var table = ReadBytes(Header.ProgramHeaderOffset, (ulong)count * PhdrSize,
            $"program header table ({count} entries at offset 0x{Header.ProgramHeaderOffset:x})");
        for (var i = 0; i < count; i++)
        {
            var e = table.AsSpan(i * PhdrSize, PhdrSize);
            list.Add(new ElfSegment(U32(e, 0), U32(e, 4), U64(e, 8), U64(e, 16), U64(e, 24), U64(e, 32), U64(e, 40), U64(e, 48)));
        }

        return list;
    }

    private List<ElfSection> ReadSections()
    {
        var count = Header.SectionHeaderCount;
        var list = new List<ElfSection>();
        if (count == 0) return list;
        var table = ReadBytes(Header.SectionHeaderOffset, (ulong)count * ShdrSize,
            $"section header table ({count} entries at offset 0x{Header.SectionHeaderOffset:x})");
        var strndx = Header.SectionNameTableIndex;
        if (strndx >= count) throw Malformed($"section name table index {strndx} is out of range ({count} sections)");

        byte[] names = [];
        if (strndx != SHN_UNDEF)
        {
            var e = table.AsSpan(strndx * ShdrSize, ShdrSize);
            if (U32(e, 4) != SHT_NOBITS)
                names = ReadBytes(U64(e, 24), U64(e, 32), $"section name table (section {strndx})");
        }

        for (var i = 0; i < count; i++)
        {
            var e = table.AsSpan(i * ShdrSize, ShdrSize);
            var nameOffset = U32(e, 0);
            var name = strndx == SHN_UNDEF ? "" : CString(names, nameOffset, $"the name of section {i}");
            list.Add(new ElfSection(i, name, U32(e, 4), U64(e, 8), U64(e, 16), U64(e, 24), U64(e, 32), U32(e, 40), U32(e, 44), U64(e, 48), U64(e, 56)));
        }

        return list;
    }

    private void ParseNotes(byte[] data, int align, string where, List<ElfNote> notes)
    {
        long pos = 0;
        var index = 0;
        while (pos < data.Length)
        {
            var left = data.Length - pos;
            if (left < NoteHeaderSize)
            {
                // Trailing zero padding is harmless; anything else is a cut note.
                if (data.AsSpan((int)pos).ContainsAnyExcept((byte)0))
                    throw Malformed($"note {index} in {where} is truncated: {left} bytes left, a note header needs {NoteHeaderSize}");
                break;
            }

            var h = data.AsSpan((int)pos, NoteHeaderSize);
            ulong namesz = U32(h, 0), descsz = U32(h, 4);
            var type = U32(h, 8);
            if (namesz > (ulong)(left - NoteHeaderSize))
                throw Malformed($"note {index} in {where}: name size {namesz} extends past the end ({left - NoteHeaderSize} bytes left)");
            var descOffset = AlignUp(NoteHeaderSize + namesz, (ulong)align);
            if (descOffset > (ulong)left || descsz > (ulong)left - descOffset)
                throw Malformed($"note {index} in {where}: descriptor size {descsz} extends past the end ({Math.Max(0, left - (long)Math.Min(descOffset, (ulong)left))} bytes left)");
            var name = data.AsSpan((int)pos + NoteHeaderSize, (int)namesz);
            var nul = name.IndexOf((byte)0);
            var owner = Encoding.UTF8.GetString(nul >= 0 ? name[..nul] : name);
            var desc = data.AsSpan((int)(pos + (long)descOffset), (int)descsz).ToArray();
            notes.Add(new ElfNote(owner, type, desc));
            // The last note's padding may be missing; every step moves forward at least a header's size.
            pos += (long)Math.Min(AlignUp(descOffset + descsz, (ulong)align), (ulong)left);
            index++;
        }
    }

    private List<ElfSymbol> ReadSymbols()
    {
        var list = new List<ElfSymbol>();
        foreach (var type in new[] { SHT_SYMTAB, SHT_DYNSYM })
        {
            foreach (var s in Sections)
            {
                if (s.Type != type) continue;
                if (s.EntrySize != SymSize && s.EntrySize != 0)
                    throw Malformed($"symbol table {Describe(s)} has entry size {s.EntrySize}, expected {SymSize}");
                if (s.Link >= Sections.Count) throw Malformed($"symbol table {Describe(s)} links to section {s.Link}, which does not exist");
                var strings = ReadSection(Sections[(int)s.Link]);
                var table = ReadSection(s);
                var count = table.Length / SymSize;
                for (var i = 1; i < count; i++)
                {
                    var e = table.AsSpan(i * SymSize, SymSize);
                    var info = e[4];
                    var name = CString(strings, U32(e, 0), $"the name of symbol {i} in {Describe(s)}");
                    list.Add(new ElfSymbol(name, U64(e, 8), U64(e, 16), (byte)(info & 0xf), (byte)(info >> 4), U16(e, 6), type == SHT_DYNSYM));
                }
            }
        }

        return list;
    }

    private string CString(byte[] table, uint offset, string what)
    {
        if (offset >= (uint)table.Length)
        {
            if (offset == 0) return "";
            throw Malformed($"{what} is at offset {offset}, outside its string table ({table.Length} bytes)");
        }

        var rest = table.AsSpan((int)offset);
        var nul = rest.IndexOf((byte)0);
        if (nul < 0) throw Malformed($"{what} is not NUL-terminated inside its string table");
        return Encoding.UTF8.GetString(rest[..nul]);
    }

    private void CheckRange(ulong offset, ulong count, string what)
    {
        var length = (ulong)_source.Length;
        if (offset > length || count > length - offset)
            throw Malformed($"{what} ({count} bytes at offset 0x{offset:x}) extends past the end of the file ({length} bytes)");
        if (count > int.MaxValue) throw Malformed($"{what} is too large ({count} bytes)");
    }

    private static string Describe(ElfSection s) => s.Name.Length > 0 ? $"{s.Index} ({s.Name})" : s.Index.ToString(CultureInfo.InvariantCulture);

    private static ulong AlignUp(ulong v, ulong align) => (v + align - 1) & ~(align - 1);

    private ElfFormatException Malformed(string problem) => new(Path, ElfErrorKind.Malformed, problem);

    private static ushort U16(ReadOnlySpan<byte> b, int at) => BinaryPrimitives.ReadUInt16LittleEndian(b[at..]);

    private static uint U32(ReadOnlySpan<byte> b, int at) => BinaryPrimitives.ReadUInt32LittleEndian(b[at..]);

    private static ulong U64(ReadOnlySpan<byte> b, int at) => BinaryPrimitives.ReadUInt64LittleEndian(b[at..]);
}
