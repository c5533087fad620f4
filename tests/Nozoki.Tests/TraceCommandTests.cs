using System.Globalization;
using System.Text.Json;
using Nozoki.Tests.Helpers;
using Nozoki.Tracing;

namespace Nozoki.Tests;

/// <summary>`nozoki trace` on its own: -f trees, JSON, attach/detach, exit codes, timing options.</summary>
[Collection(PtraceCollection.Name)]
public sealed class TraceCommandTests
{
    [Fact]
    public void Follow_shows_every_process_of_a_fork_exec_tree()
    {
        using var dir = new TempDir();
        string[] argv = ["sh", "-c", "true | cat; /bin/echo done; (sh -c 'true') "];
        var expected = TraceRuns.Parse(TraceRuns.Strace(dir, ["-f"], argv));
        var (lines, code, stderr) = TraceRuns.Nozoki(dir, ["-f"], argv);
        Assert.True(code == 0, $"nozoki exited {code}: {stderr}");
        var actual = TraceRuns.Parse(lines);

        static List<int> Pids(List<TraceLine> t) => t.Where(l => l.Kind == "call").Select(l => l.Pid).Distinct().ToList();
        var pids = Pids(actual);
        Assert.Equal(Pids(expected).Count, pids.Count);
        Assert.True(pids.Count >= 4, $"expected at least 4 processes, got {pids.Count}:\n{string.Join('\n', lines)}");
        // Every process is seen from its first call to its end, and every child is one the tree created.
        foreach (var pid in pids)
            Assert.Contains(actual, l => l.Pid == pid && l.Kind == "exit" && l.Text == "exited with 0");
        var created = actual.Where(l => l.Name is "clone" or "fork" or "vfork" or "clone3" && int.TryParse(l.Return, out _))
            .Select(l => int.Parse(l.Return, CultureInfo.InvariantCulture)).ToHashSet();
        Assert.Equal(pids.Skip(1).Order(), created.Order());
        Assert.Equal(expected.Count(l => l.Name == "execve" && l.Return == "0"), actual.Count(l => l.Name == "execve" && l.Return == "0"));
    }

    [Fact]
    public void Json_lines_parse_and_carry_the_same_calls_as_the_text()
    {
        using var dir = new TempDir();
        var scratch = Path.Combine(dir.Path, "scratch");
        Directory.CreateDirectory(scratch);
        string[] argv = [Fixtures.Get("syscalls"), "open", scratch];
        var (text, code, _) = TraceRuns.Nozoki(dir, [], argv);
        Assert.Equal(0, code);
        var (json, code2, stderr) = TraceRuns.Nozoki(dir, ["--json"], argv);
        Assert.True(code2 == 0, stderr);

        var calls = new List<string>();
        var events = new List<string>();
        foreach (var line in json)
        {
            var o = NozokiCli.ParseJson(line);
            Assert.True(o.GetProperty("time").GetDouble() > 1e9, line);
            if (o.TryGetProperty("event", out var ev))
            {
                events.Add(ev.GetString()!);
                continue;
            }

            var name = o.GetProperty("syscall").GetString()!;
            Assert.True(o.GetProperty("pid").GetInt32() > 0 && o.GetProperty("tid").GetInt32() > 0, line);
            Assert.True(o.GetProperty("nr").GetInt32() >= 0, line);
            foreach (var arg in o.GetProperty("args").EnumerateArray())
            {
                Assert.StartsWith("0x", arg.GetProperty("raw").GetString(), StringComparison.Ordinal);
                Assert.True(arg.TryGetProperty("text", out _), line);
            }

            var ret = o.GetProperty("ret");
            var errno = o.GetProperty("errno");
            var shown = ret.ValueKind == JsonValueKind.Null ? "?"
                : errno.ValueKind == JsonValueKind.String ? $"-1 {errno.GetString()}" : ret.GetInt64().ToString(CultureInfo.InvariantCulture);
            if (ret.ValueKind != JsonValueKind.Null) Assert.True(o.GetProperty("duration").GetDouble() >= 0, line);
            calls.Add($"{name} = {shown}");
        }

        var fromText = TraceRuns.Parse(text).Where(l => l.Kind == "call")
            .Select(l => l.Return.Split(' ') is var r && r.Length > 1 && r[1].StartsWith('E') ? $"{l.Name} = {r[0]} {r[1]}" : $"{l.Name} = {l.Return.Split(' ')[0]}")
            .ToList();
        // The text prints fcntl's F_GETFD/F_GETFL result in hex; JSON carries the number.
        static string Num(string s) => System.Text.RegularExpressions.Regex.Replace(s, @"= 0x([0-9a-f]+)$", m => "= " + Convert.ToInt64(m.Groups[1].Value, 16).ToString(CultureInfo.InvariantCulture));
        // Addresses, pids and the fixture's file names differ between the two runs; compare names and results.
        static string Stable(string s) => System.Text.RegularExpressions.Regex.Replace(Num(s), @"= \d{3,}$", "= N");
        Assert.Equal(fromText.Select(Stable), calls.Select(Stable));
        Assert.Contains("exited", events);
    }

