using Nozoki.Procfs;

namespace Nozoki.Inspection;

/// <summary>A summary of /proc/PID/maps: counts, the largest mappings, the shared libraries.</summary>
internal static class MappingsReader
{
    public static MappingsSummary? Read(int pid, int largest, ProblemList problems)
    {
        List<MemoryMapping> maps;
        try
        {
            maps = MemoryMaps.Read(pid);
        }
        catch (UnauthorizedAccessException)
        {
            problems.Add(InspectSections.Mappings, ProblemKind.PermissionDenied, "mappings", "permission denied");
            return null;
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException or IOException)
        {
            problems.Add(InspectSections.Mappings, "mappings", new SysResult(Native.Errno.ENOENT));
            return null;
        }

        ulong total = 0;
        var files = 0;
        foreach (var m in maps)
        {
            total += m.Size;
            if (m.IsFile) files++;
        }

        var top = maps.OrderByDescending(m => m.Size).Take(Math.Max(0, largest))
            .Select(m => new MappingEntry(m.Start, m.End, m.Permissions, m.Path)).ToList();
        var libraries = MemoryMaps.GroupObjects(pid, maps).Select(o => o.Path)
            .Where(p => Path.GetFileName(p).Contains(".so", StringComparison.Ordinal)).Distinct(StringComparer.Ordinal).ToList();
        return new MappingsSummary(maps.Count, total, top, libraries, files, maps.Count - files);
    }
}
