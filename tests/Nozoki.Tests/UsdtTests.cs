using System.Globalization;
using Nozoki.Memory;
using Nozoki.Probes;
using Nozoki.Tests.Helpers;

namespace Nozoki.Tests;

/// <summary>
/// `nozoki usdt` against real processes: a launched command, an attached process, dlopen after the attach, threads,
/// --count, C++ (libstdc++) and Python probes, fork with and without -f, exec. Argument values are checked against
/// what the fixtures compute; "untraced" results (checksums) against runs without nozoki.
/// </summary>
[Collection(PtraceCollection.Name)]
public sealed class UsdtTests
{
    private static readonly TimeSpan Step = TimeSpan.FromSeconds(15);
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    private static string Exe => ProbesFixtures.Exe;

    /// <summary>
    /// Once nozoki is gone, SIGUSR2 ends the fixture's --sleep-us: it runs its remaining loops at full speed (same
    /// checksum), and the test waits for its end instead of its length.
    /// </summary>
    private static void Hurry(Tracee tracee) => tracee.Child.Signal(Posix.SIGUSR2);

    /// <summary>fixtures/usdt_fork.c: probes in a parent and in its forked child.</summary>
    internal static string Fork => Fixtures.Build("usdt_fork", "usdt_fork.c", "gcc");

    /// <summary>fixtures/usdt_functions.py (run with /usr/bin/python3.11).</summary>
    internal static string PythonScript => Path.Combine(Fixtures.SourceDirectory, "usdt_functions.py");

    // ------------------------------------------------------------------ launch

    /// <summary>
    /// auto: the sites whose arguments are registers, constants or stack memory get kernel uprobes, the others
    /// (red-zone and global memory) breakpoints, in one run; ptrace: breakpoints only. Both give exact values.
    /// </summary>
    [Theory]
    [InlineData("auto")]
    [InlineData("ptrace")]
    public void Launch_hits_every_probe_on_every_loop_with_the_values_the_fixture_passed(string via)
    {
        const int loops = 3;
        var sites = ProbesFixtures.Readelf(Exe);
        using var nozoki = NozokiCli.Start(["usdt", "--via", via, "fixture:*", "--", Exe, "--loops", $"{loops}"]);
        Assert.True(nozoki.WaitForExit(Timeout) == 0, nozoki.Describe());
        nozoki.AssertNoStackTrace();
        var (hits, own) = UsdtOutput.Split(nozoki.StdoutText());
        Assert.NotEmpty(hits);
        var pid = hits[0].Pid;
        Assert.All(hits, h => Assert.True(h.Pid == pid && h.Comm == "usdt", $"{h}"));
        Assert.Single(hits.Select(h => h.Tid).Distinct()); // the loop runs on one thread (not the main one)
        Assert.Equal(sites.Count * loops, hits.Count);

        var bias = ProbesFixtures.Hex(UsdtOutput.Value(own, "func main")) - ProbesFixtures.NmValue(Exe, "main");
        var name = ProbesFixtures.NmValue(Exe, "g_name") + bias;
        var byName = hits.GroupBy(h => h.Probe).ToDictionary(g => g.Key, g => g.ToList());
        foreach (var site in sites.Select(s => $"{s.Provider}:{s.Name}").Distinct())
            Assert.True(byName.TryGetValue(site, out var list) && list.Count == loops, $"{site}: {byName.GetValueOrDefault(site)?.Count ?? 0} hits, expected {loops}");
        CheckEveryProbe(byName, loops, name);

        // The guarded probe's body ran on every loop only because nozoki raised its semaphore.
        Assert.Equal($"{loops}", UsdtOutput.Value(own, "guarded"));
        var untraced = Untraced(Exe, "--loops", $"{loops}");
        Assert.Equal("0", UsdtOutput.Value(untraced, "guarded"));
        Assert.Equal(UsdtOutput.Value(untraced, "checksum"), UsdtOutput.Value(own, "checksum"));

        var stderr = nozoki.StderrText();
        Assert.Equal(UsdtOutput.ArmedLine(sites.Count, pid) + UsdtOutput.ExitedLine(pid, 0), stderr);
    }

    [Fact]
    public void Launch_exits_with_the_status_of_the_command()
    {
        using var nozoki = NozokiCli.Start(["usdt", "fixture:one", "--", "sh", "-c", $"exec {Exe} --loops 2 >/dev/null; exit 9"]);
        Assert.True(nozoki.WaitForExit(Timeout) == 0, nozoki.Describe()); // exec replaced sh: the fixture's own 0

        using var failing = NozokiCli.Start(["usdt", "-f", "fixture:one", "--", "sh", "-c", $"{Exe} --loops 2 >/dev/null; exit 9"]);
        Assert.True(failing.WaitForExit(Timeout) == 9, failing.Describe());
        Assert.Equal(["1", "2"], UsdtOutput.Hits(failing.StdoutText()).Select(h => h.Args.Single())); // from the child, followed

        // Without -f the fixture runs in a child that is not probed: no site ever matched in what was traced.
        using var unfollowed = NozokiCli.Start(["usdt", "fixture:one", "--", "sh", "-c", $"{Exe} --loops 2 >/dev/null; exit 9"]);
        Assert.True(unfollowed.WaitForExit(Timeout) == 3, unfollowed.Describe());
        Assert.Empty(UsdtOutput.Hits(unfollowed.StdoutText()));

        using var usage = NozokiCli.Start(["usdt", "fixture:one", "--", Exe, "--no-such-option"]);
        Assert.True(usage.WaitForExit(Timeout) == 2, usage.Describe());
    }

