using System.Diagnostics;
using Nozoki.Arch;
using Nozoki.Memory;
using Nozoki.Native;
using Nozoki.Probes;
using Nozoki.Procfs;
using Nozoki.Symbols;
using Nozoki.Tracing;
using Nozoki.Unwinding;
using Nozoki.Usdt;

namespace Nozoki.Breakpoints;

/// <summary>
/// One hit of a break location. Valid only during the sink call. <see cref="Args"/> are rdi, rsi, rdx, rcx, r8, r9 at
/// the hit (the first six integer arguments at a function's entry); <see cref="Frames"/> the backtrace when asked for.
/// </summary>
public readonly ref struct BreakHit
{
    public required DateTime Time { get; init; }
    public required int Pid { get; init; }
    public required int Tid { get; init; }
    public required string Comm { get; init; }

    /// <summary>The LOCATION as given on the command line that this site came from.</summary>
    public required string Spec { get; init; }

    /// <summary>Where the site is (module!symbol+0xoff).</summary>
    public required CodeLocation Location { get; init; }

    public required ReadOnlySpan<ulong> Args { get; init; }

    /// <summary>The hit thread's native backtrace (frame 0 is the site), or null without <see cref="BreakOptions.Backtrace"/>.</summary>
    public IReadOnlyList<Frame>? Frames { get; init; }
}

/// <summary>Where break hits go. Calls never overlap (ptrace hits on the ptrace thread, uprobe hits on the reader thread).</summary>
public interface IBreakSink : ISessionSink
{
    void OnHit(in BreakHit hit);

    /// <summary>The hits so far should be visible now.</summary>
    void Flush() { }

    /// <summary>Something nozoki could not do, or a note (a location pending until a module defining it is mapped).</summary>
    void OnProblem(string message);

    /// <summary>SPEC armed SITES sites in PID (uprobe: with kernel uprobes, else ptrace breakpoints).</summary>
    void OnArmed(int pid, string spec, int sites, bool uprobe) { }
}

/// <summary>How break sites are trapped.</summary>
public enum BreakMechanism
{
    /// <summary>Kernel uprobes (the thread never stops); ptrace breakpoints when the kernel refuses them.</summary>
    Uprobe,

    /// <summary>int3 breakpoints through ptrace: the hit thread stops while it is looked at.</summary>
    Ptrace,
}

public sealed class BreakOptions
{
    public BreakMechanism Mechanism { get; init; } = BreakMechanism.Uprobe;

    /// <summary>Unwind the hit thread's stack.</summary>
    public bool Backtrace { get; init; }

    /// <summary>Bytes of stack a uprobe sample copies for the unwinder (a multiple of 8).</summary>
    public int StackSize { get; init; } = 16384;

    /// <summary>Report this many hits, then <see cref="BreakTracer.LimitReached"/> (0: no limit).</summary>
    public long Count { get; init; }

    /// <summary>Also break in children (fork, vfork); otherwise their inherited sites are removed at birth.</summary>
    public bool FollowForks { get; init; }

    /// <summary>A LOCATION that matches nothing in an attached process now waits for a module that defines it (dlopen).</summary>
    public bool Pending { get; init; }
}

/// <summary>How long hit threads were held, per hit (ptrace breakpoints: from the stop to the resume after the step-over).</summary>
public readonly record struct HoldStatistics(long Hits, TimeSpan Median, TimeSpan P99, TimeSpan Max);