    [Fact]
    public void Attach_to_a_multithreaded_process_and_detach_leaves_it_running()
    {
        using var dir = new TempDir();
        using var ticker = Ticker.Start(dir, intervalMs: 20, count: 150);
        using var nozoki = NozokiCli.Start(["trace", "-p", $"{ticker.Pid}", "-e", "trace=write,clock_nanosleep,nanosleep"]);
        nozoki.WaitForAttached(ticker.Pid);
        nozoki.WaitForStderr(s => s.Split('\n').Count(l => l.Contains("write(", StringComparison.Ordinal)) >= 6,
            NozokiCli.AttachTimeout, "a few traced writes");
        nozoki.Signal(Posix.SIGINT);
        Assert.Equal(0, nozoki.WaitForExit(NozokiCli.ExitTimeout));
        nozoki.AssertNoStackTrace();
        var stderr = nozoki.StderrText();
        Assert.Contains($"nozoki: detached from PID {ticker.Pid}", stderr, StringComparison.Ordinal);
        // Several threads: every line carries a "[pid TID]" prefix, as strace's do.
        var attached = NozokiCli.AttachedLine().Match(stderr.Split('\n')[0]);
        Assert.True(attached.Success && int.Parse(attached.Groups[2].Value, CultureInfo.InvariantCulture) >= 2, stderr);
        Assert.Matches(@"\[pid +\d+\] write\(1, ""tick \d+\\n"", \d+\) += \d+", stderr);
        Assert.Matches(@"\[pid +\d+\] write\(2, ""tock \d+\\n"", \d+\) += \d+", stderr);
        Ticker.AssertNotTraced(ticker.Pid);
        Ticker.AssertFinishesNormally(ticker, 150);
    }

