using System.Text.RegularExpressions;
using Nozoki.Tests.Helpers;

namespace Nozoki.Tests;

/// <summary>`nozoki trace` against the real strace: same calls, same results, same rendering.</summary>
[Collection(PtraceCollection.Name)]
public sealed partial class TraceVsStraceTests
{
    private static string Scratch(TempDir dir, string name = "scratch")
    {
        var path = dir.File(name);
        Directory.CreateDirectory(path);
        return path;
    }

    /// <summary>The command lines of the sequence test (FIXTURE and DIR are filled in).</summary>
    public static TheoryData<string, string[]> Commands => new()
    {
        { "", ["FIXTURE", "all", "DIR"] },
        { "", ["cat", "DIR/file"] },
        { "", ["ls", "DIR"] },
        { "-f", ["sh", "-c", "true | cat"] },
    };

    private static string[] Fill(string[] command, string dir) =>
        [.. command.Select(a => a == "FIXTURE" ? Fixtures.Get("syscalls") : a.Replace("DIR", dir, StringComparison.Ordinal))];

    private static void MakeFiles(string dir)
    {
        File.WriteAllText(Path.Combine(dir, "file"), "some text\nmore text\n");
        File.WriteAllText(Path.Combine(dir, "b"), "");
        Directory.CreateDirectory(Path.Combine(dir, "sub"));
    }

    [Theory]
    [MemberData(nameof(Commands))]
    public void Syscall_sequence_per_process_matches_strace(string options, string[] command)
    {
        using var dir = new TempDir();
        var scratch = Scratch(dir);
        MakeFiles(scratch);
        var argv = Fill(command, scratch);
        string[] opts = options.Length == 0 ? [] : [options];
        var expected = TraceRuns.Parse(TraceRuns.Strace(dir, opts, argv));
        var (lines, code, stderr) = TraceRuns.Nozoki(dir, opts, argv);
        Assert.True(code == 0, $"nozoki trace exited {code}: {stderr}");
        var actual = TraceRuns.Parse(lines);

        // Signals may arrive a syscall earlier or later from run to run; rt_sigreturn goes with them.
        static bool Keep(TraceLine l) => l.Name is not "rt_sigreturn";
        var e = TraceRuns.SequencesPerPid(expected, Keep);
        var a = TraceRuns.SequencesPerPid(actual, Keep);
        Assert.True(e.Count == a.Count, $"strace saw {e.Count} processes, nozoki {a.Count}\n{string.Join('\n', lines)}");
        if (e.Count == 1)
        {
            Assert.True(e[0].SequenceEqual(a[0]), TraceRuns.FirstDifference(e[0], a[0]));
            return;
        }

        // Several processes: pids differ between the runs; compare the multiset of per-process sequences.
        var es = e.Select(s => string.Join("\n", s)).Order(StringComparer.Ordinal).ToList();
        var @as = a.Select(s => string.Join("\n", s)).Order(StringComparer.Ordinal).ToList();
        for (var i = 0; i < es.Count; i++)
            Assert.True(es[i] == @as[i], TraceRuns.FirstDifference(es[i].Split('\n'), @as[i].Split('\n')));
    }

    public static TheoryData<string> Families => new() { "open", "mmap", "signal", "socket", "stat", "poll", "process", "ioctl", "io" };

    [GeneratedRegex(@"0x[0-9a-f]{6,}")]
    private static partial Regex Address();

    [GeneratedRegex(@"\b(\d{3,})\b")]
    private static partial Regex LongNumber();

    /// <summary>Replaces what differs between two runs: addresses, pids, the fixture's file names, random bytes.</summary>
    private static string Normalize(string line, string scratch)
    {
        line = line.Replace(scratch, "DIR", StringComparison.Ordinal);
        line = Address().Replace(line, "ADDR");
        line = Regex.Replace(line, @"fixture-\d+", "fixture-N");
        line = Regex.Replace(line, @"(si_pid=|kill\(|tgkill\(|wait4\()\d+", "${1}PID");
        line = Regex.Replace(line, @"\) += \d{3,}$", ") = PID");
        line = Regex.Replace(line, @"getrandom\(""[^""]*""", "getrandom(RANDOM");
        line = Regex.Replace(line, @"/\* \d+ vars \*/", "/* N vars */");
        return Regex.Replace(line, @"\s+= ", " = ");
    }

