using System.Globalization;
using System.Text.RegularExpressions;
using Nozoki.Tests.Helpers;

namespace Nozoki.Tests;

/// <summary>
/// `nozoki run` in a real terminal (a tmux pane): an interactive shell and a full-screen program work under it, and
/// Ctrl-C / Ctrl-\ typed at the terminal reach the command without killing nozoki.
/// </summary>
[Collection(PtraceCollection.Name)]
public sealed partial class RunTerminalTests
{
    private static readonly TimeSpan StepTimeout = TimeSpan.FromSeconds(20);
    private const string Prompt = "nozoki-prompt$";

    private static string Nozoki => Tmux.Quote(NozokiCli.ExePath);

    /// <summary>Waits for the EXIT=n line the session's command writes to <paramref name="file"/> when nozoki ends.</summary>
    private static int WaitForExitFile(Tmux tmux, string file)
    {
        string? text = null;
        Poll.Until(() => File.Exists(file) && (text = File.ReadAllText(file)).EndsWith('\n'), StepTimeout,
            () => $"nozoki to end (the exit status in {file}).\n--- pane ---\n{tmux.Capture()}\n--- end ---", intervalMs: 50);
        Assert.StartsWith("EXIT=", text!, StringComparison.Ordinal);
        return int.Parse(text!.AsSpan(5).Trim(), CultureInfo.InvariantCulture);
    }

    [Fact]
    public void An_interactive_bash_runs_top_and_exits_with_status_0()
    {
        using var dir = new TempDir();
        var exitFile = dir.File("exit");
        // Default --color (auto): the pane is a terminal, so nozoki paints (and traces).
        var command = $"cd {Tmux.Quote(dir.Path)} && env PS1={Tmux.Quote(Prompt + " ")} HISTFILE=/dev/null " +
                      $"{Nozoki} run -- bash --norc --noprofile -i; echo EXIT=$? > {Tmux.Quote(exitFile)}";
        using var tmux = Tmux.Start(command, 120, 40);
        var panePid = tmux.PanePid;

        tmux.WaitForScreen(s => s.Contains(Prompt, StringComparison.Ordinal), StepTimeout, "bash's prompt");
        var bash = ProcessTree.WaitForDescendant(panePid, "bash", StepTimeout);
        var tracer = ProcStatus.Get(bash).TracerPid;
        Assert.True(tracer != 0, $"bash (PID {bash}) is not traced although the pane is a terminal (--color auto); " +
                                 $"processes: {ProcessTree.Describe(panePid)}");
        // bash writes its prompt to fd 2, but while readline reads the line (the terminal out of canonical mode): not painted.
        var colored = tmux.Capture(escapes: true);
        Assert.True(colored.Contains(Prompt, StringComparison.Ordinal) && !colored.Contains("31m" + Prompt, StringComparison.Ordinal),
            $"the prompt is painted red; pane with escapes:\n{colored.Replace("\u001b", "\\e", StringComparison.Ordinal)}");

        tmux.TypeLine("top");
        tmux.WaitForScreen(s => Tmux.Lines(s).Any(l => l.StartsWith("top - ", StringComparison.Ordinal) || l.Contains("load average", StringComparison.Ordinal)),
            StepTimeout, "top's screen");
        ProcessTree.WaitForDescendant(panePid, "top", StepTimeout);

        tmux.SendKeys("q");
        Poll.Until(() => ProcessTree.FindDescendant(panePid, "top") is null, StepTimeout,
            () => $"top to quit after 'q'.\n--- pane ---\n{tmux.Capture()}\n--- end ---", intervalMs: 50);
        // The marker's output (42) differs from the typed command line ($((6*7))): only bash's output matches.
        tmux.TypeLine("echo done-$((6*7))-marker");
        tmux.WaitForScreen(s => Tmux.Lines(s).Contains("done-42-marker"), StepTimeout, "bash to run a command after top");

        tmux.TypeLine("exit");
        Assert.Equal(0, WaitForExitFile(tmux, exitFile));
        Poll.Until(() => !tmux.SessionExists, StepTimeout, "the tmux session to end", intervalMs: 50);
    }