/// <summary>
/// Breaks at code LOCATIONs (see <see cref="ProcessSymbols.Resolve"/>) in every process of a session and reports each
/// hit with its registers and, when asked, its backtrace. A location defined in several modules (interposition:
/// bcrypt's crypt_ra and libcrypt's) arms all of them, as gdb does; one not found yet is armed when ld.so maps a module
/// that defines it (<see cref="LinkMapWatcher"/>).
/// <para>
/// With kernel uprobes the hit thread does not stop: the kernel records every general register and the top
/// <see cref="BreakOptions.StackSize"/> bytes of its stack (PERF_SAMPLE_REGS_USER, PERF_SAMPLE_STACK_USER) and lets it
/// run on; the sample is unwound afterwards on the reader thread from that <see cref="StackCopy"/>, as perf's
/// `--call-graph dwarf` does: a frame beyond the copy ends the backtrace with the marker, never a wrong frame.
/// When the kernel refuses uprobes (no CAP_PERFMON), or with <see cref="BreakMechanism.Ptrace"/>, an int3 of the
/// session's <see cref="BreakpointSet"/>: the thread stops, is unwound from live memory, and the displaced instruction
/// is single-stepped with the other threads kept out of the window.
/// </para>
/// </summary>
public sealed class BreakTracer : ITraceObserver, IDisposable
{
    private readonly IReadOnlyList<string> _specs;
    private readonly IBreakSink _sink;
    private readonly BreakOptions _options;
    private readonly Dictionary<int, ProcessSites> _processes = [];
    private readonly BreakpointSet _breakpoints = new();
    private readonly LinkMapWatcher _linkMap;
    private readonly ThreadNames _comms = new();
    private readonly Dictionary<int, Unwinder?> _unwinders = [];
    private readonly Dictionary<int, LiveMemory> _live = [];
    private readonly Dictionary<int, long> _heldSince = [];
    private readonly List<long> _holds = [];
    private readonly ulong[] _args = new ulong[6];
    private readonly Lock _gate = new();
    private readonly HashSet<string> _everMatched = [];
    private byte[] _stackCopy = [];
    private long _hits;
    private int _skipExecOf = -1;
    private int _launchedPid;
    private bool _launched;
    private UprobeHits? _uprobes;
    private bool _uprobesTried;
    private ITraceControl? _control;
    private readonly long _realtimeOffsetTicks = DateTime.UtcNow.Ticks - MonotonicNs() / 100;

    // Every general register perf can sample in 64-bit mode: AX..FLAGS (0-9), CS and SS (10, 11), R8..R15 (16-23). DS,
    // ES, FS and GS (12-15) are refused for 64-bit tasks (perf_reg_validate); the unwinder needs none of them.
    private const ulong AllGeneralRegisters = 0xff0fffUL;

    public BreakTracer(IReadOnlyList<string> locations, IBreakSink sink, BreakOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(locations);
        ArgumentNullException.ThrowIfNull(sink);
        _specs = locations;
        _sink = sink;
        _options = options ?? new BreakOptions();
        if (_options.StackSize is < 8 or > 61440 || _options.StackSize % 8 != 0)
            throw new ArgumentOutOfRangeException(nameof(options), "the stack size must be a multiple of 8 from 8 to 61440 bytes");
        _linkMap = new LinkMapWatcher(_breakpoints, new LinkMapListener(this));
    }

    /// <summary>Called when Count hits were reported or the uprobe reader failed; typically requests a detach.</summary>
    public Action? LimitReached { get; set; }

    public long Hits => Interlocked.Read(ref _hits);

    /// <summary>Hits the kernel recorded no sample for (a full ring buffer); each loss was reported.</summary>
    public long Lost { get; private set; }

    /// <summary>What stopped the uprobe reader (e.g. the sink's output was closed), if anything.</summary>
    public Exception? ReaderError { get; private set; }

    /// <summary>Sites armed with kernel uprobes, over the whole session.</summary>
    public int UprobeSites { get; private set; }

    /// <summary>Sites armed with ptrace breakpoints, over the whole session.</summary>
    public int PtraceSites { get; private set; }

    /// <summary>Whether any location matched a site in any process at any time of the session.</summary>
    public bool AnyMatched { get; private set; }

