using System.Text.RegularExpressions;
using Nozoki.Probes;
using Nozoki.Tests.Helpers;
using Nozoki.Tracing;
using Nozoki.Usdt;

namespace Nozoki.Tests;

/// <summary>
/// The UsdtTracer library with kernel uprobes (perf_event_open, no BPF): which sites get uprobes, that a hit storm
/// into a ring buffer nobody drains in time loses hits loudly (counted, reported) and never silently, and that the
/// process runs on unharmed.
/// </summary>
[Collection(PtraceCollection.Name)]
public sealed partial class UprobeTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(120);

    private sealed class CollectingSink : IUsdtSink
    {
        public readonly List<(string Probe, int Tid, string Args)> Hits = [];
        public readonly List<string> Problems = [];
        public int StallFirstHitMs;
        public int StallEvery, StallMs; // a slow output: sleep StallMs after every StallEvery hits
        public int Flushes;

        public void OnHit(in UsdtHit hit, ReadOnlySpan<UsdtArgument> args)
        {
            if (StallFirstHitMs > 0 && Hits.Count == 0) Thread.Sleep(StallFirstHitMs);
            if (StallEvery > 0 && Hits.Count % StallEvery == StallEvery - 1) Thread.Sleep(StallMs);
            var text = string.Join(' ', args.ToArray().Select(a => a.Status == ArgStatus.Ok ? a.Value.ToString() : $"<{a.Status}>"));
            Hits.Add((hit.Probe.Site.FullName, hit.Tid, text));
        }

        public void OnProblem(string message) => Problems.Add(message);

        public void Flush() => Flushes++;
    }

    private static (UsdtTracer Tracer, TraceResult Result) Launch(string[] command, CollectingSink sink, UsdtOptions options, string probe = "fixture:*")
    {
        Assert.True(ProbePattern.TryParse(probe, out var pattern, out _));
        var tracer = new UsdtTracer([pattern], sink, options);
        using (tracer)
        {
            var session = TraceSession.Launch(command, tracer, new TraceOptions
            {
                StageCommand = NozokiCli.Command, TraceSyscalls = false, InterceptChildren = true,
            });
            using (session)
            {
                Assert.True(session.Completion.Wait(Timeout), "the session did not end");
                return (tracer, session.Completion.Result);
            }
        }
    }

    // Arguments a uprobe cannot record exactly: below the stack pointer (the red zone) or in global memory.
    [GeneratedRegex(@"-\d+\(%rsp\)|\(%rip\)")]
    private static partial Regex NotRecordedRegex();

    [Theory]
    [InlineData(UsdtMechanism.Auto)]
    [InlineData(UsdtMechanism.Uprobe)]
    [InlineData(UsdtMechanism.Ptrace)]
    public void Each_mechanism_arms_the_sites_it_should_and_every_hit_is_reported_in_order(UsdtMechanism mechanism)
    {
        const int loops = 50;
        var sites = ProbesFixtures.Readelf(ProbesFixtures.Exe);
        var exact = sites.Count(s => !NotRecordedRegex().IsMatch(s.Arguments));
        Assert.InRange(exact, 1, sites.Count - 4); // the fixture has both kinds

        var sink = new CollectingSink();
        var (tracer, result) = Launch([ProbesFixtures.Exe, "--loops", $"{loops}"], sink,
            new UsdtOptions { Mechanism = mechanism });

        Assert.Null(result.Error);
        Assert.Equal(new ExitStatus(0, 0), result.TargetExit);
        Assert.Empty(sink.Problems);
        Assert.Equal(mechanism switch { UsdtMechanism.Auto => exact, UsdtMechanism.Uprobe => sites.Count, _ => 0 }, tracer.UprobeSites);
        Assert.Equal(0, tracer.Lost);

        // Every site on every loop, in the fixture's order (note order): uprobe hits (recorded by the kernel, reported
        // later) and breakpoint hits (reported at once) merge back into the order they happened in on the thread.
        var order = sites.Select(s => $"{s.Provider}:{s.Name}").ToList();
        Assert.Equal(Enumerable.Range(0, loops).SelectMany(_ => order), sink.Hits.Select(h => h.Probe));
        Assert.Single(sink.Hits.Select(h => h.Tid).Distinct());
        var ones = sink.Hits.Where(h => h.Probe == "fixture:one").Select(h => h.Args);
        Assert.Equal(Enumerable.Range(1, loops).Select(i => $"{i}"), ones);
        if (mechanism != UsdtMechanism.Uprobe)
        {
            var mem = sink.Hits.Where(h => h.Probe == "fixture:mem_signed").Select(h => h.Args).ToList();
            Assert.Equal(UsdtFixtureArgs.ExecutableProbes(0, 0).Single(p => p.Probe == "fixture:mem_signed").Args, mem[0].Split(' '));
        }
    }

    /// <summary>
    /// Output slower than the hits (the sink sleeps): the rings fill past half, and the process is held until the
    /// reader catches up, so that nothing is lost; every hit comes out in order.
    /// </summary>
    [Fact]
    public void Output_slower_than_the_hits_holds_the_process_and_loses_nothing()
    {
        const int loops = 40_000;
        var sink = new CollectingSink { StallEvery = 500, StallMs = 20 };
        // A 1 MiB ring (~18,000 of these samples): the sink (25,000 hits/s at most) falls half of it behind the loop
        // within a second as long as the loop makes more than ~10,000 hits/s (a uprobe hit costs 1-10 us here), and
        // the monitor (every 2 ms) holds the process long before the other half fills. With a sink of 200,000 hits/s
        // and the default 8 MiB ring, the ring never filled a quarter: no hold, nothing tested.
        var (tracer, result) = Launch([ProbesFixtures.Exe, "--loops", $"{loops}"], sink,
            new UsdtOptions { Mechanism = UsdtMechanism.Uprobe, UprobeRingPages = 256 }, "fixture:one");

        Assert.Null(result.Error);
        Assert.Equal(new ExitStatus(0, 0), result.TargetExit);
        Assert.Equal(0, tracer.Lost);
        Assert.Empty(sink.Problems);
        Assert.True(tracer.Holds > 0, "the output never fell behind: the test did not test holding");
        Assert.Equal(Enumerable.Range(1, loops).Select(i => $"{(byte)i}"), sink.Hits.Select(h => h.Args));
    }

    [Fact]
    public void A_ring_buffer_that_overflows_loses_hits_loudly_and_never_silently()
    {
        // 3,000 loops are ~30,000 hits: a thousand times what the ring holds, so it overflows while the reader sleeps
        // (100,000 loops made the same point thirty times over, in 36 s).
        const int loops = 3_000;
        var sink = new CollectingSink { StallFirstHitMs = 500 };
        // 8 pages (32 KiB) hold a few dozen of these samples (2 KiB of stack each): they overflow long before the
        // monitor (every 2 ms) can hold the process, while the reader sleeps half a second on its first hit.
        var (tracer, result) = Launch([ProbesFixtures.Exe, "--loops", $"{loops}"], sink,
            new UsdtOptions { Mechanism = UsdtMechanism.Uprobe, UprobeRingPages = 8 });

        Assert.Null(result.Error);
        Assert.Equal(new ExitStatus(0, 0), result.TargetExit); // the process was never held up by the full buffer
        var hits = sink.Hits.Count(h => h.Probe == "fixture:one");
        Assert.True(tracer.Lost > 0, $"nothing lost with {hits} hits reported");
        Assert.Equal(loops * ProbesFixtures.Readelf(ProbesFixtures.Exe).Count, sink.Hits.Count + tracer.Lost);
        Assert.Contains(sink.Problems, p => p.Contains("were lost: the kernel's ring buffer was full", StringComparison.Ordinal));
        // What was reported is in order with no duplicates: each thread's ring is read in order.
        var values = sink.Hits.Where(h => h.Probe == "fixture:one").Select(h => byte.Parse(h.Args, System.Globalization.CultureInfo.InvariantCulture)).ToList();
        Assert.True(values.Count < loops);
        Assert.True(sink.Flushes > 0);
    }

    /// <summary>
    /// Without the right to open uprobes (nobody has no CAP_PERFMON), nozoki says so once and traces with breakpoints;
    /// only the command is armed (not the re-executed .NET stage it starts from, whose own exec comes first).
    /// </summary>
    [Fact]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public void Without_permission_for_uprobes_breakpoints_take_over()
    {
        using var dir = new TempDir();
        File.SetUnixFileMode(dir.Path, (UnixFileMode)0x1ED); // 0755: nobody must reach the copy
        var exe = dir.File("usdt");
        File.Copy(ProbesFixtures.Exe, exe);
        File.SetUnixFileMode(exe, (UnixFileMode)0x1ED);
        using var nozoki = NozokiCli.StartAsNobody(["usdt", "fixture:one", "--", exe, "--loops", "3"]);
        Assert.Equal(0, nozoki.WaitForExit(Timeout));
        nozoki.AssertNoStackTrace();
        var (hits, _) = UsdtOutput.Split(nozoki.StdoutText());
        Assert.Equal(["1", "2", "3"], hits.Select(h => h.Args.Single()));
        var lines = nozoki.StderrText().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(3, lines.Length);
        Assert.Matches(@"^nozoki: fixture:one at 0x[0-9a-f]+ in .*: kernel uprobe failed \(EACCES: Permission denied\) \(kernel uprobes need root or CAP_PERFMON\); using a ptrace breakpoint$", lines[0]);
        Assert.Equal(UsdtOutput.ArmedLine(1, hits[0].Pid) + UsdtOutput.ExitedLine(hits[0].Pid, 0), lines[1] + "\n" + lines[2] + "\n");
    }
}
