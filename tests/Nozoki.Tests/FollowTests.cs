using Nozoki.Tests.Helpers;
using Nozoki.Tracing;

namespace Nozoki.Tests;

[Collection(PtraceCollection.Name)]
public sealed class FollowTests
{
    private const int N = 50;

    private static List<string> Expected(params string[] who) =>
        who.SelectMany(w => Enumerable.Range(0, N).Select(i => $"{w} {i}")).Order(StringComparer.Ordinal).ToList();

    private static List<string> RunForker(bool follow, out List<string> fixtureOwnLines)
    {
        using var dir = new TempDir();
        using var tracee = Tracee.StartFixture("forker", ["--wait", $"{N}"], stdinPipe: true,
            stdoutPath: dir.File("out"), stderrPath: dir.File("err"));
        using var nozoki = NozokiCli.Start(follow ? ["out", "-f", $"{tracee.Pid}"] : ["out", $"{tracee.Pid}"]);
        nozoki.WaitForAttached(tracee.Pid);
        tracee.Release();

        Assert.Equal(new ExitStatus(0, 0), tracee.WaitForExit());
        Assert.Equal(0, nozoki.WaitForExit(NozokiCli.ExitTimeout));
        nozoki.AssertNoStackTrace();
        fixtureOwnLines = ExternalProcess.SplitLines(TempDir.ReadText(dir.File("out"))).Order(StringComparer.Ordinal).ToList();
        return ExternalProcess.SplitLines(nozoki.StdoutText()).Order(StringComparer.Ordinal).ToList();
    }

    [Fact]
    public void Follow_mirrors_children_and_grandchildren_exactly_once()
    {
        var mirrored = RunForker(follow: true, out var own);
        Assert.Equal(Expected("parent", "child", "grandchild"), own);
        Assert.Equal(Expected("parent", "child", "grandchild"), mirrored);
    }

    [Fact]
    public void Without_follow_only_the_attached_process_is_mirrored()
    {
        var mirrored = RunForker(follow: false, out var own);
        Assert.Equal(Expected("parent", "child", "grandchild"), own);
        Assert.Equal(Expected("parent"), mirrored);
    }
}