    /// <summary>
    /// Checks every location against PID now (before attaching): throws <see cref="SymbolLookupException"/> for the
    /// first that matches nothing, unless <see cref="BreakOptions.Pending"/>. Returns how many sites each has.
    /// </summary>
    public IReadOnlyList<(string Spec, int Sites)> Check(int pid)
    {
        var symbols = ProcessSymbols.ForProcess(pid);
        var result = new List<(string, int)>();
        foreach (var spec in _specs)
        {
            try
            {
                result.Add((spec, symbols.Resolve(spec).Count));
            }
            catch (SymbolLookupException) when (_options.Pending)
            {
                result.Add((spec, 0));
            }
        }

        return result;
    }

    /// <summary>Hold times of the ptrace hits so far (null when no hit stopped a thread: uprobes do not).</summary>
    public HoldStatistics? Holds()
    {
        long[] ticks;
        lock (_gate) ticks = [.. _holds];
        if (ticks.Length == 0) return null;
        Array.Sort(ticks);
        static TimeSpan T(long t) => TimeSpan.FromTicks((long)(t * (double)TimeSpan.TicksPerSecond / Stopwatch.Frequency));
        return new HoldStatistics(ticks.Length, T(ticks[ticks.Length / 2]), T(ticks[Math.Min(ticks.Length - 1, (int)Math.Ceiling(ticks.Length * 0.99) - 1)]), T(ticks[^1]));
    }

    private sealed class LinkMapListener(BreakTracer tracer) : ILinkMapListener
    {
        public void OnLinkMapChanged(int pid, bool consistent)
        {
            if (!tracer._processes.TryGetValue(pid, out var p)) return;
            // Only a consistent map has every new object mapped and relocated.
            if (!consistent) return;
            tracer.Arm(p);
            if (p.StartupPending) tracer.StartupScanned(p);
        }
    }

    /// <summary>An armed site: also the tag of its uprobe samples.</summary>
    private sealed class Site(string spec, CodeLocation location, bool uprobe, byte original)
    {
        public readonly string Spec = spec;
        public readonly CodeLocation Location = location;
        public readonly bool Uprobe = uprobe;
        public readonly byte Original = original;   // the byte under the kernel's int3 (uprobe sites)
        public readonly ulong Address = location.Address;
    }

    private sealed class ProcessSites(int pid)
    {
        public readonly int Pid = pid;
        public readonly Dictionary<ulong, Site> Sites = [];
        public readonly HashSet<int> Threads = [];
        public ProcessSymbols? Symbols;
        public bool StartupPending;
    }

    public void OnStarted(ITraceControl control)
    {
        _control = control;
        _breakpoints.OnStarted(control);
        _launched = control.Launched;
    }

    public void OnAttached(int pid, int threadCount)
    {
        if (_launched) _skipExecOf = _launchedPid = pid;
        var p = Get(pid);
        foreach (var tid in ProcessInfo.ReadThreadIds(pid)) p.Threads.Add(tid);
        p.Threads.Add(pid);
        Arm(p);
        WatchStartup(p);
        lock (_gate) _sink.OnAttached(pid, threadCount);
    }

    public void OnExec(int pid, int tid)
    {
        if (pid == _skipExecOf)
        {
            _skipExecOf = -1;
            return;
        }

        lock (_gate)
        {
            _uprobes?.CloseProcess(pid);
            ForgetUnwinder(pid);
            _comms.Clear();
        }

        _processes.Remove(pid);
        _breakpoints.OnExec(pid);
        _linkMap.Forget(pid);
        var p = Get(pid);
        p.Threads.Add(pid);
        Arm(p);
        WatchStartup(p);
    }

    private void WatchStartup(ProcessSites p)
    {
        if (!_launched || p.Pid != _launchedPid) return;
        if (!_linkMap.IsWatching(p.Pid)) StartupScanned(p);
        else p.StartupPending = true;
    }

