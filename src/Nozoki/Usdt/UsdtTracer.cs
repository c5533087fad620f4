using System.Buffers.Binary;
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

/// <summary>Where probe hits go (called on the ptrace thread while the hitting thread is stopped).</summary>
public interface IUsdtSink
{
    void OnHit(in UsdtHit hit, ReadOnlySpan<UsdtArgument> args);

    /// <summary>Something nozoki could not do (an object it could not read, a site it would not patch).</summary>
    void OnProblem(string message);

    void OnArmed(int pid, int sites) { }

    void OnProcessExited(int pid, ExitStatus status) { }

    void OnDetached(int pid) { }
}

public sealed class UsdtOptions
{
    /// <summary>1-based argument numbers to read as C strings.</summary>
    public IReadOnlySet<int> StringArguments { get; init; } = new HashSet<int>();

    /// <summary>Longest string read for a --str argument.</summary>
    public int MaxStringLength { get; init; } = 256;

    /// <summary>Stop after this many hits (0: never); see <see cref="UsdtTracer.LimitReached"/>.</summary>
    public long Count { get; init; }

    /// <summary>Also probe children (fork/vfork); otherwise their inherited breakpoints are removed at birth.</summary>
    public bool FollowForks { get; init; }

    /// <summary>The session launches the command (TraceSession.Launch) rather than attaching to it.</summary>
    public bool Launched { get; init; }
}

/// <summary>
/// Traces USDT probes with int3 breakpoints. A probe site is a one-byte `nop`, so after the int3 traps the thread's
/// instruction pointer already points past the site: resuming it is the emulation, with no single-step stop and no
/// window in which another thread could run the site unpatched. Semaphores are incremented while armed. Objects
/// mapped later (dlopen) are found through the dynamic linker's rendezvous hook `_dl_debug_state`, which ld.so
/// calls after every change of its link map (the way gdb does it); that hook is a `ret`, emulated by popping the
/// return address. Everything patched is restored before detaching.
/// </summary>
public sealed class UsdtTracer : ITraceObserver
{
    private const byte Int3 = 0xCC, Nop = 0x90, Ret = 0xC3;
    private static readonly byte[] EndBr64 = [0xF3, 0x0F, 0x1E, 0xFA];

    private readonly IReadOnlyList<ProbePattern> _patterns;
    private readonly IUsdtSink _sink;
    private readonly UsdtOptions _options;
    private readonly ProbeResolver _resolver = new();
    private readonly Dictionary<int, ProcessProbes> _processes = [];
    private readonly Dictionary<int, string> _comms = [];
    private UsdtArgument[] _args = new UsdtArgument[12];
    private long _hits;
    private int _skipExecOf = -1;

    public UsdtTracer(IReadOnlyList<ProbePattern> patterns, IUsdtSink sink, UsdtOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(patterns);
        ArgumentNullException.ThrowIfNull(sink);
        _patterns = patterns;
        _sink = sink;
        _options = options ?? new UsdtOptions();
    }

    /// <summary>Called (on the ptrace thread) when Count hits have been seen; typically requests a detach.</summary>
    public Action? LimitReached { get; set; }

    public long Hits => _hits;

    private sealed class ArmedSite(ResolvedProbe probe)
    {
        public readonly ResolvedProbe Probe = probe;
    }

    private sealed class ProcessProbes(int pid)
    {
        public readonly int Pid = pid;
        public readonly Dictionary<ulong, ArmedSite> Sites = [];
        public readonly Dictionary<ulong, int> Semaphores = [];
        public readonly HashSet<ulong> Disarmed = [];
        public ulong RendezvousAddress;
    }

    /// <summary>Every probe site matching the patterns in PID now (for checking the patterns before attaching).</summary>
    public IReadOnlyList<ResolvedProbe> Resolve(int pid) => Match(_resolver.Scan(pid));

    private List<ResolvedProbe> Match(ProbeScan scan)
    {
        foreach (var problem in scan.Problems) _sink.OnProblem(problem.Message);
        return [.. scan.Probes.Where(p => _patterns.Any(pattern => pattern.Matches(p.ObjectPath, p.Site)))];
    }

