using Nozoki.Arch;
using Nozoki.Memory;
using Nozoki.Tracing;

namespace Nozoki.Breakpoints;

/// <summary>
/// The int3 sites of one address space (one traced process; its threads share it): the original byte of each, and
/// how many users want it. Call it on the ptrace thread, inside an observer call. Every write into the code (an int3
/// inserted, an original byte put back) is made while every thread of the process is in a ptrace stop, as gdb does
/// in all-stop mode: a thread running the very bytes changed would otherwise see them change under it. The table asks
/// the session for that window itself (<see cref="ITraceControl.StopAllThreads"/>: the threads that run are
/// interrupted for the length of the observer call), which costs nothing where every thread is in a stop already:
/// at attach (OnAttached), at an exec (one thread left), at a detach, and during a step-over
/// (<see cref="BreakpointSet.StepOver"/>, where the original byte is back for one instruction of one thread).
/// A thread that trapped on a site just before it was removed is recognized by <see cref="WasRemoved"/>.
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

    /// <summary>The session's control, for the window in which code is written; null (no window asked) outside a session.</summary>
    internal ITraceControl? Control { get; set; }

    /// <summary>For tests: called just before each write into the code (the table, the address), inside the window.</summary>
    internal Action<BreakpointTable, ulong>? Writing { get; set; }

    /// <summary>Every thread of the process in a stop (see the class comment); then the write may be made.</summary>
    private bool Window(ulong address)
    {
        if (Control is { } c && !c.StopAllThreads(Pid)) return false;
        Writing?.Invoke(this, address);
        return true;
    }

    public int Count => _sites.Count;

    public IEnumerable<ulong> Addresses => _sites.Keys;

    /// <summary>
    /// Adds a reference to the site at address, writing an int3 there for the first. Ok, or the errno of the read or
    /// write (EEXIST: an int3 is there already; EBUSY: the process's threads could not all be stopped).
    /// </summary>
    public SysResult Insert(ulong address)
    {
        if (_sites.TryGetValue(address, out var site))
        {
            site.References++;
            return SysResult.Ok;
        }

        Span<byte> b = stackalloc byte[1];
        var r = ProcessMemory.Read(Pid, address, b);
        if (r.BytesRead != 1) return new SysResult(r.Errno == 0 ? Native.Errno.EFAULT : r.Errno);
        // An int3 there already is the program's own (or another tracer's): ours would trap for it, and hide it.
        if (b[0] == X86_64.Int3) return new SysResult(Native.Errno.EEXIST);
        if (!Window(address)) return new SysResult(Native.Errno.EBUSY);
        var e = ProcessMemoryWriter.Write(Pid, address, [X86_64.Int3]);
        if (!e.IsOk) return e;
        _sites[address] = new Site(b[0]) { References = 1 };
        _removed.Remove(address);
        return SysResult.Ok;
    }

    /// <summary>
    /// Drops a reference; the last puts the original byte back. False if there is no site there, or if the process's
    /// threads could not all be stopped for the write (the site and its reference stay).
    /// </summary>
    public bool Remove(ulong address)
    {
        if (!_sites.TryGetValue(address, out var site)) return false;
        if (site.References > 1)
        {
            site.References--;
            return true;
        }

        if (!Window(address)) return false;
        site.References = 0;
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

    /// <summary>Puts the original byte back for a step over it by TID, stopped (the site stays in the table).</summary>
    /// <remarks>Only while the other threads are kept stopped for the step (ITraceControl.SingleStep): no window asked.</remarks>
    internal bool Uncover(ulong address, int tid)
    {
        if (!_sites.TryGetValue(address, out var site)) return false;
        Writing?.Invoke(this, address);
        return ProcessMemoryWriter.Write(tid, Pid, address, [site.Original]).IsOk;
    }

    /// <summary>Writes the int3 again after a step, if the site is still wanted (at TID's step trap, the others still stopped).</summary>
    internal void Cover(ulong address, int tid)
    {
        if (!_sites.ContainsKey(address)) return;
        Writing?.Invoke(this, address);
        ProcessMemoryWriter.Write(tid, Pid, address, [X86_64.Int3]);
    }

    /// <summary>
    /// Puts every original byte back for a while, the sites staying in the table, until <see cref="CoverAll"/>: for a
    /// call into the process at a hit (the called function must not trap on them). Every other thread is stopped for
    /// it (they stay stopped during the call). The writes go through TID, the thread of the stop. False, nothing
    /// written, when they cannot all be stopped.
    /// </summary>
    internal bool UncoverAll(int tid)
    {
        if (Control is { } c && !c.StopAllThreads(Pid)) return false;
        foreach (var (address, site) in _sites)
        {
            Writing?.Invoke(this, address);
            ProcessMemoryWriter.Write(tid, Pid, address, [site.Original]);
        }

        return true;
    }

    /// <summary>Writes every int3 again after <see cref="UncoverAll"/>, through TID (the other threads still stopped).</summary>
    internal void CoverAll(int tid)
    {
        foreach (var address in _sites.Keys)
        {
            Writing?.Invoke(this, address);
            ProcessMemoryWriter.Write(tid, Pid, address, [X86_64.Int3]);
        }
    }

    /// <summary>Puts every original byte back (before detaching, every thread in a stop) and forgets the sites.</summary>
    public void RemoveAll()
    {
        if (_sites.Count == 0) return;
        // Detaching, the window is there already; a process whose threads cannot all be stopped still gets its bytes
        // back: an int3 left behind would kill it.
        var window = Control is null || Control.StopAllThreads(Pid);
        foreach (var (address, site) in _sites)
        {
            if (window) Writing?.Invoke(this, address);
            ProcessMemoryWriter.Write(Pid, address, [site.Original]);
        }

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
        var copy = new BreakpointTable(childPid) { Control = Control, Writing = Writing };
        foreach (var (address, site) in _sites) copy._sites[address] = new Site(site.Original) { References = site.References };
        return copy;
    }
}
