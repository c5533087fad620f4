using System.CommandLine;
using System.CommandLine.Parsing;
using Nozoki.Cli.Commands;

namespace Nozoki.Cli;

internal static class Program
{
    private static int Main(string[] args)
    {
        // nozoki is its own launch stage (TraceSession.Launch re-executes it; see LaunchStage): this never returns then.
        Nozoki.Tracing.LaunchStage.RunIfRequested(args);
        if (args is ["__ticker", ..]) return TickerMode.Run(args[1..]);

        // `usdt PROBE... -- CMD`: the command after `--` is not one more PROBE.
        var command = Array.Empty<string>();
        if (args is ["usdt" or "break", ..] && Array.IndexOf(args, "--") is var dashes and > 0)
        {
            command = args[(dashes + 1)..];
            args = args[..dashes];
        }

        var root = new RootCommand("nozoki (覗き): look inside running processes without stopping them or changing their code.")
        {
            OutCommand.Create(),
            RunCommand.Create(),
            TraceCommand.Create(),
            ProbesCommand.Create(),
            UsdtCommand.Create(command),
            BreakCommand.Create(command),
            InspectCommand.Create(),
            DemoCommand.Create(),
        };

        // No @response-files: `nozoki usdt @x` or `nozoki run echo @home` must not read files named x or home.
        var parsed = root.Parse(args, new ParserConfiguration { ResponseFileTokenReplacer = null });
        if (UsageError(parsed) is { } message)
        {
            Console.Error.WriteLine($"nozoki: error: {message}");
            return (int)ReturnCode.Usage;
        }

        try
        {
            // Without the default handler, an exception reaches the catch below instead of printing a stack trace.
            return parsed.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (Exception e)
        {
            // Last resort: one line, never a stack trace.
            Console.Error.WriteLine($"nozoki: error: {OneLine(e.Message)}");
            return (int)ReturnCode.Error;
        }
    }

    /// <summary>
    /// The one line that says what is wrong with the command line, or null. System.CommandLine reports an unknown
    /// option as a value of whatever argument took it (`nozoki out --bogus 1`: "cannot parse '--bogus' as PID",
    /// `nozoki run --bogus -- ls`: a command named --bogus), so unknown options are looked for first.
    /// </summary>
    internal static string? UsageError(ParseResult parsed)
    {
        var result = parsed.CommandResult;
        var name = result.Command is RootCommand ? "nozoki" : $"nozoki {result.Command.Name}";
        var help = $" (see '{name} --help')";

        if (UnknownOption(parsed) is { } option) return $"unknown option '{option}'{help}";
        if (parsed.Errors.Count == 0) return null;
        if (result.Command is RootCommand)
        {
            return parsed.UnmatchedTokens.Count > 0
                ? $"unknown command '{parsed.UnmatchedTokens[0]}'{help}"
                : $"no command given: {string.Join(", ", result.Command.Subcommands.Select(c => c.Name))}{help}";
        }

        if (parsed.UnmatchedTokens.Count > 0) return $"unexpected argument '{parsed.UnmatchedTokens[0]}'{help}";
        var error = parsed.Errors[0];
        return error.SymbolResult switch
        {
            OptionResult { Tokens.Count: 0 } o => $"{o.IdentifierToken?.Value ?? o.Option.Name} needs a value{help}",
            ArgumentResult { Tokens.Count: 0, Parent: CommandResult } a => $"missing {a.Argument.Name}{help}",
            _ => OneLine(error.Message),
        };
    }

    /// <summary>
    /// The first word that looks like an option (`-x`, `--xyz`; not `-` nor a negative number) that no option took as
    /// its value and that comes before `--` and before the command's own words (`nozoki run ls -la` runs `ls -la`).
    /// </summary>
    private static string? UnknownOption(ParseResult parsed)
    {
        var taken = new HashSet<Token>(ReferenceEqualityComparer.Instance);
        var commandWords = new HashSet<Token>(ReferenceEqualityComparer.Instance);
        for (var c = parsed.CommandResult; c is not null; c = c.Parent as CommandResult)
        {
            foreach (var child in c.Children)
            {
                if (child is OptionResult o) taken.UnionWith(o.Tokens);
                else if (child is ArgumentResult { Argument.Arity.MaximumNumberOfValues: > 1 } a) commandWords.UnionWith(a.Tokens);
            }
        }

        foreach (var token in parsed.Tokens)
        {
            if (token.Type == TokenType.DoubleDash) break;
            if (token.Type != TokenType.Argument || taken.Contains(token)) continue;
            var looksLikeOption = token.Value.Length > 1 && token.Value[0] == '-' && !token.Value.Skip(1).All(char.IsAsciiDigit);
            if (looksLikeOption) return token.Value;
            if (commandWords.Contains(token) && parsed.CommandResult.Command.Name is "run" or "trace") break;
        }

        return null;
    }

    private static string OneLine(string message) =>
        string.Join(' ', message.Split(['\n', '\r', '\t'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
}
