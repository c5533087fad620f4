using System.Diagnostics;
using System.Globalization;

namespace Nozoki.Tests.Helpers;

/// <summary>
/// A private tmux server (its own socket in the temporary directory, no configuration file) with one detached session of a fixed size: a real
/// terminal for interactive tests. Every tmux command is bounded; Dispose kills the server and whatever runs in it.
/// </summary>
internal sealed class Tmux : IDisposable
{
    private static readonly TimeSpan CommandTimeout = TimeSpan.FromSeconds(20);
    private readonly string _socket = Path.Combine(Path.GetTempPath(), "nozoki-tmux-" + Guid.NewGuid().ToString("N")[..12]);
    private readonly string _tmux;

    private Tmux(string tmux) => _tmux = tmux;

    public const string Session = "nozoki";

    /// <summary>Starts a detached session running `sh -c SHELLCOMMAND` in a WIDTH x HEIGHT terminal.</summary>
    public static Tmux Start(string shellCommand, int width = 120, int height = 40)
    {
        var tmux = new[] { "/usr/bin/tmux", "/bin/tmux", "/usr/local/bin/tmux" }.FirstOrDefault(File.Exists);
        if (tmux is null) Assert.Fail("tmux is not installed (Debian package: tmux); the interactive tests need it");
        var t = new Tmux(tmux);
        try
        {
            t.Run("new-session", "-d", "-s", Session, "-x", $"{width}", "-y", $"{height}", shellCommand);
            return t;
        }
        catch
        {
            t.Dispose();
            throw;
        }
    }

    /// <summary>Single-quotes a word for sh.</summary>
    public static string Quote(string s) => "'" + s.Replace("'", "'\\''", StringComparison.Ordinal) + "'";

    /// <summary>The visible pane as plain text (no escape sequences); a description of the failure if tmux fails.</summary>
    public string Capture(bool escapes = false)
    {
        var (code, stdout, stderr) = TryRun(escapes ? ["capture-pane", "-p", "-e", "-t", Session] : ["capture-pane", "-p", "-t", Session]);
        return code == 0 ? stdout : $"(capture-pane failed with {code}: {stderr.Trim()})";
    }

    /// <summary>
    /// From now on, appends every byte the pane's program writes to the terminal, exactly as written (escape
    /// sequences, \r\n), to FILE: what a terminal got, in its order, where <see cref="Capture"/> shows only what is on
    /// the screen now.
    /// </summary>
    public void PipeTo(string file) => Run("pipe-pane", "-o", "-t", Session, $"cat >> {Quote(file)}");

    /// <summary>The PID of the process the pane runs (the sh -c of <see cref="Start"/>).</summary>
    public int PanePid
    {
        get
        {
            var text = Run("display-message", "-p", "-t", Session, "#{pane_pid}").Trim();
            return int.Parse(text, CultureInfo.InvariantCulture);
        }
    }

    public bool SessionExists => TryRun("has-session", "-t", Session).Code == 0;

    /// <summary>Sends keys as tmux key names (e.g. "Enter", "C-c", "q").</summary>
    public void SendKeys(params string[] keys) => Run(["send-keys", "-t", Session, .. keys]);

    /// <summary>Types a text literally (no key-name lookup).</summary>
    public void Type(string text) => Run("send-keys", "-t", Session, "-l", text);

    /// <summary>Types a line and presses Enter.</summary>
    public void TypeLine(string text)
    {
        Type(text);
        SendKeys("Enter");
    }

    /// <summary>Waits until the pane's text satisfies <paramref name="predicate"/>; fails with the pane text on timeout.</summary>
    public string WaitForScreen(Func<string, bool> predicate, TimeSpan timeout, string what)
    {
        var sw = Stopwatch.StartNew();
        while (true)
        {
            var screen = Capture();
            if (predicate(screen)) return screen;
            if (sw.Elapsed > timeout)
                Assert.Fail($"Timed out after {timeout.TotalSeconds:0.#} s waiting for {what}.\n--- pane ---\n{screen}\n--- end ---");
            Thread.Sleep(50);
        }
    }

    /// <summary>The non-empty lines of a captured screen, right-trimmed.</summary>
    public static List<string> Lines(string screen) =>
        screen.Split('\n').Select(l => l.TrimEnd()).Where(l => l.Length > 0).ToList();

    private string Run(params string[] args)
    {
        var (code, stdout, stderr) = TryRun(args);
        if (code != 0) Assert.Fail($"tmux {string.Join(' ', args)} failed with {code}: {stderr.Trim()}");
        return stdout;
    }

    private (int Code, string Stdout, string Stderr) TryRun(params string[] args)
    {
        var psi = new ProcessStartInfo(_tmux)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in (string[])["-S", _socket, "-f", "/dev/null", .. args]) psi.ArgumentList.Add(a);
        psi.Environment.Remove("TMUX"); // not a nested client of a tmux the tests might run in
        psi.Environment["SHELL"] = "/bin/sh"; // the session's command runs as sh -c COMMAND
        using var p = Process.Start(psi) ?? throw new InvalidOperationException("could not start tmux");
        p.StandardInput.Close();
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(CommandTimeout))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail($"tmux {string.Join(' ', args)} did not finish within {CommandTimeout.TotalSeconds} s");
        }

        p.WaitForExit();
        return (p.ExitCode, stdout.GetAwaiter().GetResult(), stderr.GetAwaiter().GetResult());
    }

    public void Dispose()
    {
        try
        {
            TryRun("kill-server");
        }
        catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception or Xunit.Sdk.XunitException)
        {
        }

        try
        {
            File.Delete(_socket); // the server leaves its socket behind
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
    }
}
