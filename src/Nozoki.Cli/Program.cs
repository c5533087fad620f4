using System.CommandLine;
using Nozoki.Cli.Commands;

namespace Nozoki.Cli;

internal static class Program
{
    private static int Main(string[] args)
    {
        // A launched command starts as nozoki itself in a hidden mode (see LaunchStage); this never returns then.
        Nozoki.Tracing.LaunchStage.RunIfRequested(args);
        if (args is ["__ticker", ..]) return TickerMode.Run(args[1..]);

        // `usdt PROBE... -- CMD`: the command after `--` is not one more PROBE.
        var command = Array.Empty<string>();
        if (args is ["usdt", ..] && Array.IndexOf(args, "--") is var dashes and > 0)
        {
            command = args[(dashes + 1)..];
            args = args[..dashes];
        }

        var root = new RootCommand("nozoki (覗き): look inside running processes without stopping them or changing their code.")
        {
            OutCommand.Create(),
            DemoCommand.Create(),
            ProbesCommand.Create(),
            RunCommand.Create(),
            UsdtCommand.Create(command),
            TraceCommand.Create(),
        };

        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            // One line: System.CommandLine lists the allowed values on lines of their own.
            var message = string.Join(' ', parsed.Errors[0].Message.Split(['\n', '\r', '\t'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
            Console.Error.WriteLine($"nozoki: error: {message} (see 'nozoki --help')");
            return (int)ReturnCode.Usage;
        }

        try
        {
            return parsed.Invoke();
        }
        catch (Exception e)
        {
            // Last resort: one line, never a stack trace.
            Console.Error.WriteLine($"nozoki: error: {e.Message}");
            return (int)ReturnCode.Error;
        }
    }
}