    // ------------------------------------------------------------------ attach, detach by signal

    [Theory]
    [InlineData(Posix.SIGINT)]
    [InlineData(Posix.SIGTERM)]
    [InlineData(Posix.SIGHUP)]
    public void A_signal_detaches_restoring_every_site_and_semaphore_and_the_process_runs_on(int signal)
    {
        const int loops = 20000;
        string[] args = ["--loops", $"{loops}", "--set-sem", "5"];
        using var dir = new TempDir();
        using var tracee = Tracee.Start([Exe, "--wait", "--sleep-us", "100", .. args], stdinPipe: true, stdoutPath: dir.File("out"));
        var pid = tracee.Pid;
        Poll.Until(() => tracee.StdoutFileText().Contains("ready\n", StringComparison.Ordinal), Step, "the usdt fixture to print ready");
        var probes = new ProbeResolver().Scan(pid).Probes.Where(p => p.ObjectPath == Exe).ToList();
        Assert.Equal(ProbesFixtures.Readelf(Exe).Count, probes.Count);
        var raised = Semaphores.Counts(probes);
        var before = raised.Keys.ToDictionary(a => a, a => ReadSemaphore(pid, a));
        Assert.Equal([0, 5], before.Values.Order()); // guarded2 0, guarded 5 (--set-sem 5)
        AssertSites(pid, probes, 0x90);

        using var nozoki = NozokiCli.Start(["usdt", "fixture:*", "-p", $"{pid}"]);
        nozoki.WaitForStderr(s => s.Contains(UsdtOutput.ArmedLine(probes.Count, pid), StringComparison.Ordinal), Step, "nozoki to arm the probes");
        AssertSites(pid, probes, 0xcc);
        foreach (var (address, count) in raised) Assert.Equal(before[address] + count, ReadSemaphore(pid, address));

        tracee.Release();
        nozoki.WaitUntil(() => CountOf(nozoki.StdoutText(), " fixture:one ") >= 5, Step, "hits of fixture:one");
        nozoki.Signal(signal);
        Assert.True(nozoki.WaitForExit(Timeout) == 0, nozoki.Describe());
        nozoki.AssertNoStackTrace();
        Assert.Contains(UsdtOutput.DetachedLine(pid), nozoki.StderrText(), StringComparison.Ordinal);

        // The fixture is still in its loop: no longer traced, every site a nop again, the semaphores as they were.
        Assert.DoesNotContain("checksum", tracee.StdoutFileText(), StringComparison.Ordinal);
        var status = ProcStatus.Get(pid);
        Assert.Equal(0, status.TracerPid);
        Assert.NotEqual('t', status.State);
        AssertSites(pid, probes, 0x90);
        foreach (var (address, value) in before) Assert.Equal(value, ReadSemaphore(pid, address));

        // Hits stopped part-way, each probe on consecutive loops from the first.
        var hits = UsdtOutput.Hits(nozoki.StdoutText());
        var one = hits.Where(h => h.Probe == "fixture:one").Select(h => h.Args.Single()).ToList();
        Assert.InRange(one.Count, 5, loops - 1);
        Assert.Equal(Enumerable.Range(0, one.Count).Select(i => $"{(byte)(1 + i)}"), one);

        Hurry(tracee);
        Assert.Equal(0, tracee.WaitForExit(Timeout).Code);
        var output = ExternalProcess.SplitLines(tracee.StdoutFileText());
        var untraced = Untraced(Exe, args);
        Assert.Equal(UsdtOutput.Value(untraced, "checksum"), UsdtOutput.Value(output, "checksum"));
        Assert.Equal($"{loops}", UsdtOutput.Value(output, "guarded")); // --set-sem 5 keeps the body running throughout
    }

