using System.Text;
using Nozoki.Tests.Helpers;
using Nozoki.Tracing;

namespace Nozoki.Tests;

[Collection(PtraceCollection.Name)]
public sealed class SendfileTests
{
    private const int Size = 12345;

    private static (Tracee Tracee, TempDir Dir) StartSendfile()
    {
        var dir = new TempDir();
        var data = new byte[Size];
        new Random(42).NextBytes(data);
        File.WriteAllBytes(dir.File("data"), data);
        var tracee = Tracee.StartFixture("sendfile", ["--wait", dir.File("data")], stdinPipe: true,
            stdoutPath: dir.File("out"), stderrPath: dir.File("err"));
        return (tracee, dir);
    }

    private static void AssertFixtureOutput(TempDir dir)
    {
        var expected = Encoding.ASCII.GetBytes("head\n").Concat(File.ReadAllBytes(dir.File("data")))
            .Concat(Encoding.ASCII.GetBytes("tail\n"));
        Assert.Equal(expected, TempDir.ReadBytes(dir.File("out")));
    }

    [Fact]
    public void Sendfile_is_reported_as_a_notice_with_its_byte_count()
    {
        var (tracee, dir) = StartSendfile();
        using var _ = dir;
        using var __ = tracee;
        using var nozoki = NozokiCli.Start(["out", $"{tracee.Pid}"]);
        nozoki.WaitForAttached(tracee.Pid);
        tracee.Release();

        Assert.Equal(new ExitStatus(0, 0), tracee.WaitForExit());
        Assert.Equal(0, nozoki.WaitForExit(NozokiCli.ExitTimeout));
        nozoki.AssertNoStackTrace();
        AssertFixtureOutput(dir);

        Assert.Equal("head\ntail\n", nozoki.StdoutText());
        var stderr = nozoki.StderrText();
        Assert.Equal("", NozokiCli.MirroredStderr(stderr));
        var notices = NozokiCli.OwnLines(stderr).Where(l => l.Contains("sendfile", StringComparison.Ordinal)).ToList();
        Assert.True(notices.Count == 1, $"expected one sendfile notice on stderr, got:\n{stderr}");
        Assert.Matches($@"\b{Size}\b", notices[0]);
    }

    [Fact]
    public void Sendfile_notice_in_json_mode_has_syscall_and_bytes()
    {
        var (tracee, dir) = StartSendfile();
        using var _ = dir;
        using var __ = tracee;
        using var nozoki = NozokiCli.Start(["out", "--json", $"{tracee.Pid}"]);
        nozoki.WaitForJsonAttached(tracee.Pid);
        tracee.Release();

        Assert.Equal(new ExitStatus(0, 0), tracee.WaitForExit());
        Assert.Equal(0, nozoki.WaitForExit(NozokiCli.ExitTimeout));
        nozoki.AssertNoStackTrace();
        Assert.Equal("", nozoki.StderrText());
        AssertFixtureOutput(dir);

        var items = nozoki.JsonLines()
            .Where(o => !o.TryGetProperty("event", out var e) || e.GetString() == "notice").ToList();
        Assert.Equal(3, items.Count);
        Assert.Equal("head\n", items[0].GetProperty("data").GetString());
        var notice = items[1];
        Assert.Equal("notice", notice.GetProperty("event").GetString());
        Assert.Equal("sendfile", notice.GetProperty("syscall").GetString());
        Assert.Equal(Size, notice.GetProperty("bytes").GetInt64());
        Assert.Equal(tracee.Pid, notice.GetProperty("pid").GetInt32());
        Assert.Equal(tracee.Pid, notice.GetProperty("tid").GetInt32());
        Assert.Equal(1, notice.GetProperty("fd").GetInt32());
        Assert.False(string.IsNullOrWhiteSpace(notice.GetProperty("message").GetString()));
        Assert.Equal("tail\n", items[2].GetProperty("data").GetString());
    }
}
