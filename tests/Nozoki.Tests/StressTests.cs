using System.Diagnostics;
using System.Text;
using Nozoki.Tests.Helpers;

namespace Nozoki.Tests;

/// <summary>
/// The tracee is sacred, under stress: thread churn, fork/exec churn, signal storms, output nobody reads and detaches
/// at random moments must never freeze the target, lose or double a line or a signal, or leave nozoki running.
/// Every wait is for an event (a line, an exit, a file's size) with a generous timeout; no test sleeps to prove that
/// something did not happen.
/// </summary>
[Collection(PtraceCollection.Name)]
public sealed partial class StressTests
{
    private static readonly TimeSpan Exit = TimeSpan.FromSeconds(60);

    public static TheoryData<string, int> ChurnCases => new()
    {
        { "out", 4 }, { "out", 32 },
        { "trace", 4 }, { "trace", 32 },
        { "usdt", 4 }, { "usdt", 32 },
    };

    /// <summary>
    /// 2,048 threads created and joined (4 or 32 at a time), each writing one distinct line (and firing churn:line):
    /// every line mirrored, traced or hit exactly once, and nozoki ends when the process ends.
    /// </summary>
    [Theory]
    [MemberData(nameof(ChurnCases))]
    public void Thread_churn_every_line_once_and_nozoki_exits_with_the_target(string command, int threads)
    {
        const int Lines = 2048;
        using var dir = new TempDir();
        var file = dir.File("churn.out");
        using var churn = Tracee.StartFixture("churn", ["--wait", $"{threads}", $"{Lines / threads}"], stdinPipe: true, stdoutPath: file);
        using var nozoki = NozokiCli.Start(command switch
        {
            "out" => ["out", $"{churn.Pid}"],
            "trace" => ["trace", "-e", "trace=write", "-p", $"{churn.Pid}"],
            _ => ["usdt", "churn:line", "-p", $"{churn.Pid}"],
        });
        WaitUntilTracing(nozoki, command, churn.Pid);
        churn.Release();
        Assert.Equal(0, churn.WaitForExit().Code);
        Assert.Equal(0, nozoki.WaitForExit(Exit));
        nozoki.AssertNoStackTrace();

        var written = NonEmptyLines(File.ReadAllText(file));
        Assert.Equal(Lines, written.Count);
        var seen = command switch
        {
            "out" => NonEmptyLines(nozoki.StdoutText()),
            "trace" => nozoki.StderrLines().Select(l => TraceWrite().Match(l)).Where(m => m.Success).Select(m => m.Groups[1].Value).ToList(),
            _ => UsdtOutput.Hits(nozoki.StdoutText()).Select(h => $"r{h.Args[0]} t{h.Args[1]}").ToList(),
        };
        AssertSameLinesOnce(written, seen);
    }

    /// <summary>`nozoki run` over thread churn writing to stderr: every line painted exactly once, exit status kept.</summary>
    [Theory]
    [InlineData(4)]
    [InlineData(32)]
    public void Thread_churn_under_run_paints_every_line_once(int threads)
    {
        const int Lines = 2048;
        using var nozoki = NozokiCli.Start(["run", "--color", "always", "--", Fixtures.Get("churn"), $"{threads}", $"{Lines / threads}", "2"]);
        Assert.Equal(0, nozoki.WaitForExit(Exit));
        var painted = nozoki.StderrText().Split("\e[1;31m", StringSplitOptions.RemoveEmptyEntries)
            .Select(p => p.Replace("\e[0m", "", StringComparison.Ordinal).TrimEnd('\n')).ToList();
        Assert.Equal(Lines, painted.Count);
        Assert.Equal(Lines, painted.Distinct().Count());
        Assert.All(painted, p => Assert.Matches("^r[0-9]+ t[0-9]+$", p));
    }

    public static TheoryData<string> DetachCommands => new() { "out", "trace", "usdt" };

