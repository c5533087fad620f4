using System.Buffers.Binary;
using Nozoki.Arch;
using Nozoki.Breakpoints;
using Nozoki.Elf;
using Nozoki.Memory;
using Nozoki.Native;
using Nozoki.Probes;
using Nozoki.Procfs;
using Nozoki.Tracing;

namespace Nozoki.Usdt;

/// <summary>One probe hit. Valid only during the sink call.</summary>
public readonly record struct UsdtHit(DateTime Time, int Pid, int Tid, string Comm, ResolvedProbe Probe);

/// <summary>One evaluated argument: its value, or why it has none; Text when it was read as a C string.</summary>
public readonly record struct UsdtArgument(ArgStatus Status, ArgValue Value, string? Text);

/// <summary>
/// Where probe hits go. Calls never overlap: hits of breakpoint sites come from the ptrace thread while the hitting
/// thread is stopped, hits of uprobe sites from the uprobe reader thread after the fact (the thread ran on).
/// </summary>
public interface IUsdtSink : ISessionSink
{
    void OnHit(in UsdtHit hit, ReadOnlySpan<UsdtArgument> args);

    /// <summary>The hits so far should be visible now (a sink may buffer hits between flushes: uprobe hits come in batches).</summary>
    void Flush() { }

    /// <summary>Something nozoki could not do (an object it could not read, a site it would not patch).</summary>
    void OnProblem(string message);

    /// <summary>Probe sites of pid were armed.</summary>
    void OnArmed(int pid, int sites) { }
}

/// <summary>How a probe site is trapped.</summary>
public enum UsdtMechanism
{
    /// <summary>Kernel uprobes where every argument can be read exactly from what they record, else breakpoints.</summary>
    Auto,

    /// <summary>Kernel uprobes (perf_event_open, no BPF) for every site: hits do not stop the process.</summary>
    Uprobe,

    /// <summary>int3 breakpoints through ptrace: the hitting thread stops while its arguments are read.</summary>
    Ptrace,
}

public sealed class UsdtOptions
{
    /// <summary>How sites are trapped; falls back to breakpoints when the kernel has no uprobes for us.</summary>
    public UsdtMechanism Mechanism { get; init; } = UsdtMechanism.Auto;

    /// <summary>1-based argument numbers to read as C strings.</summary>
    public IReadOnlySet<int> StringArguments { get; init; } = new HashSet<int>();

    /// <summary>Longest string read for a --str argument.</summary>
    public int MaxStringLength { get; init; } = 256;

    /// <summary>Stop after this many hits (0: never); see <see cref="UsdtTracer.LimitReached"/>.</summary>
    public long Count { get; init; }

    /// <summary>Also probe children (fork/vfork); otherwise their inherited breakpoints are removed at birth.</summary>
    public bool FollowForks { get; init; }

    /// <summary>Data pages of each thread's uprobe ring buffer (a power of two); 0: sized by the thread count.</summary>
    public int UprobeRingPages { get; init; }
}

/// <summary>
/// Traces USDT probes, with kernel uprobes (see <see cref="UprobeHits"/>: the thread records its registers and runs
/// on) or with int3 breakpoints through ptrace. The process is always ptrace-attached: the tracer needs its thread,
/// fork, exec and dlopen events to arm everything before it runs. Breakpoints are the session's
/// <see cref="BreakpointSet"/>; a site is a one-byte `nop`, so after the int3 traps the thread's instruction pointer
/// already points past the site: resuming it is the emulation, with no single-step stop and no window in which
/// another thread could run the site unpatched. Semaphores are incremented while armed. Objects mapped later (dlopen)
/// are found through the dynamic linker's rendezvous hook (<see cref="LinkMapWatcher"/>). Everything patched is
/// restored before detaching.
/// </summary>
public sealed class UsdtTracer : ITraceObserver, IDisposable
{
    private readonly IReadOnlyList<ProbePattern> _patterns;
    private readonly IUsdtSink _sink;
    private readonly UsdtOptions _options;
    private readonly ProbeResolver _resolver = new();
    private readonly Dictionary<int, ProcessProbes> _processes = [];
    private readonly BreakpointSet _breakpoints = new();

