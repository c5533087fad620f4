using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;

namespace Nozoki.Cli;

/// <summary>
/// Parsers for the values of nozoki's options and arguments: every command says the same thing about the same kind of
/// value, in nozoki's words ("PID must be a positive whole number: 'abc'"), never System.CommandLine's type names.
/// A value that fails is a usage error (exit 2), found while parsing, before anything is attached or started.
/// </summary>
internal static class Arguments
{
    private delegate bool TryParse<T>(string text, out T value, out string problem);

    /// <summary>
    /// A PID as nozoki takes it everywhere: decimal digits only (no sign, blanks or hex), from 1 to 2147483647 (pid_t
    /// is a 32-bit int). A well-formed PID that no process has (above pid_max, or exited) is not a usage error: exit
    /// 3, later, "no process with PID n".
    /// </summary>
    public static bool TryParsePid(string text, out int pid, out string problem)
    {
        pid = 0;
        problem = "";
        var digits = text.TrimStart('0');
        if (text.Length == 0 || !text.All(char.IsAsciiDigit) || digits.Length == 0)
        {
            problem = $"PID must be a positive whole number: '{text}'";
            return false;
        }

        if (digits.Length > 10 || !int.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out pid))
        {
            pid = 0;
            problem = $"PID must be at most {int.MaxValue}: '{text}'";
            return false;
        }

        return true;
    }

    /// <summary>The PID argument of `nozoki out PID`.</summary>
    public static Argument<int> Pid(string description) =>
        new("PID") { Description = description, CustomParser = r => Parse<int>(r, TryParsePid) };

    /// <summary>`-p PID` of probes and usdt (trace's -p takes lists: <see cref="TryParsePid"/>).</summary>
    public static Option<int?> PidOption(string description) => LastWins(new Option<int?>("--pid", "-p")
    {
        Description = description,
        CustomParser = r => Parse(r, (string text, out int? value, out string problem) =>
        {
            var ok = TryParsePid(text, out var pid, out problem);
            value = pid;
            return ok;
        }),
    });

    /// <summary>
    /// `-p PID[,PID...]` of break: repeatable, each a PID or a list separated by commas or blanks (`-p "$(pidof x)"`),
    /// as trace's; duplicates once, in the order given.
    /// </summary>
    public static Option<int[]> PidListOption(string description) => new("--pid", "-p")
    {
        Description = description,
        Arity = ArgumentArity.OneOrMore,
        AllowMultipleArgumentsPerToken = false,
        CustomParser = r =>
        {
            var pids = new List<int>();
            foreach (var t in r.Tokens)
            {
                var parts = t.Value.Split([',', ' ', '\t', '\n'], StringSplitOptions.RemoveEmptyEntries);
                foreach (var part in parts.Length > 0 ? parts : [t.Value])
                {
                    if (!TryParsePid(part, out var pid, out var problem)) return Fail<int[]>(r, problem);
                    if (!pids.Contains(pid)) pids.Add(pid);
                }
            }

            return [.. pids];
        },
    };

    /// <summary>A whole number from <paramref name="min"/> to <paramref name="max"/>.</summary>
    public static Option<int> Int(Option<int> option, int min, int max, string expected)
    {
        option.CustomParser = r => Parse(r, (string text, out int value, out string problem) =>
            Check(TryParseInt(text, min, max, out value), r, expected, text, out problem));
        return LastWins(option);
    }

    /// <summary>A repeatable whole number from <paramref name="min"/> to <paramref name="max"/> (`--fd 1 --fd 2`).</summary>
    public static Option<int[]> Ints(Option<int[]> option, int min, int max, string expected)
    {
        option.CustomParser = r =>
        {
            var values = new List<int>();
            foreach (var t in r.Tokens)
            {
                if (TryParseInt(t.Value, min, max, out var v)) values.Add(v);
                else return Fail<int[]>(r, $"{Name(r)} must be {expected}: '{t.Value}'");
            }

            return [.. values];
        };
        return option;
    }

    /// <summary>A whole number from <paramref name="min"/> to long.MaxValue.</summary>
    public static Option<long> Long(Option<long> option, long min, string expected)
    {
        option.CustomParser = r => Parse(r, (string text, out long value, out string problem) =>
            Check(long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out value) && value >= min, r, expected, text, out problem));
        return LastWins(option);
    }

    /// <summary>A number of seconds (decimals allowed) above 0 and at most <paramref name="max"/>.</summary>
    public static Option<double> Seconds(Option<double> option, double max)
    {
        var expected = $"a number of seconds above 0 and at most {max.ToString(CultureInfo.InvariantCulture)}";
        option.CustomParser = r => Parse(r, (string text, out double value, out string problem) =>
            Check(double.TryParse(text, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out value) && value > 0 && value <= max,
                r, expected, text, out problem));
        return LastWins(option);
    }

    /// <summary>One of a few words (`--color auto|always|never`).</summary>
    public static Option<string> OneOf(Option<string> option, params string[] values)
    {
        var expected = string.Join(", ", values[..^1]) + " or " + values[^1];
        option.CustomParser = r => Parse(r, (string text, out string value, out string problem) =>
        {
            value = text;
            return Check(values.Contains(text, StringComparer.Ordinal), r, expected, text, out problem);
        });
        option.CompletionSources.Add(values);
        return LastWins(option);
    }

    /// <summary>
    /// An option given twice (`-s 64 -s 128`) takes the last value, as getopt-based tools (strace) do, instead of
    /// System.CommandLine's "expects a single argument". Each occurrence still takes exactly one word.
    /// </summary>
    private static Option<T> LastWins<T>(Option<T> option)
    {
        option.Arity = ArgumentArity.OneOrMore;
        option.AllowMultipleArgumentsPerToken = false;
        return option;
    }

    /// <summary>Every value given must be valid; the last one counts.</summary>
    private static T Parse<T>(ArgumentResult r, TryParse<T> parse)
    {
        T value = default!;
        foreach (var t in r.Tokens)
        {
            if (!parse(t.Value, out value, out var problem)) return Fail<T>(r, problem);
        }

        return value;
    }

    private static bool Check(bool ok, ArgumentResult r, string expected, string text, out string problem)
    {
        problem = ok ? "" : $"{Name(r)} must be {expected}: '{text}'";
        return ok;
    }

    private static bool TryParseInt(string text, int min, int max, out int value) =>
        int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out value) && value >= min && value <= max;

    /// <summary>The option as it was written (`-s` or `--string-limit`).</summary>
    private static string Name(ArgumentResult r) =>
        r.Parent is OptionResult o ? o.IdentifierToken?.Value ?? o.Option.Name : r.Argument.Name;

    private static T Fail<T>(ArgumentResult r, string problem)
    {
        r.AddError(problem);
        return default!;
    }
}
