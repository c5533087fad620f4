using System.Globalization;
using Nozoki.Inspection;
using Nozoki.Tests.Helpers;

namespace Nozoki.Tests;

/// <summary>
/// `nozoki inspect --watch` (on a terminal and not), and what happens when the process or its descriptors go away
/// while they are being read: no exception, one clear line, the process untouched.
/// </summary>
[Collection(PtraceCollection.Name)]
public sealed class InspectWatchTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private static int Rounds(ExternalProcess p) => p.StdoutLines().Count(l => l.StartsWith("--- nozoki inspect ", StringComparison.Ordinal));

    [Fact]
    public void Watch_without_a_terminal_adds_rounds_sees_a_new_descriptor_and_ends_on_SIGINT()
    {
        using var k = KindsFixture.Start("simple");
        using var nozoki = NozokiCli.Start(["inspect", "--fds", "--watch", "0.2", $"{k.Pid}"]);
        nozoki.WaitUntil(() => Rounds(nozoki) >= 2, Timeout, "two rounds of --watch");
        Assert.DoesNotContain("\e[", nozoki.StdoutText(), StringComparison.Ordinal); // not a terminal: plain text
        var fd = k.OpenOneMore();
        nozoki.WaitUntil(() => nozoki.StdoutLines().Any(l => l.StartsWith($"{fd} ", StringComparison.Ordinal) && l.EndsWith("/dev/null (character device 1:3)", StringComparison.Ordinal)),
            Timeout, $"a round with the new descriptor {fd}");
        nozoki.Signal(Signals.SIGINT);
        Assert.Equal(0, nozoki.WaitForExit(Timeout));
        nozoki.AssertNoStackTrace();
        Assert.Equal("", nozoki.StderrText());
        k.OpenOneMore();
    }

    [Theory]
    [InlineData(Signals.SIGTERM)]
    [InlineData(Signals.SIGHUP)]
    [InlineData(Signals.SIGQUIT)]
    public void Watch_ends_with_exit_0_on_a_stop_signal_and_leaves_the_process_as_it_was(int signal)
    {
        using var k = KindsFixture.Start("all");
        using var nozoki = NozokiCli.Start(["inspect", "--watch", "0.2", $"{k.Pid}"]);
        nozoki.WaitUntil(() => Rounds(nozoki) >= 2, Timeout, "two rounds of --watch");
        nozoki.Signal(signal);
        Assert.Equal(0, nozoki.WaitForExit(Timeout));
        nozoki.AssertNoStackTrace();
        Assert.Equal("", nozoki.StderrText());
        Assert.Equal(0, ProcStatus.Get(k.Pid).TracerPid);
        foreach (var (role, tid) in k.Tids) Assert.Equal(KindsFixture.BlockedIn[role], KindsFixture.SyscallOf(k.Pid, tid));
        k.OpenOneMore();
    }

    [Fact]
    public void Watch_ends_with_exit_0_when_its_reader_goes_away()
    {
        using var k = KindsFixture.Start("simple");
        // The test's reader takes the first chunk, then stops reading and closes its end: `nozoki inspect --watch 1 PID | head -1`.
        using var got = new ManualResetEventSlim();
        using var nozoki = NozokiCli.Start(["inspect", "--watch", "0.2", $"{k.Pid}"], chunk =>
        {
            got.Set();
            return false;
        });
        Assert.True(got.Wait(Timeout), "no output from nozoki inspect --watch");
        nozoki.CloseStdout();
        Assert.Equal(0, nozoki.WaitForExit(Timeout));
        nozoki.AssertNoStackTrace();
        k.OpenOneMore();
    }

    [Fact]
    public void Watch_in_json_gives_one_object_per_round_and_ends_when_the_process_exits()
    {
        using var k = KindsFixture.Start("simple");
        using var nozoki = NozokiCli.Start(["inspect", "--json", "--threads", "--watch", "0.2", $"{k.Pid}"]);
        nozoki.WaitUntil(() => nozoki.StdoutLines().Length >= 2, Timeout, "two JSON rounds");
        Assert.All(nozoki.StdoutLines(), l => Assert.Equal(k.Pid, NozokiCli.ParseJson(l).GetProperty("pid").GetInt32()));
        k.Tracee.Child.Signal(Signals.SIGKILL);
        k.Tracee.WaitForExit();
        Assert.Equal(0, nozoki.WaitForExit(Timeout));
        nozoki.AssertNoStackTrace();
        Assert.Equal($"nozoki: PID {k.Pid} has exited\n", nozoki.StderrText());
    }

    [Fact]
    public void Watch_on_a_terminal_redraws_in_place_and_highlights_what_changed()
    {
        using var k = KindsFixture.Start("simple");
        using var tmux = Tmux.Start($"exec {Tmux.Quote(NozokiCli.ExePath)} inspect --fds --watch 0.2 {k.Pid}", width: 150, height: 40);
        tmux.WaitForScreen(s => s.Contains("DESCRIPTORS", StringComparison.Ordinal), Timeout, "the first frame");
        var fd = k.OpenOneMore();
        var screen = tmux.WaitForScreen(s => s.Split('\n').Any(l => l.StartsWith($"{fd} ", StringComparison.Ordinal)), Timeout, $"a frame with descriptor {fd}");
        // Redrawn in place: one frame on the screen, with its header line at the top.
        Assert.Single(screen.Split('\n'), l => l.StartsWith($"PID {k.Pid} ", StringComparison.Ordinal));
        var raw = tmux.Capture(escapes: true).Split('\n');
        var line = raw.First(l => Strip(l).StartsWith($"{fd} ", StringComparison.Ordinal));
        Assert.True(line.Contains("\e[7m", StringComparison.Ordinal), $"the new descriptor's line is not highlighted: {line.Replace("\e", "\\e", StringComparison.Ordinal)}");
        // Headers in bold (tmux's capture repeats an attribute only where it changes: the first header follows plain text).
        Assert.Contains("\e[1m", raw.First(l => Strip(l).StartsWith($"PID {k.Pid} ", StringComparison.Ordinal)), StringComparison.Ordinal);
        Assert.StartsWith($"Every 0.2s: nozoki inspect {k.Pid} ", screen, StringComparison.Ordinal);
        tmux.SendKeys("C-c");
        Poll.Until(() => !tmux.SessionExists, Timeout, "nozoki to exit on Ctrl-C (and its tmux session with it)");
        k.OpenOneMore();
    }

    private static string Strip(string s) => System.Text.RegularExpressions.Regex.Replace(s, "\e\\[[0-9;]*m", "");

    [Fact]
    public void A_process_that_exits_between_two_sections_gives_a_partial_snapshot_that_says_so()
    {
        var k = KindsFixture.Start("simple");
        try
        {
            var snapshot = ProcessInspector.Take(k.Pid, new InspectOptions
            {
                BeforeSection = s =>
                {
                    if (s != InspectSections.Descriptors) return;
                    k.Tracee.Child.Signal(Signals.SIGKILL);
                    k.Tracee.WaitForExit(); // reaped: /proc/PID is gone
                },
            });
            Assert.True(snapshot.ExitedWhileRead);
            Assert.Equal("inspect_kinds", snapshot.Identity.Name);
            Assert.Single(snapshot.Threads);
            Assert.Empty(snapshot.Descriptors);
            Assert.Contains(snapshot.Problems, p => p.Section == InspectSections.Descriptors && p.Kind == ProblemKind.ProcessExited);
            Assert.Contains(snapshot.Problems, p => p.Section == InspectSections.Threads && p.Kind == ProblemKind.ProcessExited);
            Assert.Throws<Nozoki.Tracing.ProcessNotFoundException>(() => ProcessInspector.Take(k.Pid));
        }
        finally
        {
            k.Dispose();
        }
    }

    [Fact]
    public void A_process_killed_while_nozoki_reads_it_gives_its_output_or_one_clear_line()
    {
        var rng = new Random(14);
        for (var round = 0; round < 12; round++)
        {
            using var k = KindsFixture.Start("many", ["4000"]);
            using var nozoki = NozokiCli.Start(["inspect", $"{k.Pid}"]);
            Thread.Sleep(rng.Next(0, 60)); // somewhere in nozoki's start-up or its reading
            k.Tracee.Child.Signal(Signals.SIGKILL);
            k.Tracee.WaitForExit();
            var code = nozoki.WaitForExit(Timeout);
            nozoki.AssertNoStackTrace();
            var err = nozoki.StderrLines();
            if (code == 0)
            {
                Assert.StartsWith($"PID {k.Pid} (inspect_kinds) ", nozoki.StdoutText(), StringComparison.Ordinal);
                Assert.All(err, l => Assert.StartsWith($"nozoki: PID {k.Pid} is a zombie", l, StringComparison.Ordinal));
            }
            else
            {
                Assert.Equal(3, code);
                var line = Assert.Single(err);
                Assert.Matches($@"^nozoki: error: (no process with PID {k.Pid}|PID {k.Pid} exited while it was being read: what was read before is shown \(.+\))$", line);
            }
        }
    }

    [Fact]
    public void Descriptors_closing_while_they_are_read_are_left_out_never_shown_half_read()
    {
        using var k = KindsFixture.Start("churn");
        for (var round = 0; round < 15; round++)
        {
            var o = InspectTests.Json(k.Pid, "--fds");
            foreach (var d in o.GetProperty("descriptors").EnumerateArray())
            {
                var target = d.GetProperty("target").GetString()!;
                var kind = d.GetProperty("kind").GetString();
                var inode = d.GetProperty("inode").GetUInt64();
                var bracket = target.IndexOf(":[", StringComparison.Ordinal);
                switch (kind)
                {
                    case "pipe" or "socket":
                        Assert.Equal(target[..bracket], kind);
                        Assert.Equal(ulong.Parse(target[(bracket + 2)..^1], CultureInfo.InvariantCulture), inode);
                        break;
                    case "event_fd":
                        Assert.Equal("anon_inode:[eventfd]", target);
                        Assert.True(d.TryGetProperty("eventfd_count", out _), d.ToString());
                        break;
                    case "character_device":
                        Assert.StartsWith("/dev/", target, StringComparison.Ordinal);
                        break;
                    default:
                        Assert.True(kind is "file", $"unexpected {kind}: {d}");
                        break;
                }

                if (kind == "socket") Assert.True(d.GetProperty("socket").GetProperty("protocol").GetString()!.StartsWith("UNIX", StringComparison.Ordinal), d.ToString());
            }
        }

        k.OpenOneMore();
    }
}
