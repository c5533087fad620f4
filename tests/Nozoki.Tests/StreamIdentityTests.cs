using System.IO.Pipes;
using System.Text;
using Nozoki.Mirror;
using Nozoki.Tests.Helpers;
using Nozoki.Tracing;

namespace Nozoki.Tests;

/// <summary>
/// A write is mirrored as the stream its descriptor refers to (the open file description fd 1 or fd 2 had at
/// attach), not by its number: shells write `echo x >&2` to fd 1 after dup2(2, 1).
/// </summary>
[Collection(PtraceCollection.Name)]
public sealed class StreamIdentityTests
{
    private const int N = 40;

    private static string Lines(params string[] tags)
    {
        var s = new StringBuilder();
        for (var i = 0; i < N; i++)
        {
            foreach (var tag in tags) s.Append($"{tag} {i}\n");
        }

        return s.ToString();
    }

    [Fact]
    public void Writes_through_dup2_dups_and_children_are_mirrored_as_the_stream_they_reach()
    {
        using var dir = new TempDir();
        using var tracee = Tracee.StartFixture("dupdance", ["--wait", $"{N}"], stdinPipe: true,
            stdoutPath: dir.File("out"), stderrPath: dir.File("err"));
        using var nozoki = NozokiCli.OutToTheEnd(tracee, "-f");
        Assert.Equal(Lines("out", "dup", "three"), tracee.StdoutFileText());
        Assert.Equal(Lines("err", "child", "exec"), tracee.StderrFileText());
        Assert.Equal(tracee.StdoutFileText(), nozoki.StdoutText());
        Assert.Equal(tracee.StderrFileText(), NozokiCli.MirroredStderr(nozoki.StderrText()));
    }

    [Fact]
    public void Json_fd_is_the_stream_a_write_reached()
    {
        using var dir = new TempDir();
        using var tracee = Tracee.StartFixture("dupdance", ["--wait", $"{N}"], stdinPipe: true,
            stdoutPath: dir.File("out"), stderrPath: dir.File("err"));
        using var nozoki = NozokiCli.Start(["out", "--json", "-f", $"{tracee.Pid}"]);
        nozoki.WaitForJsonAttached(tracee.Pid);
        tracee.Release();

        Assert.Equal(new ExitStatus(0, 0), tracee.WaitForExit());
        Assert.Equal(0, nozoki.WaitForExit(NozokiCli.ExitTimeout));
        nozoki.AssertNoStackTrace();
        var writes = nozoki.JsonLines().Where(o => !o.TryGetProperty("event", out _)).ToList();
        Assert.Equal(6 * N, writes.Count);
        var byFd = writes.GroupBy(o => o.GetProperty("fd").GetInt32())
            .ToDictionary(g => g.Key, g => string.Concat(g.Select(o => o.GetProperty("data").GetString())));
        Assert.Equal([1, 2], byFd.Keys.Order());
        Assert.Equal(Lines("out", "dup", "three"), byFd[1]);
        Assert.Equal(Lines("err", "child", "exec"), byFd[2]);
        // "child" and "exec" come from the children, the rest from the attached process.
        foreach (var o in writes)
        {
            var fromChild = o.GetProperty("data").GetString()!.StartsWith('c') || o.GetProperty("data").GetString()!.StartsWith("exec", StringComparison.Ordinal);
            Assert.Equal(fromChild, o.GetProperty("pid").GetInt32() != tracee.Pid);
        }
    }

    public static TheoryData<string> Shells => new() { "/bin/sh", "/bin/bash" };

    [Theory]
    [MemberData(nameof(Shells))]
    public void A_shells_echo_to_stderr_is_stderr_and_echo_to_a_saved_stdout_is_stdout_even_when_attached_mid_redirection(string shell)
    {
        // `head -c 1` is the --wait trigger: the loop starts once nozoki has attached. Both shells run it with the
        // shell's own fd 1 pointed at /dev/null (saved in fd 10 or more, put back afterwards): nozoki attaches in the
        // middle of a redirection, and stdout is what fd 1 is put back to.
        const string script = "{ head -c 1; } >/dev/null; exec 3>&1; i=0; while [ $i -lt 40 ]; do " +
                              "echo out $i; echo err $i >&2; echo three $i >&3; i=$((i+1)); done";
        using var dir = new TempDir();
        using var tracee = Tracee.Start([shell, "-c", script], stdinPipe: true,
            stdoutPath: dir.File("out"), stderrPath: dir.File("err"));
        using var nozoki = NozokiCli.OutToTheEnd(tracee);
        Assert.Equal(Lines("out", "three"), tracee.StdoutFileText());
        Assert.Equal(Lines("err"), tracee.StderrFileText());
        Assert.Equal(tracee.StdoutFileText(), nozoki.StdoutText()); // what `nozoki out -q PID > copy.log` keeps
        Assert.Equal(tracee.StderrFileText(), NozokiCli.MirroredStderr(nozoki.StderrText()));
    }

