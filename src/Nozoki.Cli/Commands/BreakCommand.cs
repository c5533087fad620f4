using System.CommandLine;
using System.Globalization;
using System.Runtime.InteropServices;
using Nozoki.Breakpoints;
using Nozoki.Cli.Output;
using Nozoki.Symbols;
using Nozoki.Tracing;

namespace Nozoki.Cli.Commands;

/// <summary>`nozoki break LOCATION... -p PID | -- CMD`: report every hit of a code location, optionally with its backtrace.</summary>
internal static class BreakCommand
{
    /// <param name="command">What followed `--` on the command line (the command to launch), or empty.</param>
    public static Command Create(string[] command)
    {
        var locations = new Argument<string[]>("LOCATION")
        {
            Description = "SYMBOL, MODULE:SYMBOL, SYMBOL+0xN or MODULE:0xADDR; * wildcards in the symbol arm every match",
            Arity = ArgumentArity.OneOrMore,
        };
        var pid = Arguments.PidOption("the process (or give a command after --)");
        var count = Arguments.Long(new Option<long>("--count") { Description = "report N hits, then remove every site and detach" }, 1, "a positive whole number of hits");
        var duration = Arguments.Seconds(new Option<double>("--duration") { Description = "remove every site and detach after this many seconds" }, 1e6);
        var backtrace = new Option<bool>("--backtrace", "-b") { Description = "the hit thread's native backtrace" };
        var args = new Option<bool>("--args") { Description = "the first six integer arguments (rdi rsi rdx rcx r8 r9)" };
        var json = new Option<bool>("--json") { Description = "one JSON object per hit" };
        var follow = new Option<bool>("--follow", "-f") { Description = "also break in children (fork, vfork)" };
        var pending = new Option<bool>("--pending") { Description = "-p: a LOCATION found nowhere now is armed when a module defining it is loaded (dlopen)" };
        var quiet = new Option<bool>("--quiet", "-q") { Description = "no messages on stderr besides errors and the summary" };
        var stackSize = Arguments.Int(new Option<int>("--stack-size") { Description = "bytes of stack a uprobe hit copies for --backtrace (default 16384)", DefaultValueFactory = _ => 16384 },
            8, 61440, "a multiple of 8 from 8 to 61440");
        var via = Arguments.OneOf(
            new Option<string>("--via")
            {
                Description = "uprobe (the thread never stops; ptrace when the kernel refuses) or ptrace (int3: the thread stops while looked at)",
                DefaultValueFactory = _ => "uprobe",
            },
            "uprobe", "ptrace");
        var cmd = new Command("break", "Report the hits of code locations of a running process (-p PID) or of a command (-- CMD ARGS)")
        {
            locations, pid, count, duration, backtrace, args, json, follow, pending, quiet, stackSize, via,
        };
        cmd.SetAction(r =>
        {
            var target = r.GetValue(pid);
            if (target is null == (command.Length == 0)) return Usage("give either -p PID or a command after --");
            if (r.GetValue(stackSize) % 8 != 0) return Usage($"--stack-size must be a multiple of 8: '{r.GetValue(stackSize)}'");
            var specs = r.GetValue(locations)!;
            if (specs.FirstOrDefault(s => s.Trim().Length == 0 || s.Contains('\0', StringComparison.Ordinal)) is { } bad) return Usage($"empty LOCATION '{bad}'");
            var options = new BreakOptions
            {
                Backtrace = r.GetValue(backtrace), Count = r.GetValue(count), FollowForks = r.GetValue(follow), Pending = r.GetValue(pending),
                StackSize = r.GetValue(stackSize), Mechanism = r.GetValue(via) == "ptrace" ? BreakMechanism.Ptrace : BreakMechanism.Uprobe,
            };
            IBreakSink sink = r.GetValue(json) ? new JsonBreakSink() : new TextBreakSink(r.GetValue(quiet), r.GetValue(args));
            var seconds = r.GetValue(duration);
            var limit = seconds > 0 ? TimeSpan.FromSeconds(seconds) : (TimeSpan?)null;
            return target is { } p ? Attach(p, specs, sink, options, limit) : Launch(command, specs, sink, options, limit);
        });
        return cmd;
    }

    private static int Usage(string message)
    {
        Console.Error.WriteLine($"nozoki: error: {message}");
        return (int)ReturnCode.Usage;
    }

    private static TraceOptions SessionOptions(BreakOptions o) =>
        Host.Options with { TraceSyscalls = false, FollowForks = o.FollowForks, InterceptChildren = true };

