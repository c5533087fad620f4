using Nozoki.Tests.Helpers;

namespace Nozoki.Tests;

/// <summary>
/// Job-control stops (SIGSTOP/SIGCONT) of a tracee must behave as without nozoki. Note: while a ptracer is
/// attached, the kernel reports a group-stopped tracee as 't' (tracing stop) in /proc, not 'T' (strace -p shows the
/// same), so while attached "stopped" means State 'T' or 't'; after detaching it must be exactly 'T'.
/// </summary>
[Collection(PtraceCollection.Name)]
public sealed class StoppedTraceeTests
{
    private const int Interval = 50, Count = 100;
    private static readonly TimeSpan Step = TimeSpan.FromSeconds(10);

    private static bool IsStopped(char state) => state is 'T' or 't';

    /// <summary>A ticker that nozoki out mirrors (3 ticks seen), then stopped by SIGSTOP while attached.</summary>
    private static (Tracee Ticker, ExternalProcess Nozoki) AttachThenStop(TempDir dir)
    {
        var ticker = Ticker.Start(dir, Interval, Count);
        ExternalProcess? nozoki = null;
        try
        {
            nozoki = NozokiCli.Start(["out", $"{ticker.Pid}"]);
            nozoki.WaitForAttached(ticker.Pid);
            nozoki.WaitForStdout(s => s.Split('\n').Length > 3, Step, "3 mirrored ticks");
            ticker.Child.Signal(Posix.SIGSTOP);
            Poll.Until(() => IsStopped(ticker.Status.State), Step, () => $"the ticker to stop ({ProcStatus.Read(ticker.Pid)})");
            return (ticker, nozoki);
        }
        catch
        {
            nozoki?.Dispose();
            ticker.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Over five of its intervals (a running ticker writes a tick in each), the ticker stays stopped and writes
    /// nothing, neither to its file nor through nozoki.
    /// </summary>
    private static void AssertStaysStopped(Tracee ticker, ExternalProcess? nozoki)
    {
        // nozoki's output of the writes made before the stop reaches the test first.
        var lastTick = Ticker.LastTick(ticker);
        if (nozoki is not null && nozoki.StdoutText().Length > 0)
            nozoki.WaitForStdout(s => Ticker.Numbers(s) is { Count: > 0 } t && t[^1] == lastTick, Step,
                $"nozoki to mirror tick {lastTick}, the last before the stop");
        var fileLength = TempDir.Length(ticker.StdoutPath!);
        var mirrored = nozoki?.StdoutText();
        for (var i = 0; i < 10; i++)
        {
            Thread.Sleep(Interval / 2);
            var st = ticker.Status;
            Assert.True(IsStopped(st.State), $"the stopped ticker was resumed: {st}");
            Assert.True(TempDir.Length(ticker.StdoutPath!) == fileLength, "the stopped ticker wrote a tick");
            if (nozoki is not null)
                Assert.Equal(mirrored, nozoki.StdoutText());
        }
    }

    /// <summary>SIGCONT: the ticker writes new ticks, and nozoki (still attached) mirrors them.</summary>
    private static void ContinueAndAssertResumes(Tracee ticker, ExternalProcess nozoki)
    {
        var lastBefore = Ticker.LastTick(ticker);
        ticker.Child.Signal(Posix.SIGCONT);
        Poll.Until(() => Ticker.LastTick(ticker) > lastBefore + 1, Step, "ticks to resume after SIGCONT");
        nozoki.WaitForStdout(s => Ticker.Numbers(s) is { Count: > 0 } t && t[^1] > lastBefore + 1, Step,
            "nozoki to mirror the ticks written after SIGCONT");
    }

    private static void DetachAndAssertFinishes(Tracee ticker, ExternalProcess nozoki)
    {
        nozoki.Signal(Posix.SIGINT);
        Assert.Equal(0, nozoki.WaitForExit(Step));
        nozoki.AssertNoStackTrace();
        Ticker.AssertNotTraced(ticker.Pid);
        var mirrored = Ticker.Numbers(nozoki.StdoutText());
        Ticker.AssertConsecutive(mirrored, "mirrored ticks");
        Ticker.AssertFinishesNormally(ticker, Count);
    }

    [Fact]
    public void Process_stopped_before_attach_stays_stopped_and_resumes_on_SIGCONT()
    {
        using var dir = new TempDir();
        using var ticker = Ticker.Start(dir, Interval, Count);
        Poll.Until(() => Ticker.LastTick(ticker) >= 3, Step, "the ticker's first ticks");
        ticker.Child.Signal(Posix.SIGSTOP);
        ProcStatus.WaitForState(ticker.Pid, 'T', Step);

        using var nozoki = NozokiCli.Start(["out", $"{ticker.Pid}"]);
        nozoki.WaitForAttached(ticker.Pid);
        AssertStaysStopped(ticker, nozoki);
        Assert.Equal("", nozoki.StdoutText());

        ContinueAndAssertResumes(ticker, nozoki);
        DetachAndAssertFinishes(ticker, nozoki);
    }

    [Fact]
    public void Process_stopped_while_attached_stays_stopped_and_resumes_on_SIGCONT()
    {
        using var dir = new TempDir();
        var (ticker, nozoki) = AttachThenStop(dir);
        using var _ = ticker;
        using var __ = nozoki;
        AssertStaysStopped(ticker, nozoki);

        ContinueAndAssertResumes(ticker, nozoki);
        DetachAndAssertFinishes(ticker, nozoki);
    }

    [Fact]
    public void Process_stopped_while_attached_is_left_stopped_by_detach()
    {
        using var dir = new TempDir();
        var (ticker, nozoki) = AttachThenStop(dir);
        using var _ = ticker;
        using var __ = nozoki;

        nozoki.Signal(Posix.SIGINT);
        Assert.Equal(0, nozoki.WaitForExit(Step));
        nozoki.AssertNoStackTrace();
        Ticker.AssertNotTraced(ticker.Pid, expectedState: 'T');
        AssertStaysStopped(ticker, null);
        Assert.Equal('T', ticker.Status.State);

        var lastBefore = Ticker.LastTick(ticker);
        ticker.Child.Signal(Posix.SIGCONT);
        Poll.Until(() => Ticker.LastTick(ticker) > lastBefore, Step, "ticks to resume after SIGCONT");
        Ticker.AssertFinishesNormally(ticker, Count);
    }
}