    /// <summary>
    /// Detaching while 4 threads hit the probes as fast as they can: threads stopped on an int3 (or about to trap on
    /// one) when the sites are restored must run on as if nothing happened (no SIGTRAP, no skipped instruction).
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Detaching_in_the_middle_of_a_hit_storm_on_4_threads_leaves_a_healthy_process(bool threadsRunningAtAttach)
    {
        using var dir = new TempDir();
        // Either the threads start after the attach (--wait, no sleep: a storm), or they are already running when
        // nozoki attaches (a slower loop that is still going after the attach).
        string[] args = threadsRunningAtAttach ? ["--threads", "4", "--loops", "4000", "--sleep-us", "500"] : ["--threads", "4", "--loops", "200000"];
        using var tracee = Tracee.Start([Exe, .. threadsRunningAtAttach ? Array.Empty<string>() : ["--wait"], .. args], stdinPipe: true, stdoutPath: dir.File("out"));
        var pid = tracee.Pid;
        if (threadsRunningAtAttach)
            Poll.Until(() => Directory.GetDirectories($"/proc/{pid}/task").Length == 5, Step, "the fixture's 4 threads to start");
        else
            Poll.Until(() => tracee.StdoutFileText().Contains("ready\n", StringComparison.Ordinal), Step, "the usdt fixture to print ready");
        var probes = new ProbeResolver().Scan(pid).Probes.Where(p => p.ObjectPath == Exe).ToList();

        using var nozoki = NozokiCli.Start(["usdt", "fixture:*", "-p", $"{pid}"]);
        nozoki.WaitForStderr(s => s.Contains(UsdtOutput.ArmedLine(probes.Count, pid), StringComparison.Ordinal), Step, "nozoki to arm the probes");
        if (!threadsRunningAtAttach) tracee.Release();
        nozoki.WaitUntil(() => UsdtOutput.Hits(nozoki.StdoutText()) is var h && h.Select(x => x.Tid).Distinct().Count() == 4 && h.Any(x => x.Probe == "fixture:guarded"),
            Step, "hits from all 4 threads, and of fixture:guarded");
        nozoki.Signal(Posix.SIGINT);
        Assert.True(nozoki.WaitForExit(Timeout) == 0, nozoki.Describe());
        nozoki.AssertNoStackTrace();
        Assert.Contains(UsdtOutput.DetachedLine(pid), nozoki.StderrText(), StringComparison.Ordinal);

        Hurry(tracee);
        var status = tracee.WaitForExit(Timeout);
        Assert.True(status.Code == 0, $"the fixture did not survive the detach: {status}");
        var output = ExternalProcess.SplitLines(tracee.StdoutFileText());
        // The checksum does not depend on --sleep-us: the reference runs without it.
        Assert.Equal(UsdtOutput.Value(Untraced(Exe, args[..4]), "checksum"), UsdtOutput.Value(output, "checksum"));
        // The guarded body ran only while the semaphore was raised: part of the way.
        var guarded = long.Parse(UsdtOutput.Value(output, "guarded"), CultureInfo.InvariantCulture);
        var total = 4 * long.Parse(args[3], CultureInfo.InvariantCulture);
        Assert.InRange(guarded, 1, total - 1);
        var hits = UsdtOutput.Hits(nozoki.StdoutText());
        Assert.All(hits, h => Assert.Equal(pid, h.Pid));
        Assert.InRange(hits.Count(h => h.Probe == "fixture:guarded"), guarded - 4, guarded);
    }

    [Fact]
    public void Count_with_4_threads_reports_exactly_N_hits()
    {
        string[] args = ["--threads", "4", "--loops", "50000"];
        using var dir = new TempDir();
        using var tracee = Tracee.Start([Exe, "--wait", .. args], stdinPipe: true, stdoutPath: dir.File("out"));
        Poll.Until(() => tracee.StdoutFileText().Contains("ready\n", StringComparison.Ordinal), Step, "the usdt fixture to print ready");
        using var nozoki = NozokiCli.Start(["usdt", "--count", "1000", "fixture:one", "fixture:two", "-p", $"{tracee.Pid}"]);
        nozoki.WaitForStderr(s => s.Contains(UsdtOutput.ArmedLine(2, tracee.Pid), StringComparison.Ordinal), Step, "nozoki to arm the probes");
        tracee.Release();
        Assert.True(nozoki.WaitForExit(Timeout) == 0, nozoki.Describe());
        Assert.Equal(1000, ExternalProcess.SplitLines(nozoki.StdoutText()).Length);
        Assert.Equal(1000, UsdtOutput.Hits(nozoki.StdoutText()).Count);
        Assert.Equal(0, tracee.WaitForExit(Timeout).Code);
        Assert.Equal(UsdtOutput.Value(Untraced(Exe, args), "checksum"), UsdtOutput.Value(ExternalProcess.SplitLines(tracee.StdoutFileText()), "checksum"));
    }

    // ------------------------------------------------------------------ dlopen

