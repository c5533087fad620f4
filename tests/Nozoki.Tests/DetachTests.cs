using System.Text;
using Nozoki.Tests.Helpers;

namespace Nozoki.Tests;

[Collection(PtraceCollection.Name)]
public sealed class DetachTests
{
    private const int Interval = 50, Count = 100;
    private static readonly TimeSpan DetachTimeout = TimeSpan.FromSeconds(10);

    public static TheoryData<string> Causes => new() { "SIGINT", "SIGTERM", "SIGHUP", "stdout-closed" };

    [Theory]
    [MemberData(nameof(Causes))]
    public void Nozoki_detaches_cleanly_and_the_tracee_runs_on_unchanged(string cause)
    {
        using var dir = new TempDir();
        using var ticker = Ticker.Start(dir, Interval, Count);

        // For "stdout-closed" the test reads only the first mirrored line, then closes its end of nozoki's stdout.
        var firstLine = new MemoryStream();
        OutputSink? sink = cause == "stdout-closed"
            ? chunk =>
            {
                firstLine.Write(chunk);
                return !chunk.Contains((byte)'\n');
            }
            : null;
        using var nozoki = NozokiCli.Start(["out", $"{ticker.Pid}"], sink);
        nozoki.WaitForAttached(ticker.Pid);

        switch (cause)
        {
            case "stdout-closed":
                nozoki.CloseStdout();
                break;
            default:
                nozoki.WaitForStdout(s => s.Split('\n').Length > 3, TimeSpan.FromSeconds(10), "3 mirrored ticks");
                nozoki.Signal(cause switch { "SIGINT" => Posix.SIGINT, "SIGTERM" => Posix.SIGTERM, _ => Posix.SIGHUP });
                break;
        }

        Assert.Equal(0, nozoki.WaitForExit(DetachTimeout));
        var status = ProcStatus.Read(ticker.Pid);
        Assert.True(status is not null && status.State != 'Z',
            $"the ticker finished before nozoki detached, so the test proves nothing (status: {status})");
        Ticker.AssertNotTraced(ticker.Pid);
        nozoki.AssertNoStackTrace();
        Assert.Contains($"nozoki: detached from PID {ticker.Pid}", NozokiCli.OwnLines(nozoki.StderrText()));

        var mirrored = cause == "stdout-closed" ? Encoding.UTF8.GetString(firstLine.ToArray()) : nozoki.StdoutText();
        var ticks = Ticker.Numbers(mirrored);
        Assert.NotEmpty(ticks);
        Ticker.AssertConsecutive(ticks, "mirrored ticks");
        Assert.True(ticks[^1] < Count, "nozoki mirrored the last tick although it detached before the end");

        Ticker.AssertFinishesNormally(ticker, Count);
    }
}
