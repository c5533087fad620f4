using Nozoki.Tests.Helpers;

namespace Nozoki.Tests;

[Collection(PtraceCollection.Name)]
public sealed class DemoTests
{
    [Fact]
    public void Demo_runs_and_exits_0()
    {
        using var demo = NozokiCli.Start(["demo"]);
        var code = demo.WaitForExit(NozokiCli.ExitTimeout);
        demo.AssertNoStackTrace();
        Assert.True(code == 0, $"nozoki demo exited with {code}:\n{demo.Describe()}");
        Assert.Contains("tick", demo.StdoutText(), StringComparison.Ordinal);
    }

    /// <summary>
    /// The ticker is a .NET program: besides its 3 writers it has a main thread and the runtime's own, and nozoki
    /// attaches to (and counts) them all. The demo must not call the ticker "3 threads" next to nozoki's "9 threads".
    /// </summary>
    [Fact]
    public void Demo_says_truly_which_threads_nozoki_attaches_to()
    {
        using var demo = NozokiCli.Start(["demo", "--seconds", "1"]);
        Assert.True(demo.WaitForExit(NozokiCli.ExitTimeout) == 0, demo.Describe());
        var attached = demo.StderrLines().Select(l => NozokiCli.AttachedLine().Match(l)).Single(m => m.Success);
        var threads = int.Parse(attached.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(threads > 3, $"nozoki attached to {threads} threads of a .NET program with 3 writers");

        var stdout = demo.StdoutText();
        Assert.DoesNotMatch(@"PID \d+: \d+ threads", stdout); // the old "ticker, PID n: 3 threads writing..."
        Assert.Contains("3 threads write numbered lines", stdout, StringComparison.Ordinal);
        Assert.Contains("every thread", stdout, StringComparison.Ordinal);
        Assert.Contains("the .NET runtime's own threads", stdout, StringComparison.Ordinal);
    }
}