    [Fact]
    public void A_library_dlopened_after_the_attach_is_armed_when_it_is_mapped()
    {
        const int loops = 5;
        using var dir = new TempDir();
        using var tracee = Tracee.Start([Exe, "--lib", ProbesFixtures.Lib, "--wait", "--loops", $"{loops}"], stdinPipe: true, stdoutPath: dir.File("out"));
        var pid = tracee.Pid;
        Poll.Until(() => tracee.StdoutFileText().Contains("ready\n", StringComparison.Ordinal), Step, "the usdt fixture to print ready");
        Assert.DoesNotContain(ProbesFixtures.Lib, File.ReadAllText($"/proc/{pid}/maps"), StringComparison.Ordinal);

        using var nozoki = NozokiCli.Start(["usdt", "fixture:one", "fixturelib:*", "-p", $"{pid}"]);
        nozoki.WaitForStderr(s => s.Contains(UsdtOutput.ArmedLine(1, pid), StringComparison.Ordinal), Step, "nozoki to arm fixture:one");
        tracee.Release(); // dlopen
        Poll.Until(() => tracee.StdoutFileText().Contains("loaded\n", StringComparison.Ordinal), Step, "the fixture to load its library");
        nozoki.WaitForStderr(s => s.Contains(UsdtOutput.ArmedLine(3, pid), StringComparison.Ordinal), Step, "nozoki to arm the library's 3 probes");
        var printed = ProbesFixtures.FixtureAddresses(tracee.StdoutFileText());
        Assert.Equal(1, ReadSemaphore(pid, printed["sem fixturelib:guarded"]));
        tracee.Release(); // the loop

        Assert.Equal(0, tracee.WaitForExit(Timeout).Code);
        Assert.True(nozoki.WaitForExit(Timeout) == 0, nozoki.Describe());
        Assert.EndsWith(UsdtOutput.ExitedLine(pid, 0), nozoki.StderrText(), StringComparison.Ordinal);
        var byName = UsdtOutput.Hits(nozoki.StdoutText()).GroupBy(h => h.Probe).ToDictionary(g => g.Key, g => g.Select(h => h.Args).ToList());
        Assert.Equal(["fixture:one", "fixturelib:guarded", "fixturelib:tick", "fixturelib:ticked"], byName.Keys.Order(StringComparer.Ordinal));
        for (var i = 0; i < loops; i++)
        {
            Assert.Equal([$"{(byte)(1 + i)}"], byName["fixture:one"][i]);
            Assert.Equal([$"{i}", $"{-i}", $"{i + 1}"], byName["fixturelib:tick"][i]);
            Assert.Equal([$"{i + 1}"], byName["fixturelib:guarded"][i]); // its semaphore was raised in the new object
            Assert.Empty(byName["fixturelib:ticked"][i]);
        }

        Assert.All(byName.Values, l => Assert.Equal(loops, l.Count));
    }

    // ------------------------------------------------------------------ threads

    [Fact]
    public void Four_threads_times_100000_hits_give_400000_intact_lines()
    {
        const int loops = 100_000, threads = 4;
        string[] args = ["--threads", $"{threads}", "--loops", $"{loops}"];
        using var nozoki = NozokiCli.Start(["usdt", "fixture:one", "--", Exe, .. args]);
        Assert.True(nozoki.WaitForExit(TimeSpan.FromSeconds(300)) == 0, nozoki.Describe());
        nozoki.AssertNoStackTrace();
        var text = nozoki.StdoutText();
        var (hits, own) = UsdtOutput.Split(text);
        Assert.Equal(loops * threads, hits.Count);
        Assert.Equal(["sem", "sem", "func", "guarded", "checksum"], own.Select(l => l.Split(' ')[0]));
        var pid = hits[0].Pid;
        Assert.All(hits, h => Assert.True(h.Pid == pid && h.Probe == "fixture:one" && h.Args.Length == 1, $"{h}"));
        // Each thread's hits arrive in its loop order, with its own values.
        var byTid = hits.GroupBy(h => h.Tid).ToList();
        Assert.Equal(threads, byTid.Count);
        foreach (var g in byTid)
        {
            var i = 0;
            foreach (var h in g)
            {
                if (h.Args[0] != $"{(byte)(1 + i)}") Assert.Fail($"thread {g.Key}, hit {i}: {h.Args[0]}, expected {(byte)(1 + i)}");
                i++;
            }

            Assert.Equal(loops, i);
        }

        var untraced = Untraced(Exe, args);
        Assert.Equal("0", UsdtOutput.Value(own, "guarded"));
        Assert.Equal(UsdtOutput.Value(untraced, "checksum"), UsdtOutput.Value(own, "checksum"));
        Assert.Equal(UsdtOutput.ArmedLine(1, pid) + UsdtOutput.ExitedLine(pid, 0), nozoki.StderrText());
    }

    // ------------------------------------------------------------------ --count

