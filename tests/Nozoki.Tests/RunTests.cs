using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using Nozoki.Tests.Helpers;
using Nozoki.Tracing;

namespace Nozoki.Tests;

/// <summary>
/// `nozoki run -- CMD`: the command runs with nozoki's own stdin/stdout/stderr, and each write of any descendant to
/// fd 2 (or the --fd list) is wrapped in a start/reset SGR pair that nozoki writes to its own stderr.
/// </summary>
[Collection(PtraceCollection.Name)]
public sealed class RunTests
{
    private const string BoldRed = "\u001b[1;31m", Red = "\u001b[31m", Reset = "\u001b[0m";

    private static string Order(int n, Func<int, string> block)
    {
        var sb = new StringBuilder();
        for (var i = 0; i < n; i++) sb.Append(block(i));
        return sb.ToString();
    }

    /// <summary>Where two texts first differ, for failure messages about long outputs.</summary>
    private static string FirstDifference(string expected, string actual)
    {
        var i = 0;
        while (i < expected.Length && i < actual.Length && expected[i] == actual[i]) i++;
        static string Around(string s, int at) =>
            Escape(s.Substring(Math.Max(0, at - 80), Math.Min(s.Length, at + 80) - Math.Max(0, at - 80)));
        return $"lengths: expected {expected.Length}, actual {actual.Length}; first difference at offset {i}:\n" +
               $"expected ...{Around(expected, i)}...\nactual   ...{Around(actual, i)}...";
    }

    private static string Escape(string s) => s.Replace("\u001b", "\\e", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal);

    private static void AssertSameText(string expected, string actual, string what)
    {
        if (expected != actual) Assert.Fail($"{what}: {FirstDifference(expected, actual)}");
    }

    // ---- 1. order, stdout and stderr on one file -------------------------------------------------------------

    [Fact]
    public void Every_stderr_write_is_wrapped_in_exactly_one_pair_and_the_order_is_kept_10000_rounds()
    {
        const int n = 10_000;
        using var dir = new TempDir();
        var file = dir.File("out");
        var status = RunOutput.NozokiToFile(file, "run", "--color", "always", "--", Fixtures.Get("order"), $"{n}");
        var text = TempDir.ReadText(file);
        Assert.True(status == new ExitStatus(0, 0), $"nozoki run {status}; output tail: {Escape(text[Math.Max(0, text.Length - 500)..])}");
        var expected = Order(n, i => $"L1 {i}\n{BoldRed}L2 {i}\n{Reset}L3 {i}\n{BoldRed}L4 {i}\n{Reset}");
        AssertSameText(expected, text, "the file nozoki's stdout and stderr were both redirected to");
    }

    // ---- 2. descendants of a shell -------------------------------------------------------------------------

    [Fact]
    public void A_grandchild_in_a_pipeline_has_its_stderr_painted_and_its_stdout_not()
    {
        var say = Fixtures.Get("run_say");
        // sh -> subshell (fork) -> run_say (fork+exec, or exec): a grandchild or deeper; and sh -> sh -c -> run_say.
        var script = $"( {Tmux.Quote(say)} 2 grandchild-err-1; {Tmux.Quote(say)} 1 grandchild-out; true ) | cat; " +
                     $"sh -c '{say} 2 nested-err-2; true'; {Tmux.Quote(say)} 2 child-err-3";
        using var nozoki = NozokiCli.Start(["run", "--color", "always", "--", "sh", "-c", script]);
        Assert.Equal(0, nozoki.WaitForExit(NozokiCli.ExitTimeout));
        nozoki.AssertNoStackTrace();
        Assert.Equal("grandchild-out\n", nozoki.StdoutText());
        AssertSameText($"{BoldRed}grandchild-err-1\n{Reset}{BoldRed}nested-err-2\n{Reset}{BoldRed}child-err-3\n{Reset}",
            nozoki.StderrText(), "nozoki's stderr");
    }

    [Fact]
    public void Descendants_started_by_posix_spawn_and_vfork_and_a_thread_are_painted()
    {
        using var nozoki = NozokiCli.Start(["run", "--color", "always", "--", Fixtures.Get("run_spawn"), Fixtures.Get("run_say")]);
        var code = nozoki.WaitForExit(NozokiCli.ExitTimeout);
        Assert.True(code == 0, $"run_spawn exited {code}.\n{nozoki.Describe()}");
        AssertSameText($"{BoldRed}via-posix-spawn\n{Reset}{BoldRed}via-vfork\n{Reset}{BoldRed}from-thread\n{Reset}",
            nozoki.StderrText(), "nozoki's stderr");
    }