    /// <summary>A launched program's start-up objects are all mapped: say which locations are still pending.</summary>
    private void StartupScanned(ProcessSites p)
    {
        p.StartupPending = false;
        foreach (var spec in _specs)
        {
            if (!_everMatched.Contains(spec))
                Problem($"{spec}: not found in PID {p.Pid} nor in the libraries it loaded at start-up; pending: armed when a module that defines it is loaded (dlopen)");
        }
    }

    private ProcessSites Get(int pid)
    {
        if (!_processes.TryGetValue(pid, out var p)) _processes[pid] = p = new ProcessSites(pid);
        return p;
    }

    private void Arm(ProcessSites p)
    {
        try
        {
            if (p.Symbols is null) p.Symbols = ProcessSymbols.ForProcess(p.Pid);
            else p.Symbols.Refresh();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Problem($"PID {p.Pid}: cannot read its memory maps ({e.Message})");
            return;
        }

        // The unwinder reads the maps now: uprobe samples may be drained after the process is gone (exit).
        if (_options.Backtrace)
        {
            lock (_gate) UnwinderFor(p.Pid);
        }

        Span<byte> original = stackalloc byte[1];
        foreach (var spec in _specs)
        {
            IReadOnlyList<CodeLocation> locations;
            try
            {
                locations = p.Symbols.Resolve(spec);
            }
            catch (SymbolLookupException)
            {
                continue; // pending: a module mapped later may define it
            }

            _everMatched.Add(spec);
            AnyMatched = true;
            int uprobes = 0, traps = 0;
            foreach (var location in locations)
            {
                if (p.Sites.ContainsKey(location.Address)) continue;
                if (ProcessMemory.Read(p.Pid, location.Address, original).BytesRead != 1)
                {
                    Problem($"{spec}: 0x{location.Address:x} ({location}) cannot be read in PID {p.Pid}; not armed");
                    continue;
                }

                if (WantsUprobe(p) && ArmUprobe(p, spec, location, original[0]))
                {
                    uprobes++;
                    continue;
                }

                if (!_breakpoints.For(p.Pid).Insert(location.Address).IsOk)
                {
                    Problem($"{spec}: cannot write an int3 at 0x{location.Address:x} ({location}) in PID {p.Pid}; not armed");
                    continue;
                }

                p.Sites[location.Address] = new Site(spec, location, uprobe: false, original[0]);
                PtraceSites++;
                traps++;
            }

            lock (_gate)
            {
                if (uprobes > 0) _sink.OnArmed(p.Pid, spec, uprobes, uprobe: true);
                if (traps > 0) _sink.OnArmed(p.Pid, spec, traps, uprobe: false);
            }
        }

        if (_linkMap.Watch(p.Pid, out _) is { } problem) Problem(problem);
    }

    private bool WantsUprobe(ProcessSites p)
    {
        if (_options.Mechanism == BreakMechanism.Ptrace) return false;
        if (!_uprobesTried)
        {
            _uprobesTried = true;
            lock (_gate)
            {
                _uprobes = UprobeHits.TryCreate(new UprobeHandler(this), _gate, out var problem);
                if (problem is not null) _sink.OnProblem($"{problem}; using ptrace breakpoints");
                _uprobes?.PlanFor(p.Threads.Count, sampleBytes: _options.Backtrace ? _options.StackSize + 256 : 256);
            }
        }

        return _uprobes is not null;
    }

