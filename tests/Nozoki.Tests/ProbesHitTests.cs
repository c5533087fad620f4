using System.Collections.Concurrent;
using Microsoft.Win32.SafeHandles;
using Nozoki.Probes;
using Nozoki.Tests.Helpers;
using Nozoki.Tracing;

namespace Nozoki.Tests;

/// <summary>
/// The probe model at real probe hits: a minimal observer on the session's breakpoint hook arms every resolved site
/// with an int3 (written through /proc/PID/mem), raises the semaphores, decodes the arguments at each hit with
/// <see cref="ArgSpec.TryEvaluate{TMemory}"/>, and checks them against the values the fixture computed.
/// </summary>
[Collection(PtraceCollection.Name)]
public sealed class ProbesHitTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task One_thread_every_argument_of_every_site_has_the_value_the_fixture_passed()
    {
        const int loops = 300;
        var (hits, output, probes) = await Trace(loops, threads: 1);
        var exeBias = probes.First(p => p.ObjectPath == ProbesFixtures.Exe).LoadBias;
        var name = ProbesFixtures.NmValue(ProbesFixtures.Exe, "g_name") + exeBias;
        var byName = hits.GroupBy(h => h.Probe).ToDictionary(g => g.Key, g => g.ToList());
        foreach (var site in probes.Select(p => p.Site.FullName).Distinct())
            Assert.True(byName.TryGetValue(site, out var list) && list.Count == loops, $"{site}: {byName.GetValueOrDefault(site)?.Count ?? 0} hits, expected {loops}");

        for (var i = 0; i < loops; i++)
        {
            foreach (var (probe, args) in UsdtFixtureArgs.ExecutableProbes(i, name)) Check(byName[probe][i], args);
            Check(byName["fixturelib:tick"][i], [$"{i}", $"{-i}", $"{i + 1}"]);
            Check(byName["fixturelib:ticked"][i], []);
            Check(byName["fixturelib:guarded"][i], [$"{i + 1}"]);
        }

        // Semaphore-guarded code ran on every iteration while traced; the checksum is that of an untraced run.
        Assert.Contains($"guarded {loops}\n", output, StringComparison.Ordinal);
        Assert.Equal(Checksum(Untraced(loops, 1)), Checksum(output));
    }

    [Fact]
    public async Task Four_threads_hit_every_site_the_expected_number_of_times()
    {
        const int loops = 400, threads = 4;
        var (hits, output, probes) = await Trace(loops, threads);
        var exeBias = probes.First(p => p.ObjectPath == ProbesFixtures.Exe).LoadBias;
        var name = ProbesFixtures.NmValue(ProbesFixtures.Exe, "g_name") + exeBias;
        Assert.Equal(threads, hits.Select(h => h.Tid).Distinct().Count());
        foreach (var g in hits.GroupBy(h => h.Probe)) Assert.Equal(loops * threads, g.Count());
        Assert.Equal(18, hits.Select(h => h.Probe).Distinct().Count());
        // Registers and stack slots are per thread: every "four" hit is consistent with itself.
        foreach (var h in hits.Where(h => h.Probe == "fixture:four"))
        {
            var s = ulong.Parse(h.Values[0], System.Globalization.CultureInfo.InvariantCulture) & 0xffff_ffff;
            var e = UsdtFixtureArgs.For(s, name);
            Check(h, [e.U64, e.S64, e.U8, e.S8]);
        }

        Assert.Contains($"guarded {loops * threads}\n", output, StringComparison.Ordinal);
        Assert.Equal(Checksum(Untraced(loops, threads)), Checksum(output));
    }

    private sealed record Hit(string Probe, int Tid, string[] Values);

    private static void Check(Hit hit, string[] expected) =>
        Assert.True(expected.SequenceEqual(hit.Values), $"{hit.Probe}: got [{string.Join(", ", hit.Values)}], expected [{string.Join(", ", expected)}]");

    private static string Checksum(string output) =>
        output.Split('\n').Single(l => l.StartsWith("checksum ", StringComparison.Ordinal));

    private static string Untraced(int loops, int threads)
    {
        using var dir = new TempDir();
        using var t = Tracee.Start([ProbesFixtures.Exe, "--lib", ProbesFixtures.Lib, "--loops", $"{loops}", "--threads", $"{threads}"], stdoutPath: dir.File("out"));
        Assert.Equal(0, t.WaitForExit().Code);
        var text = t.StdoutFileText();
        Assert.Contains("guarded 0\n", text, StringComparison.Ordinal);
        return text;
    }

    private static async Task<(List<Hit> Hits, string Output, IReadOnlyList<ResolvedProbe> Probes)> Trace(int loops, int threads)
    {
        using var dir = new TempDir();
        using var tracee = ProbesTests.StartWaitingFixture(dir, "--loops", $"{loops}", "--threads", $"{threads}");
        var scan = new ProbeResolver().Scan(tracee.Pid);
        var probes = scan.Probes.Where(p => p.ObjectPath == ProbesFixtures.Exe || p.ObjectPath == ProbesFixtures.Lib).ToList();
        var observer = new MiniUsdt(tracee.Pid, probes);
        TraceResult result;
        using (var session = TraceSession.Attach(tracee.Pid, observer, new TraceOptions { TraceSyscalls = false }))
        {
            await observer.Armed.Task.WaitAsync(Timeout);
            tracee.Release();
            result = await session.Completion.WaitAsync(Timeout);
        }

        Assert.Null(result.Error);
        Assert.Equal(0, result.TargetExit?.Code);
        Assert.Null(observer.Problem);
        return (observer.Hits.ToList(), tracee.StdoutFileText(), probes);
    }

    /// <summary>What `nozoki usdt` does, in miniature (no fork/exec/dlopen handling): enough to check the model.</summary>
    private sealed class MiniUsdt(int pid, IReadOnlyList<ResolvedProbe> probes) : ITraceObserver
    {
        private readonly Dictionary<ulong, ResolvedProbe> _byAddress = probes.ToDictionary(p => p.Address);
        private readonly Dictionary<ulong, byte> _original = [];

        public TaskCompletionSource Armed { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public ConcurrentQueue<Hit> Hits { get; } = new();

        public string? Problem { get; private set; }

        public void OnAttached(int attachedPid, int threadCount)
        {
            using var mem = OpenMem();
            foreach (var p in probes)
            {
                var b = new byte[1];
                RandomAccess.Read(mem, b, (long)p.Address);
                if (b[0] != 0x90) Problem ??= $"{p.Site.FullName} at 0x{p.Address:x} is 0x{b[0]:x2}, not a nop";
                _original[p.Address] = b[0];
                RandomAccess.Write(mem, new byte[] { 0xcc }, (long)p.Address);
            }

            foreach (var (address, count) in Semaphores.Counts(probes)) AddSemaphore(mem, address, count);
            Armed.TrySetResult();
        }

        public bool OnBreakpoint(in BreakpointStop stop)
        {
            if (!stop.TryGetRegisters(out var regs) || !_byAddress.TryGetValue(regs.Rip - 1, out var probe)) return false;
            var memory = new ProcessMemoryReader(stop.Tid);
            var at = regs with { Rip = probe.Address };
            var values = new string[probe.Args.Count];
            for (var i = 0; i < values.Length; i++)
            {
                var status = probe.Args[i].TryEvaluate(at, ref memory, out var v);
                values[i] = status == ArgStatus.Ok ? v.ToString() : status.ToString();
            }

            Hits.Enqueue(new Hit(probe.Site.FullName, stop.Tid, values));
            // The site is a one-byte nop: the thread is already past it (rip = site + 1), nothing to emulate.
            return true;
        }

        public void OnDetaching(int detachingPid)
        {
            using var mem = OpenMem();
            foreach (var (address, b) in _original) RandomAccess.Write(mem, new[] { b }, (long)address);
            foreach (var (address, count) in Semaphores.Counts(probes)) AddSemaphore(mem, address, -count);
        }

        private SafeFileHandle OpenMem() => File.OpenHandle($"/proc/{pid}/mem", FileMode.Open, FileAccess.ReadWrite);

        private static void AddSemaphore(SafeFileHandle mem, ulong address, int delta)
        {
            var b = new byte[2];
            RandomAccess.Read(mem, b, (long)address);
            var v = (ushort)(BitConverter.ToUInt16(b) + delta);
            RandomAccess.Write(mem, BitConverter.GetBytes(v), (long)address);
        }
    }
}