    [Fact]
    public void Count_reports_exactly_N_hits_then_detaches_and_the_process_runs_on()
    {
        const int loops = 20000;
        string[] args = ["--loops", $"{loops}"];
        using var dir = new TempDir();
        using var tracee = Tracee.Start([Exe, "--wait", "--sleep-us", "100", .. args], stdinPipe: true, stdoutPath: dir.File("out"));
        var pid = tracee.Pid;
        Poll.Until(() => tracee.StdoutFileText().Contains("ready\n", StringComparison.Ordinal), Step, "the usdt fixture to print ready");
        var probes = new ProbeResolver().Scan(pid).Probes.Where(p => p.ObjectPath == Exe).ToList();

        using var nozoki = NozokiCli.Start(["usdt", "--count", "10", "fixture:*", "-p", $"{pid}"]);
        nozoki.WaitForStderr(s => s.Contains(UsdtOutput.ArmedLine(probes.Count, pid), StringComparison.Ordinal), Step, "nozoki to arm the probes");
        tracee.Release();
        Assert.True(nozoki.WaitForExit(Timeout) == 0, nozoki.Describe());
        nozoki.AssertNoStackTrace();
        Assert.Contains(UsdtOutput.DetachedLine(pid), nozoki.StderrText(), StringComparison.Ordinal);

        var hits = UsdtOutput.Hits(nozoki.StdoutText());
        Assert.Equal(10, hits.Count);
        Assert.Equal(ExternalProcess.SplitLines(nozoki.StdoutText()).Length, hits.Count);
        // The first ten probes of the first loop, in the fixture's order.
        Assert.Equal(["zero", "one", "two", "three", "four", "five", "six", "mem_unsigned", "mem_signed", "global_signed"], hits.Select(h => h.Name));

        Assert.DoesNotContain("checksum", tracee.StdoutFileText(), StringComparison.Ordinal);
        Assert.Equal(0, ProcStatus.Get(pid).TracerPid);
        AssertSites(pid, probes, 0x90);
        Hurry(tracee);
        Assert.Equal(0, tracee.WaitForExit(Timeout).Code);
        var output = ExternalProcess.SplitLines(tracee.StdoutFileText());
        Assert.Equal(UsdtOutput.Value(Untraced(Exe, args), "checksum"), UsdtOutput.Value(output, "checksum"));
    }

    /// <summary>
    /// README's `nozoki usdt 'myapp:*' --count 100 -- ./myapp`: at the count nozoki restores everything and detaches,
    /// but the command stays its child, runs on untraced to its end, and nozoki waits for it and exits with its status
    /// (as run and trace -- CMD do), instead of leaving it running and reparented to init.
    /// </summary>
    [Fact]
    public void Count_with_a_launched_command_detaches_then_waits_for_the_command_and_exits_with_its_status()
    {
        using var dir = new TempDir();
        var output = dir.File("out");
        using var nozoki = NozokiCli.Start(["usdt", "--count", "10", "fixture:one", "--",
            "sh", "-c", $"exec {Exe} --loops 20000 --sleep-us 100 >{output} 2>/dev/null"]);
        // Once detached (nozoki now only waits for it), the command runs its remaining loops without sleeping.
        nozoki.WaitForStderr(s => s.Contains("nozoki: detached from PID ", StringComparison.Ordinal), Timeout, "nozoki to detach at the count");
        var detached = System.Text.RegularExpressions.Regex.Match(nozoki.StderrText(), "nozoki: detached from PID ([0-9]+);");
        Assert.True(detached.Success, nozoki.StderrText());
        Posix.TryKill(int.Parse(detached.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture), Posix.SIGUSR2);
        Assert.True(nozoki.WaitForExit(Timeout) == 0, nozoki.Describe());
        var hits = UsdtOutput.Hits(nozoki.StdoutText());
        Assert.Equal(Enumerable.Range(1, 10).Select(i => $"{i}"), hits.Select(h => h.Args.Single()));
        var pid = hits[0].Pid;
        var stderr = nozoki.StderrText();
        Assert.Contains(UsdtOutput.DetachedLine(pid), stderr, StringComparison.Ordinal);
        // Detached at the count (no exit reported while traced), then waited for: it has finished, and nozoki reaped it.
        Assert.DoesNotContain(UsdtOutput.ExitedLine(pid, 0), stderr, StringComparison.Ordinal);
        Assert.True(ProcStatus.Read(pid) is null, $"the command (PID {pid}) should have ended and been reaped by nozoki: {ProcStatus.Read(pid)}");
        Assert.Equal(UsdtOutput.Value(Untraced(Exe, "--loops", "20000"), "checksum"), UsdtOutput.Value(ExternalProcess.SplitLines(TempDir.ReadText(output)), "checksum"));

        // Its status is nozoki's, here that of a followed child's parent that ran on after the count.
        using var status = NozokiCli.Start(["usdt", "-f", "--count", "3", "fixture:one", "--",
            "sh", "-c", $"{Exe} --loops 2000 --sleep-us 100 >/dev/null; exit 9"]);
        Assert.True(status.WaitForExit(Timeout) == 9, status.Describe());
        Assert.Equal(["1", "2", "3"], UsdtOutput.Hits(status.StdoutText()).Select(h => h.Args.Single()));
    }

    // ------------------------------------------------------------------ C++ and Python

    [Fact]
    public void Cxx_libstdcxx_throw_and_catch_fire_once_per_exception()
    {
        const int throws = 25;
        using var nozoki = NozokiCli.Start(["usdt", "libstdcxx:throw", "libstdcxx:catch", "--", ProbesFixtures.Throw, $"{throws}"]);
        Assert.True(nozoki.WaitForExit(Timeout) == 0, nozoki.Describe());
        var (hits, own) = UsdtOutput.Split(nozoki.StdoutText());
        Assert.Equal([$"thrown {throws}"], own);
        Assert.Equal(throws, hits.Count(h => h.Probe == "libstdcxx:throw"));
        Assert.Equal(throws, hits.Count(h => h.Probe == "libstdcxx:catch"));
        Assert.Equal(2 * throws, hits.Count);
        // throw(obj, typeinfo): the same type every time
        Assert.Single(hits.Where(h => h.Probe == "libstdcxx:throw").Select(h => h.Args[1]).Distinct());
        Assert.StartsWith(UsdtOutput.ArmedLine(2, hits[0].Pid), nozoki.StderrText(), StringComparison.Ordinal);
    }