    /// <summary>Opens the site's uprobe on every thread of the process; false when not one could be opened.</summary>
    private bool ArmUprobe(ProcessSites p, string spec, CodeLocation location, byte original)
    {
        var table = location.Module.Symbols;
        if (table is null || ProbeResolver.ToFileOffset(table.Segments, location.FileAddress) is not { } offset) return false;
        var site = new Site(spec, location, uprobe: true, original);
        var target = new UprobeTarget(location.Module.Mapped, offset, AllGeneralRegisters, _options.Backtrace ? (uint)_options.StackSize : 0u, site);
        UprobeHits? refused = null;
        var opened = 0;
        lock (_gate)
        {
            var error = 0;
            foreach (var tid in p.Threads)
            {
                Comm(p.Pid, tid);
                var e = _uprobes!.Open(target, p.Pid, tid);
                if (e == 0) opened++;
                else if (e != Errno.ESRCH) error = e;
            }

            if (opened == 0)
            {
                var why = error is Errno.EACCES or Errno.EPERM ? " (kernel uprobes need root or CAP_PERFMON)" : "";
                _sink.OnProblem($"{spec} at 0x{location.Address:x} ({location}): kernel uprobe failed ({ErrnoText(error)}){why}; using a ptrace breakpoint");
                if (error is Errno.EACCES or Errno.EPERM or Errno.ENOSYS or Errno.EOPNOTSUPP && UprobeSites == 0)
                {
                    refused = _uprobes;
                    _uprobes = null;
                }
            }
            else if (error != 0)
            {
                _sink.OnProblem($"{spec}: kernel uprobe failed for some threads of PID {p.Pid} ({ErrnoText(error)}); their hits will be missed");
            }
        }

        if (opened == 0)
        {
            refused?.Dispose();
            return false;
        }

        p.Sites[location.Address] = site;
        UprobeSites++;
        return true;
    }

    private static string ErrnoText(int errno) => $"{Nozoki.Syscalls.Errnos.Name(errno) ?? errno.ToString(System.Globalization.CultureInfo.InvariantCulture)}: {Libc.StrError(errno)}";

    private void Problem(string message)
    {
        lock (_gate) _sink.OnProblem(message);
    }

    public bool OnBreakpoint(in BreakpointStop stop)
    {
        var stopped = Stopwatch.GetTimestamp();
        if (!_processes.TryGetValue(stop.Pid, out var p)) return false;
        switch (_breakpoints.Classify(stop, out var address, out var regs))
        {
            case BreakpointSet.Trap.NotOurs:
                return false;
            case BreakpointSet.Trap.Stale:
                return true;
        }

        if (_linkMap.OnHit(stop, address)) return true;
        if (!p.Sites.TryGetValue(address, out var site)) return _breakpoints.StepOver(stop, address);

        lock (_gate)
        {
            // The thread's earlier uprobe hits (other sites) are in its ring already: report them first.
            _uprobes?.Drain();
            if (!_live.TryGetValue(stop.Tid, out var memory)) _live[stop.Tid] = memory = new LiveMemory(stop.Tid);
            Report(DateTime.UtcNow, stop.Pid, stop.Tid, regs with { Rip = address }, memory, site);
            _sink.Flush();
        }

        var stepped = _breakpoints.TryGet(stop.Pid, out var table) && table.TryGetOriginal(address, out var b) && b != X86_64.Nop;
        var resumed = _breakpoints.StepOver(stop, address);
        lock (_gate)
        {
            // The thread is held until its step over the displaced instruction is done (OnSingleStep).
            if (stepped) _heldSince[stop.Tid] = stopped;
            else _holds.Add(Stopwatch.GetTimestamp() - stopped);
        }

        return resumed;
    }

    public void OnSingleStep(in StepStop stop)
    {
        if (!_breakpoints.OnSingleStep(stop)) return;
        lock (_gate)
        {
            if (_heldSince.Remove(stop.Tid, out var since)) _holds.Add(Stopwatch.GetTimestamp() - since);
        }
    }

