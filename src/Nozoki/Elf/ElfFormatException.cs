namespace Nozoki.Elf;

/// <summary>Why a file could not be read as an ELF object.</summary>
public enum ElfErrorKind
{
    /// <summary>An ELF file whose headers, tables or notes are truncated or inconsistent.</summary>
    Malformed,

    /// <summary>Not an ELF file at all (no \x7fELF magic).</summary>
    NotElf,

    /// <summary>An ELF file nozoki does not read: not 64-bit, not little-endian, or not x86_64.</summary>
    Unsupported,
}

/// <summary>A file that is not a readable ELF object. The message is one line and names the file.</summary>
public sealed class ElfFormatException(string path, ElfErrorKind kind, string problem)
    : NozokiException($"{path}: {problem}")
{
    public string Path { get; } = path;

    public ElfErrorKind Kind { get; } = kind;

    /// <summary>The problem without the path.</summary>
    public string Problem { get; } = problem;
}
