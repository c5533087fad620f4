using System.Globalization;
using System.Text.RegularExpressions;
using Nozoki.Tests.Helpers;

namespace Nozoki.Tests;

[Collection(PtraceCollection.Name)]
public sealed class ErrorTests
{
    private static readonly TimeSpan Step = TimeSpan.FromSeconds(15);

    /// <summary>Exit code as expected, exactly one stderr line "nozoki: error: ...", no stack trace. Returns that line.</summary>
    private static string AssertError(int expectedCode, params string[] args)
    {
        var (code, stdout, stderr) = NozokiCli.Run(args);
        NozokiCli.AssertNoStackTrace(stdout, stderr);
        var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1 && lines[0].StartsWith("nozoki: error:", StringComparison.Ordinal),
            $"expected exactly one 'nozoki: error:' line on stderr for `nozoki {string.Join(' ', args)}`, got:\n{stderr}");
        Assert.True(expectedCode == code,
            $"`nozoki {string.Join(' ', args)}`: expected exit code {expectedCode}, got {code}; stderr: {stderr}");
        return lines[0];
    }

    public static TheoryData<string[]> BadArguments => new()
    {
        Array.Empty<string>(),
        new[] { "out" },
        new[] { "out", "abc" },
        new[] { "out", "--color", "purple", "1" },
        new[] { "out", "--fd", "x", "1" },
    };

    [Theory]
    [MemberData(nameof(BadArguments))]
    public void Bad_arguments_exit_2_with_one_error_line(string[] args) => AssertError(2, args);

    [Fact]
    public void Nonexistent_pid_exits_3()
    {
        int pid;
        using (var child = Tracing.ChildProcess.Start(["/bin/true"]))
        {
            pid = child.Pid;
            Assert.NotNull(child.WaitForExit(Step));
        }

        Assert.Null(ProcStatus.Read(pid));
        AssertError(3, "out", pid.ToString(CultureInfo.InvariantCulture));
    }

    [Fact]
    public void Pid_above_pid_max_exits_3()
    {
        var pidMax = int.Parse(File.ReadAllText("/proc/sys/kernel/pid_max").Trim(), CultureInfo.InvariantCulture);
        AssertError(3, "out", (pidMax + 1).ToString(CultureInfo.InvariantCulture));
    }

    [Fact]
    public void Zombie_exits_5()
    {
        using var child = Tracing.ChildProcess.Start(["/bin/true"]);
        ProcStatus.WaitForState(child.Pid, 'Z', Step); // not reaped until Dispose
        AssertError(5, "out", $"{child.Pid}");
    }

    [Fact]
    public void Kernel_thread_exits_5()
    {
        var kthreadd = ProcStatus.Read(2);
        Assert.True(kthreadd?.Name == "kthreadd", $"PID 2 is not kthreadd here ({kthreadd}); cannot test kernel threads");
        AssertError(5, "out", "2");
    }

    [Fact]
    public void Process_traced_by_strace_exits_4_naming_the_tracer()
    {
        using var tracee = Tracee.StartFixture("sigcount", []);
        using var strace = ExternalProcess.Start("strace", "strace", ["-p", $"{tracee.Pid}", "-o", "/dev/null"]);
        strace.WaitForStderr(s => s.Contains("attached", StringComparison.Ordinal), Step, "strace to attach");
        Assert.Equal(strace.Pid, ProcStatus.Get(tracee.Pid).TracerPid);

        var line = AssertError(4, "out", $"{tracee.Pid}");
        Assert.Matches(new Regex($@"\b{strace.Pid}\b"), line);
        strace.Signal(Posix.SIGINT);
        strace.WaitForExit(Step);
    }

    [Fact]
    public void Second_nozoki_on_the_same_process_exits_4_naming_the_first()
    {
        using var tracee = Tracee.StartFixture("sigcount", []);
        using var first = NozokiCli.Start(["out", $"{tracee.Pid}"]);
        first.WaitForAttached(tracee.Pid);

        var line = AssertError(4, "out", $"{tracee.Pid}");
        Assert.Matches(new Regex($@"\b{first.Pid}\b"), line);

        first.Signal(Posix.SIGINT);
        Assert.Equal(0, first.WaitForExit(Step));
        Ticker.AssertNotTraced(tracee.Pid);
    }

    [Fact]
    public void Unprivileged_user_attaching_to_a_root_process_exits_4()
    {
        Assert.True(Posix.GetEuid() == 0, "this test must run as root (it runs nozoki as nobody against a root process)");
        using var tracee = Tracee.StartFixture("sigcount", []);
        Assert.Equal(0, ProcStatus.Get(tracee.Pid).Uid);

        using var nozoki = NozokiCli.StartAsNobody(["out", $"{tracee.Pid}"]);
        var code = nozoki.WaitForExit(NozokiCli.ExitTimeout);
        var stderr = nozoki.StderrText();
        nozoki.AssertNoStackTrace();
        var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1 && lines[0].StartsWith("nozoki: error:", StringComparison.Ordinal),
            $"expected one 'nozoki: error:' line from nozoki run as nobody (exit {code}), got:\n{stderr}");
        Assert.Equal(4, code);
        Assert.Matches(new Regex(@"\broot\b|uid|user|owner", RegexOptions.IgnoreCase), lines[0]);
        Assert.Equal(0, ProcStatus.Get(tracee.Pid).TracerPid);
    }
}
