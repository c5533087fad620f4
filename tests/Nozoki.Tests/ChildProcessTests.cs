using System.IO.Pipes;
using Nozoki.Tests.Helpers;
using Nozoki.Tracing;

namespace Nozoki.Tests;

[Collection(PtraceCollection.Name)]
public sealed class ChildProcessTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    [Fact]
    public void Exit_code_is_reported()
    {
        using var child = ChildProcess.Start(["/bin/sh", "-c", "exit 3"]);
        var status = child.WaitForExit(Timeout);
        Assert.Equal(new ExitStatus(3, 0), status);
        Assert.False(status!.Value.Signaled);
        Assert.True(child.HasExited);
    }

    [Fact]
    public void Death_by_signal_is_reported()
    {
        using var child = ChildProcess.Start(["/bin/sleep", "60"]);
        Assert.Null(child.WaitForExit(TimeSpan.FromMilliseconds(200)));
        Assert.False(child.HasExited);
        child.Signal(Posix.SIGTERM);
        var status = child.WaitForExit(Timeout);
        Assert.Equal(new ExitStatus(0, 15), status);
        Assert.True(status!.Value.Signaled);
    }

    [Fact]
    public void Dispose_kills_and_reaps_a_running_child()
    {
        int pid;
        using (var child = ChildProcess.Start(["/bin/sleep", "60"]))
            pid = child.Pid;
        Assert.Null(ProcStatus.Read(pid));
    }

    [Fact]
    public async Task Given_fds_become_stdout_and_stderr_and_the_working_directory_is_set()
    {
        using var dir = new TempDir();
        using var pipe = new AnonymousPipeServerStream(PipeDirection.In);
        using var child = ChildProcess.Start(["/bin/sh", "-c", "pwd; echo err >&2"],
            stdoutFd: (int)pipe.ClientSafePipeHandle.DangerousGetHandle(),
            stderrFd: (int)pipe.ClientSafePipeHandle.DangerousGetHandle(), workingDirectory: dir.Path);
        pipe.DisposeLocalCopyOfClientHandle();
        using var reader = new StreamReader(pipe);
        var output = await reader.ReadToEndAsync().WaitAsync(Timeout);
        Assert.Equal(new ExitStatus(0, 0), child.WaitForExit(Timeout));
        Assert.Equal($"{dir.Path}\nerr\n", output);
    }
}
