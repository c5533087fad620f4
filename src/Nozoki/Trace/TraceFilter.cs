using System.Globalization;
using System.Text.RegularExpressions;
using Nozoki.Native;
using Nozoki.Syscalls;

namespace Nozoki.Trace;

/// <summary>A set of syscall numbers (strace's -e trace=...). Numbers beyond the table are in it when <see cref="Unknown"/>.</summary>
public sealed class SyscallSet
{
    private readonly bool[] _in = new bool[SyscallTable.Count];

    public bool Unknown { get; private set; }

    public bool All => Enumerable.Range(0, _in.Length).All(i => _in[i] || SyscallTable.Name(i) is null);

    /// <summary>Numbers the table does not name are always in the set, as in strace (which shows them whatever -e trace says).</summary>
    public bool Contains(long nr) => nr >= 0 && nr < _in.Length && SyscallTable.Name(nr) is not null ? _in[nr] : Unknown;

    /// <summary>The numbers in the set that the table knows (for a seccomp filter).</summary>
    public IEnumerable<int> Numbers() => Enumerable.Range(0, _in.Length).Where(i => _in[i] && SyscallTable.Name(i) is not null);

    /// <summary>
    /// The numbers the table does not know, as inclusive ranges (the last one open-ended: long.MaxValue), when they are
    /// in the set: the gaps in the table and everything after it (syscalls newer than the headers it was made from).
    /// </summary>
    public IEnumerable<(long First, long Last)> UnknownRanges()
    {
        if (!Unknown) yield break;
        long? start = null;
        for (var i = 0; i < _in.Length; i++)
        {
            var known = SyscallTable.Name(i) is not null;
            if (!known && start is null) start = i;
            if (known && start is { } first)
            {
                yield return (first, i - 1);
                start = null;
            }
        }

        yield return (start ?? _in.Length, long.MaxValue);
    }

    public static SyscallSet Everything()
    {
        var s = new SyscallSet { Unknown = true };
        Array.Fill(s._in, true);
        return s;
    }

    /// <summary>
    /// Parses strace's syntax: a comma list of names, numbers, %classes (%file %process %network %net %signal %ipc %desc
    /// %memory %stat %%stat), /regex and all; or `none` alone; each leading ! negates the whole set; ? before an item
    /// ignores it when unknown. Throws FormatException with strace's one-line message ("invalid system call 'x'"):
    /// as in strace 6.1, an empty set (`trace=`, `trace=!`, `trace=,`) and `none` among other items are refused, and
    /// blanks are part of the names.
    /// </summary>
    public static SyscallSet Parse(string spec)
    {
        var s = new SyscallSet();
        var (negate, body) = Negations(spec);
        if (body != "none" && Items(body) is []) throw new FormatException($"invalid system call '{spec}'");
        foreach (var raw in body == "none" ? [] : Items(body))
        {
            var item = raw;
            var optional = item.StartsWith('?');
            if (optional) item = item[1..];
            if (item is "all")
            {
                Array.Fill(s._in, true);
                s.Unknown = true;
            }
            else if (item.StartsWith('%'))
            {
                var cls = item switch
                {
                    "%file" => SyscallClass.File,
                    "%process" => SyscallClass.Process,
                    "%network" or "%net" => SyscallClass.Network,
                    "%signal" => SyscallClass.Signal,
                    "%ipc" => SyscallClass.Ipc,
                    "%desc" => SyscallClass.Desc,
                    "%memory" => SyscallClass.Memory,
                    "%stat" or "%%stat" => SyscallClass.Stat,
                    _ => optional ? SyscallClass.None : throw new FormatException($"invalid system call class '{item}'"),
                };
                if (cls == SyscallClass.None) continue;
                foreach (var (nr, _) in SyscallTable.All())
                {
                    if ((SyscallTable.Classes(nr) & cls) != 0) s._in[nr] = true;
                }
            }
            else if (item.StartsWith('/'))
            {
                Regex re;
                try
                {
                    re = new Regex(item[1..], RegexOptions.CultureInvariant);
                }
                catch (ArgumentException e)
                {
                    throw new FormatException($"invalid regular expression '{item[1..]}': {e.Message}");
                }

                foreach (var (nr, name) in SyscallTable.All())
                {
                    if (re.IsMatch(name)) s._in[nr] = true;
                }
            }
            else
            {
                var nr = SyscallTable.Lookup(item);
                if (nr < 0 && int.TryParse(item, NumberStyles.None, CultureInfo.InvariantCulture, out var n)) nr = n;
                if (nr < 0 || nr >= s._in.Length)
                {
                    if (optional) continue;
                    throw new FormatException($"invalid system call '{item}'");
                }

                s._in[nr] = true;
            }
        }

        if (negate)
        {
            for (var i = 0; i < s._in.Length; i++) s._in[i] = !s._in[i];
        }

        s.Unknown = true;
        return s;
    }

