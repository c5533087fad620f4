using System.Text.Json;
using Nozoki.Tests.Helpers;
using Nozoki.Tracing;

namespace Nozoki.Tests;

[Collection(PtraceCollection.Name)]
public sealed class OrderJsonTests
{
    [Fact]
    public void Json_mode_preserves_the_interleaving_of_stdout_and_stderr_writes()
    {
        const int n = 1000;
        using var dir = new TempDir();
        using var tracee = Tracee.StartFixture("order", ["--wait", $"{n}"], stdinPipe: true,
            stdoutPath: dir.File("out"), stderrPath: dir.File("err"));
        using var nozoki = NozokiCli.Start(["out", "--json", $"{tracee.Pid}"]);
        nozoki.WaitForJsonAttached(tracee.Pid);
        var before = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / 1000.0;
        tracee.Release();

        Assert.Equal(new ExitStatus(0, 0), tracee.WaitForExit());
        Assert.Equal(0, nozoki.WaitForExit(NozokiCli.ExitTimeout));
        var after = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / 1000.0;
        nozoki.AssertNoStackTrace();
        Assert.Equal("", nozoki.StderrText()); // --json: nothing on stderr

        var objects = nozoki.JsonLines();
        var writes = objects.Where(o => !o.TryGetProperty("event", out _)).ToList();
        var events = objects.Where(o => o.TryGetProperty("event", out _)).ToList();

        var expected = new List<(int Fd, string Data)>();
        for (var i = 0; i < n; i++)
            expected.AddRange([(1, $"L1 {i}\n"), (2, $"L2 {i}\n"), (1, $"L3 {i}\n"), (2, $"L4 {i}\n")]);
        var actual = writes.Select(o => (o.GetProperty("fd").GetInt32(), o.GetProperty("data").GetString()!)).ToList();
        Assert.Equal(expected.Count, actual.Count);
        for (var k = 0; k < expected.Count; k++)
        {
            if (expected[k] != actual[k])
                Assert.Fail($"write #{k}: expected {expected[k]}, got {actual[k]}");
        }

        foreach (var o in writes)
        {
            Assert.Equal(JsonValueKind.Number, o.GetProperty("time").ValueKind);
            Assert.InRange(o.GetProperty("time").GetDouble(), before - 5, after + 5);
            Assert.Equal(tracee.Pid, o.GetProperty("pid").GetInt32());
            Assert.Equal(tracee.Pid, o.GetProperty("tid").GetInt32()); // single-threaded fixture
            Assert.Equal("utf8", o.GetProperty("encoding").GetString());
        }

        Assert.Equal("attached", events[0].GetProperty("event").GetString());
        Assert.Equal(events[0].GetRawText(), objects[0].GetRawText());
        Assert.True(events[0].GetProperty("threads").GetInt32() >= 1);
        Assert.Equal(JsonValueKind.Number, events[0].GetProperty("time").ValueKind);
        var last = objects[^1];
        Assert.Equal("exited", last.GetProperty("event").GetString());
        Assert.Equal(tracee.Pid, last.GetProperty("pid").GetInt32());
        Assert.Equal(0, last.GetProperty("status").GetInt32());
        Assert.Equal(2, events.Count);
    }
}