    [Fact]
    public void Cxx_attach_to_a_running_program_counts_its_throws()
    {
        const int throws = 40;
        using var dir = new TempDir();
        using var tracee = Tracee.Start([ProbesFixtures.Throw, $"{throws}", "--wait"], stdinPipe: true, stdoutPath: dir.File("out"));
        Poll.Until(() => tracee.StdoutFileText().Contains("ready\n", StringComparison.Ordinal), Step, "usdt_throw to print ready");
        using var nozoki = NozokiCli.Start(["usdt", "libstdcxx:throw", "-p", $"{tracee.Pid}"]);
        nozoki.WaitForStderr(s => s.Contains(UsdtOutput.ArmedLine(1, tracee.Pid), StringComparison.Ordinal), Step, "nozoki to arm libstdcxx:throw");
        tracee.Release();
        Assert.Equal(0, tracee.WaitForExit(Timeout).Code);
        Assert.True(nozoki.WaitForExit(Timeout) == 0, nozoki.Describe());
        Assert.Equal($"thrown {throws}\n", tracee.StdoutFileText()[^$"thrown {throws}\n".Length..]);
        Assert.Equal(throws, UsdtOutput.Hits(nozoki.StdoutText()).Count(h => h.Probe == "libstdcxx:throw" && h.Pid == tracee.Pid));
    }

    [Fact]
    public void Python_function_entry_shows_the_script_and_its_function_names()
    {
        const int loops = 20;
        using var dir = new TempDir();
        using var python = Tracee.Start([ProbesFixtures.Python, PythonScript, $"{loops}"], stdinPipe: true, stdoutPath: dir.File("out"), stderrPath: dir.File("err"));
        Poll.Until(() => python.StdoutFileText().Contains("ready\n", StringComparison.Ordinal), Step, "the python script to print ready");
        using var nozoki = NozokiCli.Start(["usdt", "python:function__entry", "--str", "1", "--str", "2", "-p", $"{python.Pid}"]);
        nozoki.WaitForStderr(s => s.Contains(UsdtOutput.ArmedLine(1, python.Pid), StringComparison.Ordinal), Step, "nozoki to arm python:function__entry");
        python.Release();
        Assert.True(python.WaitForExit(Timeout).Code == 0, python.StderrFileText());
        Assert.Contains($"called {loops} ", python.StdoutFileText(), StringComparison.Ordinal);
        Assert.True(nozoki.WaitForExit(Timeout) == 0, nozoki.Describe());

        var hits = UsdtOutput.Hits(nozoki.StdoutText());
        Assert.All(hits, h => Assert.True(h.Pid == python.Pid && h.Comm == "python3.11" && h.Args.Length == 3, $"{h}"));
        var script = File.ReadAllLines(PythonScript);
        foreach (var function in new[] { "nozoki_alpha_generator", "nozoki_beta_generator" })
        {
            // function__entry's line is the first line of the body (the one after the def).
            var line = Array.FindIndex(script, l => l.StartsWith($"def {function}(", StringComparison.Ordinal)) + 2;
            var mine = hits.Where(h => h.Args[1] == $"\"{function}\"").ToList();
            Assert.Equal(loops, mine.Count);
            Assert.All(mine, h => Assert.Equal([$"\"{PythonScript}\"", $"\"{function}\"", $"{line}"], h.Args));
        }
    }

