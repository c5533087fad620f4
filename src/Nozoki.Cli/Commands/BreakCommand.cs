using System.CommandLine;
using System.Globalization;
using System.Runtime.InteropServices;
using Nozoki.Breakpoints;
using Nozoki.Cli.Output;
using Nozoki.Symbols;
using Nozoki.Tracing;

namespace Nozoki.Cli.Commands;

/// <summary>
/// `nozoki break LOCATION... -p PID[,PID...] | -- CMD`: report every hit of a code location, optionally with its backtrace
/// and what a function called at the hit (--call) printed.
/// </summary>
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
        var pid = Arguments.PidListOption("the process, or several: -p PID,PID... (or give a command after --)");
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
        var call = new Option<string>("--call")
        {
            Description = "at each hit, call FUNC() in the hit thread (as gdb's call; a ptrace breakpoint) and show what it writes under the hit",
            HelpName = "FUNC",
        };
        var callTimeout = Arguments.Seconds(
            new Option<double>("--call-timeout") { Description = "abandon a --call that has not returned after this many seconds (default 5)", HelpName = "SECONDS" },
            3600);
        var cmd = new Command("break", "Report the hits of code locations of running processes (-p PID[,PID...]) or of a command (-- CMD ARGS)")
        {
            locations, pid, count, duration, backtrace, args, json, follow, pending, quiet, stackSize, via, call, callTimeout,
        };
        cmd.SetAction(r =>
        {
            var targets = r.GetValue(pid) ?? [];
            if (targets.Length == 0 == (command.Length == 0)) return Usage("give either -p PID or a command after --");
            if (r.GetValue(stackSize) % 8 != 0) return Usage($"--stack-size must be a multiple of 8: '{r.GetValue(stackSize)}'");
            var specs = r.GetValue(locations)!;
            if (specs.FirstOrDefault(s => s.Trim().Length == 0 || s.Contains('\0', StringComparison.Ordinal)) is { } bad) return Usage($"empty LOCATION '{bad}'");
            var function = r.GetValue(call);
            if (function is not null && (function.Trim().Length == 0 || function.Contains('\0', StringComparison.Ordinal))) return Usage($"empty --call FUNC '{function}'");
            if (function is null && r.GetResult(callTimeout) is not null) return Usage("--call-timeout needs --call FUNC");
            // A call needs the hit thread stopped; a uprobe hit never stops it.
            if (function is not null && r.GetResult(via) is { Implicit: false } && r.GetValue(via) == "uprobe")
                return Usage("--call stops the hit thread for the call: it takes ptrace breakpoints, not --via uprobe");
            var options = new BreakOptions
            {
                Backtrace = r.GetValue(backtrace), Count = r.GetValue(count), FollowForks = r.GetValue(follow), Pending = r.GetValue(pending),
                StackSize = r.GetValue(stackSize),
                Mechanism = r.GetValue(via) == "ptrace" || function is not null ? BreakMechanism.Ptrace : BreakMechanism.Uprobe,
                Call = function,
                CallTimeout = r.GetResult(callTimeout) is not null ? TimeSpan.FromSeconds(r.GetValue(callTimeout)) : InferiorCall.DefaultTimeout,
            };
            IBreakSink sink = r.GetValue(json) ? new JsonBreakSink() : new TextBreakSink(r.GetValue(quiet), r.GetValue(args));
            var seconds = r.GetValue(duration);
            var limit = seconds > 0 ? TimeSpan.FromSeconds(seconds) : (TimeSpan?)null;
            return targets.Length > 0 ? Attach(targets, specs, sink, options, limit) : Launch(command, specs, sink, options, limit);
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
    private static int LookupFailed(SymbolLookupException e, int pid, string prefix = "")
    {
        Console.Error.WriteLine($"nozoki: error: {prefix}{e.Message} (PID {pid})");
        return (int)(e.Message.Contains("not code", StringComparison.Ordinal) || e.Message.Contains("outside the executable", StringComparison.Ordinal)
            || e.Message.Contains("not in an executable", StringComparison.Ordinal) || e.Message.Contains("past the end of", StringComparison.Ordinal)
            || e.Message.Contains("is not an offset", StringComparison.Ordinal) || e.Message.Contains("is not a hex address", StringComparison.Ordinal)
            || e.Message.Contains("no symbol or address", StringComparison.Ordinal) || e.Message.Contains("needs its module", StringComparison.Ordinal)
            || e.Message.Contains("; name one", StringComparison.Ordinal)
            ? ReturnCode.Usage : ReturnCode.NotFound);
    }

    /// <summary>
    /// Every PID is checked first (traceable, every LOCATION and the --call function found), before any is attached;
    /// then each gets its own session and tracer (siblings: one sink, one --count).
    /// </summary>
    private static int Attach(int[] pids, string[] specs, IBreakSink sink, BreakOptions options, TimeSpan? duration)
    {
        var tracers = new List<BreakTracer> { new(specs, sink, options) };
        while (tracers.Count < pids.Length) tracers.Add(tracers[0].Sibling());
        try
        {
            for (var i = 0; i < pids.Length; i++)
            {
                var pid = pids[i];
                TraceSession.CheckTraceable(pid);
                try
                {
                    tracers[i].Check(pid);
                }
                catch (SymbolLookupException e)
                {
                    return LookupFailed(e, pid);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    return Errors.Report(e, $"PID {pid}: cannot read its memory maps ({e.Message})");
                }

                try
                {
                    tracers[i].CheckCall(pid);
                }
                catch (SymbolLookupException e)
                {
                    return LookupFailed(e, pid, "--call ");
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    return Errors.Report(e, $"PID {pid}: cannot read its memory maps ({e.Message})");
                }
            }

            var starts = pids.Select((pid, i) => (Func<TraceSession>)(() => TraceSession.Attach(pid, tracers[i], SessionOptions(options)))).ToList();
            return Trace(tracers, starts, launched: false, duration, options);
        }
        catch (NozokiException e)
        {
            return Errors.Report(e);
        }
        finally
        {
            foreach (var t in tracers) t.Dispose();
        }
    }

    private static int Launch(string[] command, string[] specs, IBreakSink sink, BreakOptions options, TimeSpan? duration)
    {
        using var tracer = new BreakTracer(specs, sink, options);
        int code;
        try
        {
            code = Trace([tracer], [() => TraceSession.Launch(command, tracer, SessionOptions(options))], launched: true, duration, options);
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

    /// <summary>
    /// Runs the sessions (one per process, started in turn; one that cannot start detaches those started) to their end
    /// (see UsdtCommand.Trace: the same signals and detach rules), then says the summary.
    /// </summary>
    private static int Trace(List<BreakTracer> tracers, List<Func<TraceSession>> starts, bool launched, TimeSpan? duration, BreakOptions options)
    {
        var sessions = new List<TraceSession>();
        var gate = new Lock();
        var detach = false;
        // -p: the processes that had exited (while armed) when the detach was asked for; null until then.
        HashSet<int>? exitedBeforeDetach = null;
        void Detach()
        {
            lock (gate)
            {
                if (!detach)
                {
                    detach = true;
                    exitedBeforeDetach = [.. sessions.Where(s => s.Completion is { IsCompletedSuccessfully: true, Result.Reason: TraceEndReason.TargetExited }).Select(s => s.Pid)];
                }

                foreach (var s in sessions) s.RequestDetach();
            }
        }

        tracers[0].LimitReached = Detach;
        using var stop = StopSignals.Install();
        foreach (var start in starts)
        {
            TraceSession started;
            try
            {
                started = start();
            }
            catch (NozokiException)
            {
                Detach();
                foreach (var s in sessions) s.Completion.GetAwaiter().GetResult();
                throw;
            }

            lock (gate)
            {
                sessions.Add(started);
                if (detach) started.RequestDetach();
            }
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
                Signals.Send(sessions[0].TargetPid, StopSignals.Number(s));
            }
        });

        using var timer = duration is { } d ? new Timer(_ => Detach(), null, d, Timeout.InfiniteTimeSpan) : null;
        var results = sessions.Select(s => s.Completion.GetAwaiter().GetResult()).ToList();
        timer?.Dispose();
        // The reader's last samples (drained at the detach) are reported before the summary.
        foreach (var t in tracers) t.Dispose();
        Errors.ReportDropped();
        ExitStatus? exit = launched ? sessions[0].WaitForCommand() : null;
        Summary(tracers[0], options);
        if (results.Select(r => Errors.Unwrap(r.Error)).FirstOrDefault(e => e is not null and not OutputClosedException) is { } error) return Errors.Report(error);
        if (Errors.Unwrap(tracers[0].ReaderError) is { } readerError and not OutputClosedException) return Errors.Report(readerError);
        if (exit is { } status) return tracers[0].AnyMatched ? status.ShellStatus : -1;
        List<int> gone;
        lock (gate)
        {
            gone = exitedBeforeDetach is { } before
                ? [.. sessions.Where(s => before.Contains(s.Pid)).Select(s => s.Pid)]
                : [.. sessions.Where((s, i) => results[i].Reason == TraceEndReason.TargetExited).Select(s => s.Pid)];
        }

        if (gone.Count == 0) return (int)ReturnCode.Success;
        // -p: a process ended while its sites were armed (before --count, --duration or a signal).
        var hits = tracers[0].Hits;
        foreach (var pid in gone)
            Console.Error.WriteLine($"nozoki: error: PID {pid} exited while armed ({hits} hit{(hits == 1 ? "" : "s")}{(sessions.Count > 1 ? " in all" : "")})");
        return (int)ReturnCode.TargetExited;
    }

    private static void Summary(BreakTracer tracer, BreakOptions options)
    {
        var ic = CultureInfo.InvariantCulture;
        static string Us(TimeSpan t) => (t.Ticks / 10.0).ToString("0.0", CultureInfo.InvariantCulture) + " us";
        var text = string.Create(ic, $"nozoki: {tracer.Hits} hit{(tracer.Hits == 1 ? "" : "s")}");
        if (tracer.Holds() is { } h)
        {
            text += $"; hit threads held per hit (ptrace stop to resume): median {Us(h.Median)}, p99 {Us(h.P99)}, max {Us(h.Max)}"
                + (options.Call is { } f ? $" ({f}() calls included)" : "");
        }

        if (tracer.UprobeSites > 0)
        {
            // A uprobe hit does not stop its thread: the only time nozoki holds one is when the rings fill.
            text += string.Create(ic, $"; uprobe hits do not stop the thread: each costs it the kernel's trap, register and ")
                + (options.Backtrace ? string.Create(ic, $"{options.StackSize}-byte stack copy") : "sample copy")
                + " (not timed per hit; see bench/run)";
            var p = tracer.PressureHolds;
            text += p.Times == 0
                ? "; never held for ring pressure"
                : string.Create(ic, $"; held for ring pressure {p.Times} time{(p.Times == 1 ? "" : "s")}, {p.Total.TotalMilliseconds:0.0} ms in all");
        }

        if (tracer.Lost > 0) text += string.Create(ic, $"; {tracer.Lost} lost");
        FdWriter.Stderr.Write(System.Text.Encoding.UTF8.GetBytes(text + "\n"));
    }
}
