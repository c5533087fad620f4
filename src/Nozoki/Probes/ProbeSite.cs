using System.Buffers.Binary;
using System.Text;
using Nozoki.Elf;

namespace Nozoki.Probes;

/// <summary>
/// One USDT probe site as its `stapsdt` note describes it (the values `readelf -n` prints), plus the link-time
/// addresses after the .stapsdt.base fix-up.
/// </summary>
public sealed record ProbeSite(
    string Provider, string Name, ulong Location, ulong Base, ulong Semaphore, string Arguments, IReadOnlyList<ArgSpec> Args,
    ulong Address, ulong SemaphoreAddress)
{
    /// <summary>"provider:name".</summary>
    public string FullName => $"{Provider}:{Name}";

    public bool HasSemaphore => SemaphoreAddress != 0;
}

/// <summary>Reads systemtap SDT notes (owner "stapsdt", type NT_STAPSDT = 3) from an ELF object.</summary>
public static class StapsdtNotes
{
    public const uint NT_STAPSDT = 3;
    public const string Owner = "stapsdt";

    /// <summary>
    /// The probe sites of <paramref name="elf"/> in note order. Each note holds pc, base and semaphore as three
    /// 8-byte addresses, then "provider\0name\0args\0". If the object was moved after linking (prelink), the
    /// .stapsdt.base section's real address differs from the base the note recorded; the difference is added to
    /// pc and semaphore (what systemtap, bcc and libbpf do). Symbols that arguments name (`foo(%rip)`) get their
    /// link-time value from .symtab/.dynsym when <paramref name="resolveSymbols"/>.
    /// </summary>
    public static List<ProbeSite> Read(ElfFile elf, bool resolveSymbols = true)
    {
        var sites = new List<ProbeSite>();
        var sdtBase = elf.FindSection(".stapsdt.base")?.Address;
        var index = 0;
        foreach (var note in elf.ReadNotes())
        {
            if (note.Type != NT_STAPSDT || note.Owner != Owner) continue;
            sites.Add(Parse(elf, note.Descriptor, index++, sdtBase, resolveSymbols));
        }

        return sites;
    }

    private static ProbeSite Parse(ElfFile elf, byte[] d, int index, ulong? sdtBase, bool resolveSymbols)
    {
        if (d.Length < 24)
            throw new ElfFormatException(elf.Path, ElfErrorKind.Malformed, $"stapsdt note {index} is too small ({d.Length} bytes, need at least 27)");
        var pc = BinaryPrimitives.ReadUInt64LittleEndian(d);
        var baseAddr = BinaryPrimitives.ReadUInt64LittleEndian(d.AsSpan(8));
        var sem = BinaryPrimitives.ReadUInt64LittleEndian(d.AsSpan(16));
        ReadOnlySpan<byte> rest = d.AsSpan(24);
        var provider = NextString(elf, ref rest, index, "provider");
        var name = NextString(elf, ref rest, index, "name");
        var args = NextString(elf, ref rest, index, "arguments");

        var adjust = sdtBase is { } b && baseAddr != 0 ? unchecked(b - baseAddr) : 0;
        var specs = ArgSpec.ParseAll(args);
        if (resolveSymbols && specs.Any(a => a.Symbol is not null))
        {
            specs = specs.Select(a => a.Symbol is null ? a
                : a.WithSymbolAddress(elf.TryFindSymbol(a.Symbol, out var s) ? s.Value : null)).ToList();
        }

        return new ProbeSite(provider, name, pc, baseAddr, sem, args, specs, unchecked(pc + adjust), sem == 0 ? 0 : unchecked(sem + adjust));
    }

    private static string NextString(ElfFile elf, ref ReadOnlySpan<byte> rest, int index, string what)
    {
        var nul = rest.IndexOf((byte)0);
        if (nul < 0)
            throw new ElfFormatException(elf.Path, ElfErrorKind.Malformed, $"stapsdt note {index}: the {what} string is not NUL-terminated inside the note");
        var s = Encoding.UTF8.GetString(rest[..nul]);
        rest = rest[(nul + 1)..];
        return s;
    }
}
