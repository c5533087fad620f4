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

    // ---- every shell's default: the README's rc snippet ------------------------------------------------------------

    /// <summary>The README's rc snippet for SHELL (the ```sh block that starts with "# ~/.zshrc" or "# ~/.bashrc").</summary>
    private static string ReadmeSnippet(string shell)
    {
        var readme = File.ReadAllText(Path.Combine(Repository.Root, "README.md"));
        var m = Regex.Match(readme, $"```sh\n(# ~/\\.{shell}rc[^\n]*\n.*?)```", RegexOptions.Singleline);
        Assert.True(m.Success, $"README.md has no ```sh block starting with '# ~/.{shell}rc'");
        return m.Groups[1].Value;
    }

    /// <summary>What a terminal got, split by nozoki's sequences: the text written between start and reset, and the rest.</summary>
    private static (string Painted, string Plain) SplitPainted(string raw)
    {
        var painted = new System.Text.StringBuilder("\n");
        var plain = new System.Text.StringBuilder("\n");
        var on = false;
        foreach (Match m in Regex.Matches(raw, "\u001b\\[1;31m|\u001b\\[0m|[^\u001b]+|\u001b"))
        {
            if (m.Value == "\u001b[1;31m") on = true;
            else if (m.Value == "\u001b[0m") on = false;
            else (on ? painted : plain).Append(m.Value);
        }

        return (painted.ToString(), plain.ToString());
    }

    [Theory]
    [InlineData("bash")]
    [InlineData("zsh")]
    public void The_readme_rc_snippet_makes_an_interactive_shell_paint_its_errors_and_only_them(string shell)
    {
        using var dir = new TempDir();
        var (exitFile, raw, file) = (dir.File("exit"), dir.File("raw"), dir.File("text"));
        File.WriteAllText(file, "vim-content-7\n");
        var bin = Directory.CreateDirectory(dir.File("bin")).FullName;
        File.CreateSymbolicLink(Path.Combine(bin, "nozoki"), NozokiCli.ExePath);
        // A prompt of our own and no history, then the README's snippet, as a user would append it.
        File.WriteAllText(dir.File($".{shell}rc"), (shell == "zsh" ? "PS1='nzk%# '\n" : "PS1='nzk$ '\n") + "HISTFILE=/dev/null\n" + ReadmeSnippet(shell));
        var command = $"cd {Tmux.Quote(dir.Path)} && unset NOZOKI_RUN ZDOTDIR; HOME={Tmux.Quote(dir.Path)} PATH={Tmux.Quote(bin)}:\"$PATH\" {shell} -i; " +
                      $"echo EXIT=$? > {Tmux.Quote(exitFile)}";
        using var tmux = Tmux.Start(command, 120, 40);
        var panePid = tmux.PanePid;
        tmux.WaitForScreen(s => s.Contains("nzk", StringComparison.Ordinal), StepTimeout, $"{shell}'s prompt");

        // The shell the pane started became nozoki (exec), which runs the one shell that prompts, traced.
        var traced = ProcessTree.WaitForDescendant(panePid, shell, StepTimeout);
        var tracer = ProcStatus.Get(traced).TracerPid;
        var nozoki = ProcStatus.Get(traced).PPid;
        Assert.True(tracer != 0 && Directory.Exists($"/proc/{nozoki}/task/{tracer}") && ProcStatus.Get(nozoki).PPid == panePid,
            $"{shell} (PID {traced}) is not traced by a nozoki the pane's command became; processes: {ProcessTree.Describe(panePid)}");
        Assert.Single(ProcessTree.Descendants(panePid), d => d.Status.Name == shell);

        // Errors painted (a command's, the shell's own echo, a function's, zsh's print -u2), stdout, the prompt and the
        // line being typed not. The typed lines hold $((6*7)): only the shell's output has 42.
        tmux.PipeTo(raw);
        tmux.TypeLine("echo out-$((6*7)); echo err-$((6*7)) >&2; ls /nonexistent-q7; f() { echo ferr-$((6*7)) >&2; }; f");
        tmux.TypeLine(shell == "zsh" ? "print -u2 perr-$((6*7))" : "printf '%s\\n' perr-$((6*7)) >&2");
        tmux.TypeLine("echo done-$((6*7))");
        tmux.WaitForScreen(s => Tmux.Lines(s).Contains("done-42"), StepTimeout, "the commands' output");
        Poll.Until(() => File.Exists(raw) && File.ReadAllText(raw).Contains("done-42", StringComparison.Ordinal), StepTimeout, "the output in the pipe-pane file");
        var (painted, plain) = SplitPainted(File.ReadAllText(raw));
        string Show() => $"painted:\n{painted.Replace("\u001b", "\\e", StringComparison.Ordinal)}\nnot painted:\n{plain.Replace("\u001b", "\\e", StringComparison.Ordinal)}";
        foreach (var line in new[] { "\nerr-42\r", "\nferr-42\r", "\nperr-42\r", "ls: cannot access '/nonexistent-q7': No such file or directory\r\n" })
            Assert.True(painted.Contains(line, StringComparison.Ordinal), $"not painted: {line.Trim()}\n{Show()}");
        foreach (var text in new[] { "out-42", "done-42", "nzk", "$((6*7))" })
        {
            Assert.False(painted.Contains(text, StringComparison.Ordinal), $"painted: {text}\n{Show()}");
            Assert.True(plain.Contains(text, StringComparison.Ordinal), $"missing: {text}\n{Show()}");
        }

        // Full-screen programs draw and exit.
        RunFullScreen(tmux, panePid, "vim -u NONE -N -n text", "vim", s => s.Contains("vim-content-7", StringComparison.Ordinal) && Tmux.Lines(s).Contains("~"), ":q", "Enter");
        RunFullScreen(tmux, panePid, "less text", "less", s => s.Contains("vim-content-7", StringComparison.Ordinal), "q");
        RunFullScreen(tmux, panePid, "top", "top", s => s.Contains("load average", StringComparison.Ordinal), "q");

        // Job control as without nozoki: Ctrl-C, Ctrl-Z, jobs, bg, fg.
        tmux.TypeLine("sleep 300");
        var sleep = ProcessTree.WaitForDescendant(panePid, "sleep", StepTimeout);
        Poll.Until(() => InForeground(sleep), StepTimeout, "sleep 300 in the terminal's foreground");
        tmux.SendKeys("C-c");
        Poll.Until(() => ProcStatus.Read(sleep) is null or { State: 'Z' }, StepTimeout, "sleep 300 to die of Ctrl-C");
        ExpectLine(tmux, "echo rc-$?", "rc-130");

        tmux.TypeLine("sleep 301");
        sleep = ProcessTree.WaitForDescendant(panePid, "sleep", StepTimeout);
        Poll.Until(() => InForeground(sleep), StepTimeout, "sleep 301 in the terminal's foreground");
        tmux.SendKeys("C-z");
        Poll.Until(() => ProcStatus.Read(sleep) is { State: 'T' or 't' }, StepTimeout, () => $"sleep 301 to stop on Ctrl-Z: {ProcStatus.Read(sleep)}");
        ExpectLine(tmux, "jobs > jobs1; echo jobs-$((6*7))", "jobs-42");
        Assert.Contains("sleep 301", File.ReadAllText(dir.File("jobs1")), StringComparison.Ordinal);
        ExpectLine(tmux, "bg; echo bg-$((6*7))", "bg-42");
        Poll.Until(() => ProcStatus.Read(sleep) is { State: 'S' or 'R' }, StepTimeout, () => $"sleep 301 to run again after bg: {ProcStatus.Read(sleep)}");
        ExpectLine(tmux, "jobs > jobs2; echo jobs2-$((6*7))", "jobs2-42");
        Assert.Matches("(?i)running.*sleep 301", File.ReadAllText(dir.File("jobs2")));
        tmux.TypeLine("fg");
        // Until the shell has run fg, Ctrl-C goes to the shell, not to sleep: wait until sleep's process group owns
        // the terminal.
        Poll.Until(() => InForeground(sleep) && ProcStatus.Read(sleep) is { State: 'S' or 'R' }, StepTimeout, "fg: sleep 301 in the terminal's foreground");
        tmux.SendKeys("C-c");
        Poll.Until(() => ProcStatus.Read(sleep) is null or { State: 'Z' }, StepTimeout, "sleep 301 to die of Ctrl-C after fg");
        ExpectLine(tmux, "echo rc2-$?", "rc2-130");

        tmux.TypeLine("exit 3");
        Assert.Equal(3, WaitForExitFile(tmux, exitFile));
        Poll.Until(() => !tmux.SessionExists, StepTimeout, "the tmux session to end", intervalMs: 50);
    }

    /// <summary>Whether PID's process group is its terminal's foreground group (/proc/PID/stat: pgrp == tpgid).</summary>
    private static bool InForeground(int pid)
    {
        string stat;
        try
        {
            stat = File.ReadAllText($"/proc/{pid}/stat");
        }
        catch (IOException)
        {
            return false;
        }

        // After "(comm) ": state ppid pgrp session tty_nr tpgid ...
        var f = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return f.Length > 5 && f[2] == f[5];
    }

    /// <summary>Types a command and waits for its output line.</summary>
    private static void ExpectLine(Tmux tmux, string command, string line)
    {
        tmux.TypeLine(command);
        tmux.WaitForScreen(s => Tmux.Lines(s).Any(l => l == line || l.EndsWith(" " + line, StringComparison.Ordinal)), StepTimeout, $"'{line}' after '{command}'");
    }

    /// <summary>Starts a full-screen program, waits for its screen, sends the keys that quit it, waits until it has gone and the shell answers.</summary>
    private static void RunFullScreen(Tmux tmux, int panePid, string command, string name, Func<string, bool> drawn, params string[] quit)
    {
        tmux.TypeLine(command);
        tmux.WaitForScreen(drawn, StepTimeout, $"{name}'s screen");
        ProcessTree.WaitForDescendant(panePid, name, StepTimeout);
        foreach (var key in quit) tmux.SendKeys(key);
        Poll.Until(() => ProcessTree.FindDescendant(panePid, name) is null, StepTimeout,
            () => $"{name} to quit.\n--- pane ---\n{tmux.Capture()}\n--- end ---", intervalMs: 50);
        ExpectLine(tmux, $"echo after-{name}-$((6*7))", $"after-{name}-42");
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
