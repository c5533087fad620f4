using System.CommandLine;
using System.Runtime.InteropServices;
using Nozoki.Cli.Output;
using Nozoki.Syscalls;
using Nozoki.Trace;
using Nozoki.Tracing;

namespace Nozoki.Cli.Commands;

/// <summary>`nozoki trace [options] -- CMD [ARGS]` / `nozoki trace -p PID`: strace-style syscall tracing.</summary>
internal static class TraceCommand
{
    public static Command Create()
    {
        var pids = new Option<string[]>("-p", "--attach") { Description = "trace the process PID and all its threads (repeatable, or a comma list)" };
        var follow = new Option<bool>("-f", "--follow-forks") { Description = "also trace children (fork, vfork, clone) and their descendants" };
        var output = new Option<string>("-o", "--output") { Description = "write the trace to FILE instead of stderr" };
        var strsize = Arguments.Int(
            new Option<int>("-s", "--string-limit") { Description = "show at most N bytes of each string (default 32)", DefaultValueFactory = _ => 32 },
            0, int.MaxValue, $"a whole number from 0 to {int.MaxValue}");
        var expr = new Option<string[]>("-e") { Description = "trace=SET (names, %file %process %network %signal %ipc %desc %memory %stat, /regex, !negation), signal=SET, status=successful|failed" };
        var traceSet = new Option<string>("--trace") { Description = "same as -e trace=SET" };
        var signalSet = new Option<string>("--signal") { Description = "same as -e signal=SET" };
        var status = new Option<string>("--status") { Description = "same as -e status=SET" };
        var successful = new Option<bool>("-z", "--successful-only") { Description = "show only calls that succeeded" };
        var failed = new Option<bool>("-Z", "--failed-only") { Description = "show only calls that failed" };
        var count = new Option<bool>("-c", "--summary-only") { Description = "count time, calls and errors per syscall; show only the table" };
        var countBoth = new Option<bool>("-C", "--summary") { Description = "like -c, and show the calls too" };
        var durations = new Option<bool>("-T", "--syscall-times") { Description = "show the time spent in each syscall" };
        var t1 = new Option<bool>("-t") { Description = "prefix each line with the time of day" };
        var t2 = new Option<bool>("-tt") { Description = "... with microseconds" };
        var t3 = new Option<bool>("-ttt") { Description = "... as seconds since the epoch, with microseconds" };
        var relative = new Option<bool>("-r", "--relative-timestamps") { Description = "prefix each line with the time since the previous one" };
        var verbose = new Option<bool>("-v", "--no-abbrev") { Description = "unabbreviated structures, environments and arrays" };
        var y1 = new Option<bool>("-y", "--decode-fds") { Description = "show the path of each file descriptor" };
        var y2 = new Option<bool>("-yy") { Description = "... and the protocol and addresses of sockets" };
        var quiet = new Option<bool>("-q", "--quiet") { Description = "no attach/detach messages" };
        var json = new Option<bool>("--json") { Description = "JSON Lines: one object per completed syscall, signal and exit" };
        var color = Arguments.OneOf(
            new Option<string>("--color") { Description = "syscall names and errors in colour: auto (when the output is a terminal), always, never", DefaultValueFactory = _ => "auto" },
            "auto", "always", "never");
        var command = new Argument<string[]>("CMD") { Description = "the command to launch and its arguments (after --)", Arity = ArgumentArity.ZeroOrMore };

        var cmd = new Command("trace", "Trace system calls and signals, like strace (launch a command after --, or attach with -p)")
        {
            pids, follow, output, strsize, expr, traceSet, signalSet, status, successful, failed, count, countBoth, durations,
            t1, t2, t3, relative, verbose, y1, y2, quiet, json, color, command,
        };
        cmd.SetAction(r =>
        {
            try
            {
                var exprs = new List<string>(r.GetValue(expr) ?? []);
                if (r.GetValue(traceSet) is { } ts) exprs.Add("trace=" + ts);
                if (r.GetValue(signalSet) is { } ss) exprs.Add("signal=" + ss);
                if (r.GetValue(status) is { } st) exprs.Add("status=" + st);
                SyscallSet? syscalls = null;
                SignalSet? signals = null;
                var statusFilter = StatusFilter.All;
                foreach (var e in exprs)
                {
                    var eq = e.IndexOf('=', StringComparison.Ordinal);
                    var (key, value) = eq < 0 ? ("trace", e) : (e[..eq], e[(eq + 1)..]);
                    switch (key)
                    {
                        case "trace" or "t":
                            syscalls = SyscallSet.Parse(value);
                            break;
                        case "signal" or "signals" or "s":
                            signals = SignalSet.Parse(value);
                            break;
                        case "status":
                            statusFilter = StatusFilters.Parse(value);
                            break;
                        default:
                            throw new FormatException($"-e {e}: unknown qualifier '{key}' (nozoki supports trace=, signal=, status=)");
                    }
                }

                if (r.GetValue(successful)) statusFilter = StatusFilter.Successful;
                if (r.GetValue(failed)) statusFilter = StatusFilter.Failed;
                var limit = r.GetValue(strsize);

                var targets = new List<int>();
                foreach (var p in r.GetValue(pids) ?? [])
                {
                    // strace's -p takes lists separated by commas and blanks (`-p "$(pidof x)"`).
                    var parts = p.Split([',', ' ', '\t', '\n'], StringSplitOptions.RemoveEmptyEntries);
                    foreach (var part in parts.Length > 0 ? parts : [p])
                    {
                        if (!Arguments.TryParsePid(part, out var pid, out var problem)) throw new FormatException(problem);
                        if (!targets.Contains(pid)) targets.Add(pid);
                    }
                }

                var argv = r.GetValue(command) ?? [];
                if (targets.Count == 0 && argv.Length == 0) throw new FormatException("give a command to trace (after --) or -p PID");
                if (targets.Count > 0 && argv.Length > 0) throw new FormatException("give either a command or -p PID, not both");

                var o = new TraceRequest
                {
                    Pids = targets,
                    Argv = argv,
                    Follow = r.GetValue(follow),
                    Output = r.GetValue(output),
                    Syscalls = syscalls,
                    Signals = signals,
                    Status = statusFilter,
                    Count = r.GetValue(count) || r.GetValue(countBoth),
                    Print = !r.GetValue(count) || r.GetValue(countBoth),
                    Durations = r.GetValue(durations),
                    Timestamps = r.GetValue(t3) ? 3 : r.GetValue(t2) ? 2 : r.GetValue(t1) ? 1 : 0,
                    Relative = r.GetValue(relative),
                    Decode = new DecodeOptions
                    {
                        StringLimit = limit,
                        Verbose = r.GetValue(verbose),
                        DecorateFds = r.GetValue(y2) ? 2 : r.GetValue(y1) ? 1 : 0,
                    },
                    Quiet = r.GetValue(quiet),
                    Json = r.GetValue(json),
                    Color = r.GetValue(color)!,
                };
                return Run(o);
            }
            catch (FormatException e)
            {
                Console.Error.WriteLine($"nozoki: error: {e.Message}");
                return (int)ReturnCode.Usage;
            }
        });
        return cmd;
    }

