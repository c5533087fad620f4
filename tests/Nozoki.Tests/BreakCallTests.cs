using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using Nozoki.Breakpoints;
using Nozoki.Symbols;
using Nozoki.Tests.Helpers;
using Xunit.Abstractions;

namespace Nozoki.Tests;

/// <summary>
/// `nozoki break --call FUNC` on the C fixtures: the function runs once per hit in the hit thread (its output under the
/// hit, and still in the process's own stdout and stderr; its return value; a fault or a timeout reported with the
/// thread restored), after the backtrace is taken; the held time of a hit includes the call; and the process goes on
/// as it was (its own checks of its registers and stack right, untraced, its code bytes its file's). And `-p PID,PID`:
/// one --count over several processes, each left as it was; and what held a process with uprobes (ring pressure).
/// </summary>
[Collection(PtraceCollection.Name)]
public sealed partial class BreakCallTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    /// <summary>call_target, looping over tick every 200 us; stdout and stderr files.</summary>
    private sealed class CallTarget : IDisposable
    {
        private readonly TempDir _dir = new();

        public CallTarget()
        {
            Tracee = Tracee.Start([Fixtures.Get("call_target")], stdoutPath: _dir.File("out"), stderrPath: _dir.File("err"));
            Poll.Until(() => Tracee.StdoutFileText().Contains("ready", StringComparison.Ordinal), Timeout, "call_target's ready line");
            Before = InferiorCallTests.AskStatus(Tracee);
        }

        public Tracee Tracee { get; }

        public int Pid => Tracee.Pid;

        public InferiorCallTests.Status Before { get; }

        /// <summary>Untraced, its code as its file's (tick and _start, where a call's return int3 was), still looping, no mismatch, no SIGSEGV.</summary>
        public InferiorCallTests.Status AssertLeftAsItWas()
        {
            BreakTests.AssertLeftAsItWas(Pid, "tick", "_start");
            var after = InferiorCallTests.AskStatus(Tracee);
            Assert.True(after.Loops > Before.Loops, "call_target goes on looping");
            Assert.Equal(0, after.Mismatches);
            Assert.Equal(0, after.Segv);
            return after;
        }

        public void Dispose()
        {
            Tracee.Dispose();
            _dir.Dispose();
        }
    }

    private static List<JsonElement> Hits(string stdout) =>
        ExternalProcess.SplitLines(stdout).Select(NozokiCli.ParseJson).Where(o => o.TryGetProperty("location", out _)).ToList();

    private (int Code, string Stdout, string Stderr) Break(params string[] args)
    {
        var r = NozokiCli.Run(["break", .. args]);
        output.WriteLine($"exit {r.Code}\n{r.Stdout}\n{r.Stderr}");
        NozokiCli.AssertNoStackTrace(r.Stdout, r.Stderr);
        return r;
    }

    [GeneratedRegex(@"^\d\d:\d\d:\d\d\.\d{6} call_target (\d+) (\d+) call_target!tick$")]
    private static partial Regex TickHitLine();

    [Fact]
    public void Each_hit_calls_the_function_once_and_shows_its_output_under_the_hit_which_the_process_also_writes()
    {
        using var p = new CallTarget();
        var (code, stdout, stderr) = Break("-p", $"{p.Pid}", "tick", "--call", "say_hello", "--count", "3");
        Assert.Equal(0, code);

        // Each hit: its line, the call's line (4242 = 0x1092), then what it wrote to fds 1 and 2, in order, indented.
        var lines = ExternalProcess.SplitLines(stdout);
        Assert.Equal(12, lines.Length);
        for (var i = 0; i < 12; i += 4)
        {
            var m = TickHitLine().Match(lines[i]);
            Assert.True(m.Success, lines[i]);
            Assert.Equal($"{p.Pid}", m.Groups[1].Value);
            Assert.Matches(@"^    call say_hello\(\) = 0x1092 \(\d+\.\d us\)$", lines[i + 1]);
            Assert.Equal("    hello from the call", lines[i + 2]);
            Assert.Equal("    hello on stderr", lines[i + 3]);
        }

        Assert.Contains("nozoki: tick: armed 1 site in PID", stderr, StringComparison.Ordinal);
        Assert.Contains("(ptrace breakpoint)", stderr, StringComparison.Ordinal);
        Assert.Matches(@"(?m)^nozoki: 3 hits; hit threads held per hit \(ptrace stop to resume\): median [\d.]+ us, p99 [\d.]+ us, max [\d.]+ us \(say_hello\(\) calls included\)$", stderr);

        // The process's own stdout and stderr got every byte too, as with gdb's call.
        Assert.Equal(3, Regex.Count(p.Tracee.StdoutFileText(), "^hello from the call$", RegexOptions.Multiline));
        Assert.Equal("hello on stderr\nhello on stderr\nhello on stderr\n", p.Tracee.StderrFileText());
        p.AssertLeftAsItWas();
    }

    [Theory]
    [InlineData("brk_call_me")]
    [InlineData("brk_target")] // the site's own function: every site is disarmed during the call, so it runs through
    public void The_backtrace_is_taken_before_the_call_and_json_has_the_call_object(string function)
    {
        using var p = new BreakTests.Running(BreakTests.Chain(false), "chain");
        p.WaitFor("ready");
        var (code, stdout, _) = Break("-p", $"{p.Pid}", "brk_target", "--call", function, "--count", "3", "--backtrace", "--json");
        Assert.Equal(0, code);
        var hits = Hits(stdout);
        Assert.Equal(3, hits.Count);
        for (var i = 0; i < hits.Count; i++)
        {
            var hit = hits[i];
            var names = hit.GetProperty("frames").EnumerateArray().Select(f => f.TryGetProperty("symbol", out var s) ? s.GetString() : null).ToList();
            Assert.Equal(["brk_target", "chain_c", "chain_b", "chain_a", "run_loop"], names.Take(5));
            var call = hit.GetProperty("call");
            Assert.Equal(function, call.GetProperty("function").GetString());
            Assert.Equal("returned", call.GetProperty("outcome").GetString());
            Assert.Equal("", call.GetProperty("output").GetString());
            Assert.True(call.GetProperty("held_us").GetDouble() > 0);
            Assert.False(call.TryGetProperty("problem", out _));
            var returned = ulong.Parse(call.GetProperty("return").GetString()![2..], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            if (function == "brk_call_me")
            {
                // It counts its calls: one per hit, none more.
                Assert.Equal((ulong)(i + 1), returned);
            }
            else
            {
                // brk_target(x) = x * 2654435761 + 1, called with the hit's own rdi (the registers are the hit's).
                var x = hit.GetProperty("args")[0].GetUInt64();
                Assert.Equal(unchecked((x * 2654435761UL) + 1), returned);
            }
        }

        BreakTests.AssertLeftAsItWas(p.Pid, "brk_target", "_start");
        p.AssertFinishesRight();
    }

    [Fact]
    public void With_follow_each_process_of_a_tree_gets_its_calls_in_its_own_threads()
    {
        // forker: parent, child and grandchild each write 50 lines at once, so that one's trap often comes while
        // another is in its call. getpid() returns each hit's own PID (the call ran in the hit thread, its syscall
        // and all).
        var (code, stdout, stderr) = Break("libc.so.6:write", "-f", "--json", "--call", "getpid", "--", Fixtures.Get("forker"), "50");
        Assert.Equal(0, code);
        var lines = ExternalProcess.SplitLines(stdout);
        var hits = Hits(string.Concat(lines.Where(l => l.StartsWith('{')).Select(l => l + "\n")));
        Assert.Equal(3, hits.Select(h => h.GetProperty("pid").GetInt32()).Distinct().Count());
        Assert.Equal(150, hits.Count);
        Assert.All(hits, h =>
        {
            var call = h.GetProperty("call");
            Assert.Equal("returned", call.GetProperty("outcome").GetString());
            Assert.Equal($"0x{h.GetProperty("pid").GetInt32():x}", call.GetProperty("return").GetString());
        });
        foreach (var who in new[] { "parent", "child", "grandchild" })
            Assert.Equal(Enumerable.Range(0, 50).Select(i => $"{who} {i}"), lines.Where(l => l.StartsWith(who + " ", StringComparison.Ordinal)));
        Assert.Matches(@"(?m)^nozoki: 150 hits; hit threads held per hit", stderr);
    }

    [Fact]
    public void A_call_that_faults_is_reported_with_the_thread_restored_and_the_fault_not_delivered()
    {
        using var p = new CallTarget();
        var (code, stdout, stderr) = Break("-p", $"{p.Pid}", "tick", "--call", "fault", "--count", "2");
        Assert.Equal(0, code);
        var fault = Assert.Single(ProcessSymbols.ForProcess(p.Pid).Resolve("fault")).Address;
        var problems = ExternalProcess.SplitLines(stderr).Where(l => l.StartsWith("nozoki: fault faulted", StringComparison.Ordinal)).ToList();
        Assert.Equal(2, problems.Count);
        foreach (var line in problems)
        {
            var m = Regex.Match(line, @"^nozoki: fault faulted: SIGSEGV at 0x8 \(pc 0x([0-9a-f]+)\); not delivered, thread restored$");
            Assert.True(m.Success, line);
            Assert.InRange(ulong.Parse(m.Groups[1].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture), fault, fault + 64);
        }

        Assert.Equal(2, Regex.Count(stdout, @"^    call fault\(\): fault faulted: SIGSEGV at 0x8 \(pc 0x[0-9a-f]+\); not delivered, thread restored \([\d.]+ us\)$", RegexOptions.Multiline));
        p.AssertLeftAsItWas();
        Assert.Equal("", p.Tracee.StderrFileText()); // its SIGSEGV handler never ran
    }

    [Fact]
    public void A_call_that_does_not_return_is_abandoned_at_the_timeout_and_no_more_calls_are_made_in_that_process()
    {
        using var p = new CallTarget();
        var (code, stdout, stderr) = Break("-p", $"{p.Pid}", "tick", "--call", "spin", "--call-timeout", "0.3", "--count", "3", "--json");
        Assert.Equal(0, code);
        var hits = Hits(stdout);
        Assert.Equal(3, hits.Count);
        var call = hits[0].GetProperty("call");
        Assert.Equal("timed_out", call.GetProperty("outcome").GetString());
        Assert.StartsWith("spin did not return within 0.3 s: abandoned, thread restored", call.GetProperty("problem").GetString(), StringComparison.Ordinal);
        Assert.InRange(call.GetProperty("held_us").GetDouble(), 300_000, 10_000_000);
        Assert.All(hits.Skip(1), h => Assert.False(h.TryGetProperty("call", out _)));
        var problem = Assert.Single(ExternalProcess.SplitLines(stdout).Select(NozokiCli.ParseJson),
            o => o.TryGetProperty("event", out var e) && e.GetString() == "problem" && o.GetProperty("message").GetString()!.StartsWith("spin", StringComparison.Ordinal));
        Assert.EndsWith($"PID {p.Pid}: no more calls (the next could wait for what the abandoned one holds)", problem.GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.Matches(@"(?m)^nozoki: 3 hits; hit threads held per hit", stderr);
        p.AssertLeftAsItWas();
    }

    [Theory]
    [InlineData(2)]  // SIGINT
    [InlineData(15)] // SIGTERM
    public void A_signal_to_nozoki_during_a_call_lets_the_call_finish_and_leaves_the_process_as_it_was(int signo)
    {
        // slow() sleeps 300 ms between its two lines, and tick comes 200 us after it returns: a signal sent when its
        // first line is out (the process's own stdout) comes in the middle of a call.
        using var p = new CallTarget();
        using var nozoki = NozokiCli.Start(["break", "-p", $"{p.Pid}", "tick", "--call", "slow"]);
        nozoki.WaitForAttached(p.Pid);
        Poll.Until(() => p.Tracee.StdoutFileText().Contains("slow start", StringComparison.Ordinal), Timeout, "a call to start");
        nozoki.Signal(signo);
        Assert.Equal(0, nozoki.WaitForExit(NozokiCli.ExitTimeout));
        nozoki.AssertNoStackTrace();
        output.WriteLine(nozoki.StdoutText() + nozoki.StderrText());
        Assert.Matches(@"(?m)^    call slow\(\) = 0x7 \(\d+\.\d us\)$", nozoki.StdoutText());
        Assert.Matches(@"(?m)^nozoki: [1-9]\d* hits?; hit threads held per hit", nozoki.StderrText());
        // Every call it began, it finished: as many ends as starts in the process's own output.
        var own = p.Tracee.StdoutFileText();
        Assert.Equal(Regex.Count(own, "^slow start$", RegexOptions.Multiline), Regex.Count(own, "^slow end$", RegexOptions.Multiline));
        p.AssertLeftAsItWas();
    }

    [Fact]
    public void The_held_time_of_a_hit_includes_the_call_as_the_process_itself_measures_it()
    {
        using var p = new CallTarget();
        var (code, stdout, stderr) = Break("-p", $"{p.Pid}", "tick", "--call", "slow", "--count", "2");
        Assert.Equal(0, code);
        Assert.Equal(2, Regex.Count(stdout, @"^    call slow\(\) = 0x7 \(\d{6,}\.\d us\)$", RegexOptions.Multiline));

        // slow() sleeps 300 ms: each hit held its thread at least that long, and the process's own clock around its
        // tick calls saw it too.
        var m = Regex.Match(stderr, @"(?m)^nozoki: 2 hits; hit threads held per hit \(ptrace stop to resume\): median ([\d.]+) us, p99 [\d.]+ us, max ([\d.]+) us \(slow\(\) calls included\)$");
        Assert.True(m.Success, stderr);
        Assert.True(double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) >= 300_000, m.Value);
        var after = p.AssertLeftAsItWas();
        Assert.True(after.TickNs - p.Before.TickNs >= 600_000_000, $"the fixture's tick time grew by {after.TickNs - p.Before.TickNs} ns");
    }

    [Theory]
    [InlineData(3, "--call", "say_helo", "nozoki: error: --call say_helo: no function say_helo", "nearest: say_hello")]
    [InlineData(2, "--call", "slow*", "nozoki: error: --call slow*: matches 2 functions (", "; name one")]
    [InlineData(3, "--call", "nosuchlib.so:say_hello", "nozoki: error: --call nosuchlib.so:say_hello: no module nosuchlib.so", "")]
    [InlineData(2, "--call", "mismatches", "nozoki: error: --call mismatches: ", "not code")]
    public void An_unknown_function_to_call_is_one_line_with_its_exit_code_and_nothing_left_in_the_process(int expected, string option, string function, string starts, string contains)
    {
        using var p = new CallTarget();
        var (code, stdout, stderr) = Break("-p", $"{p.Pid}", "tick", option, function);
        var line = Assert.Single(ExternalProcess.SplitLines(stderr));
        Assert.StartsWith(starts, line, StringComparison.Ordinal);
        Assert.Contains(contains, line, StringComparison.Ordinal);
        Assert.Equal("", stdout);
        Assert.Equal(expected, code);
        p.AssertLeftAsItWas();
    }

    [Fact]
    public void A_launched_command_without_the_function_to_call_has_its_hits_reported_without_it_and_says_so_once()
    {
        var (code, stdout, stderr) = Break("brk_target", "--call", "no_such_function", "--count", "3", "--json", "--", BreakTests.Chain(false), "bench", "1000", "now");
        Assert.Equal(0, code); // the command's own status
        var lines = ExternalProcess.SplitLines(stdout);
        var hits = Hits(string.Concat(lines.Where(l => l.StartsWith('{')).Select(l => l + "\n")));
        Assert.Equal(3, hits.Count);
        Assert.All(hits, h => Assert.False(h.TryGetProperty("call", out _)));
        var said = lines.Where(l => l.Contains("\"event\":\"problem\"", StringComparison.Ordinal)).ToList();
        Assert.Single(said);
        Assert.Contains("call no_such_function: no function no_such_function", said[0], StringComparison.Ordinal);
        Assert.Contains("reported without it until a module that defines it is loaded", said[0], StringComparison.Ordinal);
        Assert.Contains(lines, l => l.StartsWith("ns_per_call=", StringComparison.Ordinal) && l.EndsWith(" ok calls=1000 wrong=0", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("break", "-p", "1", "f", "--call", "")]
    [InlineData("break", "-p", "1", "f", "--call", "g", "--via", "uprobe")]
    [InlineData("break", "-p", "1", "f", "--call-timeout", "1")]
    [InlineData("break", "-p", "1", "f", "--call", "g", "--call-timeout", "0")]
    [InlineData("break", "-p", "1", "f", "--call", "g", "--call-timeout", "x")]
    [InlineData("break", "-p", "1,x", "f")]
    [InlineData("break", "-p", "1,0", "f")]
    public void Bad_call_and_pid_list_arguments_are_one_line_with_exit_2(params string[] args)
    {
        var (code, stdout, stderr) = Break(args);
        Assert.StartsWith("nozoki: error: ", Assert.Single(ExternalProcess.SplitLines(stderr)), StringComparison.Ordinal);
        Assert.Equal("", stdout);
        Assert.Equal(2, code);
    }

    /// <summary>Two brk_chain processes in `burst 5`: one byte on stdin, 5 hits; the next, their check and exit.</summary>
    private static (BreakTests.Running A, BreakTests.Running B) TwoBursts()
    {
        var a = new BreakTests.Running(BreakTests.Chain(false), "burst", "5");
        var b = new BreakTests.Running(BreakTests.Chain(true), "burst", "5");
        a.WaitFor("ready");
        b.WaitFor("ready");
        return (a, b);
    }

    [Theory]
    [InlineData("uprobe")]
    [InlineData("ptrace")]
    [InlineData("call")]
    public void Several_pids_are_traced_in_one_run_with_one_count_over_all_and_each_left_as_it_was(string how)
    {
        var (a, b) = TwoBursts();
        using (a)
        using (b)
        {
            string[] mechanism = how == "call" ? ["--call", "brk_call_me"] : ["--via", how];
            using var nozoki = NozokiCli.Start(["break", "-p", $"{a.Pid},{b.Pid}", "brk_target", "--count", "10", "--json", .. mechanism]);
            nozoki.WaitUntil(() => nozoki.StdoutLines().Count(l => l.Contains("\"event\":\"attached\"", StringComparison.Ordinal)) == 2, NozokiCli.AttachTimeout,
                "nozoki to attach to both");
            a.Tracee.Release();
            b.Tracee.Release();
            Assert.Equal(0, nozoki.WaitForExit(NozokiCli.ExitTimeout));
            nozoki.AssertNoStackTrace();
            output.WriteLine(nozoki.StderrText());
            var hits = Hits(nozoki.StdoutText());
            Assert.Equal(10, hits.Count);
            Assert.Equal(5, hits.Count(h => h.GetProperty("pid").GetInt32() == a.Pid));
            Assert.Equal(5, hits.Count(h => h.GetProperty("pid").GetInt32() == b.Pid));
            foreach (var pid in new[] { a.Pid, b.Pid })
            {
                // With --call each process has its own function: it counted 1..5.
                if (how == "call")
                {
                    Assert.Equal(["0x1", "0x2", "0x3", "0x4", "0x5"],
                        hits.Where(h => h.GetProperty("pid").GetInt32() == pid).Select(h => h.GetProperty("call").GetProperty("return").GetString()));
                }

                Assert.Contains($"\"event\":\"detached\",\"pid\":{pid}", nozoki.StdoutText(), StringComparison.Ordinal);
            }

            var stderr = nozoki.StderrText();
            Assert.Matches(@"(?m)^nozoki: 10 hits", stderr);
            if (how == "uprobe")
                Assert.Matches(@"; (never held for ring pressure|held for ring pressure \d+ times?, [\d.]+ ms in all)$", stderr.TrimEnd());
            BreakTests.AssertLeftAsItWas(a.Pid, "brk_target");
            BreakTests.AssertLeftAsItWas(b.Pid, "brk_target");
            a.AssertFinishesRight();
            b.AssertFinishesRight();
        }
    }

    [Fact]
    public void One_of_several_pids_that_exits_while_armed_ends_the_run_with_exit_6_and_the_others_are_left_as_they_were()
    {
        var (a, b) = TwoBursts();
        using (a)
        using (b)
        {
            using var nozoki = NozokiCli.Start(["break", "-p", $"{a.Pid},{b.Pid}", "brk_target"]);
            nozoki.WaitUntil(() => nozoki.StderrLines().Count(l => l.StartsWith("nozoki: attached", StringComparison.Ordinal)) == 2, NozokiCli.AttachTimeout,
                "nozoki to attach to both");
            a.Tracee.Release();
            a.AssertFinishesRight();
            nozoki.WaitForStderr(s => s.Contains($"nozoki: PID {a.Pid} exited", StringComparison.Ordinal), Timeout, "nozoki to see the exit");
            nozoki.Signal(Signals.SIGINT);
            Assert.Equal(6, nozoki.WaitForExit(NozokiCli.ExitTimeout));
            nozoki.AssertNoStackTrace();
            Assert.Contains($"nozoki: error: PID {a.Pid} exited while armed (5 hits in all)", nozoki.StderrText(), StringComparison.Ordinal);
            Assert.DoesNotContain($"PID {b.Pid} exited", nozoki.StderrText(), StringComparison.Ordinal);
            BreakTests.AssertLeftAsItWas(b.Pid, "brk_target");
            b.Tracee.Release();
            b.WaitFor("burst");
            b.AssertFinishesRight();
        }
    }

    /// <summary>An output slower than the hits: sleeps StallMs after every StallEvery hits.</summary>
    private sealed class SlowSink(int stallEvery, int stallMs) : IBreakSink
    {
        public long Hits;
        public readonly List<string> Problems = [];

        public void OnHit(in BreakHit hit)
        {
            if (++Hits % stallEvery == 0) Thread.Sleep(stallMs);
        }

        public void OnProblem(string message) => Problems.Add(message);
    }

    [Fact]
    public async Task With_uprobes_the_tracer_counts_the_holds_an_output_slower_than_the_hits_made()
    {
        // 6,000 uprobe hits as fast as the loop makes them (a few microseconds each, tens on a loaded machine), an
        // output of 5,000 a second: a 256 KiB ring (~1,300 of these samples) fills past half whenever the loop makes
        // more than ~6,000 hits a second, and the process is held until the reader has caught up; nothing is lost.
        const int n = 6_000;
        using var p = new BreakTests.Running(BreakTests.Chain(false), "bench", $"{n}");
        p.WaitFor("ready");
        var sink = new SlowSink(100, 20);
        using var tracer = new BreakTracer(["brk_target"], sink, new BreakOptions { Mechanism = BreakMechanism.Uprobe, UprobeRingPages = 64 });
        Nozoki.Tracing.TraceResult result;
        using (var session = Nozoki.Tracing.TraceSession.Attach(p.Pid, tracer, new Nozoki.Tracing.TraceOptions { TraceSyscalls = false }))
        {
            p.Tracee.Release();
            result = await session.Completion.WaitAsync(Timeout);
        }

        tracer.Dispose(); // the reader's last samples
        Assert.Null(result.Error);
        Assert.Equal(new Nozoki.Tracing.ExitStatus(0, 0), result.TargetExit);
        Assert.Matches($"(?m)^ns_per_call=[\\d.]+ ok calls={n} wrong=0$", p.Tracee.StdoutFileText());
        Assert.Empty(sink.Problems);
        Assert.Equal(0, tracer.Lost);
        Assert.Equal(n, sink.Hits);
        Assert.Equal(n, tracer.Hits);
        Assert.Null(tracer.Holds()); // no hit stopped its thread
        var holds = tracer.PressureHolds;
        output.WriteLine($"held {holds.Times} times, {holds.Total.TotalMilliseconds:0.0} ms in all");
        Assert.True(holds.Times > 0, "the output never fell behind: the test did not test holding");
        Assert.True(holds.Total > TimeSpan.Zero);
    }

    [Fact]
    public void A_pid_of_the_list_that_does_not_exist_is_the_usual_error_and_no_process_is_attached()
    {
        using var p = new BreakTests.Running(BreakTests.Chain(false), "chain");
        p.WaitFor("ready");
        var (code, stdout, stderr) = Break("-p", $"{p.Pid},2147483646", "brk_target", "--call", "brk_call_me");
        Assert.Equal("nozoki: error: no process with PID 2147483646", Assert.Single(ExternalProcess.SplitLines(stderr)));
        Assert.Equal("", stdout);
        Assert.Equal(3, code);
        BreakTests.AssertLeftAsItWas(p.Pid, "brk_target");
        p.AssertFinishesRight();
    }
}
