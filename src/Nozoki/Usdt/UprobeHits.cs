using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Nozoki.Arch;
using Nozoki.Native;
using Nozoki.Probes;
using Nozoki.Procfs;
using Nozoki.Tracing;

namespace Nozoki.Usdt;

/// <summary>One uprobe hit as the kernel recorded it. Valid only during the call that receives it.</summary>
internal readonly ref struct UprobeSample
{
    public required long MonotonicNs { get; init; }
    public required int Pid { get; init; }
    public required int Tid { get; init; }
    /// <summary>The USDT probe of the site (null for a site opened by <see cref="UprobeHits.Open(UprobeTarget, int, int)"/>).</summary>
    public ResolvedProbe? Probe { get; init; }

    /// <summary>What the opener attached to the site (<see cref="UprobeTarget.Tag"/>), or null for a USDT probe.</summary>
    public object? Tag { get; init; }
    public required X86Registers Registers { get; init; }

    /// <summary>The bytes from the stack pointer up (empty when the probe's arguments do not need them).</summary>
    public required ReadOnlySpan<byte> Stack { get; init; }
}

/// <summary>
/// A uprobe site that is no USDT probe (a function): where it is in the file, what to record (the registers in perf's
/// numbering, the bytes of stack from the stack pointer up, a multiple of 8), and what to hand back with each sample.
/// </summary>
internal sealed record UprobeTarget(MappedObject Object, ulong FileOffset, ulong RegsMask, uint StackBytes, object Tag);

/// <summary>Receives what <see cref="UprobeHits"/> drains (on its reader thread, or on whichever thread drains).</summary>
internal interface IUprobeSampleHandler
{
    void OnSample(in UprobeSample sample);

    /// <summary>A drain handed over all it found.</summary>
    void OnDrained();

    /// <summary>The kernel dropped <paramref name="count"/> samples of <paramref name="tid"/>: its ring buffer was full.</summary>
    void OnLost(int pid, int tid, ulong count);

    /// <summary>The reader thread failed (typically the sink's output was closed); no more samples will come.</summary>
    void OnReaderFailed(Exception error);

    /// <summary>
    /// A ring buffer of PID is more than half full while the reader is still busy with earlier hits: stop the process
    /// (hold = true) until the reader has caught up (hold = false), so that the kernel never has to drop a hit.
    /// Called with <see cref="UprobeHits.Gate"/> held; must not wait for the ptrace thread.
    /// </summary>
    void OnPressure(int pid, bool hold);
}

/// <summary>
/// Kernel uprobes for probe sites, through perf_event_open and no BPF: the kernel puts the breakpoint on the file's
/// page, and on each hit records the registers the site's arguments need (and, when an argument is in stack memory,
/// the top of the stack) into a ring buffer shared with us, then lets the thread run on. No ptrace stop per hit:
/// a hit costs the thread about a microsecond instead of a round trip through the tracer. Events are per thread
/// (one ring buffer per thread, the thread's other events redirected into it); semaphores are counted by the kernel
/// (ref_ctr_offset). A reader thread drains the buffers; losses (a full buffer) are reported, never silent.
/// Callers hold <see cref="Gate"/> for every method (it also serializes their sink calls with the reader's); a monitor
/// thread watches how full the rings are without it (see <see cref="IUprobeSampleHandler.OnPressure"/>).
/// </summary>
internal sealed unsafe class UprobeHits : IDisposable
{
    /// <summary>Bytes of stack recorded per hit for probes with stack-memory arguments.</summary>
    public const uint StackBytes = 2048;

    /// <summary>
    /// A ring holds at least this many samples when the budget allows (8 MiB for small samples, 32 MiB for
    /// `break --backtrace`'s 16 KiB stack copies), so that a reader kept off the CPU for tens of milliseconds does not
    /// make nozoki hold the process.
    /// </summary>
    private const int SamplesPerRing = 2048;