    /// <summary>Reports one hit, counting it against --count. Caller holds the gate.</summary>
    private void Report(DateTime time, int pid, int tid, in X86Registers regs, IMemorySource memory, Site site)
    {
        // With --count N, hits after the Nth (before the detach takes effect) are not reported.
        if (_options.Count > 0 && _hits >= _options.Count) return;
        _args[0] = regs.Rdi;
        _args[1] = regs.Rsi;
        _args[2] = regs.Rdx;
        _args[3] = regs.Rcx;
        _args[4] = regs.R8;
        _args[5] = regs.R9;
        IReadOnlyList<Frame>? frames = null;
        if (_options.Backtrace) frames = Unwind(pid, tid, regs, memory);
        _sink.OnHit(new BreakHit
        {
            Time = time, Pid = pid, Tid = tid, Comm = Comm(pid, tid), Spec = site.Spec, Location = site.Location, Args = _args, Frames = frames,
        });
        if (Interlocked.Increment(ref _hits) == _options.Count) LimitReached?.Invoke();
    }

    private IReadOnlyList<Frame> Unwind(int pid, int tid, in X86Registers regs, IMemorySource memory)
    {
        if (UnwinderFor(pid) is not { } unwinder) return [];
        try
        {
            return unwinder.Unwind(tid, regs, memory);
        }
        catch (UnwindException e)
        {
            return [new Frame(0, regs.Rip, true, null, null, null, 0, null, null, e.Message)];
        }
    }

    /// <summary>The process's unwinder, made on first use (null, said once, when it cannot be). Caller holds the gate.</summary>
    private Unwinder? UnwinderFor(int pid)
    {
        if (!_unwinders.TryGetValue(pid, out var unwinder))
        {
            try
            {
                unwinder = Unwinder.ForProcess(pid);
            }
            catch (Exception e) when (e is UnwindException or IOException or UnauthorizedAccessException)
            {
                _sink.OnProblem($"PID {pid}: no backtraces: {e.Message}");
                unwinder = null;
            }

            _unwinders[pid] = unwinder;
        }

        return unwinder;
    }

    private void ForgetUnwinder(int pid)
    {
        if (_unwinders.Remove(pid, out var u)) u?.Dispose();
    }

    private static long MonotonicNs() => (long)(Stopwatch.GetTimestamp() * (1_000_000_000.0 / Stopwatch.Frequency));

    private sealed class UprobeHandler(BreakTracer tracer) : IUprobeSampleHandler
    {
        public void OnSample(in UprobeSample sample)
        {
            var t = tracer;
            if (sample.Tag is not Site site) return;
            IMemorySource memory;
            if (t._options.Backtrace)
            {
                if (t._stackCopy.Length < sample.Stack.Length) t._stackCopy = new byte[sample.Stack.Length];
                sample.Stack.CopyTo(t._stackCopy);
                memory = new StackCopy(sample.Registers.Rsp, t._stackCopy.AsMemory(0, sample.Stack.Length));
            }
            else
            {
                memory = EmptyMemory.Instance;
            }

            var time = new DateTime(t._realtimeOffsetTicks + sample.MonotonicNs / 100, DateTimeKind.Utc);
            // The kernel's ip at the trap may be past its int3; the site is where the hit is.
            t.Report(time, sample.Pid, sample.Tid, sample.Registers with { Rip = site.Address }, memory, site);
        }

        public void OnDrained() => tracer._sink.Flush();

        public void OnLost(int pid, int tid, ulong count)
        {
            // Past --count the hits are not wanted: that the kernel dropped some of them is no loss.
            if (tracer._options.Count > 0 && tracer._hits >= tracer._options.Count) return;
            tracer.Lost += (long)count;
            tracer._sink.OnProblem($"{count} hits of thread {tid} (PID {pid}) were lost: the kernel's ring buffer was full (output too slow)");
        }

        public void OnPressure(int pid, bool hold) => tracer._control?.Hold(pid, hold);

        public void OnReaderFailed(Exception error)
        {
            tracer.ReaderError = error;
            tracer.LimitReached?.Invoke();
        }
    }

    private sealed class EmptyMemory : IMemorySource
    {
        public static readonly EmptyMemory Instance = new();

        public bool TryReadWord(ulong address, out ulong value)
        {
            value = 0;
            return false;
        }
    }