    /// <summary>
    /// Detach by SIGINT, SIGTERM, SIGHUP or a closed stdout at a random moment while threads come and go (4 and 32 at
    /// a time), 34 times per command (100 in all): nozoki always exits 0, the process is never left stopped or traced
    /// and runs on, and no line is mirrored twice or made up.
    /// </summary>
    [Theory]
    [MemberData(nameof(DetachCommands))]
    public void Detach_at_random_moments_under_thread_churn_never_freezes_the_target(string command)
    {
        var tries = command == "out" ? 34 : 33;
        var random = new Random(command.GetHashCode(StringComparison.Ordinal));
        using var dir = new TempDir();
        var targets = new[] { 4, 32 }.Select(n =>
        {
            var file = dir.File($"churn{n}.out");
            return (Tracee: Tracee.StartFixture("churn", [$"{n}", "0"], stdoutPath: file), File: file);
        }).ToList();
        try
        {
            for (var i = 0; i < tries; i++)
            {
                var (target, file) = targets[i % 2];
                var cause = (i / 2) % 4;
                var stopAfter = random.Next(1, 4000);
                var mirrored = new MemoryStream();
                OutputSink? sink = cause == 3
                    ? chunk =>
                    {
                        mirrored.Write(chunk);
                        return mirrored.Length < stopAfter;
                    }
                    : null;
                using var nozoki = NozokiCli.Start(command switch
                {
                    "out" => ["out", $"{target.Pid}"],
                    "trace" => ["trace", "-e", "trace=write", "-o", dir.File($"trace{i}.txt"), "-p", $"{target.Pid}"],
                    _ => ["usdt", "churn:line", "-p", $"{target.Pid}"],
                }, sink);
                WaitUntilTracing(nozoki, command, target.Pid);
                if (cause == 3 && command == "trace")
                {
                    // trace writes to a file: close its stdout anyway (it must not matter) and stop it by SIGINT.
                    cause = 0;
                }

                if (cause == 3)
                {
                    nozoki.WaitUntil(() => nozoki.StdoutCount >= Math.Min(stopAfter, 1) || nozoki.HasExited, Exit, "some output");
                    nozoki.CloseStdout();
                }
                else
                {
                    Thread.Sleep(random.Next(0, 100)); // the random moment: not a wait for something not to happen
                    nozoki.Signal(cause switch { 0 => Posix.SIGINT, 1 => Posix.SIGTERM, _ => Posix.SIGHUP });
                }

                var code = nozoki.WaitForExit(TimeSpan.FromSeconds(20));
                Assert.True(code == 0, $"try {i} ({command}, cause {cause}): exit {code}\n{nozoki.StderrText()}");
                nozoki.AssertNoStackTrace();
                Ticker.AssertNotTraced(target.Pid);
                if (command == "out")
                {
                    var lines = NonEmptyLines(cause == 3 ? Encoding.UTF8.GetString(mirrored.ToArray()) : nozoki.StdoutText());
                    if (cause == 3 && lines.Count > 0 && !mirrored.ToArray().AsSpan().EndsWith("\n"u8)) lines.RemoveAt(lines.Count - 1);
                    Assert.Equal(lines.Count, lines.Distinct().Count());
                    var written = NonEmptyLines(File.ReadAllText(file)).ToHashSet();
                    Assert.All(lines, l => Assert.Contains(l, written));
                }
            }

            // Every target runs on, untraced: its file keeps growing.
            foreach (var (target, file) in targets)
            {
                var size = new FileInfo(file).Length;
                Ticker.AssertNotTraced(target.Pid);
                var watch = Stopwatch.StartNew();
                while (new FileInfo(file).Length == size && watch.Elapsed < TimeSpan.FromSeconds(10)) Thread.Sleep(10);
                Assert.True(new FileInfo(file).Length > size, $"PID {target.Pid} stopped writing after the detaches");
            }
        }
        finally
        {
            foreach (var (target, _) in targets) target.Dispose();
        }
    }

    /// <summary>
    /// A shell that runs /bin/true 600 times under `trace -f`: every fork and exec followed, each exec reported
    /// once with its result, and the command's status returned.
    /// </summary>
    [Fact]
    public void Fork_and_exec_churn_under_trace_f()
    {
        const int Runs = 600; // a fork+exec costs ~9 ms here untraced: 600 keep the test near 5 s
        using var dir = new TempDir();
        var output = dir.File("trace.txt");
        using var nozoki = NozokiCli.Start(["trace", "-f", "-e", "trace=execve", "-o", output, "--", "/bin/sh", "-c",
            $"i=0; while [ $i -lt {Runs} ]; do /bin/true; i=$((i+1)); done; exit 3"]);
        Assert.Equal(3, nozoki.WaitForExit(Exit));
        nozoki.AssertNoStackTrace();
        var lines = File.ReadAllLines(output);
        Assert.Equal(Runs, lines.Count(l => l.Contains("execve(\"/bin/true\"", StringComparison.Ordinal) && l.EndsWith("= 0", StringComparison.Ordinal)));
        Assert.Equal(Runs + 1, lines.Count(l => l.Contains("+++ exited with", StringComparison.Ordinal)));
    }

