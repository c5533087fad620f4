using Nozoki.Tests.Helpers;

namespace Nozoki.Tests;

/// <summary>
/// nozoki's output cannot be written (a full disk: /dev/full gives ENOSPC). Unlike a reader that has gone (EPIPE,
/// a normal end) the output is being lost: one `nozoki: error:` line and exit 1, after detaching cleanly (an attached
/// process runs on untouched) or, for a launched command, after it has run to its end.
/// </summary>
[Collection(PtraceCollection.Name)]
public sealed class OutputFailureTests
{
    private static readonly TimeSpan Step = TimeSpan.FromSeconds(15);

    /// <summary>nozoki with its stdout on /dev/full (stderr is read by the test).</summary>
    private static ExternalProcess StartWithFullStdout(params string[] args) =>
        ExternalProcess.Start("nozoki >/dev/full", "sh", ["-c", "exec \"$@\" >/dev/full", "sh", NozokiCli.DotnetHost, NozokiCli.DllPath, .. args]);

    private static void AssertOneError(ExternalProcess nozoki, string expected)
    {
        nozoki.AssertNoStackTrace();
        var errors = nozoki.StderrLines().Where(l => l.Contains("error", StringComparison.Ordinal)).ToList();
        Assert.True(errors.Count == 1 && errors[0] == expected, $"expected the one error line '{expected}'.\n{nozoki.Describe()}");
    }

    [Fact]
    public void Out_to_a_full_disk_is_an_error_and_the_process_runs_on_untouched()
    {
        using var dir = new TempDir();
        using var ticker = Ticker.Start(dir, intervalMs: 20, count: 150);
        using var nozoki = StartWithFullStdout("out", $"{ticker.Pid}");
        var code = nozoki.WaitForExit(NozokiCli.ExitTimeout);
        Assert.True(code == 1, $"expected exit 1, got {code}.\n{nozoki.Describe()}");
        AssertOneError(nozoki, "nozoki: error: cannot write to stdout (/dev/full): No space left on device");
        Assert.Contains($"nozoki: detached from PID {ticker.Pid}", nozoki.StderrText(), StringComparison.Ordinal);
        Ticker.AssertNotTraced(ticker.Pid);
        Ticker.AssertFinishesNormally(ticker, 150);
    }

    [Fact]
    public void Trace_of_a_launched_command_to_a_full_disk_is_an_error_after_the_command_ran_to_its_end()
    {
        using var dir = new TempDir();
        var done = dir.File("done");
        using var nozoki = NozokiCli.Start(["trace", "-o", "/dev/full", "--", "sh", "-c", $"echo finished >{done}; exit 3"]);
        var code = nozoki.WaitForExit(NozokiCli.ExitTimeout);
        Assert.True(code == 1, $"expected exit 1, got {code}.\n{nozoki.Describe()}");
        AssertOneError(nozoki, "nozoki: error: cannot write to /dev/full: No space left on device");
        Assert.Equal("finished\n", File.ReadAllText(done));
    }

    [Fact]
    public void Trace_of_an_attached_process_to_a_full_disk_is_an_error_and_the_process_runs_on_untouched()
    {
        using var dir = new TempDir();
        using var ticker = Ticker.Start(dir, intervalMs: 20, count: 150);
        using var nozoki = NozokiCli.Start(["trace", "-o", "/dev/full", "-p", $"{ticker.Pid}"]);
        nozoki.WaitForAttached(ticker.Pid);
        // The trace to a file is buffered: the failure shows at the latest when nozoki detaches and flushes it.
        nozoki.Signal(Posix.SIGINT);
        var code = nozoki.WaitForExit(NozokiCli.ExitTimeout);
        Assert.True(code == 1, $"expected exit 1, got {code}.\n{nozoki.Describe()}");
        AssertOneError(nozoki, "nozoki: error: cannot write to /dev/full: No space left on device");
        Ticker.AssertNotTraced(ticker.Pid);
        Ticker.AssertFinishesNormally(ticker, 150);
    }

    [Theory]
    [InlineData("uprobe")]
    [InlineData("ptrace")]
    public void Usdt_of_a_launched_command_to_a_full_disk_is_an_error_after_the_command_ran_to_its_end(string via)
    {
        using var dir = new TempDir();
        var output = dir.File("out");
        using var nozoki = StartWithFullStdout("usdt", "--via", via, "fixture:one", "--",
            "sh", "-c", $"exec {ProbesFixtures.Exe} --loops 2000 --sleep-us 100 >{output}");
        var code = nozoki.WaitForExit(NozokiCli.ExitTimeout);
        Assert.True(code == 1, $"expected exit 1, got {code}.\n{nozoki.Describe()}");
        AssertOneError(nozoki, "nozoki: error: cannot write to stdout (/dev/full): No space left on device");
        // Detached when the output failed, then waited for: it ran all its loops, untraced.
        Assert.Contains("checksum ", TempDir.ReadText(output), StringComparison.Ordinal);
    }
}