    /// <summary>All ring buffers together stay within this many pages (64 MiB; 128 MiB for samples with a large stack
    /// copy) when the process has many threads.</summary>
    private const int PageBudget = 16384, LargeSamplePageBudget = 32768;
    private const int MaxPagesPerRing = 8192, MinPagesPerRing = 8, SmallPagesPerRing = 2048;

    private readonly int _pmuType;
    private readonly IUprobeSampleHandler _handler;
    private readonly Dictionary<int, Ring> _rings = [];
    private readonly Dictionary<ulong, Registered> _byId = [];
    private readonly Thread _reader;
    private volatile bool _stopping;
    private int _pagesPerRing = SmallPagesPerRing;
    private bool _countLost = true;
    private int _version;
    private byte[] _batch = new byte[1 << 16];
    private readonly List<(ulong Time, int Offset, int Length, Ring Ring)> _records = [];
    private readonly ulong[] _regs = new ulong[X86_64.PerfRegCount];
    // The monitor reads the rings without the gate (the reader may sit in a blocked write holding it): the ring table
    // and the mappings change only under this lock too, and _holding is guarded by it.
    private readonly Lock _ringsLock = new();
    private readonly HashSet<int> _holding = [];
    private readonly Thread _monitor;

    private sealed class Ring(int pid, int tid, int leaderFd, nint mapping, nuint length, int pages)
    {
        public readonly int Pid = pid, Tid = tid, LeaderFd = leaderFd;
        public readonly nint Mapping = mapping;
        public readonly nuint Length = length;
        public readonly ulong DataSize = (ulong)pages * (ulong)Environment.SystemPageSize;
        public readonly List<int> Fds = [leaderFd];
        public readonly List<ulong> Ids = [];
        public ulong LostReported;          // by LOST records so far
        public byte* Data => (byte*)Mapping + Environment.SystemPageSize;
        public ulong* Head => (ulong*)((byte*)Mapping + PerfMmapPage.DataHead);
        public ulong* Tail => (ulong*)((byte*)Mapping + PerfMmapPage.DataTail);
    }

    private sealed record Registered(ResolvedProbe? Probe, object? Tag, ulong RegsMask);

    private UprobeHits(int pmuType, IUprobeSampleHandler handler, Lock gate)
    {
        _pmuType = pmuType;
        _handler = handler;
        Gate = gate;
        _reader = new Thread(ReadLoop) { IsBackground = true, Name = "nozoki uprobe reader" };
        _reader.Start();
        _monitor = new Thread(MonitorLoop) { IsBackground = true, Name = "nozoki uprobe monitor" };
        _monitor.Start();
    }

    /// <summary>Serializes ring changes, draining and (for the owner) sink calls.</summary>
    public Lock Gate { get; }

    /// <summary>A reader over the kernel's uprobe PMU, or null (with why) when this kernel has none.</summary>
    public static UprobeHits? TryCreate(IUprobeSampleHandler handler, Lock gate, out string? problem)
    {
        problem = null;
        if (Perf.UprobePmuType() is not { } type)
        {
            problem = "this kernel has no uprobe PMU (/sys/bus/event_source/devices/uprobe)";
            return null;
        }

        return new UprobeHits(type, handler, gate);
    }

    /// <summary>Sizes the ring buffers of a process with <paramref name="threads"/> threads (call before opening).</summary>
    /// <summary>
    /// How full a ring gets before the reader is woken: a sixteenth. The monitor holds the process only at half full,
    /// so a reader that keeps up drains every batch long before a hold (with both at a quarter, the monitor woke with
    /// the reader on every batch and held the process before the reader had read anything).
    /// </summary>
    private uint WakeupBytes => (uint)((ulong)_pagesPerRing * (ulong)Environment.SystemPageSize / 16);

    /// <param name="sampleBytes">the size of one sample (its stack copy above all), to make room for
    /// <see cref="SamplesPerRing"/> of them.</param>
    public void PlanFor(int threads, int pages = 0, int sampleBytes = 0)
    {
        if (pages > 0)
        {
            _pagesPerRing = (int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)pages);
            return;
        }