    [Fact]
    public void Nozoki_ends_with_the_command_after_many_short_lived_children_and_grandchildren()
    {
        // Each round forks a subshell (which vforks run_say twice), cat, and sh -c (which vforks run_say): children
        // that may start, run and exit before nozoki has handled their parent's fork/vfork event.
        const int rounds = 120; // ~720 processes: enough to meet the early-child races, within the suite-time bound
        var say = Tmux.Quote(Fixtures.Get("run_say"));
        var script = $"i=0; while [ $i -lt {rounds} ]; do ( {say} 2 e$i; {say} 1 o$i; true ) | cat >/dev/null; " +
                     $"sh -c \"{say} 2 n$i; true\"; i=$((i+1)); done; echo finished";
        using var nozoki = NozokiCli.Start(["run", "--color", "always", "--", "sh", "-c", script]);
        var code = nozoki.WaitForExit(NozokiCli.ExitTimeout);
        Assert.True(code == 0, $"expected exit 0, got {code}.\n{nozoki.Describe()}");
        Assert.Equal("finished\n", nozoki.StdoutText());
        var expected = new StringBuilder();
        for (var i = 0; i < rounds; i++) expected.Append($"{BoldRed}e{i}\n{Reset}{BoldRed}n{i}\n{Reset}");
        AssertSameText(expected.ToString(), nozoki.StderrText(), "nozoki's stderr");
    }

    [Fact]
    public void Ls_run_as_a_grandchild_of_sh_has_its_error_message_painted()
    {
        // ls writes its message to fd 2 in several writes ("ls: ", "cannot access ...", ...): each is painted.
        const string script = "(ls /nonexistent-nozoki-q) | cat; true";
        using var nozoki = NozokiCli.Start(["run", "--color", "always", "--", "sh", "-c", script]);
        Assert.Equal(0, nozoki.WaitForExit(NozokiCli.ExitTimeout));
        var stderr = nozoki.StderrText();
        var plain = stderr.Replace(BoldRed, "", StringComparison.Ordinal).Replace(Reset, "", StringComparison.Ordinal);
        Assert.Matches("^ls: cannot access '/nonexistent-nozoki-q': No such file or directory\n$", plain);
        // Every byte of the message lies inside a start/reset pair: the text is a sequence of painted chunks.
        Assert.Matches($"^(\u001b\\[1;31m[^\u001b]+\u001b\\[0m)+$", stderr);
        Assert.Equal("", nozoki.StdoutText());
    }

    // ---- 3. exit status, errors, signals --------------------------------------------------------------------

    [Theory]
    [InlineData("always", "exit 0", 0)]
    [InlineData("always", "exit 3", 3)]
    [InlineData("always", "kill -TERM $$", 143)]
    [InlineData("always", "kill -KILL $$", 137)]
    [InlineData("never", "exit 3", 3)]
    [InlineData("never", "kill -TERM $$", 143)]
    public void The_exit_status_is_the_commands(string color, string script, int expected)
    {
        using var nozoki = NozokiCli.Start(["run", "--color", color, "--", "sh", "-c", script]);
        var code = nozoki.WaitForExit(NozokiCli.ExitTimeout);
        Assert.True(code == expected, $"expected exit {expected}, got {code}.\n{nozoki.Describe()}");
        nozoki.AssertNoStackTrace();
        Assert.Equal("", nozoki.StderrText());
    }

    [Theory]
    [InlineData("always", "no-such-command-nozoki-xyz")]
    [InlineData("always", "/no/such/dir/cmd")]
    [InlineData("never", "no-such-command-nozoki-xyz")]
    public void A_command_that_is_not_found_gives_127_and_one_error_line(string color, string command)
    {
        using var nozoki = NozokiCli.Start(["run", "--color", color, "--", command, "arg"]);
        Assert.Equal(127, nozoki.WaitForExit(NozokiCli.ExitTimeout));
        nozoki.AssertNoStackTrace();
        var lines = nozoki.StderrLines();
        Assert.True(lines.Length == 1 && lines[0].StartsWith("nozoki: error:", StringComparison.Ordinal) && lines[0].Contains(command, StringComparison.Ordinal),
            $"expected one 'nozoki: error:' line naming {command}.\n{nozoki.Describe()}");
        Assert.Equal("", nozoki.StdoutText());
    }

