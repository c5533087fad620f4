using System.Text.RegularExpressions;
using Nozoki.Tests.Helpers;
using Nozoki.Tracing;

namespace Nozoki.Tests;

[Collection(PtraceCollection.Name)]
public sealed partial class ThreadsTests
{
    [GeneratedRegex(@"^t(\d+) l(\d+) \.*$")]
    private static partial Regex LineFormat();

    /// <summary>The exact line (without \n) the threads fixture writes for thread t, line l.</summary>
    private static string ExpectedLine(int t, int l)
    {
        var head = $"t{t} l{l} ";
        var want = Math.Max(20 + (t * 131 + l * 37) % 181, head.Length + 1);
        return head + new string('.', want - 1 - head.Length);
    }

    [Fact]
    public void Concurrent_writes_from_8_threads_each_appear_exactly_once_and_intact()
    {
        const int threads = 8, lines = 2000;
        using var dir = new TempDir();
        using var tracee = Tracee.StartFixture("threads", ["--wait", $"{threads}", $"{lines}"], stdinPipe: true,
            stdoutPath: dir.File("out"), stderrPath: dir.File("err"));
        using var nozoki = NozokiCli.OutToTheEnd(tracee);

        var text = nozoki.StdoutText();
        Assert.EndsWith("\n", text, StringComparison.Ordinal);
        var seen = new HashSet<(int, int)>();
        var lastLine = Enumerable.Repeat(-1, threads).ToArray();
        foreach (var line in ExternalProcess.SplitLines(text))
        {
            var m = LineFormat().Match(line);
            Assert.True(m.Success, $"mangled line in the mirror: '{line}'");
            int t = int.Parse(m.Groups[1].Value), l = int.Parse(m.Groups[2].Value);
            Assert.InRange(t, 0, threads - 1);
            Assert.InRange(l, 0, lines - 1);
            Assert.Equal(ExpectedLine(t, l), line);
            Assert.True(seen.Add((t, l)), $"line t{t} l{l} appears more than once");
            Assert.True(l > lastLine[t], $"thread {t}: line {l} after line {lastLine[t]}");
            lastLine[t] = l;
        }

        Assert.Equal(threads * lines, seen.Count);
        // Sanity check of the fixture itself: its own output has the same lines.
        Assert.Equal(threads * lines, ExternalProcess.SplitLines(TempDir.ReadText(dir.File("out"))).Distinct().Count());
    }
}