    [Fact]
    public void Launched_command_exit_status_is_nozokis()
    {
        using var nozoki = NozokiCli.Start(["trace", "-q", "-e", "trace=exit_group", "--", "sh", "-c", "exit 7"]);
        Assert.Equal(7, nozoki.WaitForExit(NozokiCli.ExitTimeout));
        var stderr = nozoki.StderrText();
        Assert.Contains("exit_group(7)", stderr, StringComparison.Ordinal);
        Assert.Contains("+++ exited with 7 +++", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Killed_command_is_reported_and_exits_128_plus_signal()
    {
        using var nozoki = NozokiCli.Start(["trace", "-e", "trace=kill", "--", "sh", "-c", "kill -TERM $$"]);
        Assert.Equal(128 + 15, nozoki.WaitForExit(NozokiCli.ExitTimeout));
        var stderr = nozoki.StderrText();
        Assert.Matches(@"kill\(\d+, SIGTERM\) += 0", stderr);
        Assert.Matches(@"--- SIGTERM \{si_signo=SIGTERM, si_code=SI_USER, si_pid=\d+, si_uid=\d+\} ---", stderr);
        Assert.Contains("+++ killed by SIGTERM +++", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Timing_options_prefix_and_suffix_lines()
    {
        using var nozoki = NozokiCli.Start(["trace", "-ttt", "-T", "-e", "trace=getppid", "--", "sh", "-c", "cat /proc/self/stat >/dev/null"]);
        nozoki.WaitForExit(NozokiCli.ExitTimeout);
        var lines = nozoki.StderrLines().Where(l => l.Contains("getppid", StringComparison.Ordinal) || l.Contains("+++", StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(lines);
        foreach (var l in lines.Where(l => l.Contains("getppid", StringComparison.Ordinal)))
            Assert.Matches(@"^\d{10}\.\d{6} getppid\(\) += \d+ <\d+\.\d{6}>$", l);
    }

    [Fact]
    public void A_blocking_call_shows_while_it_blocks()
    {
        using var nozoki = NozokiCli.Start(["trace", "-e", "trace=clock_nanosleep,nanosleep", "--", "sleep", "1.5"]);
        nozoki.WaitForStderr(s => s.Contains("sleep(", StringComparison.Ordinal), TimeSpan.FromSeconds(30), "the sleep's entry");
        Assert.DoesNotContain("+++", nozoki.StderrText(), StringComparison.Ordinal);
        Assert.Equal(0, nozoki.WaitForExit(NozokiCli.ExitTimeout));
        Assert.Matches(@"(clock_)?nanosleep\(.*\{tv_sec=1, tv_nsec=500000000\}, (NULL|0x[0-9a-f]+)\) += 0\n\+\+\+ exited with 0 \+\+\+", nozoki.StderrText());
    }

    public static TheoryData<string[]> BadArguments => new()
    {
        new[] { "trace" },
        new[] { "trace", "-e", "trace=nosuchcall", "--", "true" },
        new[] { "trace", "-e", "trace=%nosuchclass", "--", "true" },
        new[] { "trace", "-e", "bogus=1", "--", "true" },
        new[] { "trace", "-p", "abc" },
        new[] { "trace", "-s", "-1", "--", "true" },
        new[] { "trace", "--color", "purple", "--", "true" },
        new[] { "trace", "-x", "--", "true" },
    };

    [Theory]
    [MemberData(nameof(BadArguments))]
    public void Bad_arguments_exit_2(string[] args)
    {
        var (code, stdout, stderr) = NozokiCli.Run(args);
        NozokiCli.AssertNoStackTrace(stdout, stderr);
        var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(code == 2 && lines.Length == 1 && lines[0].StartsWith("nozoki: error:", StringComparison.Ordinal),
            $"`nozoki {string.Join(' ', args)}`: exit {code}, stderr:\n{stderr}");
    }

    [Fact]
    public void Missing_pid_exits_3_and_missing_command_exits_127()
    {
        int pid;
        using (var child = ChildProcess.Start(["/bin/true"]))
        {
            pid = child.Pid;
            Assert.NotNull(child.WaitForExit(TimeSpan.FromSeconds(15)));
        }

        var (code, _, stderr) = NozokiCli.Run("trace", "-p", $"{pid}");
        Assert.True(code == 3, $"exit {code}: {stderr}");
        // A command is not a process: not found, a shell's 127 (as `run` and `usdt -- CMD` give).
        (code, _, stderr) = NozokiCli.Run("trace", "--", "/nonexistent/program");
        Assert.True(code == 127, $"exit {code}: {stderr}");
        Assert.StartsWith("nozoki: error:", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Fd_paths_with_y()
    {
        using var nozoki = NozokiCli.Start(["trace", "-y", "-e", "trace=openat,read,close", "--", "cat", "/etc/hostname"]);
        nozoki.WaitForExit(NozokiCli.ExitTimeout);
        var stderr = nozoki.StderrText();
        Assert.Matches(@"openat\(AT_FDCWD, ""/etc/hostname"", O_RDONLY\) += 3</etc/hostname>", stderr);
        Assert.Matches(@"read\(3</etc/hostname>, "".*"", 131072\) += \d+", stderr);
    }

    /// <summary>
    /// Syscall numbers the table does not know (a gap, 400, and one past its end, 500: newer kernels add syscalls)
    /// are traced like strace does even with a filter; the seccomp filter of a launched command must stop them too.
    /// </summary>
    [Theory]
    [InlineData("trace=openat")]
    [InlineData("trace=!close")]
    public void Unknown_syscall_numbers_are_traced_through_the_seccomp_filter(string filter)
    {
        using var nozoki = NozokiCli.Start(["trace", "-e", filter, "--", "/usr/bin/python3", "-c",
            "import ctypes; libc = ctypes.CDLL(None); libc.syscall(400, 1, 2); libc.syscall(500, 3)"]);
        Assert.Equal(0, nozoki.WaitForExit(NozokiCli.ExitTimeout));
        var stderr = nozoki.StderrText();
        Assert.Matches(@"(?m)^syscall_0x190\(0x1, 0x2.*\) += -1 ENOSYS \(Function not implemented\)$", stderr);
        Assert.Matches(@"(?m)^syscall_0x1f4\(0x3.*\) += -1 ENOSYS \(Function not implemented\)$", stderr);
        Assert.Contains("openat(", stderr, StringComparison.Ordinal);
    }

    /// <summary>
    /// -yy names a socket from the traced process's own network namespace (/proc/PID/net), not nozoki's: a process
    /// in a container (here `unshare -n`) has sockets nozoki's /proc/net does not list.
    /// </summary>
    [Fact]
    public void Yy_describes_a_socket_of_another_network_namespace()
    {
        using var dir = new TempDir();
        var name = $"nozoki-ns-{Guid.NewGuid():N}";
        string script = $"import socket; s = socket.socket(socket.AF_UNIX); s.bind(b'\\0{name}'); s.getsockname()";
        var (lines, code, stderr) = TraceRuns.Nozoki(dir, ["-yy", "-e", "trace=getsockname"], ["unshare", "-n", "python3", "-c", script]);
        Assert.True(code == 0, stderr);
        var calls = lines.Where(l => l.StartsWith("getsockname(", StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(calls);
        Assert.All(calls, call => Assert.Matches($"^getsockname\\(\\d+<UNIX:\\[\\d+,\"@{name}\"\\]>, ", call));
    }
}