    [Theory]
    [InlineData("--style", "nope")]
    [InlineData("--style", "1;31x")]
    [InlineData("--color", "sometimes")]
    public void A_bad_option_gives_2(string option, string value)
    {
        using var nozoki = NozokiCli.Start(["run", option, value, "--", "true"]);
        var code = nozoki.WaitForExit(NozokiCli.ExitTimeout);
        Assert.True(code == 2, $"expected exit 2, got {code}.\n{nozoki.Describe()}");
        nozoki.AssertNoStackTrace();
        Assert.Contains("nozoki", nozoki.StderrText(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("always", Posix.SIGTERM)]
    [InlineData("always", Posix.SIGHUP)]
    [InlineData("never", Posix.SIGTERM)]
    [InlineData("never", Posix.SIGHUP)]
    public void A_signal_sent_to_nozoki_is_forwarded_to_the_command(string color, int signo)
    {
        using var nozoki = NozokiCli.Start(["run", "--color", color, "--", "sleep", "30"]);
        var sleep = ProcessTree.WaitForDescendant(nozoki.Pid, "sleep", TimeSpan.FromSeconds(30));
        var tracer = ProcStatus.Get(sleep).TracerPid;
        // TracerPid is the tracing thread's id: one of nozoki's threads.
        Assert.True(color == "always" ? tracer > 0 && Directory.Exists($"/proc/{nozoki.Pid}/task/{tracer}") : tracer == 0,
            $"sleep (PID {sleep}) has TracerPid {tracer}; nozoki is PID {nozoki.Pid}, --color {color}");
        var sw = Stopwatch.StartNew();
        nozoki.Signal(signo);
        var code = nozoki.WaitForExit(TimeSpan.FromSeconds(20));
        Assert.True(code == 128 + signo, $"expected exit {128 + signo}, got {code}.\n{nozoki.Describe()}");
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(15), $"nozoki took {sw.Elapsed.TotalSeconds:0.0} s to exit after the signal");
        Poll.Until(() => ProcStatus.Read(sleep) is null or { State: 'Z' } || ProcStatus.Read(sleep)?.Name != "sleep",
            TimeSpan.FromSeconds(10), () => $"sleep (PID {sleep}) to be gone: {ProcStatus.Read(sleep)}");
        nozoki.AssertNoStackTrace();
    }

    [Theory]
    [InlineData("always", Posix.SIGINT)]
    [InlineData("always", 3 /* SIGQUIT */)]
    [InlineData("never", Posix.SIGINT)]
    public void Sigint_and_sigquit_sent_to_nozoki_alone_kill_neither_nozoki_nor_the_command(string color, int signo)
    {
        // The command waits for a line on its stdin (nozoki's, inherited), so it outlives the signal for sure; it is let
        // go only once the signal has reached nozoki (no longer pending), and must then finish normally.
        using var nozoki = NozokiCli.Start(["run", "--color", color, "--", "sh", "-c", "read line; echo \"$line\""]);
        var sh = ProcessTree.WaitForDescendant(nozoki.Pid, "sh", TimeSpan.FromSeconds(30));
        nozoki.Signal(signo);
        Poll.Until(() => ProcStatus.Read(nozoki.Pid) is not { } st || !st.HasPending(signo), TimeSpan.FromSeconds(30), "the signal to reach nozoki");
        Assert.True(ProcStatus.Read(sh) is { State: not 'Z' },
            $"the command (PID {sh}) is gone after signal {signo} to nozoki: {ProcStatus.Read(sh)}\n{nozoki.Describe()}");
        nozoki.WriteStdin("still here\n");
        var code = nozoki.WaitForExit(TimeSpan.FromSeconds(30));
        Assert.True(code == 0, $"expected exit 0 (the command read its line), got {code}.\n{nozoki.Describe()}");
        Assert.Equal("still here\n", nozoki.StdoutText());
        nozoki.AssertNoStackTrace();
        Assert.Equal("", nozoki.StderrText());
    }

    /// <summary>
    /// Fails unless <paramref name="text"/> is exactly <paramref name="count"/> chunks "START line\n RESET" (one
    /// pair per write, none nested or overlapping: on a terminal the first reset would end the painting of every
    /// other write in progress, which would then show unpainted).
    /// </summary>
    private static void AssertEachWriteInItsOwnPair(string text, string start, int count)
    {
        var pairs = 0;
        var at = 0;
        var startCount = 0;
        var painted = false;
        var unpainted = 0;
        foreach (Match m in Regex.Matches(text, "\u001b\\[[0-9;]*m|[^\u001b]+"))
        {
            if (m.Value == start) { painted = true; startCount++; }
            else if (m.Value == Reset) painted = false;
            else if (!painted) unpainted++;
        }

        while (at < text.Length && text.AsSpan(at).StartsWith(start, StringComparison.Ordinal))
        {
            var nl = text.IndexOf('\n', at + start.Length);
            if (nl < 0 || text.IndexOf('\u001b', at + start.Length, nl - at - start.Length) >= 0 ||
                !text.AsSpan(nl + 1).StartsWith(Reset, StringComparison.Ordinal)) break;
            at = nl + 1 + Reset.Length;
            pairs++;
        }

        if (at != text.Length || pairs != count)
            Assert.Fail($"expected {count} writes each as START line RESET; the first {pairs} are, then (offset {at}):\n" +
                        $"{Escape(text.Substring(at, Math.Min(300, text.Length - at)))}\n" +
                        $"({startCount} start sequences; {unpainted} chunks of text would show unpainted on a terminal)");
    }

    [Fact]
    public void Concurrent_writes_of_several_threads_are_each_wrapped_in_their_own_pair()
    {
        const int threads = 4, lines = 2000;
        using var dir = new TempDir();
        var status = RunOutput.NozokiToFile(dir.File("out"), "run", "--color", "always", "--fd", "1", "--",
            Fixtures.Get("threads"), $"{threads}", $"{lines}");
        Assert.Equal(new ExitStatus(0, 0), status);
        AssertEachWriteInItsOwnPair(TempDir.ReadText(dir.File("out")), BoldRed, threads * lines);
    }

    [Fact]
    public void Concurrent_writes_of_several_processes_are_each_wrapped_in_their_own_pair()
    {
        const int writers = 3, lines = 400;
        var say = Fixtures.Get("run_say");
        var script = string.Concat(Enumerable.Range(0, writers).Select(w =>
            $"{Tmux.Quote(say)} 2 {string.Join(' ', Enumerable.Range(0, lines).Select(l => $"w{w}-l{l}"))} & ")) + "wait";
        using var dir = new TempDir();
        var status = RunOutput.NozokiToFile(dir.File("out"), "run", "--color", "always", "--", "sh", "-c", script);
        Assert.Equal(new ExitStatus(0, 0), status);
        AssertEachWriteInItsOwnPair(TempDir.ReadText(dir.File("out")), BoldRed, writers * lines);
    }

    // ---- 4. not painting --------------------------------------------------------------------------------------

    [Theory]
    [InlineData("--color", "never")]
    [InlineData("--color", "auto")]
    [InlineData(null, null)]
    public void Without_painting_the_output_is_exactly_the_commands(string? option, string? value)
    {
        const int n = 500;
        using var dir = new TempDir();
        var order = Fixtures.Get("order");
        var direct = RunOutput.ToFile(dir.File("direct"), [order, $"{n}"]);
        Assert.Equal(new ExitStatus(0, 0), direct);
        string[] args = option is null ? ["run", "--", order, $"{n}"] : ["run", option, value!, "--", order, $"{n}"];
        var viaNozoki = RunOutput.NozokiToFile(dir.File("nozoki"), args);
        Assert.Equal(new ExitStatus(0, 0), viaNozoki);
        var expected = TempDir.ReadText(dir.File("direct"));
        var actual = TempDir.ReadText(dir.File("nozoki"));
        Assert.DoesNotContain('\u001b', actual);
        AssertSameText(expected, actual, "nozoki run's output (one file) vs the command's own");

        // Pipes as stdout and stderr: not terminals either.
        using var nozoki = NozokiCli.Start(option is null ? ["run", "--", order, "3"] : ["run", option, value!, "--", order, "3"]);
        Assert.Equal(0, nozoki.WaitForExit(NozokiCli.ExitTimeout));
        Assert.Equal(Order(3, i => $"L1 {i}\nL3 {i}\n"), nozoki.StdoutText());
        Assert.Equal(Order(3, i => $"L2 {i}\nL4 {i}\n"), nozoki.StderrText());
    }

    [Theory]
    [InlineData(null)]
    [InlineData("auto")]
    public void With_auto_color_and_stderr_not_a_terminal_the_command_is_not_traced(string? color)
    {
        using var nozoki = NozokiCli.Start(color is null ? ["run", "--", "sleep", "30"] : ["run", "--color", color, "--", "sleep", "30"]);
        var sleep = ProcessTree.WaitForDescendant(nozoki.Pid, "sleep", TimeSpan.FromSeconds(30));
        Assert.Equal(0, ProcStatus.Get(sleep).TracerPid);
        nozoki.Signal(Posix.SIGTERM);
        Assert.Equal(143, nozoki.WaitForExit(TimeSpan.FromSeconds(20)));
    }

    // ---- 5. a static binary -------------------------------------------------------------------------------------

    internal static string StaticFixture => Fixtures.Build("run_static", "run_static.c", "gcc", "-static");

    [Fact]
    public void A_static_binary_has_its_write_writev_and_pwritev2_to_stderr_painted()
    {
        var fixture = StaticFixture;
        Assert.False(HasInterpreter(fixture), $"{fixture} is not static (it has a PT_INTERP program header)");

        using var nozoki = NozokiCli.Start(["run", "--color", "always", "--", fixture]);
        var code = nozoki.WaitForExit(NozokiCli.ExitTimeout);
        Assert.True(code == 0, $"run_static exited {code}.\n{nozoki.Describe()}");
        Assert.Equal("static out\nstatic out 2\n", nozoki.StdoutText());
        AssertSameText($"{BoldRed}static write\n{Reset}{BoldRed}static writev\n{Reset}{BoldRed}static pwritev2\n{Reset}",
            nozoki.StderrText(), "nozoki's stderr");

        // The same order with both on one file.
        using var dir = new TempDir();
        Assert.Equal(new ExitStatus(0, 0), RunOutput.NozokiToFile(dir.File("out"), "run", "--color", "always", "--", fixture));
        AssertSameText($"static out\n{BoldRed}static write\n{Reset}{BoldRed}static writev\n{Reset}static out 2\n{BoldRed}static pwritev2\n{Reset}",
            TempDir.ReadText(dir.File("out")), "the shared output file");
    }

    /// <summary>Whether a 64-bit little-endian ELF file has a PT_INTERP program header (a dynamic loader).</summary>
    private static bool HasInterpreter(string path)
    {
        var image = File.ReadAllBytes(path);
        Assert.True(image.Length > 64 && image[0] == 0x7f && image[1] == (byte)'E' && image[4] == 2 && image[5] == 1, $"{path} is not an ELF64 LE file");
        var phoff = (int)BinaryPrimitives.ReadUInt64LittleEndian(image.AsSpan(0x20));
        var phentsize = BinaryPrimitives.ReadUInt16LittleEndian(image.AsSpan(0x36));
        var phnum = BinaryPrimitives.ReadUInt16LittleEndian(image.AsSpan(0x38));
        for (var i = 0; i < phnum; i++)
            if (BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(phoff + i * phentsize)) == 3 /* PT_INTERP */) return true;
        return false;
    }

