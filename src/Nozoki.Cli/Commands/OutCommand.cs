using System.CommandLine;
using System.Runtime.InteropServices;
using Nozoki.Cli.Output;
using Nozoki.Mirror;
using Nozoki.Tracing;

namespace Nozoki.Cli.Commands;

/// <summary>`nozoki out PID`: mirror what a running process writes to its stdout/stderr.</summary>
internal static class OutCommand
{
    public static Command Create()
    {
        var pid = Arguments.Pid("the process to watch");
        var fds = FdOption("mirror this file descriptor (repeatable; default: 1 and 2)");
        var follow = new Option<bool>("--follow", "-f") { Description = "also mirror children and their descendants" };
        var color = ColorOption();
        var json = new Option<bool>("--json") { Description = "one JSON object per write: time, pid, tid, fd, data, encoding" };
        var quiet = new Option<bool>("--quiet", "-q") { Description = "no attach/exit/detach messages" };
        var cmd = new Command("out", "Mirror what a running process writes to stdout/stderr (Ctrl-C detaches and leaves it running)")
        {
            pid, fds, follow, color, json, quiet,
        };
        cmd.SetAction(r =>
        {
            var selected = r.GetValue(fds);
            var options = new MirrorOptions(
                r.GetValue(pid),
                selected is { Length: > 0 } ? selected : [1, 2],
                r.GetValue(follow),
                ShouldPaint(r.GetValue(color)!),
                r.GetValue(json),
                r.GetValue(quiet));
            return Mirror(options);
        });
        return cmd;
    }

    internal static Option<string> ColorOption() => Arguments.OneOf(
        new Option<string>("--color") { Description = "paint the tracee's stderr red: auto (when nozoki's stderr is a terminal), always, never", DefaultValueFactory = _ => "auto" },
        "auto", "always", "never");

    /// <summary>`--fd N` (repeatable) of out and run.</summary>
    internal static Option<int[]> FdOption(string description) =>
        Arguments.Ints(new Option<int[]>("--fd") { Description = description }, 0, int.MaxValue, "a file descriptor number (0 or more)");

    internal static bool ShouldPaint(string color) => color switch
    {
        "always" => true,
        "never" => false,
        _ => FdWriter.Stderr.IsTerminal,
    };

    internal sealed record MirrorOptions(int Pid, int[] Fds, bool Follow, bool Paint, bool Json, bool Quiet);

    /// <summary>Attaches, mirrors until the target exits or nozoki is told to stop, detaches, and returns the exit code.</summary>
    internal static int Mirror(MirrorOptions o, TimeSpan? duration = null)
    {
        var stdout = FdWriter.Stdout;
        var stderr = FdWriter.Stderr;
        var sink = o.Json ? (IMirrorSink)new JsonMirrorSink(stdout) : new TextMirrorSink(stdout, stderr, o.Paint, o.Quiet, o.Pid);
        using var stop = StopSignals.Install();
        TraceSession session;
        try
        {
            session = TraceSession.Attach(o.Pid, new OutputMirror(sink, o.Fds), Host.Options with { FollowForks = o.Follow });
        }
        catch (NozokiException e)
        {
            return Errors.Report(e);
        }

        // Ctrl-C, kill, a closed terminal: detach and leave the process running. The runtime's default would end
        // nozoki at once; cancelling it keeps nozoki alive long enough to detach every thread.
        stop.Then(_ =>
        {
            session.RequestDetach();
            FdWriter.Abandon();
        });
        // `nozoki out PID | head -1`: notice the reader has gone even while the tracee writes nothing.
        var watcher = new Thread(() =>
        {
            if (FdWriter.Stdout.WaitForHangup()) session.RequestDetach();
        }) { IsBackground = true, Name = "stdout hangup watcher" };
        watcher.Start();
        if (duration is { } d && !session.Completion.Wait(d)) session.RequestDetach();

        var result = session.Completion.GetAwaiter().GetResult();
        Errors.ReportDropped();
        // The reader has gone (EPIPE): a normal end. Any other write failure lost output: an error (after the detach).
        if (Errors.Unwrap(result.Error) is OutputClosedException) return (int)ReturnCode.Success;
        if (result.Error is not null) return Errors.Report(Errors.Unwrap(result.Error)!);
        return (int)ReturnCode.Success;
    }

}
