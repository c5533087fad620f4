using System.Globalization;
using System.Text.RegularExpressions;

namespace Nozoki.Tests.Helpers;

/// <summary>One `nozoki usdt` hit line: `HH:MM:SS.ffffff COMM PID TID provider:name arg1 arg2 ...`.</summary>
internal sealed record UsdtHitLine(string Time, string Comm, int Pid, int Tid, string Probe, string[] Args)
{
    public string Name => Probe[(Probe.IndexOf(':', StringComparison.Ordinal) + 1)..];
}

/// <summary>Parses `nozoki usdt` output (text mode), which a launched command's own stdout may share.</summary>
internal static partial class UsdtOutput
{
    /// <summary>Lines that start like a hit line (a time stamp), intact or not.</summary>
    [GeneratedRegex(@"^\d\d:\d\d:\d\d\.\d")]
    private static partial Regex HitStart();

    // An argument: a decimal number, a C-quoted string (--str), or one of the markers for values nozoki could not read.
    [GeneratedRegex("""^(?<time>\d\d:\d\d:\d\d\.\d{6}) (?<comm>\S+) (?<pid>\d+) (?<tid>\d+) (?<probe>[^ :"]+:[^ :"]+)(?<args>(?: (?:-?\d+|"(?:[^"\\]|\\.)*"|<fault>|<unresolved>|<unsupported>))*)$""")]
    private static partial Regex HitLine();

    [GeneratedRegex("""-?\d+|"(?:[^"\\]|\\.)*"|<fault>|<unresolved>|<unsupported>""")]
    private static partial Regex Argument();

    public static bool LooksLikeHit(string line) => HitStart().IsMatch(line);

    public static bool TryParse(string line, out UsdtHitLine hit)
    {
        hit = null!;
        var m = HitLine().Match(line);
        if (!m.Success) return false;
        var args = Argument().Matches(m.Groups["args"].Value).Select(a => a.Value).ToArray();
        hit = new UsdtHitLine(m.Groups["time"].Value, m.Groups["comm"].Value, int.Parse(m.Groups["pid"].Value, CultureInfo.InvariantCulture),
            int.Parse(m.Groups["tid"].Value, CultureInfo.InvariantCulture), m.Groups["probe"].Value, args);
        return true;
    }

    /// <summary>
    /// The hit lines of a text (every line that starts with a time stamp must be an intact hit line: fails otherwise)
    /// and the other lines (a launched command's own output), both in order.
    /// </summary>
    public static (List<UsdtHitLine> Hits, List<string> Other) Split(string text)
    {
        var hits = new List<UsdtHitLine>();
        var other = new List<string>();
        foreach (var line in ExternalProcess.SplitLines(text))
        {
            if (!LooksLikeHit(line))
            {
                other.Add(line);
                continue;
            }

            Assert.True(TryParse(line, out var hit), $"not an intact hit line: '{line}'");
            hits.Add(hit);
        }

        return (hits, other);
    }

    public static List<UsdtHitLine> Hits(string text) => Split(text).Hits;

    /// <summary>The value of a "KEY VALUE" line a fixture printed (e.g. "checksum 8818..."); fails when absent.</summary>
    public static string Value(IEnumerable<string> lines, string key)
    {
        var prefix = key + " ";
        var found = lines.Where(l => l.StartsWith(prefix, StringComparison.Ordinal)).ToList();
        Assert.True(found.Count == 1, $"expected one '{key} ...' line, got {found.Count}: {string.Join(" | ", lines)}");
        return found[0][prefix.Length..];
    }

    /// <summary>`nozoki: armed N probe site(s) in PID P` as nozoki prints it.</summary>
    public static string ArmedLine(int sites, int pid) => $"nozoki: armed {sites} probe site{(sites == 1 ? "" : "s")} in PID {pid}\n";

    public static string DetachedLine(int pid) => $"nozoki: detached from PID {pid}; every probe site and semaphore restored\n";

    public static string ExitedLine(int pid, int code) => $"nozoki: PID {pid} exited with status {code}\n";
}
