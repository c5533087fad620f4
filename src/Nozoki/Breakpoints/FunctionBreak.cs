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

    /// <summary>
    /// What <see cref="BreakOptions.Call"/> did at this hit (after the backtrace was taken), or null: no call asked, or
    /// none made (the function is not found in the process, or calls stopped there after one timed out).
    /// </summary>
    public InferiorCallResult? Call { get; init; }
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

    /// <summary>Data pages of each thread's uprobe ring buffer (a power of two); 0: room for 2,048 samples, within a
    /// budget for all threads.</summary>
    public int UprobeRingPages { get; init; }

    /// <summary>Report this many hits, then <see cref="BreakTracer.LimitReached"/> (0: no limit).</summary>
    public long Count { get; init; }

    /// <summary>Also break in children (fork, vfork); otherwise their inherited sites are removed at birth.</summary>
    public bool FollowForks { get; init; }

    /// <summary>A LOCATION that matches nothing in an attached process now waits for a module that defines it (dlopen).</summary>
    public bool Pending { get; init; }

    /// <summary>
    /// A function to call, `FUNC()` with no arguments, in the hit thread at each hit (<see cref="InferiorCall"/>), as
    /// gdb's `call` in a breakpoint's `commands` does: any spec of <see cref="ProcessSymbols.Resolve"/> naming one
    /// function (`rb_backtrace`, `libruby*:rb_backtrace`), resolved in each process when its sites are armed. The hit
    /// thread must stop for it: every site is then a ptrace breakpoint, whatever <see cref="Mechanism"/> says.
    /// </summary>
    public string? Call { get; init; }

    /// <summary>How long a <see cref="Call"/> may take before it is abandoned (<see cref="CallOutcome.TimedOut"/>).</summary>
    public TimeSpan CallTimeout { get; init; } = InferiorCall.DefaultTimeout;
}

/// <summary>How long hit threads were held, per hit (ptrace breakpoints: from the stop to the resume after the step-over).</summary>
public readonly record struct HoldStatistics(long Hits, TimeSpan Median, TimeSpan P99, TimeSpan Max);

