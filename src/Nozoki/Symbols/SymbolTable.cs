using Nozoki.Elf;
using static Nozoki.Elf.ElfConstants;

namespace Nozoki.Symbols;

/// <summary>One symbol of a module: its name without a version (malloc, not malloc@@GLIBC_2.2.5), its link-time
/// (file) virtual address, size and ELF type and binding.</summary>
public readonly record struct ModuleSymbol(string Name, ulong FileAddress, ulong Size, byte Type, byte Bind)
{
    /// <summary>STT_GNU_IFUNC: the symbol is a resolver that returns the implementation's address.</summary>
    public const byte STT_GNU_IFUNC = 10;

    /// <summary>A function (STT_FUNC) or an indirect function (STT_GNU_IFUNC).</summary>
    public bool IsCode => Type is STT_FUNC or STT_GNU_IFUNC;

    /// <summary>Whether FILEADDRESS lies inside the symbol (a symbol of size 0 covers only its own address).</summary>
    public bool Contains(ulong fileAddress) =>
        fileAddress >= FileAddress && (fileAddress - FileAddress < Size || (Size == 0 && fileAddress == FileAddress));
}

/// <summary>
/// The symbols of one ELF object: its .symtab and .dynsym, and the .symtab of its separate debug file when it has one
/// (<see cref="DebugFiles"/>), for lookups both ways: address to the symbol that covers it, and name to the code
/// symbols called so. Addresses are link-time virtual addresses (what nm and objdump print); add the load bias of a
/// mapping for addresses in a process.
/// </summary>
public sealed class SymbolTable
{
    private readonly ModuleSymbol[] _byAddress;
    private readonly Dictionary<string, List<ModuleSymbol>> _byName;

    private SymbolTable(string path, string? debugFile, IReadOnlyList<ElfSegment> segments, ModuleSymbol[] byAddress,
        Dictionary<string, List<ModuleSymbol>> byName)
    {
        Path = path;
        DebugFile = debugFile;
        Segments = segments;
        _byAddress = byAddress;
        _byName = byName;
    }

    /// <summary>The object's path.</summary>
    public string Path { get; }

    /// <summary>The separate debug file whose symbols were added, or null.</summary>
    public string? DebugFile { get; }

    /// <summary>The object's program headers (for the load bias and the executable segments).</summary>
    public IReadOnlyList<ElfSegment> Segments { get; }

    /// <summary>Every symbol that has an address, in address order.</summary>
    public IReadOnlyList<ModuleSymbol> Symbols => _byAddress;

    /// <summary>The names of the code symbols.</summary>
    public IEnumerable<string> CodeNames => _byName.Keys;