        var wanted = (long)sampleBytes * SamplesPerRing / Environment.SystemPageSize;
        pages = (int)System.Numerics.BitOperations.RoundUpToPowerOf2((ulong)Math.Clamp(wanted, SmallPagesPerRing, MaxPagesPerRing));
        var budget = sampleBytes > 4096 ? LargeSamplePageBudget : PageBudget;
        while (pages > MinPagesPerRing && pages * Math.Max(1, threads) > budget) pages /= 2;
        _pagesPerRing = pages;
    }

    /// <summary>
    /// Whether every argument of <paramref name="probe"/> can be evaluated exactly from what a uprobe records:
    /// registers, constants, and memory relative to the stack or frame pointer (inside the recorded stack, which
    /// starts at the stack pointer: the red zone below it, where leaf functions keep locals, is not recorded).
    /// </summary>
    public static bool CanDecodeExactly(ResolvedProbe probe) =>
        probe.Args.All(a => a.Location != ArgLocation.Memory
            || (a.Segment == SegmentOverride.None && a.Index == X86Register.None && a.Symbol is null
                && ((a.Base == X86Register.Rsp && a.Displacement >= 0 && a.Displacement + a.Size <= StackBytes) || a.Base == X86Register.Rbp)));

    /// <summary>Opens the probe's uprobe for one thread. Returns 0, or the errno of what failed.</summary>
    public int Open(ResolvedProbe probe, int pid, int tid)
    {
        if (probe.FileOffset is not { } offset) return Errno.ENOENT;
        var mask = RegsMask(probe.Args, out var stack);
        return Open(probe.Object, offset, probe.SemaphoreFileOffset ?? 0, mask, stack ? StackBytes : 0u, new Registered(probe, null, mask), pid, tid);
    }

    /// <summary>Opens a uprobe at a site that is no USDT probe for one thread. Returns 0, or the errno of what failed.</summary>
    public int Open(UprobeTarget target, int pid, int tid) =>
        Open(target.Object, target.FileOffset, 0, target.RegsMask, target.StackBytes, new Registered(null, target.Tag, target.RegsMask), pid, tid);

    private int Open(MappedObject obj, ulong offset, ulong refCtrOffset, ulong mask, uint stackBytes, Registered registered, int pid, int tid)
    {
        var fd = -1;
        var error = Errno.ENOENT;
        foreach (var path in KernelPaths(obj))
        {
            var opened = Perf.OpenUprobe(_pmuType, path, offset, refCtrOffset, tid, mask, stackBytes, WakeupBytes, _countLost, out fd);
            if (opened.IsOk) break;
            error = opened.Errno;
            if (error == Errno.EINVAL && _countLost)
            {
                // Before Linux 6.0 there is no per-event lost count; LOST records still report losses.
                _countLost = false;
                opened = Perf.OpenUprobe(_pmuType, path, offset, refCtrOffset, tid, mask, stackBytes, WakeupBytes, _countLost, out fd);
                if (opened.IsOk) break;
                error = opened.Errno;
            }

            if (error is not (Errno.ENOENT or Errno.EACCES or Errno.ENOTDIR or Errno.ELOOP)) break;
        }

        if (fd < 0) return error;
        if (Perf.GetId(fd, out var id) is { IsOk: false } idFailed)
        {
            error = idFailed.Errno;
            Libc.close(fd);
            return error;
        }

        if (_rings.TryGetValue(tid, out var ring))
        {
            if (Perf.SetOutput(fd, ring.LeaderFd) is { IsOk: false } outputFailed)
            {
                error = outputFailed.Errno;
                Libc.close(fd);
                return error;
            }

            ring.Fds.Add(fd);
        }
        else
        {
            var pages = _pagesPerRing;
            // Unprivileged users have a locked-memory budget for these buffers (perf_event_mlock_kb): ask for less.
            var mapped = Perf.MapRing(fd, pages, out var mapping, out var length);
            while (!mapped.IsOk && pages > 1)
            {
                pages /= 2;
                mapped = Perf.MapRing(fd, pages, out mapping, out length);
            }

            if (!mapped.IsOk)
            {
                error = mapped.Errno;
                Libc.close(fd);
                return error;
            }

            ring = new Ring(pid, tid, fd, mapping, length, pages);
            lock (_ringsLock)
            {
                _rings[tid] = ring;
                _version++;
            }
        }

        ring.Ids.Add(id);
        _byId[id] = registered;
        return 0;
    }

    /// <summary>Drains and closes the events of one thread (it exited). Closing removes the kernel's breakpoints.</summary>
    public void CloseThread(int tid)
    {
        if (!_rings.ContainsKey(tid)) return;
        try
        {
            Drain();
        }
        finally
        {
            if (_rings.TryGetValue(tid, out var ring)) Rethrow(Close(ring));
        }
    }

    /// <summary>
    /// Drains and closes every event of a process (detach, exit, exec). When this returns the kernel has removed its
    /// breakpoints from the process (where no other event wants them) and taken its counts off the semaphores.
    /// </summary>
    public void CloseProcess(int pid)
    {
        if (!_rings.Values.Any(r => r.Pid == pid)) return;
        try
        {
            Drain();
        }
        finally
        {
            Exception? error = null;
            foreach (var ring in _rings.Values.Where(r => r.Pid == pid).ToList()) error ??= Close(ring);

            // An exec (the process goes on with new events) must not leave it held.
            bool held;
            lock (_ringsLock) held = _holding.Remove(pid);
            if (held) _handler.OnPressure(pid, false);
            Rethrow(error);
        }
    }

    /// <summary>Closes a ring's events (never throws: the kernel must get its breakpoints back); returns what reporting a loss threw.</summary>
    private Exception? Close(Ring ring)
    {
        // A loss is recorded in the ring only when a later sample fits again; the events' own counts catch the rest.
        ulong lost = 0;
        if (_countLost)
        {
            foreach (var fd in ring.Fds)
            {
                if (Perf.TryReadCounts(fd, out _, out var l)) lost += l;
            }
        }

        foreach (var id in ring.Ids) _byId.Remove(id);
        foreach (var fd in ring.Fds) Libc.close(fd);
        lock (_ringsLock)
        {
            _rings.Remove(ring.Tid);
            Perf.Unmap(ring.Mapping, ring.Length);
            _version++;
        }

        if (lost <= ring.LostReported) return null;
        try
        {
            _handler.OnLost(ring.Pid, ring.Tid, lost - ring.LostReported);
            return null;
        }
        catch (Exception e)
        {
            return e;
        }
    }

    private static void Rethrow(Exception? e)
    {
        if (e is not null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(e);
    }

    /// <summary>
    /// Copies every record out of every ring, then hands the samples to the handler in time order (threads write
    /// their own rings, so only a merge puts hits of different threads in order). Caller holds <see cref="Gate"/>.
    /// </summary>
    public void Drain()
    {
        _records.Clear();
        var used = 0;
        foreach (var ring in _rings.Values)
        {
            var head = Volatile.Read(ref *ring.Head);
            var tail = *ring.Tail;
            while (tail < head)
            {
                var at = tail & (ring.DataSize - 1);
                // Records are 8-byte aligned and the buffer a power of two: a header never wraps, a body may.
                var size = *(ushort*)(ring.Data + at + 6);
                if (size < 8) break;
                if (used + size > _batch.Length) Array.Resize(ref _batch, Math.Max(_batch.Length * 2, used + size));
                var first = (int)Math.Min((ulong)size, ring.DataSize - at);
                new ReadOnlySpan<byte>(ring.Data + at, first).CopyTo(_batch.AsSpan(used));
                if (first < size) new ReadOnlySpan<byte>(ring.Data, size - first).CopyTo(_batch.AsSpan(used + first));
                _records.Add((RecordTime(_batch.AsSpan(used, size)), used, size, ring));
                used += size;
                tail += size;
            }

            // Our reads of the data must be done before the kernel may overwrite it.
            Interlocked.MemoryBarrier();
            Volatile.Write(ref *ring.Tail, tail);
        }

        if (_records.Count == 0)
        {
            ReleaseCaughtUp();
            return;
        }

        if (_records.Count > 1) _records.Sort(static (a, b) => a.Time.CompareTo(b.Time));
        foreach (var (_, offset, length, ring) in _records) Dispatch(_batch.AsSpan(offset, length), ring);
        _handler.OnDrained();
        ReleaseCaughtUp();
    }

    /// <summary>
    /// The monitor thread: every 2 ms (sooner when a ring passes its watermark), holds the process of any ring that
    /// is more than half full (see <see cref="IUprobeSampleHandler.OnPressure"/>). Separate from the reader, which
    /// may be blocked writing its output: that is exactly when the rings fill.
    /// </summary>
    private void MonitorLoop()
    {
        // Once through the whole request path (this thread, the ptrace thread's wake and hold handling) before any
        // hit: a first hold that has to wait for the JIT compiler takes tens of milliseconds, time a ring may not have.
        _handler.OnPressure(-1, false);
        var fds = Array.Empty<PollFd>();
        var seen = -1;
        while (!_stopping)
        {
            fds = PollSet(fds, ref seen);
            fixed (PollFd* p = fds) Libc.poll(p, (ulong)fds.Length, 2);
            lock (_ringsLock)
            {
                foreach (var ring in _rings.Values)
                {
                    if (_holding.Contains(ring.Pid) || Volatile.Read(ref *ring.Head) - Volatile.Read(ref *ring.Tail) <= ring.DataSize / 2) continue;
                    _holding.Add(ring.Pid);
                    _handler.OnPressure(ring.Pid, true);
                }
            }
        }
    }

    /// <summary>Lets a held process go once all its rings are below a sixteenth full.</summary>
    private void ReleaseCaughtUp()
    {
        lock (_ringsLock)
        {
            if (_holding.Count == 0) return;
            foreach (var pid in _holding.ToList())
            {
                if (_rings.Values.Any(r => r.Pid == pid && Volatile.Read(ref *r.Head) - *r.Tail > r.DataSize / 16)) continue;
                _holding.Remove(pid);
                _handler.OnPressure(pid, false);
            }
        }
    }

    private static ulong RecordTime(ReadOnlySpan<byte> record)
    {
        var type = BinaryPrimitives.ReadUInt32LittleEndian(record);
        // Sample: header, identifier, pid/tid, time. Anything else (a loss) sorts first.
        return type == Perf.RECORD_SAMPLE && record.Length >= 32 ? BinaryPrimitives.ReadUInt64LittleEndian(record[24..]) : 0;
    }

    private void Dispatch(ReadOnlySpan<byte> record, Ring ring)
    {
        var type = BinaryPrimitives.ReadUInt32LittleEndian(record);
        if (type == Perf.RECORD_LOST && record.Length >= 24)
        {
            var lost = BinaryPrimitives.ReadUInt64LittleEndian(record[16..]);
            ring.LostReported += lost;
            _handler.OnLost(ring.Pid, ring.Tid, lost);
            return;
        }

        if (type != Perf.RECORD_SAMPLE || record.Length < 40) return;
        var id = BinaryPrimitives.ReadUInt64LittleEndian(record[8..]);
        if (!_byId.TryGetValue(id, out var reg)) return;
        var pid = BinaryPrimitives.ReadInt32LittleEndian(record[16..]);
        var tid = BinaryPrimitives.ReadInt32LittleEndian(record[20..]);
        var time = BinaryPrimitives.ReadUInt64LittleEndian(record[24..]);
        var p = 32;
        var abi = BinaryPrimitives.ReadUInt64LittleEndian(record[p..]);
        p += 8;
        Array.Clear(_regs);
        if (abi == Perf.REGS_ABI_64)
        {
            for (var bit = 0; bit < _regs.Length; bit++)
            {
                if ((reg.RegsMask & (1UL << bit)) == 0) continue;
                if (p + 8 > record.Length) return;
                _regs[bit] = BinaryPrimitives.ReadUInt64LittleEndian(record[p..]);
                p += 8;
            }
        }

        ReadOnlySpan<byte> stack = default;
        if (p + 8 <= record.Length)
        {
            var size = (int)BinaryPrimitives.ReadUInt64LittleEndian(record[p..]);
            p += 8;
            if (size > 0 && p + size + 8 <= record.Length)
            {
                var dyn = (int)Math.Min((ulong)size, BinaryPrimitives.ReadUInt64LittleEndian(record[(p + size)..]));
                stack = record.Slice(p, dyn);
            }
        }

        var r = _regs;
        _handler.OnSample(new UprobeSample
        {
            MonotonicNs = (long)time,
            Pid = pid,
            Tid = tid,
            Probe = reg.Probe,
            Tag = reg.Tag,
            Registers = X86_64.FromPerfRegisters(r),
            Stack = stack,
        });
    }

    /// <summary>perf's x86 register numbers (PERF_REG_X86_*) for the registers the arguments read, and the stack pointer.</summary>
    private static ulong RegsMask(IReadOnlyList<ArgSpec> args, out bool stack)
    {
        var mask = 1UL << X86_64.PerfRegSp | 1UL << X86_64.PerfRegIp;
        stack = false;
        foreach (var a in args)
        {
            switch (a.Location)
            {
                case ArgLocation.Register:
                    mask |= Bit(a.Register.Register);
                    break;
                case ArgLocation.Memory:
                    mask |= Bit(a.Base) | Bit(a.Index);
                    stack |= a.Base is X86Register.Rsp or X86Register.Rbp;
                    break;
            }
        }

        return mask;
    }

    private static ulong Bit(X86Register r) => X86_64.PerfRegBit(r);

    /// <summary>Paths by which the kernel finds the very file the process mapped: map_files, then its root, then ours.</summary>
    private static IEnumerable<string> KernelPaths(Procfs.MappedObject obj)
    {
        yield return obj.MapFilesPath;
        yield return $"/proc/{obj.Pid}/root{obj.Path}";
        yield return obj.Path;
    }

    /// <summary>The rings' descriptors to poll (readable: past the watermark), rebuilt only when the rings changed.</summary>
    private PollFd[] PollSet(PollFd[] current, ref int seen)
    {
        lock (_ringsLock)
        {
            if (seen == _version) return current;
            seen = _version;
            return [.. _rings.Values.Select(r => new PollFd { Fd = r.LeaderFd, Events = 1 /* POLLIN */ })];
        }
    }

    private void ReadLoop()
    {
        var fds = Array.Empty<PollFd>();
        var seen = -1;
        while (!_stopping)
        {
            fds = PollSet(fds, ref seen);
            fixed (PollFd* p = fds) Libc.poll(p, (ulong)fds.Length, 10);
            if (_stopping) break;
            try
            {
                lock (Gate) Drain();
            }
            catch (Exception e)
            {
                _stopping = true;
                _handler.OnReaderFailed(e);
            }
        }
    }

    /// <summary>Stops the reader, drains what is left and closes every event.</summary>
    public void Dispose()
    {
        _stopping = true;
        if (Thread.CurrentThread != _reader) _reader.Join();
        if (Thread.CurrentThread != _monitor) _monitor.Join();
        lock (Gate)
        {
            try
            {
                Drain();
            }
            finally
            {
                Exception? error = null;
                foreach (var ring in _rings.Values.ToList()) error ??= Close(ring);
                Rethrow(error);
            }
        }
    }
}
