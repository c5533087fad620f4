using System.CommandLine;
using System.Runtime.InteropServices;
using Nozoki.Cli.Output;
using Nozoki.Probes;
using Nozoki.Tracing;
using Nozoki.Usdt;

namespace Nozoki.Cli.Commands;

/// <summary>`nozoki usdt PROBE... -p PID | -- CMD`: trace USDT probes with int3 breakpoints, without BPF.</summary>
internal static class UsdtCommand
{
    /// <param name="command">What followed `--` on the command line (the command to launch), or empty.</param>
    public static Command Create(string[] command)
    {
        var probes = new Argument<string[]>("PROBE") { Description = "provider:name or path:provider:name; * wildcards", Arity = ArgumentArity.OneOrMore };
        var pid = Arguments.PidOption("the process to trace (or give a command after --)");
        var strings = Arguments.Ints(new Option<int[]>("--str") { Description = "read argument N (1-based) as a C string (repeatable)" }, 1, 12, "an argument number from 1 to 12");
        // Like gdb's and strace's counts, N is positive; without --count there is no limit.
        var count = Arguments.Long(new Option<long>("--count") { Description = "stop after N hits (detach cleanly)" }, 1, "a positive whole number of hits");
        var json = new Option<bool>("--json") { Description = "one JSON object per hit" };
        var follow = new Option<bool>("--follow", "-f") { Description = "also probe children (fork, vfork)" };
        var quiet = new Option<bool>("--quiet", "-q") { Description = "no messages on stderr besides errors" };
        var via = Arguments.OneOf(
            new Option<string>("--via")
            {
                Description = "how sites are trapped: auto (kernel uprobes where every argument is exact, else breakpoints), uprobe, ptrace",
                DefaultValueFactory = _ => "auto",
            },
            "auto", "uprobe", "ptrace");
        var cmd = new Command("usdt", "Trace USDT probes of a running process (-p PID) or of a command (-- CMD ARGS)")
        {
            probes, pid, strings, count, json, follow, quiet, via,
        };
        cmd.SetAction(r =>
        {
            var patterns = new List<ProbePattern>();
            foreach (var text in r.GetValue(probes)!)
            {
                if (!ProbePattern.TryParse(text, out var pattern, out var problem))
                    return Usage(problem);
                patterns.Add(pattern);
            }

            var target = r.GetValue(pid);
            if (target is null == (command.Length == 0)) return Usage("give either -p PID or a command after --");
            var strArgs = r.GetValue(strings) ?? [];
            var options = new UsdtOptions
            {
                StringArguments = strArgs.ToHashSet(), Count = r.GetValue(count), FollowForks = r.GetValue(follow), Mechanism = r.GetValue(via) switch
                {
                    "uprobe" => UsdtMechanism.Uprobe,
                    "ptrace" => UsdtMechanism.Ptrace,
                    _ => UsdtMechanism.Auto,
                },
            };
            IUsdtSink sink = r.GetValue(json) ? new JsonUsdtSink() : new TextUsdtSink(r.GetValue(quiet));
            return target is { } p ? Attach(p, patterns, sink, options) : Launch(command, patterns, sink, options);
        });
        return cmd;
    }

    private static int Usage(string message)
    {
        Console.Error.WriteLine($"nozoki: error: {message}");
        return (int)ReturnCode.Usage;
    }

    private static TraceOptions SessionOptions(UsdtOptions o) =>
        Host.Options with { TraceSyscalls = false, FollowForks = o.FollowForks, InterceptChildren = true };

    private static int Attach(int pid, List<ProbePattern> patterns, IUsdtSink sink, UsdtOptions options)
    {
        using var tracer = new UsdtTracer(patterns, sink, options);
        try
        {
            // A kernel thread or a zombie has no probe sites to find: say what out and trace say (not traceable).
            TraceSession.CheckTraceable(pid);
            if (tracer.Resolve(pid).Count == 0)
            {
                Console.Error.WriteLine($"nozoki: error: no probe site matches {string.Join(", ", patterns)} in PID {pid} (see 'nozoki probes -p {pid}')");
                return (int)ReturnCode.NotFound;
            }

            return Trace(tracer, () => TraceSession.Attach(pid, tracer, SessionOptions(options)), launched: false);
        }
        catch (NozokiException e)
        {
            return Errors.Report(e);
        }
    }

    private static int Launch(string[] command, List<ProbePattern> patterns, IUsdtSink sink, UsdtOptions options)
    {
        using var tracer = new UsdtTracer(patterns, sink, options);
        int code;
        try
        {
            code = Trace(tracer, () => TraceSession.Launch(command, tracer, SessionOptions(options)), launched: true);
        }
        catch (NozokiException e)
        {
            return Errors.Report(e);
        }

        if (code >= 0) return code;
        // The command ran to its end and no probe site ever matched (the pending note said so at its start-up).
        sink.Flush();
        Console.Error.WriteLine($"nozoki: error: no probe site matched {string.Join(", ", patterns)} in {command[0]}, the libraries it loaded or the programs it executed (see 'nozoki probes FILE')");
        return (int)ReturnCode.NotFound;
    }

    /// <summary>
    /// Traces until the end and returns the exit code; for a launched command whose run matched no probe site at
    /// all, -1 (the caller says so). A launched command stays nozoki's child: after a detach (--count, an output that
    /// failed or was closed) it runs on untraced, and nozoki waits for it and exits with its status, as run and
    /// trace -- CMD do; signals are for it (the terminal's Ctrl-C reaches it directly; SIGTERM, SIGHUP and SIGQUIT
    /// sent to nozoki are passed on). An attached process is detached and left running by those signals.
    /// </summary>
    private static int Trace(UsdtTracer tracer, Func<TraceSession> start, bool launched)
    {
        TraceSession? session = null;
        var gate = new Lock();
        var detach = false;
        void Detach()
        {
            lock (gate)
            {
                detach = true;
                session?.RequestDetach();
            }
        }

        tracer.LimitReached = Detach;
        // Caught from before the start: a signal that comes while probes are being armed must not be the runtime's
        // default (nozoki's death would leave breakpoints in the process); it is acted on once the session exists.
        using var stop = StopSignals.Install();
        var started = start();
        lock (gate)
        {
            session = started;
            if (detach) started.RequestDetach();
        }

        stop.Then(s =>
        {
            if (!launched)
            {
                Detach();
                FdWriter.Abandon();
            }
            else if (s != PosixSignal.SIGINT)
            {
                Signals.Send(started.TargetPid, StopSignals.Number(s));
            }
        });

        var result = started.Completion.GetAwaiter().GetResult();
        Errors.ReportDropped();
        ExitStatus? exit = launched ? started.WaitForCommand() : null;
        if (Errors.Unwrap(result.Error) is { } error and not OutputClosedException) return Errors.Report(error);
        if (Errors.Unwrap(tracer.ReaderError) is { } readerError and not OutputClosedException) return Errors.Report(readerError);
        if (exit is not { } status) return (int)ReturnCode.Success;
        return tracer.AnyProbeMatched ? status.ShellStatus : -1;
    }

}