    public void OnAttached(int pid, int threadCount)
    {
        // A launched command is reported attached at its exec, and OnExec for that same image follows at once.
        if (_options.Launched) _skipExecOf = pid;
        Arm(Get(pid));
    }

    public void OnExec(int pid, int tid)
    {
        if (pid == _skipExecOf)
        {
            _skipExecOf = -1;
            return;
        }

        // A new program: the old sites are gone with the old memory.
        _processes.Remove(pid);
        _comms.Clear();
        Arm(Get(pid));
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
            _sink.OnProblem(e.Message);
            return;
        }

        var added = 0;
        Span<byte> original = stackalloc byte[1];
        foreach (var probe in Match(scan))
        {
            if (p.Sites.ContainsKey(probe.Address)) continue;
            if (ProcessMemory.Read(p.Pid, probe.Address, original).BytesRead != 1) continue;
            if (original[0] != Nop)
            {
                _sink.OnProblem($"{probe.Site.FullName} at 0x{probe.Address:x} in {probe.ObjectPath}: the site is not a nop (0x{original[0]:x2}); not armed");
                continue;
            }

            if (ProcessMemoryWriter.Write(p.Pid, probe.Address, [Int3]) != 0) continue;
            p.Sites[probe.Address] = new ArmedSite(probe);
            p.Disarmed.Remove(probe.Address);
            if (probe.HasSemaphore) AddToSemaphore(p, probe.SemaphoreAddress, +1);
            added++;
        }