    [Fact]
    public void When_stdout_and_stderr_are_one_description_the_number_decides()
    {
        using var dir = new TempDir();
        using var tracee = Tracee.StartFixture("dupdance", ["--merged", "--wait", $"{N}"], stdinPipe: true,
            stdoutPath: dir.File("out"), stderrPath: dir.File("err"));
        using var nozoki = NozokiCli.OutToTheEnd(tracee);
        Assert.Equal(Lines("one", "two", "dup"), tracee.StdoutFileText());
        Assert.Equal(Lines("one", "dup"), nozoki.StdoutText()); // a dup of both counts as stdout
        Assert.Equal(Lines("two"), NozokiCli.MirroredStderr(nozoki.StderrText()));
    }

    [Fact]
    public async Task A_pipe_the_process_closes_reaches_EOF_at_its_reader_while_nozoki_is_attached()
    {
        // nozoki keeps no copy of a stream's description: the reader sees EOF as it would without nozoki.
        using var pipe = new AnonymousPipeServerStream(PipeDirection.In);
        using var tracee = Tracee.Start(["/bin/sh", "-c", "head -c 1 >/dev/null; echo hi; exec >&-; head -c 1 >/dev/null"],
            stdinPipe: true, stdoutHandle: pipe.ClientSafePipeHandle);
        pipe.DisposeLocalCopyOfClientHandle();
        using var nozoki = NozokiCli.Start(["out", $"{tracee.Pid}"]);
        nozoki.WaitForAttached(tracee.Pid);
        tracee.Release();

        using var reader = new StreamReader(pipe);
        Assert.Equal("hi\n", await reader.ReadToEndAsync().WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.False(tracee.Child.WaitForExit(TimeSpan.Zero).HasValue, "the shell should still wait for its second byte");
        tracee.Release();
        Assert.Equal(new ExitStatus(0, 0), tracee.WaitForExit());
        Assert.Equal(0, nozoki.WaitForExit(NozokiCli.ExitTimeout));
        nozoki.AssertNoStackTrace();
        Assert.Equal("hi\n", nozoki.StdoutText());
    }

    private sealed class CollectingSink : IMirrorSink
    {
        public readonly StringBuilder Stdout = new(), Stderr = new();

        public void OnWrite(in MirroredWrite write, ReadOnlySpan<byte> data)
        {
            var text = Encoding.UTF8.GetString(data);
            lock (this) (write.Fd == 2 ? Stderr : Stdout).Append(text);
        }

        public void OnNotice(in MirrorNotice notice) => throw new InvalidOperationException(notice.Message);
    }

    [Fact]
    public async Task Without_kcmp_descriptions_are_told_apart_by_their_proc_links()
    {
        using var dir = new TempDir();
        using var tracee = Tracee.StartFixture("dupdance", ["--wait", $"{N}"], stdinPipe: true,
            stdoutPath: dir.File("out"), stderrPath: dir.File("err"));
        var sink = new CollectingSink();
        TraceResult result;
        // The session reaps the tracee (a waitpid of the test's own would take the session's ptrace stops).
        await using (var session = TraceSession.Attach(tracee.Pid, new OutputMirror(sink, [1, 2]) { WithoutKcmp = true }))
        {
            tracee.Release();
            result = await session.Completion.WaitAsync(NozokiCli.ExitTimeout);
        }

        Assert.Null(result.Error);
        Assert.Equal(TraceEndReason.TargetExited, result.Reason);
        Assert.Equal(0, result.TargetExit?.Code);

        // Children are not followed: their "child" and "exec" lines are not the attached process's.
        Assert.Equal(Lines("out", "dup", "three"), sink.Stdout.ToString());
        Assert.Equal(Lines("err"), sink.Stderr.ToString());
    }
}
