using Nozoki.Tests.Helpers;
using Nozoki.Tracing;

namespace Nozoki.Tests;

[Collection(PtraceCollection.Name)]
public sealed class ColorTests
{
    private const int N = 3;
    private const string Red = "\u001b[31m", Reset = "\u001b[0m";

    private static (string Stdout, string Stderr) RunOrder(params string[] colorArgs)
    {
        using var tracee = Tracee.StartFixture("order", ["--wait", $"{N}"], stdinPipe: true);
        using var nozoki = NozokiCli.Start(["out", .. colorArgs, $"{tracee.Pid}"]);
        nozoki.WaitForAttached(tracee.Pid);
        tracee.Release();
        Assert.Equal(new ExitStatus(0, 0), tracee.WaitForExit());
        Assert.Equal(0, nozoki.WaitForExit(NozokiCli.ExitTimeout));
        nozoki.AssertNoStackTrace();
        return (nozoki.StdoutText(), NozokiCli.MirroredStderr(nozoki.StderrText()));
    }

    private static string Lines(Func<int, string> line) => string.Concat(Enumerable.Range(0, N).Select(line));

    [Fact]
    public void Color_always_paints_each_stderr_write_red()
    {
        var (stdout, stderr) = RunOrder("--color", "always");
        Assert.Equal(Lines(i => $"{Red}L2 {i}\n{Reset}{Red}L4 {i}\n{Reset}"), stderr);
        Assert.Equal(Lines(i => $"L1 {i}\nL3 {i}\n"), stdout);
    }

    public static TheoryData<string[]> Uncolored => new()
    {
        new[] { "--color", "never" },
        new[] { "--color", "auto" },
        Array.Empty<string>(),
    };

    [Theory]
    [MemberData(nameof(Uncolored))]
    public void Stderr_is_not_painted_with_never_or_when_not_a_terminal(string[] colorArgs)
    {
        var (stdout, stderr) = RunOrder(colorArgs);
        Assert.Equal(Lines(i => $"L2 {i}\nL4 {i}\n"), stderr);
        Assert.Equal(Lines(i => $"L1 {i}\nL3 {i}\n"), stdout);
    }
}
