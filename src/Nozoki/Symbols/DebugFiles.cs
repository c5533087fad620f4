using System.Text;
using Nozoki.Elf;

namespace Nozoki.Symbols;

/// <summary>
/// Where the separate debug file of an ELF object is, the way gdb and elfutils look (gdb manual, "Debugging
/// Information in Separate Files"): by build-id, /usr/lib/debug/.build-id/xx/rest.debug; then by .gnu_debuglink
/// name in the object's own directory, its .debug/ subdirectory, and /usr/lib/debug/ followed by that directory.
/// </summary>
public static class DebugFiles
{
    /// <summary>The global debug directory (gdb's debug-file-directory, elfutils' default).</summary>
    public const string GlobalDirectory = "/usr/lib/debug";

    private const uint NT_GNU_BUILD_ID = 3;

    /// <summary>The build-id of ELF (the NT_GNU_BUILD_ID note) as lowercase hex, or null.</summary>
    public static string? BuildId(ElfFile elf)
    {
        foreach (var note in elf.ReadNotes())
        {
            if (note.Owner == "GNU" && note.Type == NT_GNU_BUILD_ID && note.Descriptor.Length > 1)
                return Convert.ToHexStringLower(note.Descriptor);
        }

        return null;
    }

    /// <summary>The file name in the .gnu_debuglink section (a NUL-terminated name, padding, then a CRC32), or null.</summary>
    public static string? DebugLink(ElfFile elf)
    {
        var section = elf.FindSection(".gnu_debuglink");
        if (section is null || section.Type == ElfConstants.SHT_NOBITS) return null;
        var bytes = elf.ReadSection(section);
        var nul = Array.IndexOf(bytes, (byte)0);
        if (nul <= 0) return null;
        var name = Encoding.UTF8.GetString(bytes, 0, nul);
        return name.Contains('/') ? null : name;
    }

    /// <summary>The candidate debug files of the object at PATH, in search order (existing or not).</summary>
    public static IEnumerable<string> Candidates(string path, string? buildId, string? debugLink, string root = GlobalDirectory)
    {
        if (buildId is { Length: > 2 })
            yield return $"{root}/.build-id/{buildId[..2]}/{buildId[2..]}.debug";
        if (debugLink is null) yield break;
        var dir = Path.GetDirectoryName(path) ?? "/";
        yield return Path.Combine(dir, debugLink);
        yield return Path.Combine(dir, ".debug", debugLink);
        yield return root + Path.Combine(dir, debugLink);
    }

    /// <summary>
    /// Opens the separate debug file of ELF (whose path is PATH), or returns null. A candidate is taken when it is an
    /// ELF file other than the object itself whose build-id, when both have one, is the object's.
    /// </summary>
    public static ElfFile? Open(ElfFile elf, string path)
    {
        var buildId = BuildId(elf);
        var link = DebugLink(elf);
        if (buildId is null && link is null) return null;
        foreach (var candidate in Candidates(path, buildId, link))
        {
            if (candidate == path || !File.Exists(candidate)) continue;
            ElfFile? debug = null;
            try
            {
                debug = ElfFile.Open(candidate);
                var id = BuildId(debug);
                if (buildId is null || id is null || id == buildId)
                {
                    var found = debug;
                    debug = null;
                    return found;
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or ElfFormatException)
            {
            }
            finally
            {
                debug?.Dispose();
            }
        }

        return null;
    }
}
