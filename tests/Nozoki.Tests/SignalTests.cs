using Nozoki.Tests.Helpers;
using Nozoki.Tracing;

namespace Nozoki.Tests;

[Collection(PtraceCollection.Name)]
public sealed class SignalTests
{
    private static readonly TimeSpan Step = TimeSpan.FromSeconds(15);

    [Fact]
    public void Signals_sent_to_a_traced_process_are_delivered_exactly_once()
    {
        const int count = 50;
        using var dir = new TempDir();
        using var tracee = Tracee.StartFixture("sigcount", [], stdoutPath: dir.File("out"), stderrPath: dir.File("err"));
        Poll.Until(() => TempDir.ReadText(dir.File("out")) == "ready\n", Step, "sigcount to write 'ready'");

        using var nozoki = NozokiCli.Start(["out", $"{tracee.Pid}"]);
        nozoki.WaitForAttached(tracee.Pid);

        for (var k = 1; k <= count; k++)
        {
            tracee.Child.Signal(Posix.SIGUSR1);
            var line = $"usr1 {k}\n";
            nozoki.WaitForStdout(s => s.Contains(line, StringComparison.Ordinal), Step, $"mirrored line 'usr1 {k}'");
        }

        tracee.Child.Signal(Posix.SIGTERM);
        nozoki.WaitForStdout(s => s.Contains($"total {count}\n", StringComparison.Ordinal), Step, $"mirrored 'total {count}'");
        Assert.Equal(new ExitStatus(0, 0), tracee.WaitForExit());
        Assert.Equal(0, nozoki.WaitForExit(NozokiCli.ExitTimeout));
        nozoki.AssertNoStackTrace();

        var expected = string.Concat(Enumerable.Range(1, count).Select(k => $"usr1 {k}\n")) + $"total {count}\n";
        Assert.Equal(expected, nozoki.StdoutText());
        Assert.Equal("ready\n" + expected, TempDir.ReadText(dir.File("out")));
        Assert.Contains($"nozoki: PID {tracee.Pid} exited with status 0", NozokiCli.OwnLines(nozoki.StderrText()));
    }
}