    /// <summary>The session's breakpoints (for tests).</summary>
    internal BreakpointSet Breakpoints => _breakpoints;
    private readonly LinkMapWatcher _linkMap;
    private byte[] _stringBuffer = [];
    private readonly ThreadNames _comms = new();
    private UsdtArgument[] _args = new UsdtArgument[12];
    private long _hits;
    private int _skipExecOf = -1;
    private int _launchedPid;
    private readonly Lock _gate = new();
    private UprobeHits? _uprobes;
    private ITraceControl? _control;
    private bool _uprobesTried;
    private readonly long _realtimeOffsetTicks = DateTime.UtcNow.Ticks - MonotonicNs() / 100;

    public UsdtTracer(IReadOnlyList<ProbePattern> patterns, IUsdtSink sink, UsdtOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(patterns);
        ArgumentNullException.ThrowIfNull(sink);
        _patterns = patterns;
        _sink = sink;
        _options = options ?? new UsdtOptions();
        _linkMap = new LinkMapWatcher(_breakpoints, new LinkMapListener(this));
    }

    /// <summary>ld.so changed its link map (dlopen, dlclose): arm what is new.</summary>
    private sealed class LinkMapListener(UsdtTracer tracer) : ILinkMapListener
    {
        public void OnLinkMapChanged(int pid, bool consistent)
        {
            if (!tracer._processes.TryGetValue(pid, out var p)) return;
            tracer.Arm(p);
            if (p.StartupPending && consistent) tracer.StartupScanned(p);
        }
    }

    /// <summary>
    /// Called when Count hits have been seen or the uprobe reader failed (see <see cref="ReaderError"/>); typically
    /// requests a detach. Called on the ptrace thread or on the uprobe reader thread.
    /// </summary>
    public Action? LimitReached { get; set; }

    public long Hits => Interlocked.Read(ref _hits);

    /// <summary>Hits the kernel recorded no sample for (a uprobe ring buffer was full); each loss was reported.</summary>
    public long Lost { get; private set; }

    /// <summary>What stopped the uprobe reader (e.g. the sink's output was closed), if anything.</summary>
    public Exception? ReaderError { get; private set; }

    /// <summary>Sites armed with kernel uprobes (the others have breakpoints), over the whole session.</summary>
    public int UprobeSites { get; private set; }

    /// <summary>How often the process was held because the output fell behind the uprobe hits (none lost for it).</summary>
    public int Holds { get; private set; }

    /// <summary>Whether a probe site matched the patterns in any traced process at any time of the session.</summary>
    public bool AnyProbeMatched { get; private set; }

    public void OnStarted(ITraceControl control)
    {
        _control = control;
        _breakpoints.OnStarted(control);
        _launched = control.Launched;
    }

    private bool _launched;

    private sealed class ArmedSite(ResolvedProbe probe, bool uprobe)
    {
        public readonly ResolvedProbe Probe = probe;
        public readonly bool Uprobe = uprobe;
    }

    private sealed class ProcessProbes(int pid)
    {
        public readonly int Pid = pid;
        public readonly Dictionary<ulong, ArmedSite> Sites = [];
        public readonly Dictionary<ulong, int> Semaphores = [];
        public readonly HashSet<int> Threads = [];
        public bool StartupPending;         // the libraries of its start-up are still to be mapped
    }

    /// <summary>Every probe site matching the patterns in PID now (for checking the patterns before attaching).</summary>
    public IReadOnlyList<ResolvedProbe> Resolve(int pid) => Match(_resolver.Scan(pid));

    private List<ResolvedProbe> Match(ProbeScan scan)
    {
        foreach (var problem in scan.Problems) Problem(problem.Message);
        return [.. scan.Probes.Where(p => _patterns.Any(pattern => pattern.Matches(p.ObjectPath, p.Site)))];
    }

    public void OnAttached(int pid, int threadCount)
    {
        // A launched command is reported attached at its exec, and OnExec for that same image follows at once.
        if (_launched) _skipExecOf = _launchedPid = pid;
        var p = Get(pid);
        foreach (var tid in ProcessInfo.ReadThreadIds(pid)) p.Threads.Add(tid);
        p.Threads.Add(pid);
        Arm(p);
        WatchStartup(p);
    }