    // ---- 6. --fd and --style -----------------------------------------------------------------------------------

    [Fact]
    public void Fd_1_with_style_red_paints_stdout_writes_and_not_stderr_writes()
    {
        const int n = 200;
        using var dir = new TempDir();
        var status = RunOutput.NozokiToFile(dir.File("out"), "run", "--color", "always", "--fd", "1", "--style", "red", "--", Fixtures.Get("order"), $"{n}");
        Assert.Equal(new ExitStatus(0, 0), status);
        AssertSameText(Order(n, i => $"{Red}L1 {i}\n{Reset}L2 {i}\n{Red}L3 {i}\n{Reset}L4 {i}\n"),
            TempDir.ReadText(dir.File("out")), "the shared output file");
    }

    [Fact]
    public void Fd_1_and_fd_2_with_raw_sgr_parameters_paint_both()
    {
        const int n = 50;
        const string start = "\u001b[1;38;5;208m";
        using var dir = new TempDir();
        var status = RunOutput.NozokiToFile(dir.File("out"), "run", "--color", "always", "--fd", "1", "--fd", "2",
            "--style", "1;38;5;208", "--", Fixtures.Get("order"), $"{n}");
        Assert.Equal(new ExitStatus(0, 0), status);
        AssertSameText(Order(n, i => $"{start}L1 {i}\n{Reset}{start}L2 {i}\n{Reset}{start}L3 {i}\n{Reset}{start}L4 {i}\n{Reset}"),
            TempDir.ReadText(dir.File("out")), "the shared output file");
    }
}
