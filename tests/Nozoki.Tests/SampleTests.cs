using Nozoki.Tests.Helpers;

namespace Nozoki.Tests;

/// <summary>samples/Peek, a program built on the library's public API only, run against a real process.</summary>
[Collection(PtraceCollection.Name)]
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class SampleTests
{
    [Fact]
    public void Peek_mirrors_output_traces_syscalls_and_leaves_the_process_running()
    {
        using var dir = new TempDir();
        const int Count = 500;
        using var ticker = Ticker.Start(dir, 10, Count);
        using var peek = ExternalProcess.Start("peek", Path.Combine(AppContext.BaseDirectory, "Peek"), [$"{ticker.Pid}", "3"]);
        var code = peek.WaitForExit(TimeSpan.FromSeconds(60));
        var lines = peek.StdoutLines();
        Assert.True(code == 0, $"peek exited {code}.\n{peek.Describe()}");
        // The mirror (a callback sink): the ticker's own lines, from both streams.
        Assert.Contains(lines, l => System.Text.RegularExpressions.Regex.IsMatch(l, @"^peek: out fd=1: tick \d+$"));
        Assert.Contains(lines, l => System.Text.RegularExpressions.Regex.IsMatch(l, @"^peek: out fd=2: tock \d+$"));
        // The IAsyncEnumerable adapter: exactly 3 syscalls shown, among them the ticker's writes, nothing lost.
        var syscalls = lines.Where(l => l.StartsWith("peek: syscall ", StringComparison.Ordinal)).ToList();
        Assert.True(syscalls.Count == 3, $"expected 3 syscalls.\n{peek.Describe()}");
        Assert.Contains(lines, l => l.StartsWith($"peek: detached from PID {ticker.Pid} (Detached); 0 events lost", StringComparison.Ordinal));
        // Detached: the ticker runs on, untraced, and finishes unchanged (every tick and tock, its own exit status).
        Ticker.AssertNotTraced(ticker.Pid);
        Ticker.AssertFinishesNormally(ticker, Count);
    }
}