        if (p.RendezvousAddress == 0) ArmRendezvous(p, scan.Objects);
        if (added > 0) _sink.OnArmed(p.Pid, added);
    }

    private void AddToSemaphore(ProcessProbes p, ulong address, int delta)
    {
        Span<byte> b = stackalloc byte[2];
        if (ProcessMemory.Read(p.Pid, address, b).BytesRead != 2) return;
        var value = BinaryPrimitives.ReadUInt16LittleEndian(b);
        BinaryPrimitives.WriteUInt16LittleEndian(b, (ushort)Math.Max(0, value + delta));
        if (ProcessMemoryWriter.Write(p.Pid, address, b) == 0) p.Semaphores[address] = p.Semaphores.GetValueOrDefault(address) + delta;
    }

    /// <summary>Puts a breakpoint on the `ret` of ld.so's _dl_debug_state, so that dlopen'ed objects get armed.</summary>
    private void ArmRendezvous(ProcessProbes p, IReadOnlyList<MappedObject> objects)
    {
        foreach (var obj in objects)
        {
            if (!Path.GetFileName(obj.Path).StartsWith("ld-", StringComparison.Ordinal)) continue;
            try
            {
                using var elf = ElfFile.Open(obj.Path, obj.MapFilesPath);
                if (!elf.TryFindSymbol("_dl_debug_state", out var sym) || obj.LoadBias(elf) is not { } bias) continue;
                var address = sym.Value + bias;
                Span<byte> code = stackalloc byte[5];
                if (ProcessMemory.Read(p.Pid, address, code).BytesRead != 5) continue;
                // `void _dl_debug_state (void) {}`: a ret, after an endbr64 where CET is on.
                var retOffset = code[..4].SequenceEqual(EndBr64) ? 4 : 0;
                if (code[retOffset] != Ret) continue;
                address += (ulong)retOffset;
                if (ProcessMemoryWriter.Write(p.Pid, address, [Int3]) != 0) continue;
                p.RendezvousAddress = address;
                return;
            }
            catch (Exception e) when (e is ElfFormatException or IOException or UnauthorizedAccessException)
            {
                _sink.OnProblem($"{obj.Path}: {e.Message}; objects loaded later will not be probed");
            }
        }
    }

    public bool OnBreakpoint(in BreakpointStop stop)
    {
        if (!_processes.TryGetValue(stop.Pid, out var p) || !stop.TryGetRegisters(out var regs)) return false;
        var address = regs.Rip - 1;
        if (address == p.RendezvousAddress && p.RendezvousAddress != 0)
        {
            Arm(p);
            return stop.EmulateReturn();
        }

        if (!p.Sites.TryGetValue(address, out var site))
        {
            // Trapped on a site just before it was disarmed: run the original nop again.
            return p.Disarmed.Contains(address) && stop.SetInstructionPointer(address);
        }

        // With --count N, hits after the Nth (before the detach takes effect) are not reported.
        if (_options.Count > 0 && _hits >= _options.Count) return true;
        Report(stop, regs with { Rip = address }, site.Probe);
        if (++_hits == _options.Count) LimitReached?.Invoke();
        return true;
    }

    private void Report(in BreakpointStop stop, in X86Registers regs, ResolvedProbe probe)
    {
        var n = probe.Args.Count;
        if (_args.Length < n) _args = new UsdtArgument[n];
        var memory = new ProcessMemoryReader(stop.Tid);
        for (var i = 0; i < n; i++)
        {
            var status = probe.Args[i].TryEvaluate(regs, ref memory, out var value);
            string? text = null;
            if (status == ArgStatus.Ok && _options.StringArguments.Contains(i + 1))
            {
                text = ReadString(stop.Tid, value.AsUInt64);
                if (text is null) status = ArgStatus.MemoryFault;
            }

            _args[i] = new UsdtArgument(status, value, text);
        }

        _sink.OnHit(new UsdtHit(DateTime.UtcNow, stop.Pid, stop.Tid, Comm(stop.Pid, stop.Tid), probe), _args.AsSpan(0, n));
    }

    /// <summary>The C string at address, cut at MaxStringLength ("..."), or null if not even its first byte is readable.</summary>
    private string? ReadString(int tid, ulong address)
    {
        if (address == 0) return "(null)";
        var buffer = new byte[_options.MaxStringLength];
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

    private string Comm(int pid, int tid)
    {
        if (_comms.TryGetValue(tid, out var comm)) return comm;
        try
        {
            comm = File.ReadAllText($"/proc/{pid}/task/{tid}/comm").TrimEnd('\n');
        }
        catch (IOException)
        {
            comm = "?";
        }

        return _comms[tid] = comm;
    }

    public void OnNewTask(int parentTid, int newTid, int newPid, bool isProcess)
    {
        if (!isProcess) return;
        var parentPid = ProcessInfo.ReadTgid(parentTid);
        if (!_processes.TryGetValue(parentPid, out var parent)) return;
        if (_options.FollowForks)
        {
            // The child has the parent's breakpoints and semaphores: the same sites, in its own copy of the memory.
            var child = Get(newPid);
            foreach (var (address, site) in parent.Sites) child.Sites[address] = site;
            foreach (var (address, count) in parent.Semaphores) child.Semaphores[address] = count;
            child.RendezvousAddress = parent.RendezvousAddress;
            return;
        }

        // A vfork child shares the parent's memory until it execs: restoring "its" bytes would disarm the parent.
        if (Kcmp.SameMemory(parentPid, newPid)) return;

        // Not followed: the child has not run yet; give it back its original bytes and semaphores before it does.
        var copy = new ProcessProbes(newPid);
        foreach (var (address, site) in parent.Sites) copy.Sites[address] = site;
        foreach (var (address, count) in parent.Semaphores) copy.Semaphores[address] = count;
        copy.RendezvousAddress = parent.RendezvousAddress;
        Disarm(copy);
    }

    public void OnDetaching(int pid)
    {
        if (_processes.Remove(pid, out var p)) Disarm(p);
    }

    private void Disarm(ProcessProbes p)
    {
        foreach (var address in p.Sites.Keys)
        {
            ProcessMemoryWriter.Write(p.Pid, address, [Nop]);
            p.Disarmed.Add(address);
        }

        p.Sites.Clear();
        if (p.RendezvousAddress != 0) ProcessMemoryWriter.Write(p.Pid, p.RendezvousAddress, [Ret]);
        p.RendezvousAddress = 0;
        foreach (var (address, count) in p.Semaphores.ToArray()) AddToSemaphore(p, address, -count);
        p.Semaphores.Clear();
    }

    public void OnProcessExited(int pid, ExitStatus status)
    {
        _processes.Remove(pid);
        _sink.OnProcessExited(pid, status);
    }

    public void OnDetached(int pid) => _sink.OnDetached(pid);
}