    /// <summary>`out -f` attached to a shell whose 200 children each write one line: every line mirrored once, in order.</summary>
    [Fact]
    public void Fork_and_exec_churn_under_out_f()
    {
        const int Runs = 200;
        using var dir = new TempDir();
        var file = dir.File("sh.out");
        using var sh = Tracee.Start(["/bin/sh", "-c", $"head -c 1 >/dev/null; i=0; while [ $i -lt {Runs} ]; do /bin/echo line $i; i=$((i+1)); done"],
            stdinPipe: true, stdoutPath: file);
        using var nozoki = NozokiCli.Start(["out", "-f", $"{sh.Pid}"]);
        nozoki.WaitForAttached(sh.Pid);
        sh.Release();
        Assert.Equal(0, sh.WaitForExit().Code);
        Assert.Equal(0, nozoki.WaitForExit(Exit));
        Assert.Equal(Enumerable.Range(0, Runs).Select(i => $"line {i}"), NonEmptyLines(nozoki.StdoutText()));
    }

    public static TheoryData<string, string> StormCases => new()
    {
        { "out", "usr1" }, { "out", "rt" }, { "trace", "usr1" }, { "trace", "rt" },
    };

    /// <summary>
    /// SIGUSR1 (each after the last was handled) and queued real-time signals at up to 10 kHz to a traced process:
    /// every signal delivered exactly once, in order; then nozoki detaches and the process is untouched.
    /// </summary>
    [Theory]
    [MemberData(nameof(StormCases))]
    public void Signal_storm_every_signal_delivered_once(string command, string mode)
    {
        var count = mode == "rt" ? 10000 : 5000;
        using var dir = new TempDir();
        var file = dir.File("storm.out");
        using var storm = Tracee.StartFixture("sigstorm", ["--wait", mode, $"{count}"], stdinPipe: true, stdoutPath: file);
        using var nozoki = NozokiCli.Start(command == "out"
            ? ["out", $"{storm.Pid}"]
            : ["trace", "-e", "trace=none", "-o", dir.File("trace.txt"), "-p", $"{storm.Pid}"]);
        WaitUntilTracing(nozoki, command, storm.Pid);
        storm.Release();
        var watch = Stopwatch.StartNew();
        while (!File.ReadAllText(file).Contains("done\n", StringComparison.Ordinal))
        {
            Assert.True(watch.Elapsed < Exit, $"the storm did not end: {File.ReadAllText(file)}");
            Thread.Sleep(20);
        }

        Assert.Equal($"sent {count} received {count} doubled 0 missing 0 out-of-order 0\ndone\n", File.ReadAllText(file));
        nozoki.Signal(Posix.SIGTERM);
        Assert.Equal(0, nozoki.WaitForExit(TimeSpan.FromSeconds(20)));
        if (command == "trace")
        {
            var signals = File.ReadAllLines(dir.File("trace.txt")).Count(l => l.StartsWith("--- SIG", StringComparison.Ordinal) && !l.StartsWith("--- SIGCHLD", StringComparison.Ordinal));
            Assert.Equal(count, signals);
        }

        Ticker.AssertNotTraced(storm.Pid);
        Posix.Kill(storm.Pid, Posix.SIGTERM);
        Assert.Equal(0, storm.WaitForExit().Code);
    }