    /// <summary>An unknown symbol or module is not found (3); a location that is no code is a bad argument (2).</summary>
    private static int LookupFailed(SymbolLookupException e, int pid)
    {
        Console.Error.WriteLine($"nozoki: error: {e.Message} (PID {pid})");
        return (int)(e.Message.Contains("not code", StringComparison.Ordinal) || e.Message.Contains("outside the executable", StringComparison.Ordinal)
            || e.Message.Contains("not in an executable", StringComparison.Ordinal) || e.Message.Contains("past the end of", StringComparison.Ordinal)
            || e.Message.Contains("is not an offset", StringComparison.Ordinal) || e.Message.Contains("is not a hex address", StringComparison.Ordinal)
            || e.Message.Contains("no symbol or address", StringComparison.Ordinal) || e.Message.Contains("needs its module", StringComparison.Ordinal)
            || e.Message.Contains("; name one", StringComparison.Ordinal)
            ? ReturnCode.Usage : ReturnCode.NotFound);
    }

    private static int Attach(int pid, string[] specs, IBreakSink sink, BreakOptions options, TimeSpan? duration)
    {
        using var tracer = new BreakTracer(specs, sink, options);
        try
        {
            TraceSession.CheckTraceable(pid);
            try
            {
                tracer.Check(pid);
            }
            catch (SymbolLookupException e)
            {
                return LookupFailed(e, pid);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                return Errors.Report(e, $"PID {pid}: cannot read its memory maps ({e.Message})");
            }

            return Trace(tracer, () => TraceSession.Attach(pid, tracer, SessionOptions(options)), launched: false, duration, options);
        }
        catch (NozokiException e)
        {
            return Errors.Report(e);
        }
    }

    private static int Launch(string[] command, string[] specs, IBreakSink sink, BreakOptions options, TimeSpan? duration)
    {
        using var tracer = new BreakTracer(specs, sink, options);
        int code;
        try
        {
            code = Trace(tracer, () => TraceSession.Launch(command, tracer, SessionOptions(options)), launched: true, duration, options);
        }
        catch (NozokiException e)
        {
            return Errors.Report(e);
        }

        if (code >= 0) return code;
        sink.Flush();
        Console.Error.WriteLine($"nozoki: error: {string.Join(", ", specs)} matched no code in {command[0]}, the libraries it loaded or the programs it executed");
        return (int)ReturnCode.NotFound;
    }

    /// <summary>Runs the session to its end (see UsdtCommand.Trace: the same signals and detach rules), then says the summary.</summary>
    private static int Trace(BreakTracer tracer, Func<TraceSession> start, bool launched, TimeSpan? duration, BreakOptions options)
    {
        TraceSession? session = null;
        var gate = new Lock();
        var detach = false;
        var exited = true;
        void Detach()
        {
            lock (gate)
            {
                detach = true;
                exited = false;
                session?.RequestDetach();
            }
        }

        tracer.LimitReached = Detach;
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

        using var timer = duration is { } d ? new Timer(_ => Detach(), null, d, Timeout.InfiniteTimeSpan) : null;
        var result = started.Completion.GetAwaiter().GetResult();
        timer?.Dispose();
        // The reader's last samples (drained at the detach) are reported before the summary.
        tracer.Dispose();
        Errors.ReportDropped();
        ExitStatus? exit = launched ? started.WaitForCommand() : null;
        Summary(tracer, options);
        if (Errors.Unwrap(result.Error) is { } error and not OutputClosedException) return Errors.Report(error);
        if (Errors.Unwrap(tracer.ReaderError) is { } readerError and not OutputClosedException) return Errors.Report(readerError);
        if (exit is { } status) return tracer.AnyMatched ? status.ShellStatus : -1;
        bool gone;
        lock (gate) gone = exited;
        if (gone)
        {
            // -p: the process ended while its sites were armed (before --count, --duration or a signal).
            Console.Error.WriteLine($"nozoki: error: PID {started.Pid} exited while armed ({tracer.Hits} hit{(tracer.Hits == 1 ? "" : "s")})");
            return (int)ReturnCode.TargetExited;
        }

        return (int)ReturnCode.Success;
    }

    private static void Summary(BreakTracer tracer, BreakOptions options)
    {
        var ic = CultureInfo.InvariantCulture;
        static string Us(TimeSpan t) => (t.Ticks / 10.0).ToString("0.0", CultureInfo.InvariantCulture) + " us";
        var text = string.Create(ic, $"nozoki: {tracer.Hits} hit{(tracer.Hits == 1 ? "" : "s")}");
        if (tracer.Holds() is { } h)
            text += $"; hit threads held per hit (ptrace stop to resume): median {Us(h.Median)}, p99 {Us(h.P99)}, max {Us(h.Max)}";
        if (tracer.UprobeSites > 0)
        {
            text += string.Create(ic, $"; uprobe hits do not stop the thread: each costs it the kernel's trap, register and ")
                + (options.Backtrace ? string.Create(ic, $"{options.StackSize}-byte stack copy") : "sample copy")
                + " (not timed per hit; see bench/run)";
        }

        if (tracer.Lost > 0) text += string.Create(ic, $"; {tracer.Lost} lost");
        FdWriter.Stderr.Write(System.Text.Encoding.UTF8.GetBytes(text + "\n"));
    }
}
