using Nozoki.Arch;
using Nozoki.Memory;

namespace Nozoki.Breakpoints;

/// <summary>
/// The int3 sites of one address space (one traced process; its threads share it): the original byte of each, and
/// how many users want it. Call it on the ptrace thread, at a stop of a thread of the process (or at attach, exec,
/// detach). Inserting or removing writes one byte, which an instruction fetch of another thread sees whole or not
/// at all (what the kernel's own text_poke_bp relies on): a thread that already trapped on a site just removed is
/// recognized by <see cref="WasRemoved"/>. What no other thread may see is the original byte put back for a step
/// over a longer instruction: <see cref="BreakpointSet.StepOver"/> does that only with every other thread stopped.
/// </summary>
internal sealed class BreakpointTable(int pid)
{
    private sealed class Site(byte original)
    {
        public readonly byte Original = original;
        public int References;
    }

    private readonly Dictionary<ulong, Site> _sites = [];

    // Sites removed while a thread may have trapped on them: its SIGTRAP may still be on its way.
    private readonly HashSet<ulong> _removed = [];

    public int Pid { get; private set; } = pid;

    public int Count => _sites.Count;

    public IEnumerable<ulong> Addresses => _sites.Keys;

    /// <summary>Adds a reference to the site at address, writing an int3 there for the first. 0, or the errno of the read or write.</summary>
    public int Insert(ulong address)
    {
        if (_sites.TryGetValue(address, out var site))
        {
            site.References++;
            return 0;
        }

        Span<byte> b = stackalloc byte[1];
        var r = ProcessMemory.Read(Pid, address, b);
        if (r.BytesRead != 1) return r.Errno == 0 ? Native.Errno.EFAULT : r.Errno;
        // An int3 there already is the program's own (or another tracer's): ours would trap for it, and hide it.
        if (b[0] == X86_64.Int3) return Native.Errno.EEXIST;
        var e = ProcessMemoryWriter.Write(Pid, address, [X86_64.Int3]);
        if (e != 0) return e;
        _sites[address] = new Site(b[0]) { References = 1 };
        _removed.Remove(address);
        return 0;
    }

    /// <summary>Drops a reference; the last puts the original byte back. False if there is no site there.</summary>
    public bool Remove(ulong address)
    {
        if (!_sites.TryGetValue(address, out var site)) return false;
        if (--site.References > 0) return true;
        _sites.Remove(address);
        ProcessMemoryWriter.Write(Pid, address, [site.Original]);
        _removed.Add(address);
        return true;
    }

    public bool Contains(ulong address) => _sites.ContainsKey(address);

    public bool TryGetOriginal(ulong address, out byte original)
    {
        original = _sites.TryGetValue(address, out var site) ? site.Original : (byte)0;
        return site is not null;
    }

    /// <summary>Whether address had a site that was removed (a trap there may still be reported).</summary>
    public bool WasRemoved(ulong address) => _removed.Contains(address);

    /// <summary>Puts the original byte back for a step over it (the site stays in the table).</summary>
    internal bool Uncover(ulong address) =>
        _sites.TryGetValue(address, out var site) && ProcessMemoryWriter.Write(Pid, address, [site.Original]) == 0;

    /// <summary>Writes the int3 again after a step, if the site is still wanted.</summary>
    internal void Cover(ulong address)
    {
        if (_sites.ContainsKey(address)) ProcessMemoryWriter.Write(Pid, address, [X86_64.Int3]);
    }

    /// <summary>Puts every original byte back (before detaching) and forgets the sites.</summary>
    public void RemoveAll()
    {
        RestoreIn(Pid);
        foreach (var address in _sites.Keys) _removed.Add(address);
        _sites.Clear();
    }

    /// <summary>Writes the original bytes into another process that has a copy of these sites (a fork child not followed).</summary>
    public void RestoreIn(int pid)
    {
        foreach (var (address, site) in _sites) ProcessMemoryWriter.Write(pid, address, [site.Original]);
    }

    /// <summary>The table of a fork child: the same sites in its copy of the memory.</summary>
    public BreakpointTable CopyFor(int childPid)
    {
        var copy = new BreakpointTable(childPid);
        foreach (var (address, site) in _sites) copy._sites[address] = new Site(site.Original) { References = site.References };
        return copy;
    }
}
