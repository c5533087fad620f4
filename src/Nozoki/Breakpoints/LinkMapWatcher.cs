using System.Buffers.Binary;
using Nozoki.Arch;
using Nozoki.Memory;
using Nozoki.Probes;
using Nozoki.Tracing;

namespace Nozoki.Breakpoints;

/// <summary>A shared object in the dynamic loader's link map: where it is loaded (l_addr) and its name (l_name).</summary>
internal readonly record struct LinkMapModule(ulong LoadBias, string Name);

/// <summary>What a <see cref="LinkMapWatcher"/> tells its user. Called on the ptrace thread, the hitting thread stopped.</summary>
internal interface ILinkMapListener
{
    /// <summary>
    /// ld.so's hook was hit: it is about to change its link map, or has just finished (consistent: every object of
    /// the change is mapped and relocated). Objects mapped since the last call can be found in /proc/PID/maps now.
    /// </summary>
    void OnLinkMapChanged(int pid, bool consistent);

    /// <summary>An object entered the link map (dlopen, or start-up), seen when the map became consistent.</summary>
    void OnModuleMapped(int pid, in LinkMapModule module) { }

    /// <summary>An object left the link map (dlclose), seen when the map became consistent.</summary>
    void OnModuleUnmapped(int pid, in LinkMapModule module) { }
}

/// <summary>
/// Learns of objects mapped and unmapped by the dynamic loader (dlopen, dlclose) through its rendezvous hook, the way
/// gdb does: ld.so calls `_dl_debug_state` (r_debug.r_brk) before and after every change of its link map, with
/// r_debug.r_state saying which (RT_ADD, RT_DELETE, then RT_CONSISTENT). The hook is an empty function, a `ret`
/// (after an endbr64 with CET): the breakpoint goes on the ret, which is emulated by popping the return address, so no
/// step is needed. One per session; its sites live in the session's <see cref="BreakpointSet"/>.
/// </summary>
internal sealed class LinkMapWatcher(BreakpointSet breakpoints, ILinkMapListener listener)
{
    private sealed class Watched
    {
        public ulong Hook;              // the ret of _dl_debug_state
        public ulong Debug;             // ld.so's _r_debug, 0 if unknown
        public int Hits;
        public List<LinkMapModule> Modules = [];
    }

    private readonly Dictionary<int, Watched> _processes = [];
    private readonly HashSet<int> _tried = [];

    /// <summary>Whether pid's loader hook has a breakpoint.</summary>
    public bool IsWatching(int pid) => _processes.ContainsKey(pid);

    /// <summary>The breakpoint address of pid's hook (0 if none), for tests and diagnostics.</summary>
    public ulong HookOf(int pid) => _processes.TryGetValue(pid, out var w) ? w.Hook : 0;

    /// <summary>
    /// Puts a breakpoint on pid's loader hook (once per address space; again after exec). Null when watching, else why not
    /// (null too when the process has no dynamic loader: a static program).
    /// </summary>
    public string? Watch(int pid, out bool watching)
    {
        watching = _processes.ContainsKey(pid);
        if (watching || !_tried.Add(pid)) return null;
        // The loader's file is read through map_files when we may (root), else by its path.
        if (ProbeResolver.FindLoaderHook(pid) is not { } hook) return NoHook(pid);

        var address = hook.Address;
        Span<byte> code = stackalloc byte[5];
        if (ProcessMemory.Read(pid, address, code).BytesRead != 5) return null;
        var retOffset = code[..4].SequenceEqual(X86_64.EndBr64) ? 4 : 0;
        if (code[retOffset] != X86_64.Ret) return $"{hook.Loader.Path}: _dl_debug_state is not a plain ret; objects loaded later will not be probed";

        address += (ulong)retOffset;
        if (!breakpoints.For(pid).Insert(address).IsOk) return null;
        _processes[pid] = new Watched { Hook = address, Debug = ProbeResolver.FindLoaderDebug(hook.Loader) ?? 0 };
        watching = true;
        return null;
    }

