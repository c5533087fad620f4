using System.Text.Json;
using Nozoki.Tests.Helpers;

namespace Nozoki.Tests;

/// <summary>`nozoki usdt`: command-line errors and their exit codes, and --json output against the text output.</summary>
[Collection(PtraceCollection.Name)]
public sealed class UsdtCliTests
{
    private static readonly TimeSpan Step = TimeSpan.FromSeconds(15);
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    private static string Exe => ProbesFixtures.Exe;

    /// <summary>Exit code as expected, exactly one stderr line "nozoki: error: ...", nothing on stdout, no stack trace.</summary>
    private static string AssertError(int expectedCode, params string[] args)
    {
        var (code, stdout, stderr) = NozokiCli.Run(args);
        NozokiCli.AssertNoStackTrace(stdout, stderr);
        var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1 && lines[0].StartsWith("nozoki: error:", StringComparison.Ordinal),
            $"expected one 'nozoki: error:' line for `nozoki {string.Join(' ', args)}`, got:\n{stderr}");
        Assert.True(expectedCode == code, $"`nozoki {string.Join(' ', args)}`: expected exit {expectedCode}, got {code}: {stderr}");
        Assert.Equal("", stdout);
        return lines[0];
    }

    [Theory]
    [InlineData("fixture:")]
    [InlineData(":one")]
    [InlineData("a::one")]
    [InlineData("")]
    public void A_bad_probe_pattern_exits_2_with_one_line(string pattern)
    {
        var line = AssertError(2, "usdt", pattern, "--", Exe);
        Assert.Contains("pattern", line, StringComparison.Ordinal);
    }

    [Fact]
    public void Neither_pid_nor_command_exits_2()
    {
        AssertError(2, "usdt", "fixture:one");
        AssertError(2, "usdt", "fixture:one", "-p", "1", "--", Exe); // both
        AssertError(2, "usdt", "--str", "0", "fixture:one", "--", Exe);
        AssertError(2, "usdt", "--str", "13", "fixture:one", "--", Exe);
        AssertError(2, "usdt", "--count", "-1", "fixture:one", "--", Exe);
    }

    [Fact]
    public void A_missing_pid_exits_3()
    {
        // A PID that existed a moment ago: this process has been reaped.
        int pid;
        using (var t = Tracee.Start(["/bin/true"]))
        {
            pid = t.Pid;
            Assert.Equal(0, t.WaitForExit().Code);
        }

        Assert.Contains($"{pid}", AssertError(3, "usdt", "fixture:one", "-p", $"{pid}"), StringComparison.Ordinal);
        AssertError(3, "usdt", "fixture:one", "-p", "2147483647");
    }

    [Fact]
    public void No_matching_probe_in_the_pid_exits_3_and_leaves_the_process_untouched()
    {
        using var dir = new TempDir();
        using var tracee = Tracee.Start([Exe, "--wait"], stdinPipe: true, stdoutPath: dir.File("out"));
        Poll.Until(() => tracee.StdoutFileText().Contains("ready\n", StringComparison.Ordinal), Step, "the usdt fixture to print ready");
        var line = AssertError(3, "usdt", "nope:nothing", "fixturelib:*", "-p", $"{tracee.Pid}");
        Assert.Contains($"PID {tracee.Pid}", line, StringComparison.Ordinal);
        Assert.Equal(0, ProcStatus.Get(tracee.Pid).TracerPid);
        tracee.Release();
        Assert.Equal(0, tracee.WaitForExit(Timeout).Code);
        Assert.Contains("guarded 0\n", tracee.StdoutFileText(), StringComparison.Ordinal);
    }

    [Fact]
    public void A_kernel_thread_or_a_zombie_exits_5_with_the_message_out_gives()
    {
        var kthreadd = ProcStatus.Read(2);
        Assert.True(kthreadd?.Name == "kthreadd", $"PID 2 is not kthreadd here ({kthreadd}); cannot test kernel threads");
        Assert.Equal(AssertError(5, "out", "2"), AssertError(5, "usdt", "fixture:one", "-p", "2"));

        using var child = Tracing.ChildProcess.Start(["/bin/true"]);
        ProcStatus.WaitForState(child.Pid, 'Z', Step); // not reaped until Dispose
        Assert.Equal(AssertError(5, "out", $"{child.Pid}"), AssertError(5, "usdt", "fixture:one", "-p", $"{child.Pid}"));
    }

    /// <summary>
    /// Launched, nothing matches: said at the command's start-up (once its libraries are mapped: a pending note, as
    /// later objects may still match), the command runs to its end, and nozoki exits 3 saying nothing ever matched.
    /// </summary>
    [Fact]
    public void No_matching_probe_in_a_launched_command_is_said_at_its_start_and_exits_3_after_it()
    {
        using var nozoki = NozokiCli.Start(["usdt", "fixture:nosuch", "nope:*", "--", Exe, "--loops", "2"]);
        var code = nozoki.WaitForExit(Timeout);
        nozoki.AssertNoStackTrace();
        Assert.True(code == 3, $"expected exit 3, got {code}.\n{nozoki.Describe()}");
        Assert.Contains("checksum ", nozoki.StdoutText(), StringComparison.Ordinal); // the command ran to its end
        var lines = nozoki.StderrLines();
        var pending = lines.Where(l => l.StartsWith("nozoki: no probe site matches fixture:nosuch, nope:* in PID ", StringComparison.Ordinal)).ToList();
        Assert.True(pending.Count == 1 && pending[0].Contains($"({Exe})", StringComparison.Ordinal) && pending[0].Contains("pending", StringComparison.Ordinal),
            $"expected one pending note naming {Exe}.\n{nozoki.Describe()}");
        Assert.StartsWith("nozoki: error: no probe site matched fixture:nosuch, nope:* in ", lines[^1], StringComparison.Ordinal);
        Assert.Single(lines, l => l.StartsWith("nozoki: error:", StringComparison.Ordinal));
    }

    [Fact]
    public void A_probe_of_a_library_loaded_later_matches_after_the_pending_note()
    {
        using var nozoki = NozokiCli.Start(["usdt", "fixturelib:tick", "--", Exe, "--lib", ProbesFixtures.Lib, "--loops", "3"]);
        Assert.True(nozoki.WaitForExit(Timeout) == 0, nozoki.Describe());
        Assert.Equal(["0", "1", "2"], UsdtOutput.Hits(nozoki.StdoutText()).Select(h => h.Args[0]));
        // At start-up the library was not loaded yet: the note says nothing matched so far, and no error follows.
        Assert.Single(nozoki.StderrLines(), l => l.StartsWith("nozoki: no probe site matches fixturelib:tick in PID ", StringComparison.Ordinal));
        Assert.DoesNotContain("nozoki: error:", nozoki.StderrText(), StringComparison.Ordinal);
    }

    [Fact]
    public void Launched_with_a_matching_probe_there_is_no_pending_note()
    {
        using var nozoki = NozokiCli.Start(["usdt", "fixture:one", "--", Exe, "--loops", "2"]);
        Assert.True(nozoki.WaitForExit(Timeout) == 0, nozoki.Describe());
        Assert.DoesNotContain("no probe site", nozoki.StderrText(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("nozoki-no-such-command")]
    [InlineData("/nonexistent/dir/cmd")]
    public void A_command_that_is_not_found_exits_127(string command)
    {
        var line = AssertError(127, "usdt", "fixture:one", "--", command);
        Assert.Contains(command, line, StringComparison.Ordinal);
    }

    [Fact]
    public void Json_lines_parse_and_carry_the_same_hits_as_text()
    {
        const int loops = 3;
        var start = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / 1000.0;
        using var text = NozokiCli.Start(["usdt", "fixture:*", "--", Exe, "--loops", $"{loops}"]);
        Assert.True(text.WaitForExit(Timeout) == 0, text.Describe());
        using var json = NozokiCli.Start(["usdt", "--json", "fixture:*", "--", Exe, "--loops", $"{loops}"]);
        Assert.True(json.WaitForExit(Timeout) == 0, json.Describe());
        var end = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / 1000.0;
        json.AssertNoStackTrace();
        Assert.All(ExternalProcess.SplitLines(json.StderrText()), l => Assert.StartsWith("nozoki: ", l, StringComparison.Ordinal));

        var textHits = UsdtOutput.Hits(text.StdoutText());
        var lines = ExternalProcess.SplitLines(json.StdoutText());
        var objects = lines.Where(l => l.StartsWith('{')).Select(NozokiCli.ParseJson).ToList();
        // The other lines are the fixture's own output (it shares nozoki's stdout).
        Assert.Equal(["sem", "sem", "func", "guarded", "checksum"], lines.Where(l => !l.StartsWith('{')).Select(l => l.Split(' ')[0]));
        Assert.Equal(textHits.Count, objects.Count);
        var pid = objects[0].GetProperty("pid").GetInt32();
        for (var i = 0; i < objects.Count; i++)
        {
            var o = objects[i];
            Assert.Equal(["time", "comm", "pid", "tid", "probe", "object", "args"], o.EnumerateObject().Select(p => p.Name));
            Assert.InRange(o.GetProperty("time").GetDouble(), start - 1, end + 1);
            Assert.Equal("usdt", o.GetProperty("comm").GetString());
            Assert.Equal(pid, o.GetProperty("pid").GetInt32());
            Assert.NotEqual(pid, o.GetProperty("tid").GetInt32()); // the fixture's loop thread
            Assert.Equal(Exe, o.GetProperty("object").GetString());
            Assert.Equal(textHits[i].Probe, o.GetProperty("probe").GetString());
            var args = o.GetProperty("args").EnumerateArray().ToList();
            Assert.All(args, a => Assert.Equal(JsonValueKind.Number, a.ValueKind));
            // Same values as the text run (both runs' g_name addresses differ only by ASLR: compare the others).
            var probe = textHits[i].Probe;
            var same = args.Select(a => a.GetRawText()).ToList();
            var expected = textHits[i].Args.ToList();
            if (probe is "fixture:six") (same[5], expected[5]) = ("str", "str");
            if (probe is "fixture:mixed") (same[1], expected[1]) = ("str", "str");
            Assert.True(expected.SequenceEqual(same), $"{probe}: json [{string.Join(", ", same)}], text [{string.Join(", ", expected)}]");
        }
    }

    [Fact]
    public void Json_and_text_read_str_arguments_as_strings()
    {
        using var text = NozokiCli.Start(["usdt", "--str", "2", "fixture:mixed", "--", Exe, "--loops", "2"]);
        Assert.True(text.WaitForExit(Timeout) == 0, text.Describe());
        Assert.Equal(["0 \"fixture\" -100003", "1 \"fixture\" -200006"], UsdtOutput.Hits(text.StdoutText()).Select(h => string.Join(' ', h.Args)));

        using var json = NozokiCli.Start(["usdt", "--json", "--str", "2", "fixture:mixed", "--", Exe, "--loops", "2"]);
        Assert.True(json.WaitForExit(Timeout) == 0, json.Describe());
        var objects = ExternalProcess.SplitLines(json.StdoutText()).Where(l => l.StartsWith('{')).Select(NozokiCli.ParseJson).ToList();
        Assert.Equal(["[0,\"fixture\",-100003]", "[1,\"fixture\",-200006]"], objects.Select(o => o.GetProperty("args").GetRawText()));
    }

    /// <summary>
    /// --str on an argument that is not a readable pointer (fixture:one passes a small integer): the text shows
    /// &lt;fault&gt; and JSON null, as for any argument nozoki could not read, not an empty string "" (which a real
    /// empty string also gives).
    /// </summary>
    [Fact]
    public void A_str_argument_that_is_not_a_readable_pointer_is_a_fault_not_an_empty_string()
    {
        using var text = NozokiCli.Start(["usdt", "-q", "--str", "1", "fixture:one", "--", Exe, "--loops", "2"]);
        Assert.True(text.WaitForExit(Timeout) == 0, text.Describe());
        Assert.Equal(["<fault>", "<fault>"], UsdtOutput.Hits(text.StdoutText()).Select(h => h.Args.Single()));

        using var json = NozokiCli.Start(["usdt", "--json", "--str", "1", "fixture:one", "--", Exe, "--loops", "2"]);
        Assert.True(json.WaitForExit(Timeout) == 0, json.Describe());
        var objects = ExternalProcess.SplitLines(json.StdoutText()).Where(l => l.StartsWith('{')).Select(NozokiCli.ParseJson).ToList();
        Assert.Equal(["[null]", "[null]"], objects.Select(o => o.GetProperty("args").GetRawText()));
    }

    [Fact]
    public void Quiet_silences_the_messages_but_not_the_hits()
    {
        using var nozoki = NozokiCli.Start(["usdt", "-q", "fixture:one", "--", Exe, "--loops", "4"]);
        Assert.True(nozoki.WaitForExit(Timeout) == 0, nozoki.Describe());
        Assert.Equal("", nozoki.StderrText());
        Assert.Equal(["1", "2", "3", "4"], UsdtOutput.Hits(nozoki.StdoutText()).Select(h => h.Args.Single()));
    }
}