    internal sealed class TraceRequest
    {
        public required List<int> Pids { get; init; }
        public required string[] Argv { get; init; }
        public bool Follow { get; init; }
        public string? Output { get; init; }
        public SyscallSet? Syscalls { get; init; }
        public SignalSet? Signals { get; init; }
        public StatusFilter Status { get; init; }
        public bool Count { get; init; }
        public bool Print { get; init; }
        public bool Durations { get; init; }
        public int Timestamps { get; init; }
        public bool Relative { get; init; }
        public required DecodeOptions Decode { get; init; }
        public bool Quiet { get; init; }
        public bool Json { get; init; }
        public required string Color { get; init; }
    }

    private static int Run(TraceRequest o)
    {
        FdWriter writer;
        if (o.Output is { } path)
        {
            try
            {
                writer = FdWriter.Create(path);
            }
            catch (OutputOpenException e)
            {
                // By errno, as strace says it ("Can't fopen '/tmp': Is a directory"); exit 1, as strace's.
                return Report($"cannot open '{path}' (-o): {e.Error.Message}", ReturnCode.Error);
            }
        }
        else
        {
            writer = FdWriter.Stderr;
        }

        using var fileOwner = writer;
        var toTerminal = o.Output is null && FdWriter.Stderr.IsTerminal;
        var paint = o.Color switch { "always" => true, "never" => false, _ => toTerminal };
        TraceOutput sink = o.Json
            ? (TraceOutput)new JsonTraceSink(writer, buffered: o.Output is not null, o.Quiet)
            : new TextTraceSink(writer, buffered: o.Output is not null, new TextTraceSink.Style(
                PidPrefix: o.Output is not null && o.Follow ? TextTraceSink.PidPrefixMode.Always : TextTraceSink.PidPrefixMode.WhenSeveral,
                Bare: o.Output is not null,
                Timestamps: o.Timestamps, Relative: o.Relative, Durations: o.Durations, Paint: paint, Quiet: o.Quiet));
        var launched = o.Argv.Length > 0;
        if (sink is TextTraceSink text) text.Launched = launched;
        var tracer = new SyscallTracer(sink, new SyscallTracerOptions
        {
            Decode = o.Decode,
            Syscalls = o.Syscalls,
            Signals = o.Signals,
            Status = o.Status,
            Print = o.Print,
            Count = o.Count,
            SplitInterleaved = !o.Json,
            FollowForks = o.Follow,
            // To stderr, lines start at the call's entry, as strace's: a call that blocks shows while it blocks.
            LiveEntries = !o.Json && o.Output is null,
        });

        // Ctrl-C, kill, a closed terminal: caught from before the attach (see StopSignals), acted on below.
        using var stop = StopSignals.Install();
        var sessions = new List<TraceSession>();
        var gate = new Lock();
        var detach = false;
        // Detach every attached process, including one still being attached (a request that comes before its session
        // exists is remembered): a trace that cannot be written any more.
        void DetachAll()
        {
            lock (gate)
            {
                detach = true;
                foreach (var session in sessions) session.RequestDetach();
            }
        }

        void Started(TraceSession session)
        {
            lock (gate)
            {
                sessions.Add(session);
                if (detach) session.RequestDetach();
            }
        }

        // The reader of the trace has gone, or writing it failed: an attached process is detached and left running; a
        // launched command runs on, untraced in effect, until it exits.
        if (!launched) sink.OutputClosed = DetachAll;

        // -e trace=none (signals and exits only): no syscall stops at all, attached or launched.
        var noSyscalls = o.Syscalls is { } only && !only.Numbers().Any();
        try
        {
            if (launched)
            {
                // Only the traced syscalls stop the command: a seccomp filter lets the others run at full speed.
                SeccompFilter? filter = null;
                if (o.Syscalls is { All: false } set && !noSyscalls)
                    filter = new SeccompFilter(set.Numbers().Select(n => new SeccompRule(n))
                        .Concat(set.UnknownRanges().Select(r => new SeccompRule(r.First, null, r.Last))));
                Started(TraceSession.Launch(o.Argv, tracer, Host.Options with { FollowForks = o.Follow, Filter = filter, TraceSyscalls = !noSyscalls }));
            }
            else
            {
                foreach (var pid in o.Pids)
                    Started(TraceSession.Attach(pid, tracer, Host.Options with { FollowForks = o.Follow, TraceSyscalls = !noSyscalls }));
            }
        }
        catch (Exception e) when (e is NozokiException or IOException)
        {
            foreach (var s in sessions) s.Dispose();
            sink.Flush();
            return Errors.Report(e);
        }

        // Detach and leave attached processes running. A launched command keeps running under nozoki until it exits
        // (killed with nozoki by PTRACE_O_EXITKILL, as strace does): the terminal's SIGINT reaches it too; SIGTERM,
        // SIGHUP and SIGQUIT sent to nozoki are passed on to it.
        stop.Then(s =>
        {
            if (launched)
            {
                if (s != PosixSignal.SIGINT) Signals.Send(sessions[0].TargetPid, StopSignals.Number(s));
                return;
            }

            DetachAll();
            FdWriter.Abandon();
        });

        ExitStatus? exit = null;
        Exception? error = null;
        foreach (var s in sessions)
        {
            var result = s.Completion.GetAwaiter().GetResult();
            if (result.Error is not null and not OutputClosedException && error is null) error = result.Error;
            if (launched) exit = result.TargetExit;
        }

        sink.Flush();
        if (o.Count) sink.WriteSummary(tracer.Statistics());
        sink.Flush();
        Errors.ReportDropped();
        if (error is not null) return Errors.Report(error);
        // The trace was lost from there on: an error, whatever the command's status (strace's "FILE: No space left").
        if (sink.Failure is { } failure) return Report(failure.Message, ReturnCode.Error);
        if (launched && exit is { } status) return status.ShellStatus;
        return (int)ReturnCode.Success;
    }

    private static int Report(string message, ReturnCode code)
    {
        Console.Error.WriteLine($"nozoki: error: {message}");
        return (int)code;
    }

}
