using Nozoki.Arch;
using Nozoki.Tracing;

namespace Nozoki.Breakpoints;

/// <summary>
/// The int3 sites of a session, one <see cref="BreakpointTable"/> per traced address space, and what a hit needs:
/// which site trapped, and the step over the instruction the int3 displaced. An observer owns one and forwards its
/// stops and process events to it. Ptrace thread only.
/// <para>
/// The step-over: a site over a one-byte `nop` needs none (past the trap the thread is where the nop would have left
/// it). Over any other instruction the original byte is put back, the thread rewound to the site and single-stepped
/// (<see cref="ITraceControl.SingleStep"/>) while every other thread of its process is kept stopped, so that none runs
/// through the site while it has no int3; at the step trap the int3 goes back and the others go on.
/// </para>
/// </summary>
internal sealed class BreakpointSet
{
    private readonly Dictionary<int, BreakpointTable> _tables = [];
    private readonly Dictionary<int, (int Pid, ulong Address)> _stepping = [];
    private ITraceControl? _control;

    /// <summary>Step-overs done (a site over something else than a nop).</summary>
    public long StepOvers { get; private set; }

    public void OnStarted(ITraceControl control) => _control = control;

    /// <summary>For tests: called just before each write into a process's code (see <see cref="BreakpointTable.Writing"/>).</summary>
    internal Action<BreakpointTable, ulong>? Writing { get; set; }

    /// <summary>
    /// The table of pid's address space, made on first use. Its inserts and removes stop every thread of the process
    /// for their write (see <see cref="BreakpointTable"/>): call them inside an observer call.
    /// </summary>
    public BreakpointTable For(int pid)
    {
        if (!_tables.TryGetValue(pid, out var t)) _tables[pid] = t = new BreakpointTable(pid) { Control = _control, Writing = Writing };
        return t;
    }

    public bool TryGet(int pid, out BreakpointTable table) => _tables.TryGetValue(pid, out table!);

    /// <summary>What an int3 stop is for this set.</summary>
    public enum Trap
    {
        /// <summary>Not an int3 of ours: the process's own; deliver its SIGTRAP.</summary>
        NotOurs,

        /// <summary>A site of the table, at <c>site</c>: the caller handles the hit, then calls <see cref="StepOver"/> (or moves the thread itself).</summary>
        Hit,

        /// <summary>A site removed just before its trap was reported: the thread was rewound to run the original instruction; nothing to report.</summary>
        Stale,
    }

    /// <summary>Which site an int3 stop trapped on. Registers are the thread's at the trap (rip one past the int3).</summary>
    public Trap Classify(in BreakpointStop stop, out ulong site, out X86Registers registers)
    {
        site = 0;
        if (!_tables.TryGetValue(stop.Pid, out var table) || !stop.TryGetRegisters(out registers))
        {
            registers = default;
            return Trap.NotOurs;
        }

        site = X86_64.BreakpointSite(registers.Rip);
        if (table.Contains(site)) return Trap.Hit;
        // Trapped just before the site was removed: the original instruction is back; run it.
        if (table.WasRemoved(site) && stop.SetInstructionPointer(site)) return Trap.Stale;
        return Trap.NotOurs;
    }

    /// <summary>
    /// After a hit at site: lets the thread execute the instruction the int3 displaced when it resumes. False if the
    /// thread could not be moved (gone).
    /// </summary>
    public bool StepOver(in BreakpointStop stop, ulong site)
    {
        if (!_tables.TryGetValue(stop.Pid, out var table) || !table.TryGetOriginal(site, out var original)) return false;
        if (original == X86_64.Nop) return true;
        if (_control is null || !_control.SingleStep(stop.Tid))
        {
            // Detaching: every int3 is about to be removed; the thread runs the original instruction after that.
            return stop.SetInstructionPointer(site);
        }

        // The other threads of the process are stopped from here until OnSingleStep.
        StepOvers++;
        _stepping[stop.Tid] = (stop.Pid, site);
        return table.Uncover(site, stop.Tid) && stop.SetInstructionPointer(site);
    }

    /// <summary>A step trap: true if it was the step over one of this set's sites (the int3 is back).</summary>
    public bool OnSingleStep(in StepStop stop)
    {
        if (!_stepping.Remove(stop.Tid, out var s)) return false;
        if (_tables.TryGetValue(s.Pid, out var table)) table.Cover(s.Address, stop.Tid);
        return true;
    }

    /// <summary>
    /// A new process (fork): a followed child gets a copy of the parent's table; one not followed gets its original
    /// bytes back before it runs, unless it shares the parent's memory (vfork): that would disarm the parent.
    /// </summary>
    public void OnNewProcess(int parentPid, int childPid, bool follow)
    {
        if (!_tables.TryGetValue(parentPid, out var parent) || parent.Count == 0) return;
        if (follow) _tables[childPid] = parent.CopyFor(childPid);
        else if (!Native.Kcmp.SameMemory(parentPid, childPid)) parent.RestoreIn(childPid);
    }

    /// <summary>A new program: the old address space and every site in it are gone.</summary>
    public void OnExec(int pid)
    {
        _tables.Remove(pid);
        ForgetSteps(pid);
    }

    /// <summary>Every thread is stopped before a detach: the original bytes go back.</summary>
    public void OnDetaching(int pid)
    {
        if (_tables.Remove(pid, out var table)) table.RemoveAll();
        ForgetSteps(pid);
    }

    public void OnProcessExited(int pid)
    {
        _tables.Remove(pid);
        ForgetSteps(pid);
    }

    private void ForgetSteps(int pid)
    {
        foreach (var (tid, s) in _stepping)
        {
            if (s.Pid == pid) _stepping.Remove(tid);
        }
    }
}
