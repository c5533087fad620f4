using System.IO.Pipes;
using System.Security.Cryptography;
using System.Text.RegularExpressions;
using Nozoki.Tests.Helpers;
using Nozoki.Tracing;

namespace Nozoki.Tests;

[Collection(PtraceCollection.Name)]
public sealed partial class ByteExactMirrorTests
{
    [Fact]
    public void Mirror_of_100MB_of_random_writes_and_writevs_is_byte_identical()
    {
        const long total = 104_857_600;
        using var dir = new TempDir();
        using var tracee = Tracee.StartFixture("randwriter", ["--wait", total.ToString(), "12345"], stdinPipe: true,
            stdoutPath: dir.File("out"), stderrPath: dir.File("err"));

        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        using var nozoki = NozokiCli.Start(["out", tracee.Pid.ToString()], chunk =>
        {
            hash.AppendData(chunk);
            return true;
        });
        nozoki.WaitForAttached(tracee.Pid);
        tracee.Release();

        var status = tracee.WaitForExit();
        Assert.Equal(new ExitStatus(0, 0), status);
        Assert.Equal(0, nozoki.WaitForExit(NozokiCli.ExitTimeout));
        nozoki.AssertNoStackTrace();

        Assert.Equal(total, TempDir.Length(dir.File("out")));
        Assert.Equal(total, nozoki.StdoutCount);
        byte[] expected;
        using (var file = File.OpenRead(dir.File("out")))
            expected = SHA256.HashData(file);
        Assert.Equal(Convert.ToHexString(expected), Convert.ToHexString(hash.GetHashAndReset()));
        Assert.Equal("", NozokiCli.MirroredStderr(nozoki.StderrText()));
        Assert.Contains($"nozoki: PID {tracee.Pid} exited with status 0", NozokiCli.OwnLines(nozoki.StderrText()));
    }

    [Fact]
    public void Partial_nonblocking_writes_and_EAGAIN_mirror_exactly_the_accepted_bytes()
    {
        const int total = 8_000_000;
        using var dir = new TempDir();
        using var pipe = new AnonymousPipeServerStream(PipeDirection.In);
        using var tracee = Tracee.Start(["/usr/bin/env", "NBWRITER_STATS=1", Fixtures.Get("nbwriter"), "--wait", total.ToString()],
            stdinPipe: true, stderrPath: dir.File("err"), stdoutHandle: pipe.ClientSafePipeHandle);
        pipe.DisposeLocalCopyOfClientHandle();

        using var nozoki = NozokiCli.Start(["out", tracee.Pid.ToString()]);
        nozoki.WaitForAttached(tracee.Pid);

        // Drain slowly so that the pipe is full most of the time: 4 KiB, then 1 ms pause.
        var drained = new MemoryStream();
        Exception? drainError = null;
        var drainer = new Thread(() =>
        {
            try
            {
                var buf = new byte[4096];
                int n;
                while ((n = pipe.Read(buf, 0, buf.Length)) > 0)
                {
                    drained.Write(buf, 0, n);
                    Thread.Sleep(1);
                }
            }
            catch (Exception e)
            {
                drainError = e;
            }
        }) { IsBackground = true };
        drainer.Start();
        tracee.Release();

        Assert.Equal(new ExitStatus(0, 0), tracee.WaitForExit());
        Assert.True(drainer.Join(TimeSpan.FromSeconds(60)), "the test's reader did not reach EOF on the fixture's stdout");
        Assert.Null(drainError);
        Assert.Equal(0, nozoki.WaitForExit(NozokiCli.ExitTimeout));
        nozoki.AssertNoStackTrace();

        // The test really exercised partial writes and EAGAIN.
        var stats = StatsLine().Match(TempDir.ReadText(dir.File("err")));
        Assert.True(stats.Success, "nbwriter did not print its statistics: " + TempDir.ReadText(dir.File("err")));
        Assert.True(long.Parse(stats.Groups[1].Value) > 0, "no partial writes happened: " + stats.Value);
        Assert.True(long.Parse(stats.Groups[2].Value) > 0, "no EAGAIN happened: " + stats.Value);

        var reader = drained.ToArray();
        Assert.Equal(total, reader.Length);
        for (long i = 0; i < total; i++)
        {
            if (reader[i] != (byte)((i * 7 + i / 251) & 0xff))
                Assert.Fail($"the test's own copy differs from the nbwriter pattern at offset {i}");
        }

        var mirror = nozoki.StdoutBytes();
        Assert.Equal(reader.Length, mirror.Length);
        Assert.True(reader.AsSpan().SequenceEqual(mirror),
            $"mirror differs from the accepted bytes, first at offset {reader.AsSpan().CommonPrefixLength(mirror)}");
    }

    [GeneratedRegex(@"nbwriter: (\d+) partial writes, (\d+) EAGAIN")]
    private static partial Regex StatsLine();

    [Fact]
    public async Task Write_failing_with_EPIPE_is_not_mirrored()
    {
        using var pipe = new AnonymousPipeServerStream(PipeDirection.In);
        using var dir = new TempDir();
        using var tracee = Tracee.StartFixture("epipe", ["--wait"], stdinPipe: true, stderrPath: dir.File("err"),
            stdoutHandle: pipe.ClientSafePipeHandle);
        pipe.DisposeLocalCopyOfClientHandle();

        using var nozoki = NozokiCli.Start(["out", tracee.Pid.ToString()]);
        nozoki.WaitForAttached(tracee.Pid);
        tracee.Release();

        var buf = new byte[7];
        await pipe.ReadExactlyAsync(buf).AsTask().WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal("before\n", System.Text.Encoding.ASCII.GetString(buf));
        pipe.Dispose(); // no reader left: the next write(1) fails with EPIPE
        tracee.Release();

        Assert.Equal(new ExitStatus(0, 0), tracee.WaitForExit());
        Assert.Equal("after-epipe\n", TempDir.ReadText(dir.File("err")));
        Assert.Equal(0, nozoki.WaitForExit(NozokiCli.ExitTimeout));
        nozoki.AssertNoStackTrace();
        Assert.Equal("before\n", nozoki.StdoutText());
        Assert.Equal("after-epipe\n", NozokiCli.MirroredStderr(nozoki.StderrText()));
    }
}
