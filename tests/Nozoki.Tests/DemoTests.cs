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
}