    public void OnExec(int pid, int tid)
    {
        if (pid == _skipExecOf)
        {
            _skipExecOf = -1;
            return;
        }

        // A new program: the old sites are gone with the old memory (and its other threads with it).
        lock (_gate) _uprobes?.CloseProcess(pid);
        _processes.Remove(pid);
        _breakpoints.OnExec(pid);
        _linkMap.Forget(pid);
        lock (_gate) _comms.Clear();
        var p = Get(pid);
        p.Threads.Add(pid);
        Arm(p);
        WatchStartup(p);
    }

    /// <summary>
    /// A launched command has just executed a program: once the objects of its start-up are mapped (now for a static
    /// program, else when ld.so says its link map is consistent), say so if nothing matched, as gdb does with a pending
    /// breakpoint. Objects loaded later (dlopen) and programs executed later may still match.
    /// </summary>
    private void WatchStartup(ProcessProbes p)
    {
        if (!_launched || p.Pid != _launchedPid) return;
        if (!_linkMap.IsWatching(p.Pid)) StartupScanned(p);
        else p.StartupPending = true;
    }

    private void StartupScanned(ProcessProbes p)
    {
        p.StartupPending = false;
        if (AnyProbeMatched) return;
        string program;
        try
        {
            program = new FileInfo($"/proc/{p.Pid}/exe").LinkTarget ?? "?";
        }
        catch (IOException)
        {
            program = "?";
        }

        Problem($"no probe site matches {string.Join(", ", _patterns)} in PID {p.Pid} ({program}) nor in the libraries it loaded at start-up; "
            + "pending: objects it loads later (dlopen) and programs it executes are searched too");
    }

    private ProcessProbes Get(int pid)
    {
        if (!_processes.TryGetValue(pid, out var p)) _processes[pid] = p = new ProcessProbes(pid);
        return p;
    }

    private void Arm(ProcessProbes p)
    {
        ProbeScan scan;
        try
        {
            scan = _resolver.Scan(p.Pid);
        }
        catch (TraceException e)
        {
            Problem(e.Message);
            return;
        }

        var added = 0;
        Span<byte> original = stackalloc byte[1];
        var matched = Match(scan);
        if (matched.Count > 0) AnyProbeMatched = true;
        foreach (var probe in matched)
        {
            if (p.Sites.ContainsKey(probe.Address)) continue;
            if (WantsUprobe(probe, p.Threads.Count) && ArmUprobe(p, probe))
            {
                added++;
                continue;
            }

            if (ProcessMemory.Read(p.Pid, probe.Address, original).BytesRead != 1) continue;
            if (original[0] != X86_64.Nop)
            {
                _sink.OnProblem($"{probe.Site.FullName} at 0x{probe.Address:x} in {probe.ObjectPath}: the site is not a nop (0x{original[0]:x2}); not armed");
                continue;
            }

            if (!_breakpoints.For(p.Pid).Insert(probe.Address).IsOk) continue;
            p.Sites[probe.Address] = new ArmedSite(probe, uprobe: false);
            if (probe.HasSemaphore) AddToSemaphore(p, probe.SemaphoreAddress, +1);
            added++;
        }

        if (_linkMap.Watch(p.Pid, out _) is { } problem) Problem(problem);
        if (added > 0)
        {
            lock (_gate) _sink.OnArmed(p.Pid, added);
        }
    }

    private bool WantsUprobe(ResolvedProbe probe, int threads)
    {
        if (_options.Mechanism == UsdtMechanism.Ptrace || probe.FileOffset is null) return false;
        if (probe.HasSemaphore && probe.SemaphoreFileOffset is null) return false;
        if (_options.Mechanism == UsdtMechanism.Auto
            && (!UprobeHits.CanDecodeExactly(probe) || _options.StringArguments.Any(n => n <= probe.Args.Count))) return false;
        if (!_uprobesTried)
        {
            _uprobesTried = true;
            _uprobes = UprobeHits.TryCreate(new UprobeHandler(this), _gate, out var problem);
            if (problem is not null) Problem($"{problem}; using ptrace breakpoints");
            _uprobes?.PlanFor(threads, _options.UprobeRingPages);
        }

        return _uprobes is not null;
    }

