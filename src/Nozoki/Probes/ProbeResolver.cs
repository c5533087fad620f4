using System.Buffers.Binary;
using Nozoki.Elf;
using Nozoki.Memory;
using Nozoki.Procfs;
using Nozoki.Tracing;

namespace Nozoki.Probes;

/// <summary>
/// A probe site as it is in one process: the object it is in, that object's load bias, and the addresses to put a
/// breakpoint on and to count the semaphore at. <see cref="Args"/> have their symbols at process addresses.
/// </summary>
public sealed record ResolvedProbe(
    int Pid, MappedObject Object, ProbeSite Site, ulong LoadBias, ulong Address, ulong SemaphoreAddress, IReadOnlyList<ArgSpec> Args)
{
    public string ObjectPath => Object.Path;

    public bool HasSemaphore => SemaphoreAddress != 0;

    /// <summary>Where the site's instruction is in the object's file (what a kernel uprobe is placed by); null if no PT_LOAD holds it.</summary>
    public ulong? FileOffset { get; init; }

    /// <summary>Where the semaphore is in the object's file (the uprobe's ref_ctr_offset); null without one or if no PT_LOAD holds it.</summary>
    public ulong? SemaphoreFileOffset { get; init; }
}

/// <summary>An object of the process that was skipped (malformed ELF, unreadable file, no load bias).</summary>
public sealed record ProbeScanProblem(string Path, string Message);

/// <summary>The result of scanning a process for probes.</summary>
public sealed record ProbeScan(int Pid, IReadOnlyList<MappedObject> Objects, IReadOnlyList<ResolvedProbe> Probes, IReadOnlyList<ProbeScanProblem> Problems);

/// <summary>
/// Finds the USDT probe sites of every ELF object mapped in a process (the executable, shared libraries, dlopen'ed
/// objects) and their addresses there: address = note pc + (.stapsdt.base address - note base) + load bias, and the
/// same fix-ups for the semaphore. Parsed objects are cached by file (device, inode, path), so scanning again after
/// a dlopen or exec only reads the new files. Not thread-safe: one resolver per session thread.
/// </summary>
public sealed class ProbeResolver
{
    private readonly Dictionary<(uint Major, uint Minor, ulong Inode, string Path), ObjectEntry> _cache = [];

    /// <summary>
    /// Every probe site (matching <paramref name="pattern"/>, default all) of every object mapped in PID, in address
    /// order of the objects and note order within each. Throws <see cref="ProcessNotFoundException"/> when there is no
    /// such process and <see cref="TracePermissionException"/> when its maps may not be read; an object that cannot
    /// be read is listed in <see cref="ProbeScan.Problems"/> and skipped. Files that are not ELF are skipped silently.
    /// </summary>
    public ProbeScan Scan(int pid, ProbePattern? pattern = null)
    {
        List<MemoryMapping> maps;
        try
        {
            maps = MemoryMaps.Read(pid);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new ProcessNotFoundException(pid);
        }
        catch (UnauthorizedAccessException)
        {
            throw new TracePermissionException(pid, $"permission denied reading /proc/{pid}/maps");
        }
        catch (IOException) when (!Directory.Exists($"/proc/{pid}"))
        {
            throw new ProcessNotFoundException(pid);
        }

        if (maps.Count == 0 && !Directory.Exists($"/proc/{pid}")) throw new ProcessNotFoundException(pid);
        return Scan(pid, MemoryMaps.GroupObjects(pid, maps), pattern);
    }