    /// <summary>
    /// nozoki's stdout is a pipe nobody reads, so it cannot write and holds the tracee: SIGTERM must still detach
    /// within a second, leave the process running, and say how many bytes it dropped.
    /// </summary>
    [Fact]
    public void Blocked_output_then_SIGTERM_detaches_within_a_second_and_counts_the_loss()
    {
        using var dir = new TempDir();
        var file = dir.File("yes.out");
        using var yes = Tracee.Start(["yes", "a line that yes writes again and again"], stdoutPath: file);
        using var nozoki = NozokiCli.Start(["out", $"{yes.Pid}"], _ => false); // reads nothing, keeps the pipe open
        nozoki.WaitForAttached(yes.Pid);
        // nozoki mirrors each write of yes at its syscall exit, before yes goes on: once the pipe is full, nozoki's
        // ptrace thread waits in poll for room and yes waits in its tracing stop.
        // The test's reader takes one chunk and then stops: until it has, the pipe may still drain once.
        nozoki.WaitUntil(() => nozoki.StdoutCount > 0, Exit, "the reader's one chunk");
        var watch = Stopwatch.StartNew();
        while (!PtraceThreadPolls(nozoki.Pid) || ProcStatus.Get(yes.Pid).State != 't')
        {
            Assert.True(watch.Elapsed < Exit, "nozoki's output never filled up");
            Thread.Sleep(5);
        }

        var sent = Stopwatch.StartNew();
        nozoki.Signal(Posix.SIGTERM);
        var code = nozoki.WaitForExit(TimeSpan.FromSeconds(10));
        var took = sent.Elapsed;
        Assert.Equal(0, code);
        Assert.True(took < TimeSpan.FromSeconds(1), $"nozoki took {took.TotalMilliseconds:0} ms to detach");
        Assert.True(System.Text.RegularExpressions.Regex.IsMatch(nozoki.StderrText(), "nozoki: [1-9][0-9]* bytes of output were dropped"), $"no count of dropped bytes:\n{nozoki.StderrText()}\nfile {new FileInfo(file).Length} read {nozoki.StdoutCount}");
        Ticker.AssertNotTraced(yes.Pid);
        var size = new FileInfo(file).Length;
        watch.Restart();
        while (new FileInfo(file).Length == size && watch.Elapsed < TimeSpan.FromSeconds(10)) Thread.Sleep(5);
        Assert.True(new FileInfo(file).Length > size, "yes stopped writing after nozoki detached");
    }

    /// <summary>The target is killed with SIGKILL while threads churn: nozoki says so and exits at once.</summary>
    [Fact]
    public void Target_killed_during_thread_churn_ends_nozoki()
    {
        using var churn = Tracee.StartFixture("churn", ["32", "0"]);
        using var nozoki = NozokiCli.Start(["out", $"{churn.Pid}"]);
        nozoki.WaitForAttached(churn.Pid);
        nozoki.WaitUntil(() => nozoki.StdoutCount > 1000, Exit, "some mirrored lines");
        Posix.Kill(churn.Pid, Posix.SIGKILL);
        Assert.Equal(0, nozoki.WaitForExit(TimeSpan.FromSeconds(10)));
        Assert.Contains($"nozoki: PID {churn.Pid} killed by SIGKILL", nozoki.StderrText(), StringComparison.Ordinal);
    }

    private static void WaitUntilTracing(ExternalProcess nozoki, string command, int pid)
    {
        if (command == "usdt")
            nozoki.WaitForStderr(s => s.Contains(UsdtOutput.ArmedLine(1, pid), StringComparison.Ordinal), NozokiCli.AttachTimeout, "the probe armed");
        else
            nozoki.WaitForAttached(pid);
    }

    /// <summary>nozoki's ptrace thread ("nozoki ptrace N") is asleep in poll(2): it waits for room in its output.</summary>
    private static bool PtraceThreadPolls(int pid)
    {
        foreach (var task in Directory.EnumerateDirectories($"/proc/{pid}/task"))
        {
            try
            {
                if (File.ReadAllText(Path.Combine(task, "comm")).StartsWith("nozoki ptrace", StringComparison.Ordinal))
                    return File.ReadAllText(Path.Combine(task, "wchan")).Contains("poll", StringComparison.Ordinal);
            }
            catch (IOException)
            {
            }
        }

        return false;
    }

    private static List<string> NonEmptyLines(string text) => [.. text.Split('\n', StringSplitOptions.RemoveEmptyEntries)];

    private static void AssertSameLinesOnce(List<string> written, List<string> seen)
    {
        var dup = seen.GroupBy(l => l).Where(g => g.Count() > 1).Select(g => g.Key).Take(5).ToList();
        Assert.True(dup.Count == 0, $"seen more than once: {string.Join(", ", dup)}");
        var missing = written.Except(seen).Take(5).ToList();
        Assert.True(missing.Count == 0, $"{written.Count - seen.Count} lines not seen, e.g. {string.Join(", ", missing)}");
        Assert.Equal(written.Count, seen.Count);
    }

    // The entry of each write, finished (`= 6`) or not (`<unfinished ...>`, when another thread's stop came between).
    [System.Text.RegularExpressions.GeneratedRegex("^(?:\\[pid +\\d+\\] )?write\\(1, \"(r\\d+ t\\d+)\\\\n\", \\d+")]
    private static partial System.Text.RegularExpressions.Regex TraceWrite();
}