    [Theory]
    [InlineData("C-c", 7)]
    [InlineData("C-\\", 8)]
    public void Ctrl_c_and_ctrl_backslash_reach_the_command_and_do_not_kill_nozoki(string key, int expected)
    {
        using var dir = new TempDir();
        var exitFile = dir.File("exit");
        // The command traps INT (exit 7) and QUIT (exit 8); its `sleep` dies of the signal. Had nozoki died of it,
        // the status would be 130 or 131. The pane's own sh survives the key with a trap (reset in its children).
        const string script = "trap 'exit 7' INT; trap 'exit 8' QUIT; echo ready-for-key; while :; do sleep 1; done";
        var command = $"cd {Tmux.Quote(dir.Path)} && ulimit -c 0; trap true INT QUIT; " +
                      $"{Nozoki} run --color always -- sh -c {Tmux.Quote(script)}; echo EXIT=$? > {Tmux.Quote(exitFile)}";
        using var tmux = Tmux.Start(command, 100, 30);
        var panePid = tmux.PanePid;
        tmux.WaitForScreen(s => Tmux.Lines(s).Contains("ready-for-key"), StepTimeout, "the command to start");
        ProcessTree.WaitForDescendant(panePid, "sleep", StepTimeout);

        tmux.SendKeys(key);
        var code = WaitForExitFile(tmux, exitFile);
        Assert.True(code == expected, $"expected nozoki to exit {expected} (the command's trap), got {code}.\n--- pane ---\n{tmux.Capture()}\n--- end ---");
        Poll.Until(() => !tmux.SessionExists, StepTimeout, "the tmux session to end", intervalMs: 50);
    }

    // ---- no reordering, on one terminal ----------------------------------------------------------------------------

    [Fact]
    public void Four_threads_and_two_processes_on_one_terminal_every_line_once_in_order_painted_exactly_when_meant_as_stderr()
    {
        const int lines = 150; // per writer and phase: 900 lines in turn, then 900 at once
        using var dir = new TempDir();
        var (raw, go, exitFile) = (dir.File("raw"), dir.File("go"), dir.File("exit"));
        // The pane waits for the go file, so that everything the command writes is caught by pipe-pane.
        var command = $"while [ ! -e {Tmux.Quote(go)} ]; do sleep 0.05; done; {Nozoki} run -- {Tmux.Quote(Fixtures.Get("interleave"))} {lines}; " +
                      $"echo EXIT=$? > {Tmux.Quote(exitFile)}; exec sleep 600";
        using var tmux = Tmux.Start(command, 100, 30);
        tmux.PipeTo(raw);
        File.WriteAllText(go, "");
        Assert.Equal(0, WaitForExitFile(tmux, exitFile));
        Poll.Until(() => File.Exists(raw) && File.ReadAllText(raw).Contains("interleave done\r\n", StringComparison.Ordinal), StepTimeout,
            () => $"the last line in the pane's output ({raw})", intervalMs: 50);

        // Every write is one record: START line\r\n RESET (painted) or line\r\n; a line of another writer inside a
        // painted record, or a painted record cut in two, breaks the sequence.
        var text = File.ReadAllText(raw);
        var records = new List<(string Line, bool Painted)>();
        var at = 0;
        foreach (Match m in RecordPattern().Matches(text))
        {
            Assert.True(m.Index == at, $"the pane's output is not a sequence of whole lines, painted or not, at offset {at}: " +
                                       $"{Escape(text.Substring(at, Math.Min(200, text.Length - at)))}");
            records.Add(m.Groups[1].Success ? (m.Groups[1].Value, true) : (m.Groups[2].Value, false));
            at = m.Index + m.Length;
        }

        Assert.True(at == text.Length, $"unparsed output at offset {at}: {Escape(text[at..])}");
        var wrong = records.Where(r => r.Painted != r.Line.EndsWith(" err", StringComparison.Ordinal)).Take(5).ToList();
        Assert.True(wrong.Count == 0, $"lines painted though meant as stdout, or not though meant as stderr: {string.Join(", ", wrong)}");

        // Phase 1: each line written only after the one before it had been: the kernel took them in their order.
        var inTurn = records.Take(6 * lines).Select(r => r.Line[..6]).ToList();
        Assert.Equal(Enumerable.Range(0, 6 * lines).Select(k => $"k{k:00000}"), inTurn);
        // Phase 2: every line once, each writer's in its order.
        var atOnce = records.Skip(6 * lines).SkipLast(1).Select(r => r.Line[..r.Line.IndexOf(' ', StringComparison.Ordinal)]).ToList();
        for (var w = 0; w < 6; w++)
        {
            Assert.Equal(Enumerable.Range(0, lines).Select(n => $"p{w}.{n:0000}"), atOnce.Where(l => l.StartsWith($"p{w}.", StringComparison.Ordinal)));
        }

        Assert.Equal(6 * lines, atOnce.Count);
        Assert.Equal(("interleave done", false), records[^1]);
    }

    private static string Escape(string s) => s.Replace("\u001b", "\\e", StringComparison.Ordinal).Replace("\r", "\\r", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal);

    [GeneratedRegex("\u001b\\[1;31m([^\u001b\r\n]*)\r\n\u001b\\[0m|([^\u001b\r\n]+)\r\n")]
    private static partial Regex RecordPattern();
}
