namespace Nozoki.Elf;

/// <summary>ELF constants nozoki uses (elf.h names).</summary>
public static class ElfConstants
{
    public const ushort ET_REL = 1, ET_EXEC = 2, ET_DYN = 3, ET_CORE = 4;
    public const ushort EM_X86_64 = 62;
    public const uint SHT_NULL = 0, SHT_PROGBITS = 1, SHT_SYMTAB = 2, SHT_STRTAB = 3, SHT_NOTE = 7, SHT_NOBITS = 8, SHT_DYNSYM = 11;
    public const uint PT_LOAD = 1, PT_DYNAMIC = 2, PT_INTERP = 3, PT_NOTE = 4;
    public const uint PF_X = 1, PF_W = 2, PF_R = 4;
    public const ushort SHN_UNDEF = 0, SHN_LORESERVE = 0xff00, SHN_ABS = 0xfff1, SHN_XINDEX = 0xffff;
    public const byte STT_NOTYPE = 0, STT_OBJECT = 1, STT_FUNC = 2, STT_SECTION = 3, STT_FILE = 4, STT_TLS = 6;
}

/// <summary>The fields of Elf64_Ehdr nozoki uses.</summary>
public readonly record struct ElfHeader(
    ushort Type, ushort Machine, ulong Entry, ulong ProgramHeaderOffset, ulong SectionHeaderOffset,
    ushort ProgramHeaderEntrySize, int ProgramHeaderCount, ushort SectionHeaderEntrySize, int SectionHeaderCount,
    int SectionNameTableIndex);

/// <summary>One Elf64_Shdr, with its name resolved from .shstrtab ("" when it has none).</summary>
public sealed record ElfSection(
    int Index, string Name, uint Type, ulong Flags, ulong Address, ulong Offset, ulong Size, uint Link, uint Info,
    ulong AddressAlign, ulong EntrySize);

/// <summary>One Elf64_Phdr.</summary>
public readonly record struct ElfSegment(
    uint Type, uint Flags, ulong Offset, ulong VirtualAddress, ulong PhysicalAddress, ulong FileSize, ulong MemorySize,
    ulong Align);

/// <summary>One note: owner name (without its NUL), type and descriptor bytes.</summary>
public sealed record ElfNote(string Owner, uint Type, byte[] Descriptor);

/// <summary>One Elf64_Sym from .symtab or .dynsym.</summary>
public readonly record struct ElfSymbol(string Name, ulong Value, ulong Size, byte Type, byte Bind, ushort SectionIndex, bool Dynamic)
{
    public bool IsDefined => SectionIndex != ElfConstants.SHN_UNDEF;
}