    private static List<string> Section(IEnumerable<string> lines, string scratch)
    {
        var all = lines.ToList();
        var begin = all.FindIndex(l => l.StartsWith("getpid()", StringComparison.Ordinal));
        var end = all.FindIndex(l => l.StartsWith("getgid()", StringComparison.Ordinal));
        Assert.True(begin >= 0 && end > begin, "markers not found:\n" + string.Join('\n', all));
        return all.GetRange(begin, end - begin + 1).Select(l => Normalize(l, scratch)).ToList();
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void Decoding_of_each_family_matches_strace(string family)
    {
        using var dir = new TempDir();
        var scratch = Scratch(dir);
        string[] argv = [Fixtures.Get("syscalls"), family, scratch];
        var expected = Section(TraceRuns.Strace(dir, [], argv), scratch);
        var (lines, code, stderr) = TraceRuns.Nozoki(dir, [], argv);
        Assert.True(code == 0, $"nozoki trace exited {code}: {stderr}");
        var actual = Section(lines, scratch);

        // A signal line may come one call earlier or later; compare signal lines apart.
        var es = expected.Where(l => l.StartsWith("---", StringComparison.Ordinal)).Order(StringComparer.Ordinal).ToList();
        var @as = actual.Where(l => l.StartsWith("---", StringComparison.Ordinal)).Order(StringComparer.Ordinal).ToList();
        Assert.Equal(es, @as);
        var ec = expected.Where(l => !l.StartsWith("---", StringComparison.Ordinal)).ToList();
        var ac = actual.Where(l => !l.StartsWith("---", StringComparison.Ordinal)).ToList();
        var diffs = new List<string>();
        for (var i = 0; i < Math.Max(ec.Count, ac.Count); i++)
        {
            var e = i < ec.Count ? ec[i] : "(nothing)";
            var a = i < ac.Count ? ac[i] : "(nothing)";
            if (e != a) diffs.Add($"strace: {e}\nnozoki: {a}");
        }

        Assert.True(diffs.Count == 0, $"{diffs.Count} line(s) differ:\n" + string.Join("\n", diffs));
    }

    [Fact]
    public void Summary_counts_equal_strace_c()
    {
        using var dir = new TempDir();
        var scratch = Scratch(dir);
        MakeFiles(scratch);
        string[] argv = [Fixtures.Get("syscalls"), "all", scratch];
        var expected = SummaryRows(TraceRuns.Strace(dir, ["-c"], argv));
        var (lines, code, stderr) = TraceRuns.Nozoki(dir, ["-c"], argv);
        Assert.True(code == 0, $"nozoki trace -c exited {code}: {stderr}");
        var actual = SummaryRows(lines);
        Assert.True(expected.Count > 20, "strace -c printed too few rows:\n" + string.Join('\n', expected));
        Assert.Equal(expected.OrderBy(kv => kv.Key, StringComparer.Ordinal), actual.OrderBy(kv => kv.Key, StringComparer.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("% time     seconds  usecs/call     calls    errors syscall", StringComparison.Ordinal));
    }

    /// <summary>syscall -> "calls/errors" from an strace -c table (the total row included).</summary>
    private static Dictionary<string, string> SummaryRows(IEnumerable<string> lines)
    {
        var rows = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var line in lines)
        {
            var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (f.Length < 5 || !double.TryParse(f[0], System.Globalization.CultureInfo.InvariantCulture, out _)) continue;
            var name = f[^1];
            var errors = f.Length == 6 ? f[4] : "0";
            rows[name] = $"{f[3]}/{errors}";
        }

        return rows;
    }

    [Fact]
    public void Buffers_larger_than_64_KiB_are_shown_up_to_the_string_limit_as_strace_does()
    {
        // 200,000 bytes of every value (C escapes, octal before digits, printable) read and written in one call each,
        // shown with -s 100000: both tools print the first 100,000 bytes, then "...".
        using var dir = new TempDir();
        var data = new byte[200_000];
        for (var i = 0; i < data.Length; i++) data[i] = (byte)((i * 7 + i / 251) & 0xff);
        var input = dir.File("input");
        File.WriteAllBytes(input, data);
        string[] argv = ["dd", $"if={input}", "of=/dev/null", "bs=200000", "count=1", "status=none"];
        string[] options = ["-s", "100000", "-e", "trace=read,write"];
        static List<string> Large(IEnumerable<string> lines) => [.. lines.Where(l => l.EndsWith("= 200000", StringComparison.Ordinal))];

        var expected = Large(TraceRuns.Strace(dir, options, argv));
        var (lines, code, stderr) = TraceRuns.Nozoki(dir, options, argv);
        Assert.True(code == 0, $"nozoki trace exited {code}: {stderr}");
        var actual = Large(lines);
        Assert.Equal(2, expected.Count);
        Assert.StartsWith("read(0, \"\\0\\7\\16", expected[0], StringComparison.Ordinal);
        Assert.Contains("\"..., 200000) = 200000", expected[1], StringComparison.Ordinal);
        Assert.Equal(expected.Count, actual.Count);
        for (var i = 0; i < expected.Count; i++)
        {
            var common = expected[i].AsSpan().CommonPrefixLength(actual[i]);
            Assert.True(expected[i] == actual[i],
                $"line {i} differs at column {common}:\nstrace: ...{expected[i][Math.Max(0, common - 40)..Math.Min(expected[i].Length, common + 40)]}\n" +
                $"nozoki: ...{actual[i][Math.Max(0, common - 40)..Math.Min(actual[i].Length, common + 40)]}");
        }
    }

    public static TheoryData<string> Filters => new()
    {
        "trace=openat,close",
        "trace=%file",
        "trace=%desc,%memory",
        "trace=!close,mmap",
        "trace=/^(open|stat|newf)",
        "status=failed",
        "trace=%network,%signal,%process",
    };

    [Theory]
    [MemberData(nameof(Filters))]
    public void Filters_select_the_same_calls_as_strace(string expression)
    {
        using var dir = new TempDir();
        var scratch = Scratch(dir);
        string[] argv = [Fixtures.Get("syscalls"), "all", scratch];
        // A seccomp filter can only stop the numbers it names: numbers the table does not know (which strace shows
        // whatever the filter) are not stopped in a launched command.
        static bool Keep(TraceLine l) => l.Name != "rt_sigreturn" && !l.Name.StartsWith("syscall_", StringComparison.Ordinal);
        var expected = TraceRuns.SequencesPerPid(TraceRuns.Parse(TraceRuns.Strace(dir, ["-e", expression], argv)), Keep);
        var (lines, code, stderr) = TraceRuns.Nozoki(dir, ["-e", expression], argv);
        Assert.True(code == 0, $"nozoki trace exited {code}: {stderr}");
        var actual = TraceRuns.SequencesPerPid(TraceRuns.Parse(lines), Keep);
        Assert.Single(expected);
        Assert.Single(actual);
        Assert.True(expected[0].SequenceEqual(actual[0]), TraceRuns.FirstDifference(expected[0], actual[0]));
    }

    /// <summary>
    /// execve from a thread that is not the leader: the kernel gives that thread the leader's id and ends the others
    /// (the old leader too, inside its pause). strace shows the execve resumed under the leader's id with "= 0" and
    /// the old leader's pause "= ?"; the execve line must not be cut off nor a second execve appear.
    /// </summary>
    [Fact]
    public void Execve_from_a_second_thread_matches_strace()
    {
        using var dir = new TempDir();
        string[] argv = [Fixtures.Get("execthread"), "/bin/true"];
        var expected = ExecSummary(TraceRuns.Strace(dir, ["-f"], argv));
        var (lines, code, stderr) = TraceRuns.Nozoki(dir, ["-f"], argv);
        Assert.True(code == 0, $"nozoki trace exited {code}: {stderr}");
        var actual = ExecSummary(lines);
        Assert.Contains("execve(\"/bin/true\", [\"/bin/true\"] ... = 0", expected);
        Assert.Contains("LEADER +++ superseded by execve in pid FORMER +++", expected);
        Assert.True(expected.SequenceEqual(actual),
            $"strace:\n{string.Join('\n', expected)}\nnozoki:\n{string.Join('\n', actual)}\nnozoki output:\n{string.Join('\n', lines)}");
    }

    /// <summary>
    /// The same run written live (to a pipe, lines started at the call's entry): the execve's line is cut before the
    /// old leader's last call ends, and the pid change is said between them, as strace does on stderr (strace's own
    /// stderr also carries its attach messages and no pid prefix once one task is left, so the order is compared).
    /// </summary>
    [Fact]
    public void Execve_from_a_second_thread_live_cuts_the_execve_line()
    {
        using var p = NozokiCli.Start(["trace", "-f", "--", Fixtures.Get("execthread"), "/bin/true"]);
        Assert.Equal(0, p.WaitForExit(NozokiCli.ExitTimeout));
        var lines = ExternalProcess.SplitLines(p.StderrText());
        var execve = Array.FindIndex(lines, l => l.Contains("execve(\"/bin/true\"", StringComparison.Ordinal));
        Assert.True(execve >= 0, string.Join('\n', lines));
        Assert.True(execve + 3 < lines.Length, string.Join('\n', lines));
        var context = string.Join('\n', lines[execve..(execve + 4)]);
        Assert.True(lines[execve].EndsWith(" <unfinished ...>", StringComparison.Ordinal), context);
        Assert.True(Regex.IsMatch(lines[execve + 1], @"<\.\.\. pause resumed>\) += \?$"), context);
        Assert.True(Regex.IsMatch(lines[execve + 2], @"^(\[pid +\d+\] )?\+\+\+ superseded by execve in pid \d+ \+\+\+$"), context);
        Assert.True(Regex.IsMatch(lines[execve + 3], @"^(\[pid +\d+\] )?<\.\.\. execve resumed>\) += 0$"), context);
    }

    /// <summary>The execve and pause calls of a run, joined with their resumption (by name: the id changes), as "call ... = ret".</summary>
    private static List<string> ExecSummary(IEnumerable<string> lines)
    {
        var result = new List<string>();
        var open = new Dictionary<string, string>(StringComparer.Ordinal);
        string? leader = null;
        foreach (var raw in lines)
        {
            var prefix = ExecBody().Match(raw);
            var body = prefix.Groups["body"].Value;
            leader ??= prefix.Groups["pid"].Value;
            Match m;
            if ((m = Superseded().Match(body)).Success)
            {
                // Pids differ between the runs: say which thread is which.
                var who = prefix.Groups["pid"].Value == leader ? "LEADER" : prefix.Groups["pid"].Value;
                var former = m.Groups["former"].Value == leader ? "LEADER" : m.Groups["former"].Value == Former(lines) ? "FORMER" : m.Groups["former"].Value;
                result.Add($"{who} +++ superseded by execve in pid {former} +++");
            }
            else if ((m = ExecUnfinished().Match(body)).Success) open[m.Groups["name"].Value] = m.Groups["head"].Value;
            else if ((m = ExecResumed().Match(body)).Success)
                result.Add($"{open.GetValueOrDefault(m.Groups["name"].Value, m.Groups["name"].Value + "(?")} ... = {m.Groups["ret"].Value}");
            else if ((m = ExecComplete().Match(body)).Success)
                result.Add($"{m.Groups["head"].Value} ... = {m.Groups["ret"].Value}");
        }

        return result;
    }

    /// <summary>The thread that started the second execve (by its id before the exec).</summary>
    private static string? Former(IEnumerable<string> lines) =>
        lines.Select(l => ExecBody().Match(l))
            .FirstOrDefault(m => m.Groups["body"].Value.StartsWith("execve(\"/bin/true\"", StringComparison.Ordinal))?.Groups["pid"].Value;

    [GeneratedRegex(@"^(?:(?<pid>\d+) +|\[pid +(?<pid>\d+)\] )?(?<body>.*)$")]
    private static partial Regex ExecBody();

    [GeneratedRegex(@"^\+\+\+ superseded by execve in pid (?<former>\d+) \+\+\+$")]
    private static partial Regex Superseded();

    [GeneratedRegex(@"^(?<head>(?<name>execve|pause)\((?:""[^""]*"", \[[^\]]*\])?).* <unfinished \.\.\.>$")]
    private static partial Regex ExecUnfinished();

    [GeneratedRegex(@"^<\.\.\. (?<name>execve|pause) resumed>.*\) += (?<ret>\S+)")]
    private static partial Regex ExecResumed();

    [GeneratedRegex(@"^(?<head>(?:execve|pause)\((?:""[^""]*"", \[[^\]]*\])?).*\) += (?<ret>\S+)")]
    private static partial Regex ExecComplete();
}
