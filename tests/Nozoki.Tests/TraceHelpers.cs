using System.Text.RegularExpressions;
using Nozoki.Tests.Helpers;

namespace Nozoki.Tests;

/// <summary>One line of strace-format output, parsed.</summary>
internal sealed record TraceLine(int Pid, string Kind, string Name, string Text, string Return)
{
    public override string ToString() => $"{Pid} {Kind} {Name} {Text} = {Return}";
}

/// <summary>Runs strace and `nozoki trace` the same way and parses what they print (strace's text format).</summary>
internal static partial class TraceRuns
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    /// <summary>Runs `strace ARGS -o FILE -- CMD` and returns the file's lines.</summary>
    public static string[] Strace(TempDir dir, IEnumerable<string> options, IEnumerable<string> command)
    {
        var file = dir.File($"strace-{Guid.NewGuid():N}.txt");
        using var p = ExternalProcess.Start("strace", "strace", [.. options, "-o", file, "--", .. command]);
        var code = p.WaitForExit(Timeout);
        Assert.True(File.Exists(file), $"strace wrote no output (exit {code}).\n{p.Describe()}");
        return ExternalProcess.SplitLines(File.ReadAllText(file));
    }

    /// <summary>Runs `nozoki trace ARGS -o FILE -- CMD`; returns the file's lines and nozoki's exit code.</summary>
    public static (string[] Lines, int Code, string Stderr) Nozoki(TempDir dir, IEnumerable<string> options, IEnumerable<string> command)
    {
        var file = dir.File($"nozoki-{Guid.NewGuid():N}.txt");
        using var p = NozokiCli.Start(["trace", .. options, "-o", file, "--", .. command]);
        var code = p.WaitForExit(Timeout);
        p.AssertNoStackTrace();
        Assert.True(File.Exists(file), $"nozoki wrote no output (exit {code}).\n{p.Describe()}");
        return (ExternalProcess.SplitLines(File.ReadAllText(file)), code, p.StderrText());
    }

    [GeneratedRegex(@"^(?:(?<pid>\d+) +|\[pid +(?<pid>\d+)\] )?(?<body>.*)$")]
    private static partial Regex Prefix();

    [GeneratedRegex(@"^(?<name>\w+)\((?<args>.*)\) += (?<ret>.*)$")]
    private static partial Regex Complete();

    [GeneratedRegex(@"^(?<name>\w+)\((?<args>.*) <unfinished \.\.\.>$")]
    private static partial Regex Unfinished();

    [GeneratedRegex(@"^<\.\.\. (?<name>\w+) resumed>(?<args>.*)\) += (?<ret>.*)$")]
    private static partial Regex Resumed();

    [GeneratedRegex(@"^--- (?<name>SIG\w+) (?<args>.*) ---$")]
    private static partial Regex SignalLine();

    [GeneratedRegex(@"^\+\+\+ (?<what>.*) \+\+\+$")]
    private static partial Regex ExitLine();

    /// <summary>
    /// Parses lines into calls (an unfinished line and its resumption become one "call"), signals and exits.
    /// Lines without a pid prefix get pid 0.
    /// </summary>
    public static List<TraceLine> Parse(IEnumerable<string> lines)
    {
        var result = new List<TraceLine>();
        var pending = new Dictionary<int, string>();
        foreach (var raw in lines)
        {
            var p = Prefix().Match(raw);
            var pid = p.Groups["pid"].Success ? int.Parse(p.Groups["pid"].Value, System.Globalization.CultureInfo.InvariantCulture) : 0;
            var body = p.Groups["body"].Value;
            Match m;
            if ((m = Unfinished().Match(body)).Success)
            {
                pending[pid] = m.Groups["args"].Value;
            }
            else if ((m = Resumed().Match(body)).Success)
            {
                var args = pending.Remove(pid, out var start) ? start + m.Groups["args"].Value : m.Groups["args"].Value;
                result.Add(new TraceLine(pid, "call", m.Groups["name"].Value, args, m.Groups["ret"].Value.Trim()));
            }
            else if ((m = Complete().Match(body)).Success)
            {
                result.Add(new TraceLine(pid, "call", m.Groups["name"].Value, m.Groups["args"].Value, m.Groups["ret"].Value.Trim()));
            }
            else if ((m = SignalLine().Match(body)).Success)
            {
                result.Add(new TraceLine(pid, "signal", m.Groups["name"].Value, m.Groups["args"].Value, ""));
            }
            else if ((m = ExitLine().Match(body)).Success)
            {
                result.Add(new TraceLine(pid, "exit", "", m.Groups["what"].Value, ""));
            }
            else
            {
                result.Add(new TraceLine(pid, "other", "", body, ""));
            }
        }

        return result;
    }

    private static readonly HashSet<string> PidReturning =
        ["set_tid_address", "getpid", "gettid", "getppid", "clone", "clone3", "fork", "vfork", "wait4", "waitid"];

    [GeneratedRegex(@"^0x[0-9a-f]+$")]
    private static partial Regex HexValue();

    /// <summary>A return value that does not depend on the run: addresses and pids replaced, error names kept.</summary>
    public static string StableReturn(TraceLine l)
    {
        var r = l.Return;
        var sp = r.IndexOf(' ', StringComparison.Ordinal);
        var value = sp < 0 ? r : r[..sp];
        var rest = sp < 0 ? "" : r[sp..];
        // Keep the errno name, drop the message (identical anyway) and decorations such as " (flags O_RDONLY)".
        var err = Regex.Match(rest, @"^ (E[A-Z0-9_]+|ERESTART\w+)");
        if (HexValue().IsMatch(value) && l.Name is "mmap" or "brk" or "mremap" or "shmat") value = "ADDR";
        else if (PidReturning.Contains(l.Name) && value is not ("-1" or "0" or "?")) value = "PID";
        return err.Success ? $"{value}{err.Value}" : value;
    }

    /// <summary>Each process's (name = return) sequence, in the order the processes appear.</summary>
    public static List<List<string>> SequencesPerPid(IEnumerable<TraceLine> lines, Func<TraceLine, bool>? keep = null) =>
        lines.Where(l => l.Kind == "call" && (keep?.Invoke(l) ?? true))
            .GroupBy(l => l.Pid)
            .Select(g => g.Select(l => $"{l.Name} = {StableReturn(l)}").ToList())
            .ToList();

    /// <summary>A readable first difference of two sequences, for failure messages.</summary>
    public static string FirstDifference(IReadOnlyList<string> expected, IReadOnlyList<string> actual)
    {
        var n = Math.Min(expected.Count, actual.Count);
        for (var i = 0; i < n; i++)
        {
            if (expected[i] != actual[i])
                return $"at {i}: strace '{expected[i]}', nozoki '{actual[i]}'\nstrace: {string.Join(" | ", expected.Skip(Math.Max(0, i - 3)).Take(8))}\nnozoki: {string.Join(" | ", actual.Skip(Math.Max(0, i - 3)).Take(8))}";
        }

        return expected.Count == actual.Count ? "none" : $"lengths differ: strace {expected.Count}, nozoki {actual.Count}; first extra: '{(expected.Count > n ? expected[n] : actual[n])}'";
    }
}
