namespace Nozoki.Probes;

/// <summary>
/// Which probes to select: `NAME`, `PROVIDER:NAME` or `OBJECT:PROVIDER:NAME`, each part a glob where `*` matches any
/// run of characters and `?` one character. An omitted part matches all. OBJECT matches an object's path (as
/// /proc/PID/maps shows it, i.e. with symlinks resolved) when it contains a '/' (an existing file named without
/// wildcards also matches through its symlinks: `/lib/x86_64-linux-gnu/libstdc++.so.6` is the
/// `/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30` that is mapped); else it matches the file name, where a soname
/// also matches its versioned file (`libstdc++.so.6:libstdcxx:throw` selects libstdc++.so.6.0.30).
/// </summary>
public sealed record ProbePattern(string? Object, string Provider, string Name)
{
    /// <summary>OBJECT resolved with realpath(3), when it is an existing file named without wildcards.</summary>
    public string? ResolvedObject { get; init; }

    public static readonly ProbePattern All = new(null, "*", "*");

    /// <summary>
    /// Parses a pattern. The last two fields are provider and name; an OBJECT that is a path (has a '/') may itself
    /// contain ':' (`/srv/a:b/libx.so:prov:name`), a bare file name may not, so `a:b:c:d` is refused rather than read
    /// as the object `a:b`.
    /// </summary>
    public static bool TryParse(string text, out ProbePattern pattern, out string problem)
    {
        pattern = All;
        problem = $"bad probe pattern '{text}': expected NAME, PROVIDER:NAME or OBJECT:PROVIDER:NAME";
        if (string.IsNullOrWhiteSpace(text)) return false;

        var last = text.LastIndexOf(':');
        if (last < 0)
        {
            pattern = new ProbePattern(null, "*", text);
            return true;
        }

        var name = text[(last + 1)..];
        var before = text[..last];
        var prev = before.LastIndexOf(':');
        var provider = prev < 0 ? before : before[(prev + 1)..];
        var obj = prev < 0 ? null : before[..prev];
        if (name.Length == 0 || provider.Length == 0 || obj is { Length: 0 }) return false;
        if (obj is not null && obj.Contains(':') && !obj.Contains('/'))
        {
            problem += " (an OBJECT that contains ':' must be a path, with a '/')";
            return false;
        }

        problem = "";

        pattern = new ProbePattern(obj, provider, name)
        {
            ResolvedObject = obj is not null && obj.Contains('/') && obj.IndexOfAny(['*', '?']) < 0 ? Native.RealPath.Resolve(obj) : null,
        };
        return true;
    }

    public bool Matches(string objectPath, ProbeSite site) => Matches(objectPath, site.Provider, site.Name);

    public bool Matches(string objectPath, string provider, string name)
    {
        if (!Glob(Provider, provider) || !Glob(Name, name)) return false;
        if (Object is null) return true;
        if (Object.Contains('/')) return Glob(Object, objectPath) || (ResolvedObject is not null && ResolvedObject == objectPath);
        var file = Path.GetFileName(objectPath);
        return Glob(Object, file) || IsVersionOf(file, Object);
    }

    // "libstdc++.so.6.0.30" is a version of "libstdc++.so.6": the same name followed by .digits[.digits...].
    private static bool IsVersionOf(string file, string soname)
    {
        if (file.Length <= soname.Length + 1 || !file.StartsWith(soname, StringComparison.Ordinal) || file[soname.Length] != '.') return false;
        foreach (var c in file.AsSpan(soname.Length + 1))
        {
            if (!char.IsAsciiDigit(c) && c != '.') return false;
        }

        return true;
    }

    public override string ToString() => Object is null ? $"{Provider}:{Name}" : $"{Object}:{Provider}:{Name}";

    /// <summary>Glob match with '*' and '?' (iterative, linear in practice: no backtracking blow-up).</summary>
    public static bool Glob(string pattern, string text)
    {
        int p = 0, t = 0, star = -1, mark = 0;
        while (t < text.Length)
        {
            if (p < pattern.Length && (pattern[p] == '?' || pattern[p] == text[t]))
            {
                p++;
                t++;
            }
            else if (p < pattern.Length && pattern[p] == '*')
            {
                star = p++;
                mark = t;
            }
            else if (star >= 0)
            {
                p = star + 1;
                t = ++mark;
            }
            else
            {
                return false;
            }
        }

        while (p < pattern.Length && pattern[p] == '*') p++;
        return p == pattern.Length;
    }
}