    /// <summary>
    /// Opens the site's uprobe on every thread of the process. False when not one could be opened: the site then gets
    /// a breakpoint (and when the kernel refuses uprobes to nozoki altogether, every later site too).
    /// </summary>
    private bool ArmUprobe(ProcessProbes p, ResolvedProbe probe)
    {
        UprobeHits? refused = null;
        var opened = 0;
        lock (_gate)
        {
            var error = 0;
            foreach (var tid in p.Threads)
            {
                Comm(p.Pid, tid); // uprobe hits are reported later: know the name in case the thread is gone by then
                var e = _uprobes!.Open(probe, p.Pid, tid);
                if (e == 0) opened++;
                else if (e != Errno.ESRCH) error = e; // a thread that just exited does not count
            }

            if (opened == 0)
            {
                var why = error is Errno.EACCES or Errno.EPERM ? " (kernel uprobes need root or CAP_PERFMON)" : "";
                _sink.OnProblem($"{probe.Site.FullName} at 0x{probe.Address:x} in {probe.ObjectPath}: kernel uprobe failed ({ErrnoText(error)}){why}; using a ptrace breakpoint");
                if (error is Errno.EACCES or Errno.EPERM or Errno.ENOSYS or Errno.EOPNOTSUPP && UprobeSites == 0)
                {
                    refused = _uprobes;
                    _uprobes = null;
                }
            }

            // Rare (out of file descriptors, say): some threads have the uprobe, others could not get it. Said, not hidden.
            else if (error != 0)
                _sink.OnProblem($"{probe.Site.FullName}: kernel uprobe failed for some threads of PID {p.Pid} ({ErrnoText(error)}); their hits will be missed");
        }

        if (opened == 0)
        {
            // Outside the gate: its reader thread may be waiting for the gate, and Dispose waits for the reader.
            refused?.Dispose();
            return false;
        }

        p.Sites[probe.Address] = new ArmedSite(probe, uprobe: true);
        UprobeSites++;
        return true;
    }

    private static string ErrnoText(int errno) => $"{Nozoki.Syscalls.Errnos.Name(errno) ?? errno.ToString(System.Globalization.CultureInfo.InvariantCulture)}: {Libc.StrError(errno)}";

    private void Problem(string message)
    {
        lock (_gate) _sink.OnProblem(message);
    }

    private void AddToSemaphore(ProcessProbes p, ulong address, int delta)
    {
        Span<byte> b = stackalloc byte[2];
        if (ProcessMemory.Read(p.Pid, address, b).BytesRead != 2) return;
        var value = BinaryPrimitives.ReadUInt16LittleEndian(b);
        BinaryPrimitives.WriteUInt16LittleEndian(b, (ushort)Math.Max(0, value + delta));
        if (ProcessMemoryWriter.Write(p.Pid, address, b).IsOk) p.Semaphores[address] = p.Semaphores.GetValueOrDefault(address) + delta;
    }

    public bool OnBreakpoint(in BreakpointStop stop)
    {
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
            var memory = new ProcessMemoryReader(stop.Tid);
            Report(DateTime.UtcNow, stop.Pid, stop.Tid, regs with { Rip = address }, ref memory, site.Probe);
            _sink.Flush();
        }