    private string Comm(int pid, int tid) => _comms.Get(pid, tid);

    public void OnNewTask(int parentTid, int newTid, int newPid, bool isProcess)
    {
        if (!isProcess)
        {
            if (_processes.TryGetValue(newPid, out var owner) && owner.Threads.Add(newTid)) OpenUprobes(owner, newTid);
            return;
        }

        var parentPid = ProcessInfo.ReadTgid(parentTid);
        if (!_processes.TryGetValue(parentPid, out var parent)) return;
        if (_options.FollowForks)
        {
            var child = Get(newPid);
            foreach (var (address, site) in parent.Sites) child.Sites[address] = site;
            _breakpoints.OnNewProcess(parentPid, newPid, follow: true);
            _linkMap.OnNewProcess(parentPid, newPid, follow: true);
            child.Threads.Add(newTid);
            OpenUprobes(child, newTid);
            return;
        }

        if (Kcmp.SameMemory(parentPid, newPid)) return;
        _breakpoints.OnNewProcess(parentPid, newPid, follow: false);
        // The child's copy of the memory has the kernel's int3 of every uprobe site too, with no uprobe of ours
        // for it: the original byte goes back before the child runs.
        Span<byte> b = stackalloc byte[1];
        foreach (var site in parent.Sites.Values)
        {
            if (!site.Uprobe) continue;
            b[0] = site.Original;
            ProcessMemoryWriter.Write(newPid, site.Address, b);
        }
    }

    private void OpenUprobes(ProcessSites p, int tid)
    {
        if (_uprobes is null) return;
        lock (_gate)
        {
            foreach (var site in p.Sites.Values)
            {
                if (!site.Uprobe) continue;
                _comms.Refresh(p.Pid, tid);
                var table = site.Location.Module.Symbols!;
                var offset = ProbeResolver.ToFileOffset(table.Segments, site.Location.FileAddress)!.Value;
                var target = new UprobeTarget(site.Location.Module.Mapped, offset, AllGeneralRegisters, _options.Backtrace ? (uint)_options.StackSize : 0u, site);
                var e = _uprobes.Open(target, p.Pid, tid);
                if (e is not (0 or Errno.ESRCH))
                    _sink.OnProblem($"{site.Spec}: kernel uprobe for new thread {tid} failed ({ErrnoText(e)}); its hits will be missed");
            }
        }
    }

    public void OnThreadExited(int pid, int tid)
    {
        if (_processes.TryGetValue(pid, out var p)) p.Threads.Remove(tid);
        lock (_gate)
        {
            _uprobes?.CloseThread(tid);
            _live.Remove(tid);
            _heldSince.Remove(tid);
        }
    }

    public void OnDetaching(int pid)
    {
        // Closing the events drains what is left and has the kernel restore the bytes.
        lock (_gate) _uprobes?.CloseProcess(pid);
        _processes.Remove(pid);
        _breakpoints.OnDetaching(pid);
        _linkMap.Forget(pid);
    }

    public void OnProcessExited(int pid, ExitStatus status)
    {
        lock (_gate)
        {
            _uprobes?.CloseProcess(pid);
            _processes.Remove(pid);
            _breakpoints.OnProcessExited(pid);
            _linkMap.Forget(pid);
            ForgetUnwinder(pid);
            _sink.OnProcessExited(new ProcessExit(pid, status, Trace.TraceClock.Now()));
        }
    }

    public void OnDetached(int pid)
    {
        lock (_gate) _sink.OnDetached(pid);
    }

    /// <summary>Stops the uprobe reader (after draining), closes its events and the unwinders.</summary>
    public void Dispose()
    {
        UprobeHits? u;
        lock (_gate)
        {
            u = _uprobes;
            _uprobes = null;
        }

        u?.Dispose();
        lock (_gate)
        {
            foreach (var un in _unwinders.Values) un?.Dispose();
            _unwinders.Clear();
        }
    }
}