    /// <summary>strace's leading '!'s: each one inverts the rest.</summary>
    internal static (bool Negate, string Body) Negations(string spec)
    {
        var rest = spec.TrimStart('!');
        return ((spec.Length - rest.Length) % 2 == 1, rest);
    }

    /// <summary>The comma-separated items (strtok: empty items between commas are skipped).</summary>
    internal static string[] Items(string body) => body.Split(',', StringSplitOptions.RemoveEmptyEntries);
}

/// <summary>A set of signals (strace's -e signal=...): names with or without SIG, numbers, all, none, ! to negate.</summary>
public sealed class SignalSet
{
    private readonly bool[] _in = new bool[65];

    public bool Contains(int signo) => signo > 0 && signo < _in.Length && _in[signo];

    public static SignalSet Everything()
    {
        var s = new SignalSet();
        Array.Fill(s._in, true);
        return s;
    }

    /// <summary>
    /// Parses strace's -e signal=: a comma list of names (with or without SIG, any case) and numbers, or `all` or
    /// `none` alone; each leading ! negates. Throws FormatException with strace's message ("invalid signal 'x'").
    /// </summary>
    public static SignalSet Parse(string spec)
    {
        var s = new SignalSet();
        var (negate, body) = SyscallSet.Negations(spec);
        if (body == "all") Array.Fill(s._in, true);
        else if (body != "none" && SyscallSet.Items(body) is []) throw new FormatException($"invalid signal '{spec}'");
        foreach (var item in body is "all" or "none" ? [] : SyscallSet.Items(body))
        {
            var sig = -1;
            if (int.TryParse(item, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n is > 0 and <= 64) sig = n;
            else
            {
                var name = item.StartsWith("SIG", StringComparison.OrdinalIgnoreCase) ? item.ToUpperInvariant() : "SIG" + item.ToUpperInvariant();
                for (var i = 1; i <= 64; i++)
                {
                    if (Signals.Name(i) == name) sig = i;
                }
            }

            if (sig < 0) throw new FormatException($"invalid signal '{item}'");
            s._in[sig] = true;
        }

        if (negate)
        {
            for (var i = 1; i < s._in.Length; i++) s._in[i] = !s._in[i];
        }

        return s;
    }
}

/// <summary>strace's -e status=: which completed calls are shown.</summary>
[Flags]
public enum StatusFilter
{
    Successful = 1,
    Failed = 2,
    All = Successful | Failed,
}

public static class StatusFilters
{
    /// <summary>
    /// Parses strace's -e status=: a comma list of successful, failed (and strace's unfinished, unavailable,
    /// detached), or `all` or `none` alone; each leading ! negates. Throws FormatException ("invalid status 'x'").
    /// </summary>
    public static StatusFilter Parse(string spec)
    {
        var (negate, body) = SyscallSet.Negations(spec);
        StatusFilter f = 0;
        if (body == "all") f = StatusFilter.All;
        else if (body != "none" && SyscallSet.Items(body) is []) throw new FormatException($"invalid status '{spec}'");
        foreach (var item in body is "all" or "none" ? [] : SyscallSet.Items(body))
        {
            f |= item switch
            {
                "successful" => StatusFilter.Successful,
                "failed" => StatusFilter.Failed,
                // Kept for strace compatibility; nozoki shows every call once complete.
                "unfinished" or "unavailable" or "detached" => 0,
                var other => throw new FormatException($"invalid status '{other}'"),
            };
        }

        return negate ? StatusFilter.All & ~f : f;
    }
}
