using System.Globalization;
using Nozoki.Tests.Helpers;

namespace Nozoki.Tests;

/// <summary>
/// `nozoki run` in a real terminal (a tmux pane): an interactive shell and a full-screen program work under it, and
/// Ctrl-C / Ctrl-\ typed at the terminal reach the command without killing nozoki.
/// </summary>
[Collection(PtraceCollection.Name)]
public sealed class RunTerminalTests
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
}
