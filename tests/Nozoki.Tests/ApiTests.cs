using Nozoki.Tests.Helpers;
using Nozoki.Trace;
using Nozoki.Tracing;

namespace Nozoki.Tests;

/// <summary>The public library API's promises: cancellation detaches, launch needs its stage, the async adapter counts what it drops.</summary>
[Collection(PtraceCollection.Name)]
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class ApiTests
{
    [Fact]
    public void Launch_without_a_launch_stage_says_what_Main_must_do()
    {
        // The test host never calls LaunchStage.RunIfRequested, and no StageCommand names a program that does.
        var e = Assert.Throws<InvalidOperationException>(() => TraceSession.Launch(["/bin/true"], new SyscallTracer(new SyscallEventStream())));
        Assert.Contains("LaunchStage.RunIfRequested(args)", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Attach_with_a_cancelled_token_touches_nothing()
    {
        using var dir = new TempDir();
        using var ticker = Ticker.Start(dir, 10, 100);
        Assert.Throws<OperationCanceledException>(() => TraceSession.Attach(ticker.Pid, new SyscallTracer(new SyscallEventStream()), null, new CancellationToken(canceled: true)));
        Ticker.AssertNotTraced(ticker.Pid);
        Ticker.AssertFinishesNormally(ticker, 100);
    }

    [Fact]
    public async Task Cancelling_detaches_and_a_slow_consumer_is_told_how_many_events_were_dropped()
    {
        using var dir = new TempDir();
        const int Count = 300;
        using var ticker = Ticker.Start(dir, 5, Count);
        // Room for one event, and nobody reads until the end: every later event is dropped, and counted.
        var events = new SyscallEventStream(capacity: 1);
        using var stop = new CancellationTokenSource();
        var session = TraceSession.Attach(ticker.Pid, new SyscallTracer(events, new SyscallTracerOptions { SplitInterleaved = false }), null, stop.Token);
        events.CompleteWith(session);
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (events.Lost < 10 && DateTime.UtcNow < deadline) await Task.Delay(10);
        Assert.True(events.Lost >= 10, $"only {events.Lost} events dropped in 30 s");

        await stop.CancelAsync();
        var result = await session.Completion.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(TraceEndReason.Detached, result.Reason);
        var read = new List<TraceEvent>();
        await foreach (var e in events.ReadAllAsync()) read.Add(e);
        // The queued event came before any drop; the drops after it are in the total.
        Assert.Single(read);
        Assert.Equal(0, read[0].LostBefore);
        Assert.True(events.Lost >= 10);

        Ticker.AssertNotTraced(ticker.Pid);
        Ticker.AssertFinishesNormally(ticker, Count);
    }
}