    private static string? NoHook(int pid)
    {
        try
        {
            foreach (var o in Procfs.MemoryMaps.GroupObjects(pid, Procfs.MemoryMaps.Read(pid)))
            {
                if (Path.GetFileName(o.Path).StartsWith("ld-", StringComparison.Ordinal))
                    return $"PID {pid}: the dynamic loader's _dl_debug_state was not found; objects loaded later will not be probed";
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }

        return null;
    }

    /// <summary>A hit at site (from <see cref="BreakpointSet.Classify"/>): true if it was the hook (handled, the thread resumes past it).</summary>
    public bool OnHit(in BreakpointStop stop, ulong site)
    {
        if (!_processes.TryGetValue(stop.Pid, out var w) || w.Hook != site) return false;
        var consistent = LinkMapConsistent(stop.Pid, w);
        listener.OnLinkMapChanged(stop.Pid, consistent);
        if (consistent && w.Debug != 0) Diff(stop.Pid, w);
        stop.EmulateReturn();
        return true;
    }

    /// <summary>Whether r_debug.r_state is RT_CONSISTENT.</summary>
    private static bool LinkMapConsistent(int pid, Watched w)
    {
        w.Hits++;
        Span<byte> state = stackalloc byte[4];
        // struct r_debug { int r_version; struct link_map *r_map; ElfW(Addr) r_brk; enum r_state; ... }: r_state at 24.
        if (w.Debug == 0 || ProcessMemory.Read(pid, w.Debug + 24, state).BytesRead != 4)
            return w.Hits >= 2; // at start-up ld.so calls the hook with RT_ADD, then with RT_CONSISTENT
        return BinaryPrimitives.ReadInt32LittleEndian(state) == 0;
    }

    /// <summary>Walks r_debug.r_map and tells the listener what entered and left since the last consistent state.</summary>
    private void Diff(int pid, Watched w)
    {
        var now = ReadLinkMap(pid, w.Debug);
        foreach (var m in now)
        {
            if (!w.Modules.Contains(m)) listener.OnModuleMapped(pid, m);
        }

        foreach (var m in w.Modules)
        {
            if (!now.Contains(m)) listener.OnModuleUnmapped(pid, m);
        }

        w.Modules = now;
    }

    /// <summary>struct link_map { ElfW(Addr) l_addr; char *l_name; ElfW(Dyn) *l_ld; struct link_map *l_next, *l_prev; }.</summary>
    private static List<LinkMapModule> ReadLinkMap(int pid, ulong debug)
    {
        var modules = new List<LinkMapModule>();
        Span<byte> word = stackalloc byte[8];
        if (ProcessMemory.Read(pid, debug + 8, word).BytesRead != 8) return modules;
        var entry = BinaryPrimitives.ReadUInt64LittleEndian(word);
        Span<byte> node = stackalloc byte[40];
        Span<byte> name = stackalloc byte[512];
        // A bound on the walk: the list is the process's, and a corrupt one must not hold the tracer.
        for (var i = 0; entry != 0 && i < 4096; i++)
        {
            if (ProcessMemory.Read(pid, entry, node).BytesRead != 40) break;
            var bias = BinaryPrimitives.ReadUInt64LittleEndian(node);
            var nameAddress = BinaryPrimitives.ReadUInt64LittleEndian(node[8..]);
            var text = "";
            if (nameAddress != 0)
            {
                var n = ProcessMemory.Read(pid, nameAddress, name).BytesRead;
                var zero = name[..n].IndexOf((byte)0);
                text = System.Text.Encoding.UTF8.GetString(name[..(zero >= 0 ? zero : n)]);
            }

            modules.Add(new LinkMapModule(bias, text));
            entry = BinaryPrimitives.ReadUInt64LittleEndian(node[24..]);
        }

        return modules;
    }

    /// <summary>A followed fork child has the parent's hook breakpoint (copied with its table).</summary>
    public void OnNewProcess(int parentPid, int childPid, bool follow)
    {
        if (!follow || !_processes.TryGetValue(parentPid, out var w)) return;
        _tried.Add(childPid);
        _processes[childPid] = new Watched { Hook = w.Hook, Debug = w.Debug, Hits = w.Hits, Modules = [.. w.Modules] };
    }

    /// <summary>A new program, or the process is gone or let go: its hook with it.</summary>
    public void Forget(int pid)
    {
        _processes.Remove(pid);
        _tried.Remove(pid);
    }
}