    /// <summary>
    /// Reads the symbols of the ELF object at PATH (from READFROM when given, e.g. /proc/PID/map_files/...) and of its
    /// separate debug file. Throws IOException/UnauthorizedAccessException/ElfFormatException as ElfFile.Open does.
    /// </summary>
    public static SymbolTable Load(string path, string? readFrom = null)
    {
        using var elf = ElfFile.Open(path, readFrom);
        var all = new List<ElfSymbol>(elf.Symbols);
        string? debugPath = null;
        var hasSymtab = elf.Sections.Any(s => s.Type == SHT_SYMTAB);
        if (!hasSymtab)
        {
            try
            {
                using var debug = DebugFiles.Open(elf, path);
                if (debug is not null)
                {
                    debugPath = debug.Path;
                    all.AddRange(debug.Symbols.Where(s => !s.Dynamic));
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or ElfFormatException)
            {
                // A broken debug file is no reason to lose the object's own symbols.
            }
        }

        return Build(path, debugPath, elf.Segments, all);
    }

    /// <summary>A table from symbols already read (tests, or an ElfFile the caller holds).</summary>
    public static SymbolTable Build(string path, string? debugFile, IReadOnlyList<ElfSegment> segments, IEnumerable<ElfSymbol> symbols)
    {
        var seen = new HashSet<(string, ulong)>();
        var list = new List<ModuleSymbol>();
        foreach (var s in symbols)
        {
            if (!s.IsDefined || s.SectionIndex == SHN_ABS || s.Name.Length == 0) continue;
            if (s.Type is not (STT_FUNC or ModuleSymbol.STT_GNU_IFUNC or STT_OBJECT or STT_NOTYPE)) continue;
            var at = s.Name.IndexOf('@');
            var name = at > 0 ? s.Name[..at] : s.Name;
            if (!seen.Add((name, s.Value))) continue;
            list.Add(new ModuleSymbol(name, s.Value, s.Size, s.Type, s.Bind));
        }

        // At one address, the preferred name first: code before data, global before weak before local, sized first.
        list.Sort((a, b) =>
        {
            var c = a.FileAddress.CompareTo(b.FileAddress);
            if (c != 0) return c;
            c = Rank(a).CompareTo(Rank(b));
            return c != 0 ? c : string.CompareOrdinal(a.Name, b.Name);
        });
        var byName = new Dictionary<string, List<ModuleSymbol>>(StringComparer.Ordinal);
        foreach (var s in list)
        {
            if (!s.IsCode) continue;
            if (!byName.TryGetValue(s.Name, out var same)) byName[s.Name] = same = [];
            same.Add(s);
        }

        return new SymbolTable(path, debugFile, segments, list.ToArray(), byName);
    }

    private static int Rank(ModuleSymbol s)
    {
        const byte STB_GLOBAL = 1, STB_WEAK = 2;
        var rank = s.IsCode ? 0 : s.Type == STT_OBJECT ? 10 : 20;
        rank += s.Bind switch { STB_GLOBAL => 0, STB_WEAK => 1, _ => 2 } * 3;
        if (s.Size == 0) rank += 1;
        if (s.Name.StartsWith('_')) rank += 1;
        return rank;
    }

    /// <summary>
    /// The symbol covering FILEADDRESS: the preferred of those whose [address, address+size) holds it, else the
    /// nearest symbol of size 0 below it (an assembler label). False when none does.
    /// </summary>
    public bool TryFindByAddress(ulong fileAddress, out ModuleSymbol symbol)
    {
        symbol = default;
        var arr = _byAddress;
        int lo = 0, hi = arr.Length - 1, last = -1;
        while (lo <= hi)
        {
            var mid = (lo + hi) >>> 1;
            if (arr[mid].FileAddress <= fileAddress)
            {
                last = mid;
                lo = mid + 1;
            }
            else
            {
                hi = mid - 1;
            }
        }

        if (last < 0) return false;
        // The first entry of the group at the highest address <= fileAddress is the preferred one there.
        var start = last;
        while (start > 0 && arr[start - 1].FileAddress == arr[last].FileAddress) start--;
        for (var i = start; i <= last; i++)
        {
            if (arr[i].Size != 0 && arr[i].Contains(fileAddress))
            {
                symbol = arr[i];
                return true;
            }
        }

        // A symbol further down may still cover it (a function with a local label inside); look a little way back.
        for (var i = start - 1; i >= 0 && i >= start - 64; i--)
        {
            if (arr[i].Size != 0 && arr[i].Contains(fileAddress))
            {
                symbol = arr[i];
                return true;
            }
        }

        if (arr[start].Size == 0 && InSameSegment(arr[start].FileAddress, fileAddress))
        {
            symbol = arr[start];
            return true;
        }

        return false;
    }

    /// <summary>The code symbols called NAME (several when a name has several versions or local definitions).</summary>
    public IReadOnlyList<ModuleSymbol> FindCode(string name) => _byName.TryGetValue(name, out var list) ? list : [];

    /// <summary>Every symbol called NAME, code or not.</summary>
    public IEnumerable<ModuleSymbol> FindAny(string name) => _byAddress.Where(s => s.Name == name);

    /// <summary>Whether FILEADDRESS lies in a PT_LOAD segment with PF_X.</summary>
    public bool IsExecutable(ulong fileAddress)
    {
        foreach (var seg in Segments)
        {
            if (seg.Type == PT_LOAD && (seg.Flags & PF_X) != 0 && fileAddress >= seg.VirtualAddress
                && fileAddress - seg.VirtualAddress < seg.MemorySize)
                return true;
        }

        return false;
    }

    private bool InSameSegment(ulong a, ulong b)
    {
        foreach (var seg in Segments)
        {
            if (seg.Type != PT_LOAD) continue;
            var end = seg.VirtualAddress + seg.MemorySize;
            if (a >= seg.VirtualAddress && a < end) return b >= seg.VirtualAddress && b < end;
        }

        return false;
    }
}
