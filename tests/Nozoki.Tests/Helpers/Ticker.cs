using System.Globalization;
using Nozoki.Tracing;

namespace Nozoki.Tests.Helpers;

/// <summary>Helpers for the ticker fixture ("tick i" on fd 1, "tock i" on fd 2, i = 1..COUNT, then exit 7).</summary>
internal static class Ticker
{
    public const int ExitCode = 7;

    public static Tracee Start(TempDir dir, int intervalMs, int count) =>
        Tracee.StartFixture("ticker", [$"{intervalMs}", $"{count}", $"{ExitCode}"],
            stdoutPath: dir.File("out"), stderrPath: dir.File("err"));

    /// <summary>The tick numbers in a text of "tick i" lines (asserting the format).</summary>
    public static List<int> Numbers(string text, string word = "tick")
    {
        var result = new List<int>();
        foreach (var line in ExternalProcess.SplitLines(text))
        {
            Assert.StartsWith(word + " ", line, StringComparison.Ordinal);
            result.Add(int.Parse(line.AsSpan(word.Length + 1), CultureInfo.InvariantCulture));
        }

        return result;
    }

    public static int LastTick(Tracee ticker) => Numbers(ticker.StdoutFileText()) is { Count: > 0 } n ? n[^1] : 0;

    /// <summary>The mirrored ticks are consecutive numbers (nothing lost or duplicated while attached).</summary>
    public static void AssertConsecutive(IReadOnlyList<int> ticks, string what)
    {
        for (var i = 1; i < ticks.Count; i++)
        {
            if (ticks[i] != ticks[i - 1] + 1)
                Assert.Fail($"{what}: tick {ticks[i]} follows tick {ticks[i - 1]} ({string.Join(",", ticks)})");
        }
    }

    /// <summary>
    /// Waits for the ticker to finish: exit status 7, all ticks and tocks 1..count in order in its files. Once it has
    /// no tracer (nozoki is gone), SIGUSR2 makes it write its remaining ticks without sleeping, so that the test
    /// waits for its end, not for its lifetime; a ticker still traced is left to its own pace.
    /// </summary>
    public static void AssertFinishesNormally(Tracee ticker, int count)
    {
        if (ProcStatus.Read(ticker.Pid) is { TracerPid: 0, State: not 'Z' and not 'T' and not 't' })
        {
            // A ticker attached (and let go) right after its start may not have installed its handler yet: SIGUSR2
            // would kill it. It installs it before its first tick, so wait for that (or its end).
            Poll.Until(() => ProcStatus.Read(ticker.Pid) is not { } st || st.State == 'Z' || st.Catches(Posix.SIGUSR2), TimeSpan.FromSeconds(10),
                () => $"ticker {ticker.Pid} to install its SIGUSR2 handler");
            Posix.TryKill(ticker.Pid, Posix.SIGUSR2);
        }
        Assert.Equal(new ExitStatus(ExitCode, 0), ticker.WaitForExit());
        Assert.Equal(Enumerable.Range(1, count), Numbers(ticker.StdoutFileText()));
        Assert.Equal(Enumerable.Range(1, count), Numbers(ticker.StderrFileText(), "tock"));
    }

    /// <summary>After nozoki is gone: the process is not in a tracing stop and has no tracer.</summary>
    public static void AssertNotTraced(int pid, char? expectedState = null)
    {
        var st = ProcStatus.Get(pid);
        Assert.True(st.State != 't', $"PID {pid} is still in a tracing stop after nozoki ended: {st}");
        Assert.True(st.TracerPid == 0, $"PID {pid} still has tracer {st.TracerPid} after nozoki ended: {st}");
        if (expectedState is { } s)
            Assert.True(st.State == s, $"PID {pid} should be in State '{s}': {st}");
    }
}