/// <summary>
/// How long uprobe hits held the processes: a uprobe hit does not stop its thread, but when the reader falls behind
/// (the kernel's ring more than a quarter full) nozoki stops every thread of the process until it has caught up
/// (<see cref="ITraceControl.Hold"/>). Times is how many such holds there were, Total how long they lasted in all (from
/// the request to the release).
/// </summary>
public readonly record struct PressureHolds(int Times, TimeSpan Total);

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
/// <para>
/// With <see cref="BreakOptions.Call"/>, every site is a ptrace breakpoint: at each hit the backtrace is taken, then
/// the function is called in the stopped thread (<see cref="InferiorCall"/>, every other thread of the process kept
/// stopped and every site of the process disarmed meanwhile, so that the called function runs none of them), then
/// the hit is reported with what the call did, and the displaced instruction is stepped over. A call that timed out
/// may have left a lock taken: no more calls are made in that process (its hits are still reported).
/// </para>
/// <para>
/// One tracer serves one session. For several processes at once (`break -p PID,PID`), give each session its own
/// <see cref="Sibling"/>: siblings report to the same sink (never at the same time), count their hits against the
/// same <see cref="BreakOptions.Count"/>, and share their figures (hits, hold times, sites) and <see cref="LimitReached"/>.
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
    private readonly List<long> _holds;
    private readonly ulong[] _args = new ulong[6];
    private readonly Lock _gate;
    private readonly Shared _shared;
    private readonly HashSet<string> _everMatched = [];
    private readonly Lock _pressureGate = new();
    private readonly Dictionary<int, long> _pressureSince = [];
    private byte[] _stackCopy = [];
    private InferiorCall? _calls;
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
        if (_options.Call is { } call && (call.Trim().Length == 0 || _options.CallTimeout <= TimeSpan.Zero))
            throw new ArgumentOutOfRangeException(nameof(options), "the function to call must be named, its timeout above 0");
        _shared = new Shared();
        _gate = _shared.Gate;
        _holds = _shared.Holds;
        _linkMap = new LinkMapWatcher(_breakpoints, new LinkMapListener(this));
    }

    private BreakTracer(BreakTracer first)
    {
        _specs = first._specs;
        _sink = first._sink;
        _options = first._options;
        _shared = first._shared;
        _gate = _shared.Gate;
        _holds = _shared.Holds;
        _linkMap = new LinkMapWatcher(_breakpoints, new LinkMapListener(this));
    }

    /// <summary>
    /// A tracer for another session (another process) that shares this one's locations, options, sink, hit count
    /// (<see cref="BreakOptions.Count"/> counts the hits of all), figures and <see cref="LimitReached"/>.
    /// </summary>
    public BreakTracer Sibling() => new(this);

    /// <summary>What siblings share; its gate serializes every sink call of all of them.</summary>
    private sealed class Shared
    {
        public readonly Lock Gate = new();
        public readonly List<long> Holds = [];
        public long Taken, Hits, Lost, PressureTicks;
        public int UprobeSites, PtraceSites, PressureHolds;
        public volatile bool AnyMatched;
        public Action? LimitReached;
        public Exception? ReaderError;
    }

    /// <summary>Called when Count hits were reported or the uprobe reader failed; typically requests a detach.</summary>
    public Action? LimitReached
    {
        get => _shared.LimitReached;
        set => _shared.LimitReached = value;
    }

    /// <summary>Hits reported (by this tracer and its siblings).</summary>
    public long Hits => Interlocked.Read(ref _shared.Hits);

    /// <summary>Hits the kernel recorded no sample for (a full ring buffer); each loss was reported.</summary>
    public long Lost
    {
        get => Interlocked.Read(ref _shared.Lost);
        private set => Interlocked.Exchange(ref _shared.Lost, value);
    }

    /// <summary>What stopped a uprobe reader (e.g. the sink's output was closed), if anything.</summary>
    public Exception? ReaderError
    {
        get => _shared.ReaderError;
        private set => Interlocked.CompareExchange(ref _shared.ReaderError, value, null);
    }

    /// <summary>Sites armed with kernel uprobes, over the whole session (and its siblings').</summary>
    public int UprobeSites => Volatile.Read(ref _shared.UprobeSites);

    /// <summary>Sites armed with ptrace breakpoints, over the whole session (and its siblings').</summary>
    public int PtraceSites => Volatile.Read(ref _shared.PtraceSites);

    /// <summary>Whether any location matched a site in any process at any time of the session (or of a sibling's).</summary>
    public bool AnyMatched
    {
        get => _shared.AnyMatched;
        private set => _shared.AnyMatched = value;
    }

    /// <summary>How often, and how long in all, uprobe hits made nozoki hold a process (its rings filled faster than read).</summary>
    public PressureHolds PressureHolds
    {
        get
        {
            lock (_pressureGate)
            {
                return new PressureHolds(_shared.PressureHolds, Ticks(_shared.PressureTicks));
            }
        }
    }

    private static TimeSpan Ticks(long stopwatchTicks) => TimeSpan.FromTicks((long)(stopwatchTicks * (double)TimeSpan.TicksPerSecond / Stopwatch.Frequency));

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

    /// <summary>
    /// Checks <see cref="BreakOptions.Call"/> against PID now (before attaching): throws <see cref="SymbolLookupException"/>
    /// when it names no function there (with the nearest names) or several. Returns where it is (null without a call).
    /// </summary>
    public CodeLocation? CheckCall(int pid) =>
        _options.Call is { } function ? ResolveCall(ProcessSymbols.ForProcess(pid), function).Location : null;

    /// <summary>FUNCTION in the process: a spec naming one function (in one module or, interposed, in several).</summary>
    private static CallTarget ResolveCall(ProcessSymbols symbols, string function)
    {
        var names = symbols.Resolve(function).Select(l => l.Symbol ?? "0x" + l.FileAddress.ToString("x", System.Globalization.CultureInfo.InvariantCulture))
            .Distinct(StringComparer.Ordinal).ToList();
        if (names.Count > 1)
            throw new SymbolLookupException($"{function}: matches {names.Count} functions ({string.Join(", ", names.Take(5))}{(names.Count > 5 ? ", ..." : "")}); name one", []);
        return InferiorCall.Resolve(symbols, function);
    }

    /// <summary>Hold times of the ptrace hits so far (null when no hit stopped a thread: uprobes do not).</summary>
    public HoldStatistics? Holds()
    {
        long[] ticks;
        lock (_gate) ticks = [.. _holds];
        if (ticks.Length == 0) return null;
        Array.Sort(ticks);
        return new HoldStatistics(ticks.Length, Ticks(ticks[ticks.Length / 2]), Ticks(ticks[Math.Min(ticks.Length - 1, (int)Math.Ceiling(ticks.Length * 0.99) - 1)]), Ticks(ticks[^1]));
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

        // --call: the function in this process (null: not found yet), and whether calls stopped here (one timed out).
        public CallTarget? CallTarget;
        public bool CallMissingSaid;
        public bool CallsStopped;
    }

    public void OnStarted(ITraceControl control)
    {
        _control = control;
        _breakpoints.OnStarted(control);
        _launched = control.Launched;
        if (_options.Call is not null) _calls = new InferiorCall(control);
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

        _calls?.Forget(pid);

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

        if (_options.Call is not null && p.CallTarget is null) TryResolveCall(p, sayMissing: false);

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
                Interlocked.Increment(ref _shared.PtraceSites);
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
        // A call needs the thread stopped: a uprobe hit never stops it.
        if (_options.Mechanism == BreakMechanism.Ptrace || _options.Call is not null) return false;
        if (!_uprobesTried)
        {
            _uprobesTried = true;
            lock (_gate)
            {
                _uprobes = UprobeHits.TryCreate(new UprobeHandler(this), _gate, out var problem);
                if (problem is not null) _sink.OnProblem($"{problem}; using ptrace breakpoints");
                _uprobes?.PlanFor(p.Threads.Count, _options.UprobeRingPages, _options.Backtrace ? _options.StackSize + 256 : 256);
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
        Interlocked.Increment(ref _shared.UprobeSites);
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

        if (_options.Call is null)
        {
            lock (_gate)
            {
                // The thread's earlier uprobe hits (other sites) are in its ring already: report them first.
                _uprobes?.Drain();
                if (!_live.TryGetValue(stop.Tid, out var memory)) _live[stop.Tid] = memory = new LiveMemory(stop.Tid);
                Report(DateTime.UtcNow, stop.Pid, stop.Tid, regs with { Rip = address }, memory, site);
                _sink.Flush();
            }
        }
        else if (TakeHit())
        {
            ReportWithCall(stop, p, regs with { Rip = address }, site);
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
        if (!TakeHit()) return;
        IReadOnlyList<Frame>? frames = null;
        if (_options.Backtrace) frames = Unwind(pid, tid, regs, memory);
        Emit(time, pid, tid, regs, site, frames, null);
    }

    /// <summary>
    /// A hit may be reported: false past --count (over this tracer and its siblings). Taken before the hit's work (its
    /// call), so that two sessions never both make the Nth.
    /// </summary>
    private bool TakeHit() => _options.Count <= 0 || Interlocked.Increment(ref _shared.Taken) <= _options.Count;

    /// <summary>Gives a taken hit to the sink; the Nth of --count calls LimitReached. Caller holds the gate.</summary>
    private void Emit(DateTime time, int pid, int tid, in X86Registers regs, Site site, IReadOnlyList<Frame>? frames, InferiorCallResult? call)
    {
        _args[0] = regs.Rdi;
        _args[1] = regs.Rsi;
        _args[2] = regs.Rdx;
        _args[3] = regs.Rcx;
        _args[4] = regs.R8;
        _args[5] = regs.R9;
        _sink.OnHit(new BreakHit
        {
            Time = time, Pid = pid, Tid = tid, Comm = Comm(pid, tid), Spec = site.Spec, Location = site.Location, Args = _args, Frames = frames,
            Call = call,
        });
        if (Interlocked.Increment(ref _shared.Hits) == _options.Count) _shared.LimitReached?.Invoke();
    }

    /// <summary>
    /// A ptrace hit with --call: the backtrace first (the stack as the hit left it), then the call, then the report
    /// (the call outside the gate: it may take up to its timeout, and siblings report meanwhile).
    /// </summary>
    private void ReportWithCall(in BreakpointStop stop, ProcessSites p, in X86Registers regs, Site site)
    {
        var time = DateTime.UtcNow;
        IReadOnlyList<Frame>? frames = null;
        if (_options.Backtrace)
        {
            lock (_gate)
            {
                if (!_live.TryGetValue(stop.Tid, out var memory)) _live[stop.Tid] = memory = new LiveMemory(stop.Tid);
                frames = [.. Unwind(stop.Pid, stop.Tid, regs, memory)];
            }
        }

        var call = Call(stop, p);
        lock (_gate)
        {
            Emit(time, stop.Pid, stop.Tid, regs, site, frames, call);
            if (call?.Problem is { } problem)
            {
                _sink.OnProblem(call.Outcome switch
                {
                    CallOutcome.TimedOut => $"{problem}; PID {stop.Pid}: no more calls (the next could wait for what the abandoned one holds)",
                    CallOutcome.Lost => $"{problem}; PID {stop.Pid}: its sites stay disarmed",
                    _ => problem,
                });
            }

            _sink.Flush();
        }
    }

    /// <summary>
    /// Calls the function in the hit thread, with every site of the process disarmed (the other threads are stopped
    /// for the call: no one else can miss them): a hit inside the called function is none of the program's, and an
    /// int3 there would end the call as a fault. Null when no call is made.
    /// </summary>
    private InferiorCallResult? Call(in BreakpointStop stop, ProcessSites p)
    {
        if (_calls is null || p.CallsStopped) return null;
        if (p.CallTarget is null && !TryResolveCall(p, sayMissing: true)) return null;
        if (!_breakpoints.TryGet(stop.Pid, out var table) || !table.UncoverAll(stop.Tid)) return null;
        var result = _calls.Call(stop, p.CallTarget!, _options.CallTimeout);
        switch (result.Outcome)
        {
            case CallOutcome.TimedOut:
                p.CallsStopped = true;
                break;
            case CallOutcome.Lost:
                // The thread died, or the process executed a new program (then its old sites must not be written):
                // the bytes stay the file's, and the next event (exit, exec) tells which.
                p.CallsStopped = true;
                return result;
        }

        table.CoverAll(stop.Tid);
        return result;
    }

    /// <summary>Resolves the function to call in P (symbols as armed); says once when it is not there.</summary>
    private bool TryResolveCall(ProcessSites p, bool sayMissing)
    {
        if (p.Symbols is null) return false;
        try
        {
            p.CallTarget = ResolveCall(p.Symbols, _options.Call!);
            return true;
        }
        catch (SymbolLookupException e)
        {
            if (sayMissing && !p.CallMissingSaid)
            {
                p.CallMissingSaid = true;
                Problem($"call {e.Message}: the hits of PID {p.Pid} are reported without it until a module that defines it is loaded");
            }

            return false;
        }
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
            if (tracer._options.Count > 0 && tracer.Hits >= tracer._options.Count) return;
            tracer.Lost += (long)count;
            tracer._sink.OnProblem($"{count} hits of thread {tid} (PID {pid}) were lost: the kernel's ring buffer was full (output too slow)");
        }

        public void OnPressure(int pid, bool hold)
        {
            tracer.Pressure(pid, hold);
            tracer._control?.Hold(pid, hold);
        }

        public void OnReaderFailed(Exception error)
        {
            tracer.ReaderError = error;
            tracer.LimitReached?.Invoke();
        }
    }

    /// <summary>Times the holds the uprobe reader asks for (pid -1: its warm-up, no hold). Monitor or reader thread.</summary>
    private void Pressure(int pid, bool hold)
    {
        if (pid < 0) return;
        lock (_pressureGate)
        {
            if (hold)
            {
                if (_pressureSince.TryAdd(pid, Stopwatch.GetTimestamp())) _shared.PressureHolds++;
            }
            else if (_pressureSince.Remove(pid, out var since))
            {
                _shared.PressureTicks += Stopwatch.GetTimestamp() - since;
            }
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
            child.CallTarget = parent.CallTarget; // the same mappings: a fork's copy
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
        lock (_gate)
        {
            // A thread detached in the middle of its step over a site was held until now.
            if (_processes.TryGetValue(pid, out var p))
            {
                foreach (var tid in p.Threads)
                    if (_heldSince.Remove(tid, out var since)) _holds.Add(Stopwatch.GetTimestamp() - since);
            }

            // Closing the events drains what is left and has the kernel restore the bytes.
            _uprobes?.CloseProcess(pid);
        }

        _processes.Remove(pid);
        _calls?.Forget(pid);
        _breakpoints.OnDetaching(pid);
        _linkMap.Forget(pid);
    }

    public void OnProcessExited(int pid, ExitStatus status)
    {
        lock (_gate)
        {
            _uprobes?.CloseProcess(pid);
            _processes.Remove(pid);
            _calls?.Forget(pid);
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
