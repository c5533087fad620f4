using Nozoki.Tests.Helpers;
using Nozoki.Tracing;

namespace Nozoki.Tests;

[Collection(PtraceCollection.Name)]
public sealed class SessionFailureTests
{
    private sealed class Boom : Exception
    {
        public Boom() : base("observer failed") { }
    }

    /// <summary>Throws from the callback named by <paramref name="where"/> at its first call.</summary>
    private sealed class ThrowingObserver(string where) : ITraceObserver
    {
        public void OnSyscallEnter(in SyscallEnterStop stop)
        {
            if (where == "enter") throw new Boom();
        }

        public void OnSyscallExit(in SyscallExitStop stop)
        {
            if (where == "exit") throw new Boom();
        }
    }

    [Theory]
    [InlineData("enter")]
    [InlineData("exit")]
    public async Task An_observer_that_throws_ends_the_session_and_the_tracee_runs_on_unchanged(string where)
    {
        using var dir = new TempDir();
        using var ticker = Ticker.Start(dir, 20, 150);
        using var session = TraceSession.Attach(ticker.Pid, new ThrowingObserver(where));
        var result = await session.Completion.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(TraceEndReason.Failed, result.Reason);
        Assert.IsType<Boom>(result.Error);
        Ticker.AssertNotTraced(ticker.Pid);
        Ticker.AssertFinishesNormally(ticker, 150);
    }
}