    /// <summary>As <see cref="Scan(int, ProbePattern?)"/>, for objects already grouped (e.g. only the new ones).</summary>
    public ProbeScan Scan(int pid, IReadOnlyList<MappedObject> objects, ProbePattern? pattern = null)
    {
        pattern ??= ProbePattern.All;
        var probes = new List<ResolvedProbe>();
        var problems = new List<ProbeScanProblem>();
        foreach (var obj in objects)
        {
            var entry = Load(obj);
            if (entry.Problem is not null)
            {
                problems.Add(new ProbeScanProblem(obj.Path, entry.Problem));
                continue;
            }

            if (entry.Sites.Count == 0 || !entry.Sites.Any(s => pattern.Matches(obj.Path, s))) continue;
            if (obj.LoadBias(entry.Segments) is not { } bias)
            {
                problems.Add(new ProbeScanProblem(obj.Path, $"{obj.Path}: no mapping covers its first PT_LOAD segment; cannot tell where it is loaded"));
                continue;
            }

            foreach (var site in entry.Sites)
            {
                if (!pattern.Matches(obj.Path, site)) continue;
                probes.Add(Relocate(pid, obj, site, bias) with
                {
                    FileOffset = ToFileOffset(entry.Segments, site.Address),
                    SemaphoreFileOffset = site.SemaphoreAddress == 0 ? null : ToFileOffset(entry.Segments, site.SemaphoreAddress),
                });
            }
        }

        return new ProbeScan(pid, objects, probes, problems);
    }