    // ------------------------------------------------------------------ fork and exec

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Fork_child_runs_its_probes_unharmed_and_is_reported_only_with_f(bool follow)
    {
        const int loops = 5;
        using var nozoki = NozokiCli.Start(["usdt", .. follow ? new[] { "-f" } : [], "usdtfork:*", "--", Fork, "--loops", $"{loops}"]);
        Assert.True(nozoki.WaitForExit(Timeout) == 0, nozoki.Describe());
        nozoki.AssertNoStackTrace();
        var (hits, own) = UsdtOutput.Split(nozoki.StdoutText());
        var parent = int.Parse(own.Single(l => l.StartsWith("parent ", StringComparison.Ordinal)).Split(' ')[1], CultureInfo.InvariantCulture);
        var childLine = own.Single(l => l.StartsWith("child ", StringComparison.Ordinal) && l.Contains(" guarded ", StringComparison.Ordinal)).Split(' ');
        var child = int.Parse(childLine[1], CultureInfo.InvariantCulture);
        Assert.Contains("child exited 0", own); // not killed by SIGTRAP on an inherited int3
        Assert.Equal($"{loops}", UsdtOutput.Value(own, "after guarded")); // the parent's semaphores stay raised

        // The parent's hits, before and after the fork, are reported either way.
        foreach (var probe in new[] { "usdtfork:parent", "usdtfork:after" })
        {
            var mine = hits.Where(h => h.Probe == probe).ToList();
            Assert.Equal(Enumerable.Range(0, loops).Select(i => $"{parent} {i}"), mine.Select(h => string.Join(' ', h.Args)));
            Assert.All(mine, h => Assert.True(h.Pid == parent && h.Tid == parent, $"{h}"));
        }

        var childHits = hits.Where(h => h.Probe == "usdtfork:child").ToList();
        var stderr = nozoki.StderrText();
        if (!follow)
        {
            // Not followed: its inherited sites and semaphores were restored before it ran.
            Assert.Empty(childHits);
            Assert.DoesNotContain(hits, h => h.Pid == child);
            Assert.Equal("0", childLine[3]);
            Assert.Equal(UsdtOutput.ArmedLine(3, parent) + UsdtOutput.ExitedLine(parent, 0), stderr);
        }
        else
        {
            Assert.Equal(Enumerable.Range(0, loops).Select(i => $"{child} {i}"), childHits.Select(h => string.Join(' ', h.Args)));
            Assert.All(childHits, h => Assert.True(h.Pid == child && h.Tid == child && h.Comm == "usdt_fork", $"{h}"));
            Assert.Equal($"{loops}", childLine[3]); // the inherited raised semaphore
            Assert.Equal(3 * loops, hits.Count);
            Assert.Contains(UsdtOutput.ExitedLine(child, 0), stderr, StringComparison.Ordinal);
            Assert.EndsWith(UsdtOutput.ExitedLine(parent, 0), stderr, StringComparison.Ordinal);
        }
    }

    /// <summary>
    /// posix_spawn (glibc: clone with CLONE_VM|CLONE_VFORK): the child shares the parent's memory until it execs, so
    /// restoring "its" sites and semaphores would disarm the parent's. The parent's later probes must still be hit,
    /// with their semaphores still raised.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_posix_spawn_child_sharing_the_memory_does_not_disarm_the_parent(bool follow)
    {
        const int loops = 5;
        using var nozoki = NozokiCli.Start(["usdt", .. follow ? new[] { "-f" } : [], "usdtfork:*", "--", Fork, "--loops", $"{loops}", "--spawn"]);
        Assert.True(nozoki.WaitForExit(Timeout) == 0, nozoki.Describe());
        nozoki.AssertNoStackTrace();
        var (hits, own) = UsdtOutput.Split(nozoki.StdoutText());
        Assert.Contains("child exited 0", own);
        var parent = int.Parse(own.Single(l => l.StartsWith("parent ", StringComparison.Ordinal)).Split(' ')[1], CultureInfo.InvariantCulture);
        Assert.Equal(Enumerable.Range(0, loops).Select(i => $"{parent} {i}"), hits.Where(h => h.Probe == "usdtfork:parent").Select(h => string.Join(' ', h.Args)));
        Assert.Equal(Enumerable.Range(0, loops).Select(i => $"{parent} {i}"), hits.Where(h => h.Probe == "usdtfork:after").Select(h => string.Join(' ', h.Args)));
        Assert.Equal($"{loops}", UsdtOutput.Value(own, "after guarded"));
        Assert.EndsWith(UsdtOutput.ExitedLine(parent, 0), nozoki.StderrText(), StringComparison.Ordinal);
    }

    [Fact]
    public void Exec_from_a_shell_arms_the_probes_of_the_new_program()
    {
        var sites = ProbesFixtures.Readelf(Exe);
        using var nozoki = NozokiCli.Start(["usdt", "fixture:*", "--", "sh", "-c", $"exec {Exe} --loops 1"]);
        Assert.True(nozoki.WaitForExit(Timeout) == 0, nozoki.Describe());
        nozoki.AssertNoStackTrace();
        var (hits, own) = UsdtOutput.Split(nozoki.StdoutText());
        Assert.Equal(sites.Count, hits.Count);
        var bias = ProbesFixtures.Hex(UsdtOutput.Value(own, "func main")) - ProbesFixtures.NmValue(Exe, "main");
        CheckEveryProbe(hits.GroupBy(h => h.Probe).ToDictionary(g => g.Key, g => g.ToList()), 1, ProbesFixtures.NmValue(Exe, "g_name") + bias);
        Assert.Equal("1", UsdtOutput.Value(own, "guarded"));
        var pid = hits[0].Pid;
        // The shell itself has no such probe: said once its start-up is done (pending), before the exec matched.
        var pending = $"nozoki: no probe site matches fixture:* in PID {pid} (";
        var stderr = nozoki.StderrText();
        Assert.StartsWith(pending, stderr, StringComparison.Ordinal);
        Assert.Equal(UsdtOutput.ArmedLine(sites.Count, pid) + UsdtOutput.ExitedLine(pid, 0), stderr[(stderr.IndexOf('\n', StringComparison.Ordinal) + 1)..]);
    }