        return _breakpoints.StepOver(stop, address);
    }

    public void OnSingleStep(in StepStop stop) => _breakpoints.OnSingleStep(stop);

    /// <summary>Evaluates and reports one hit, counting it against --count. Caller holds the gate.</summary>
    private void Report<TMemory>(DateTime time, int pid, int tid, in X86Registers regs, ref TMemory memory, ResolvedProbe probe)
        where TMemory : struct, IProbeMemory
    {
        // With --count N, hits after the Nth (before the detach takes effect) are not reported.
        if (_options.Count > 0 && _hits >= _options.Count) return;
        var n = probe.Args.Count;
        if (_args.Length < n) _args = new UsdtArgument[n];
        for (var i = 0; i < n; i++)
        {
            var status = probe.Args[i].TryEvaluate(regs, ref memory, out var value);
            string? text = null;
            if (status == ArgStatus.Ok && _options.StringArguments.Contains(i + 1))
            {
                text = ReadString(tid, value.AsUInt64);
                if (text is null) status = ArgStatus.MemoryFault;
            }

            _args[i] = new UsdtArgument(status, value, text);
        }

        _sink.OnHit(new UsdtHit(time, pid, tid, Comm(pid, tid), probe), _args.AsSpan(0, n));
        if (Interlocked.Increment(ref _hits) == _options.Count) LimitReached?.Invoke();
    }

    private static long MonotonicNs() => (long)(System.Diagnostics.Stopwatch.GetTimestamp() * (1_000_000_000.0 / System.Diagnostics.Stopwatch.Frequency));

    /// <summary>Reads a uprobe sample's memory arguments from its recorded stack when they are there, else from the process now.</summary>
    private readonly struct SampleMemory(byte[] stack, int length, ulong sp, int tid) : IProbeMemory
    {
        public MemoryReadResult Read(ulong address, Span<byte> destination)
        {
            if (address >= sp && address - sp + (ulong)destination.Length <= (ulong)length)
            {
                stack.AsSpan((int)(address - sp), destination.Length).CopyTo(destination);
                return new MemoryReadResult(destination.Length, 0);
            }

            return ProcessMemory.Read(tid, address, destination);
        }
    }

    private byte[] _stackCopy = new byte[(int)UprobeHits.StackBytes];

    /// <summary>Receives the uprobe reader's samples (under the gate: the reader drains holding it).</summary>
    private sealed class UprobeHandler(UsdtTracer tracer) : IUprobeSampleHandler
    {
        public void OnSample(in UprobeSample sample)
        {
            var t = tracer;
            if (t._stackCopy.Length < sample.Stack.Length) t._stackCopy = new byte[sample.Stack.Length];
            sample.Stack.CopyTo(t._stackCopy);
            var memory = new SampleMemory(t._stackCopy, sample.Stack.Length, sample.Registers.Rsp, sample.Tid);
            var time = new DateTime(t._realtimeOffsetTicks + sample.MonotonicNs / 100, DateTimeKind.Utc);
            t.Report(time, sample.Pid, sample.Tid, sample.Registers, ref memory, sample.Probe!);
        }

        public void OnDrained() => tracer._sink.Flush();

        public void OnLost(int pid, int tid, ulong count)
        {
            tracer.Lost += (long)count;
            tracer._sink.OnProblem($"{count} probe hits of thread {tid} (PID {pid}) were lost: the kernel's ring buffer was full (output too slow)");
        }

        public void OnPressure(int pid, bool hold)
        {
            if (hold) tracer.Holds++;
            tracer._control?.Hold(pid, hold);
        }

        public void OnReaderFailed(Exception error)
        {
            tracer.ReaderError = error;
            tracer.LimitReached?.Invoke();
        }
    }

    /// <summary>The C string at address, cut at MaxStringLength ("..."), or null if not even its first byte is readable.</summary>
    private string? ReadString(int tid, ulong address)
    {
        if (address == 0) return "(null)";
        // One buffer for every hit (Report runs under the gate): a hit must not allocate more than its text.
        if (_stringBuffer.Length != _options.MaxStringLength) _stringBuffer = new byte[_options.MaxStringLength];
        var buffer = _stringBuffer;
        // Read page by page: a string near the end of a mapping must not fail as a whole.
        var done = 0;
        while (done < buffer.Length)
        {
            var chunk = (int)Math.Min(buffer.Length - done, 4096 - (long)((address + (ulong)done) % 4096));
            var r = ProcessMemory.Read(tid, address + (ulong)done, buffer.AsSpan(done, chunk));
            var zero = buffer.AsSpan(done, r.BytesRead).IndexOf((byte)0);
            if (zero >= 0) return System.Text.Encoding.UTF8.GetString(buffer, 0, done + zero);
            done += r.BytesRead;
            if (r.BytesRead < chunk) break;
        }

        if (done == 0) return null;

        return System.Text.Encoding.UTF8.GetString(buffer, 0, done) + (done == buffer.Length ? "..." : "");
    }

    private string Comm(int pid, int tid) => _comms.Get(pid, tid);

    public void OnNewTask(int parentTid, int newTid, int newPid, bool isProcess)
    {
        if (!isProcess)
        {
            // A new thread: its uprobes are per thread, so open them before it runs.
            if (_processes.TryGetValue(newPid, out var owner) && owner.Threads.Add(newTid)) OpenUprobes(owner, newTid);
            return;
        }

        var parentPid = ProcessInfo.ReadTgid(parentTid);
        if (!_processes.TryGetValue(parentPid, out var parent)) return;
        if (_options.FollowForks)
        {
            // The child has the parent's breakpoints and semaphores: the same sites, in its own copy of the memory.
            // Uprobe sites have the kernel's int3 in the copy too; the child's own events make it count as wanted.
            var child = Get(newPid);
            foreach (var (address, site) in parent.Sites) child.Sites[address] = site;
            foreach (var (address, count) in parent.Semaphores) child.Semaphores[address] = count;
            _breakpoints.OnNewProcess(parentPid, newPid, follow: true);
            _linkMap.OnNewProcess(parentPid, newPid, follow: true);
            child.Threads.Add(newTid);
            OpenUprobes(child, newTid);
            return;
        }

        // A vfork child shares the parent's memory until it execs: restoring "its" bytes would disarm the parent.
        if (Kcmp.SameMemory(parentPid, newPid)) return;
        _breakpoints.OnNewProcess(parentPid, newPid, follow: false);

        // Not followed: the child has not run yet; give it back its original bytes and semaphores before it does.
        // Uprobe sites are the kernel's, but the child's copy has their int3 and semaphore counts (+1 per site) too;
        // the kernel finds nothing to undo in the child afterwards, as the byte there is no int3 any more.
        var copy = new ProcessProbes(newPid);
        foreach (var (address, site) in parent.Sites)
        {
            if (site.Uprobe) copy.Sites[address] = site;
            if (site.Uprobe && site.Probe.HasSemaphore)
                copy.Semaphores[site.Probe.SemaphoreAddress] = copy.Semaphores.GetValueOrDefault(site.Probe.SemaphoreAddress) + 1;
        }

        foreach (var (address, count) in parent.Semaphores) copy.Semaphores[address] = copy.Semaphores.GetValueOrDefault(address) + count;
        Disarm(copy, uprobeSitesToo: true);
    }

    private void OpenUprobes(ProcessProbes p, int tid)
    {
        if (_uprobes is null) return;
        lock (_gate)
        {
            foreach (var site in p.Sites.Values)
            {
                if (!site.Uprobe) continue;
                _comms.Refresh(p.Pid, tid); // a reused thread id
                var e = _uprobes.Open(site.Probe, p.Pid, tid);
                if (e is not (0 or Errno.ESRCH))
                    _sink.OnProblem($"{site.Probe.Site.FullName}: kernel uprobe for new thread {tid} failed ({ErrnoText(e)}); its hits will be missed");
            }
        }
    }

    public void OnThreadExited(int pid, int tid)
    {
        if (_processes.TryGetValue(pid, out var p)) p.Threads.Remove(tid);
        lock (_gate) _uprobes?.CloseThread(tid);
    }

    public void OnDetaching(int pid)
    {
        // Closing the events drains what is left and has the kernel restore the bytes and semaphores.
        lock (_gate) _uprobes?.CloseProcess(pid);
        if (_processes.Remove(pid, out var p)) Disarm(p);
        _breakpoints.OnDetaching(pid);
        _linkMap.Forget(pid);
    }

    private void Disarm(ProcessProbes p, bool uprobeSitesToo = false)
    {
        // Breakpoint sites are the BreakpointSet's to restore; uprobe sites only in a fork child's copy, where the
        // kernel's int3 (over a nop) is left without its uprobe.
        foreach (var (address, site) in p.Sites)
        {
            if (site.Uprobe && uprobeSitesToo) ProcessMemoryWriter.Write(p.Pid, address, [X86_64.Nop]);
        }

        p.Sites.Clear();
        foreach (var (address, count) in p.Semaphores.ToArray()) AddToSemaphore(p, address, -count);
        p.Semaphores.Clear();
    }

    public void OnProcessExited(int pid, ExitStatus status)
    {
        lock (_gate)
        {
            _uprobes?.CloseProcess(pid);
            _processes.Remove(pid);
            _breakpoints.OnProcessExited(pid);
            _linkMap.Forget(pid);
            _sink.OnProcessExited(new ProcessExit(pid, status, Trace.TraceClock.Now()));
        }
    }

    public void OnDetached(int pid)
    {
        lock (_gate) _sink.OnDetached(pid);
    }

    /// <summary>Stops the uprobe reader (after draining) and closes its events; safe to call more than once.</summary>
    public void Dispose()
    {
        UprobeHits? u;
        lock (_gate)
        {
            u = _uprobes;
            _uprobes = null;
        }

        u?.Dispose();
    }
}