    /// <summary>
    /// The address in PID of the dynamic loader's <c>_dl_debug_state</c>: an empty function (a lone <c>ret</c> in
    /// glibc) that the loader calls before and after every change of its link map (dlopen, dlclose), for debuggers.
    /// A breakpoint there tells a tracer when to <see cref="Scan(int, ProbePattern?)"/> again. The loader is the
    /// executable's PT_INTERP (or a mapped ld-*.so*). Null for a static executable or a loader without the symbol.
    /// </summary>
    public static (ulong Address, MappedObject Loader)? FindLoaderHook(int pid)
    {
        List<MappedObject> objects;
        try
        {
            objects = MemoryMaps.GroupObjects(pid, MemoryMaps.Read(pid));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }

        string? interp = null;
        try
        {
            using var exe = ElfFile.Open($"/proc/{pid}/exe");
            foreach (var seg in exe.Segments)
            {
                if (seg.Type != ElfConstants.PT_INTERP) continue;
                var raw = exe.ReadBytes(seg.Offset, seg.FileSize, "PT_INTERP");
                var path = System.Text.Encoding.UTF8.GetString(raw).TrimEnd('\0');
                interp = Native.RealPath.Resolve($"/proc/{pid}/root{path}")?.Replace($"/proc/{pid}/root", "", StringComparison.Ordinal)
                    ?? Native.RealPath.Resolve(path) ?? path;
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ElfFormatException)
        {
        }

        var loader = objects.FirstOrDefault(o => interp is not null && o.Path == interp)
            ?? objects.FirstOrDefault(o => Path.GetFileName(o.Path).StartsWith("ld-", StringComparison.Ordinal) && o.Path.Contains(".so", StringComparison.Ordinal));
        if (loader is null) return null;
        return LoaderSymbol(loader, "_dl_debug_state") is { } address ? (address, loader) : null;
    }

    /// <summary>
    /// The address in the process of the loader's <c>_r_debug</c> (struct r_debug, link.h): its <c>r_state</c> says
    /// whether the link map is consistent (RT_CONSISTENT) or being changed, when <c>_dl_debug_state</c> is called.
    /// </summary>
    public static ulong? FindLoaderDebug(MappedObject loader)
    {
        ArgumentNullException.ThrowIfNull(loader);
        return LoaderSymbol(loader, "_r_debug");
    }

    private static ulong? LoaderSymbol(MappedObject loader, string name)
    {
        foreach (var candidate in new[] { loader.MapFilesPath, loader.Path })
        {
            try
            {
                using var elf = ElfFile.Open(loader.Path, candidate);
                if (!elf.TryFindSymbol(name, out var sym) || loader.LoadBias(elf) is not { } bias) return null;
                return unchecked(sym.Value + bias);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
            }
            catch (ElfFormatException)
            {
                return null;
            }
        }

        return null;
    }

    /// <summary>A site of <paramref name="obj"/> at its addresses in the process, given the object's load bias.</summary>
    public static ResolvedProbe Relocate(int pid, MappedObject obj, ProbeSite site, ulong bias)
    {
        var args = site.Args.Any(a => a.SymbolAddress is not null)
            ? site.Args.Select(a => a.SymbolAddress is { } v ? a with { SymbolAddress = unchecked(v + bias) } : a).ToList()
            : site.Args;
        return new ResolvedProbe(pid, obj, site, bias, unchecked(site.Address + bias),
            site.SemaphoreAddress == 0 ? 0 : unchecked(site.SemaphoreAddress + bias), args);
    }

    /// <summary>The file offset of a link-time virtual address: inside the file bytes of the PT_LOAD that holds it.</summary>
    public static ulong? ToFileOffset(IReadOnlyList<ElfSegment> segments, ulong address)
    {
        foreach (var seg in segments)
        {
            if (seg.Type != ElfConstants.PT_LOAD || address < seg.VirtualAddress || address - seg.VirtualAddress >= seg.FileSize) continue;
            return address - seg.VirtualAddress + seg.Offset;
        }

        return null;
    }

    private ObjectEntry Load(MappedObject obj)
    {
        var first = obj.Mappings[0];
        var key = (first.DeviceMajor, first.DeviceMinor, first.Inode, obj.Path);
        if (_cache.TryGetValue(key, out var entry)) return entry;
        entry = LoadUncached(obj);
        _cache[key] = entry;
        return entry;
    }

    private static ObjectEntry LoadUncached(MappedObject obj)
    {
        // The very file the process mapped (map_files), else the path as the process sees it (its root), else ours.
        string? lastError = null;
        foreach (var candidate in new[] { obj.MapFilesPath, $"/proc/{obj.Pid}/root{obj.Path}", obj.Path })
        {
            try
            {
                using var elf = ElfFile.Open(obj.Path, candidate);
                return new ObjectEntry(elf.Segments, StapsdtNotes.Read(elf), null);
            }
            catch (ElfFormatException e) when (e.Kind == ElfErrorKind.NotElf)
            {
                return ObjectEntry.Empty;
            }
            catch (ElfFormatException e)
            {
                return new ObjectEntry([], [], e.Message);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                lastError ??= $"{obj.Path}: {e.Message}";
            }
        }

        return new ObjectEntry([], [], lastError);
    }

    private sealed record ObjectEntry(IReadOnlyList<ElfSegment> Segments, IReadOnlyList<ProbeSite> Sites, string? Problem)
    {
        public static readonly ObjectEntry Empty = new([], [], null);
    }
}

/// <summary>
/// USDT semaphores: an unsigned short per probe in the object's .probes section; the code behind a guarded probe runs
/// only while it is non-zero. A tracer adds 1 for each site it arms and subtracts 1 when it disarms.
/// </summary>
public static class Semaphores
{
    public const int Size = 2;

    /// <summary>Reads the semaphore at <paramref name="address"/> in PID (process_vm_readv: no ptrace stop needed).</summary>
    public static bool TryRead(int pid, ulong address, out ushort value)
    {
        Span<byte> b = stackalloc byte[Size];
        var r = ProcessMemory.Read(pid, address, b);
        value = r.BytesRead == Size ? BinaryPrimitives.ReadUInt16LittleEndian(b) : (ushort)0;
        return r.BytesRead == Size;
    }

    /// <summary>
    /// How many times each semaphore address is counted when every given probe is armed (several sites of one
    /// provider:name share one semaphore; each site adds 1, as the kernel's uprobe ref_ctr does).
    /// </summary>
    public static Dictionary<ulong, int> Counts(IEnumerable<ResolvedProbe> probes)
    {
        var d = new Dictionary<ulong, int>();
        foreach (var p in probes)
        {
            if (p.SemaphoreAddress != 0) d[p.SemaphoreAddress] = d.GetValueOrDefault(p.SemaphoreAddress) + 1;
        }

        return d;
    }
}