    /// <summary>
    /// An attached (-p) process that execs: the new program's probes are armed (a second "armed" line) and hit, as
    /// for a launched command whose shell execs (above). Before the exec the pattern matches python's probe.
    /// </summary>
    [Fact]
    public void Exec_in_an_attached_process_arms_the_probes_of_the_new_program()
    {
        using var dir = new TempDir();
        using var python = Tracee.Start([ProbesFixtures.Python, PythonScript, "2", "--exec", Exe, "--loops", "3"], stdinPipe: true,
            stdoutPath: dir.File("out"), stderrPath: dir.File("err"));
        var pid = python.Pid;
        Poll.Until(() => python.StdoutFileText().Contains("ready\n", StringComparison.Ordinal), Step, "the python script to print ready");
        using var nozoki = NozokiCli.Start(["usdt", "python:function__entry", "fixture:one", "-p", $"{pid}"]);
        nozoki.WaitForStderr(s => s.Contains(UsdtOutput.ArmedLine(1, pid), StringComparison.Ordinal), Step, "nozoki to arm python:function__entry");
        python.Release();
        Assert.True(python.WaitForExit(Timeout).Code == 0, python.StderrFileText());
        Assert.True(nozoki.WaitForExit(Timeout) == 0, nozoki.Describe());
        Assert.Contains("checksum ", python.StdoutFileText(), StringComparison.Ordinal); // the exec happened
        var hits = UsdtOutput.Hits(nozoki.StdoutText());
        Assert.Equal(4, hits.Count(h => h.Probe == "python:function__entry" && h.Comm == "python3.11"));
        Assert.Equal(["1", "2", "3"], hits.Where(h => h.Probe == "fixture:one").Select(h => h.Args.Single()));
        Assert.Equal(UsdtOutput.ArmedLine(1, pid) + UsdtOutput.ArmedLine(1, pid) + UsdtOutput.ExitedLine(pid, 0), nozoki.StderrText());
    }

    [Fact]
    public void Fork_then_exec_with_f_arms_the_child_program_and_exits_with_the_shell_status()
    {
        using var nozoki = NozokiCli.Start(["usdt", "-f", "fixture:one", "--", "sh", "-c", $"{Exe} --loops 3; exit 7"]);
        Assert.True(nozoki.WaitForExit(Timeout) == 7, nozoki.Describe());
        var (hits, own) = UsdtOutput.Split(nozoki.StdoutText());
        Assert.Equal(["1", "2", "3"], hits.Select(h => h.Args.Single()));
        var child = hits[0].Pid;
        Assert.Contains(UsdtOutput.ArmedLine(1, child), nozoki.StderrText(), StringComparison.Ordinal);
        Assert.Contains(UsdtOutput.ExitedLine(child, 0), nozoki.StderrText(), StringComparison.Ordinal);
        Assert.EndsWith(" exited with status 7\n", nozoki.StderrText(), StringComparison.Ordinal);
        Assert.Equal("0", UsdtOutput.Value(own, "guarded"));
    }

    // ------------------------------------------------------------------ helpers

    private static int CountOf(string text, string what)
    {
        var n = 0;
        for (var i = text.IndexOf(what, StringComparison.Ordinal); i >= 0; i = text.IndexOf(what, i + what.Length, StringComparison.Ordinal)) n++;
        return n;
    }

    private static int ReadSemaphore(int pid, ulong address)
    {
        Assert.True(Semaphores.TryRead(pid, address, out var v), $"could not read the semaphore at 0x{address:x} in PID {pid}");
        return v;
    }

    /// <summary>Every probe site in PID holds <paramref name="expected"/> (0x90 nop: unpatched; 0xcc int3: armed).</summary>
    private static void AssertSites(int pid, IEnumerable<ResolvedProbe> probes, byte expected)
    {
        Span<byte> b = stackalloc byte[1];
        foreach (var p in probes)
        {
            Assert.Equal(1, ProcessMemory.Read(pid, p.Address, b).BytesRead);
            Assert.True(b[0] == expected, $"{p.Site.FullName} at 0x{p.Address:x}: 0x{b[0]:x2}, expected 0x{expected:x2}");
        }
    }

    /// <summary>Runs a fixture without nozoki (stdin /dev/null); returns its stdout lines.</summary>
    internal static string[] Untraced(string file, params string[] args)
    {
        using var dir = new TempDir();
        using var t = Tracee.Start([file, .. args], stdoutPath: dir.File("out"));
        Assert.Equal(0, t.WaitForExit(Timeout).Code);
        return ExternalProcess.SplitLines(t.StdoutFileText());
    }

    /// <summary>Every probe of usdt.c (without the library), loop by loop, against the values the fixture computed.</summary>
    internal static void CheckEveryProbe(Dictionary<string, List<UsdtHitLine>> byName, int loops, ulong nameAddress)
    {
        static void Check(UsdtHitLine hit, string[] expected) =>
            Assert.True(expected.SequenceEqual(hit.Args), $"{hit.Probe}: got [{string.Join(", ", hit.Args)}], expected [{string.Join(", ", expected)}]");

        for (var i = 0; i < loops; i++)
        {
            foreach (var (probe, args) in UsdtFixtureArgs.ExecutableProbes(i, nameAddress)) Check(byName[probe][i], args);
        }
    }
}
