using System.CommandLine;
using System.Globalization;
using System.Text;
using Nozoki.Cli.Output;
using Nozoki.Inspection;
using Nozoki.Tracing;

namespace Nozoki.Cli.Commands;

/// <summary>
/// `nozoki inspect PID`: one look at a live process (threads and their system calls, descriptors decoded, namespaces,
/// cgroup, limits, mappings) from /proc and netlink, without stopping or tracing it; `--watch S` redraws it.
/// </summary>
internal static class InspectCommand
{
    public static Command Create()
    {
        var pidArgs = new Argument<string[]>("PID") { Description = "the process(es) to look at", Arity = ArgumentArity.ZeroOrMore };
        var pids = new Option<string[]>("--pid", "-p") { Description = "the process(es) to look at (repeatable, or a comma list)" };
        var threads = new Option<bool>("--threads") { Description = "section: threads and the system call each is in" };
        var fds = new Option<bool>("--fds") { Description = "section: descriptors, decoded" };
        var ns = new Option<bool>("--ns") { Description = "section: namespaces, compared with PID 1's" };
        var cgroup = new Option<bool>("--cgroup") { Description = "section: cgroups, their limits and use" };
        var limits = new Option<bool>("--limits") { Description = "section: resource limits that differ from PID 1's" };
        var maps = new Option<bool>("--maps") { Description = "section: memory mappings (the largest, the libraries)" };
        var env = new Option<bool>("--env") { Description = "also the environment (it may hold secrets: only on request)" };
        var noPeers = new Option<bool>("--no-peers") { Description = "do not look through every other process's descriptors for the other ends of pipes and unix sockets" };
        var json = new Option<bool>("--json") { Description = "one JSON object per process (JSON Lines)" };
        var watch = Arguments.Seconds(new Option<double>("--watch", "-w") { Description = "redraw every S seconds (on a terminal in place, changes highlighted) until Ctrl-C" }, 86400);
        var color = Arguments.OneOf(
            new Option<string>("--color") { Description = "headers in bold, problems in yellow, changes highlighted: auto (when stdout is a terminal), always, never", DefaultValueFactory = _ => "auto" },
            "auto", "always", "never");
        var cmd = new Command("inspect", "Look at a live process: threads and what each is doing, descriptors decoded, namespaces, cgroup, memory (nothing is stopped)")
        {
            pidArgs, pids, threads, fds, ns, cgroup, limits, maps, env, noPeers, json, watch, color,
        };
        cmd.SetAction(r =>
        {
            var targets = new List<int>();
            foreach (var p in (r.GetValue(pidArgs) ?? []).Concat(r.GetValue(pids) ?? []))
            {
                var parts = p.Split([',', ' ', '\t', '\n'], StringSplitOptions.RemoveEmptyEntries);
                foreach (var part in parts.Length > 0 ? parts : [p])
                {
                    if (!Arguments.TryParsePid(part, out var pid, out var problem)) return Usage(problem);
                    if (!targets.Contains(pid)) targets.Add(pid);
                }
            }

            if (targets.Count == 0) return Usage("missing PID (see 'nozoki inspect --help')");
            var sections = InspectSections.None;
            if (r.GetValue(threads)) sections |= InspectSections.Threads;
            if (r.GetValue(fds)) sections |= InspectSections.Descriptors;
            if (r.GetValue(ns)) sections |= InspectSections.Namespaces;
            if (r.GetValue(cgroup)) sections |= InspectSections.Cgroup;
            if (r.GetValue(limits)) sections |= InspectSections.Limits;
            if (r.GetValue(maps)) sections |= InspectSections.Mappings;
            if (sections == InspectSections.None) sections = InspectSections.All;
            if (r.GetValue(env)) sections |= InspectSections.Environment;
            var paint = r.GetValue(color) switch { "always" => true, "never" => false, _ => FdWriter.Stdout.IsTerminal };
            var request = new Request(targets, new InspectOptions { Sections = sections, FindPeers = !r.GetValue(noPeers) }, r.GetValue(json), paint, r.GetResult(watch) is null ? null : r.GetValue(watch));
            try
            {
                return request.Watch is null ? Once(request) : Watch(request);
            }
            catch (OutputClosedException)
            {
                return (int)ReturnCode.Success; // `nozoki inspect PID | head`
            }
        });
        return cmd;
    }

    private sealed record Request(List<int> Pids, InspectOptions Options, bool Json, bool Paint, double? Watch);

    private static int Usage(string message)
    {
        Console.Error.WriteLine($"nozoki: error: {message}");
        return (int)ReturnCode.Usage;
    }

    private static int Once(Request o)
    {
        var code = ReturnCode.Success;
        var first = true;
        foreach (var pid in o.Pids)
        {
            var (snapshot, c) = Take(pid, o.Options);
            if (snapshot is not null)
            {
                if (o.Json)
                {
                    FdWriter.Stdout.Write(InspectJson.Write(snapshot));
                }
                else
                {
                    var text = new StringBuilder();
                    if (!first) text.Append('\n');
                    foreach (var line in InspectText.Render(snapshot)) text.Append(Paint(line, o.Paint)).Append('\n');
                    FdWriter.Stdout.Write(Encoding.UTF8.GetBytes(text.ToString()));
                }

                first = false;
                c = Say(snapshot);
            }

            if (code == ReturnCode.Success) code = c;
        }

        return (int)code;
    }

    /// <summary>A snapshot, or the error line and its code when there is none.</summary>
    private static (ProcessSnapshot? Snapshot, ReturnCode Code) Take(int pid, InspectOptions options)
    {
        try
        {
            return (ProcessInspector.Take(pid, options), ReturnCode.Success);
        }
        catch (ProcessNotFoundException e)
        {
            Console.Error.WriteLine($"nozoki: error: {e.Message}");
            return (null, ReturnCode.NotFound);
        }
    }

    /// <summary>
    /// The lines on stderr a snapshot calls for, and its exit code: 3 when the process exited while being read, 4 when
    /// parts were refused (another user's process); notes (no error) for a zombie, a kernel thread, a thread id.
    /// </summary>
    private static ReturnCode Say(ProcessSnapshot s)
    {
        var id = s.Identity;
        if (s.RequestedTid is { } tid) Console.Error.WriteLine($"nozoki: {tid} is a thread of PID {s.Pid} ({id.Name}): showing PID {s.Pid}");
        if (id.IsZombie)
        {
            var parent = id.Ancestors.Count > 0 ? $"{id.Ancestors[0].Pid} ({id.Ancestors[0].Name})" : id.PPid.ToString(CultureInfo.InvariantCulture);
            Console.Error.WriteLine($"nozoki: PID {s.Pid} is a zombie: it has exited and its parent PID {parent} has not collected its exit status; what the kernel keeps of it is shown");
        }

        if (id.IsKernelThread) Console.Error.WriteLine($"nozoki: PID {s.Pid} ({id.Name}) is a kernel thread: it has no command line, descriptors, memory mappings or environment");
        if (s.ExitedWhileRead)
        {
            Console.Error.WriteLine($"nozoki: error: PID {s.Pid} exited while it was being read: what was read before is shown ({Parts(s, ProblemKind.ProcessExited)})");
            return ReturnCode.NotFound;
        }

        if (s.Problems.Any(p => p.Kind == ProblemKind.PermissionDenied))
        {
            var owner = id.Uids is { } u ? $" (user {u.RealName ?? u.Real.ToString(CultureInfo.InvariantCulture)})" : "";
            Console.Error.WriteLine($"nozoki: error: PID {s.Pid}{owner}: permission denied reading {Parts(s, ProblemKind.PermissionDenied)}: run as root or as its owner (CAP_SYS_PTRACE); the rest is shown");
            return ReturnCode.PermissionDenied;
        }

        return ReturnCode.Success;
    }

    private static string Parts(ProcessSnapshot s, ProblemKind kind) =>
        string.Join(", ", s.Problems.Where(p => p.Kind == kind).Select(p => p.What).Distinct(StringComparer.Ordinal));

    private static string Paint(ViewLine line, bool paint) => !paint || line.Text.Length == 0 ? line.Text : line.Style switch
    {
        LineStyle.Header => $"\e[1m{line.Text}\e[0m",
        LineStyle.Warning => $"\e[33m{line.Text}\e[0m",
        _ => line.Text,
    };

    /// <summary>
    /// --watch: a snapshot of every process every S seconds until Ctrl-C, SIGTERM, SIGHUP or a closed stdout (exit 0).
    /// On a terminal each round redraws the screen, with what changed since the round before in reverse video (watch -d);
    /// otherwise (a file, a pipe, --json) rounds follow one another. A process that exits is said once and dropped;
    /// when none is left, nozoki exits 0.
    /// </summary>
    private static int Watch(Request o)
    {
        using var stop = StopSignals.Install();
        using var stopped = new ManualResetEventSlim();
        stop.Then(_ => stopped.Set());
        var hangup = new Thread(() =>
        {
            if (FdWriter.Stdout.WaitForHangup()) stopped.Set();
        }) { IsBackground = true, Name = "stdout hangup watcher" };
        hangup.Start();

        var screen = !o.Json && FdWriter.Stdout.IsTerminal;
        var alive = new List<int>(o.Pids);
        var code = ReturnCode.Success;
        Dictionary<string, string>? previous = null;
        var interval = TimeSpan.FromSeconds(o.Watch!.Value);
        var command = "nozoki inspect " + string.Join(",", o.Pids);
        while (true)
        {
            var lines = new List<ViewLine>();
            var notes = new List<string>();
            foreach (var pid in alive.ToList())
            {
                ProcessSnapshot snapshot;
                try
                {
                    snapshot = ProcessInspector.Take(pid, o.Options);
                }
                catch (ProcessNotFoundException e)
                {
                    alive.Remove(pid);
                    if (previous is null)
                    {
                        Console.Error.WriteLine($"nozoki: error: {e.Message}");
                        if (code == ReturnCode.Success) code = ReturnCode.NotFound;
                    }
                    else
                    {
                        notes.Add($"nozoki: PID {pid} has exited");
                    }

                    continue;
                }

                if (o.Json)
                {
                    FdWriter.Stdout.Write(InspectJson.Write(snapshot));
                }
                else
                {
                    if (lines.Count > 0) lines.Add(new("", "", LineStyle.Plain));
                    lines.AddRange(InspectText.Render(snapshot));
                }

                if (snapshot.ExitedWhileRead) alive.Remove(pid);
                if (previous is null && Say(snapshot) is var c and not ReturnCode.Success && !snapshot.ExitedWhileRead && code == ReturnCode.Success) code = c;
                if (previous is not null && snapshot.ExitedWhileRead) notes.Add($"nozoki: PID {pid} has exited");
            }

            if (!o.Json) Draw(lines, previous, screen, o.Paint, command, o.Watch.Value);
            foreach (var n in notes) Console.Error.WriteLine(n);
            previous = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var l in lines) previous[l.Key] = l.Text;
            if (alive.Count == 0) return (int)code;
            if (stopped.Wait(interval)) return (int)code;
        }
    }

    private static void Draw(List<ViewLine> lines, Dictionary<string, string>? previous, bool screen, bool paint, string command, double seconds)
    {
        var b = new StringBuilder();
        var now = DateTime.Now.ToString("HH:mm:ss", CultureInfo.InvariantCulture);
        if (screen)
        {
            int width = 0, height = 0;
            try
            {
                width = Console.WindowWidth;
                height = Console.WindowHeight;
            }
            catch (IOException)
            {
            }

            if (width <= 0) width = 80;
            if (height <= 0) height = 24;
            // Home, clear: the whole frame is drawn again; lines are cut to the width so that none wraps.
            b.Append("\e[H\e[2J");
            b.Append(Cut($"Every {seconds}s: {command}", width - 9).PadRight(Math.Max(0, width - 9))).Append(' ').Append(now).Append('\n');
            var shown = 1;
            foreach (var line in lines)
            {
                if (shown >= height - 1) break;
                var text = Cut(line.Text, width);
                var old = previous is not null && previous.TryGetValue(line.Key, out var o) ? Cut(o, width) : null;
                b.Append(paint ? Highlight(line, text, old, previous is not null) : text).Append('\n');
                shown++;
            }
        }
        else
        {
            b.Append("--- ").Append(command).Append(' ').Append(now).Append(" ---\n");
            foreach (var line in lines) b.Append(Paint(line, paint)).Append('\n');
            b.Append('\n');
        }

        FdWriter.Stdout.Write(Encoding.UTF8.GetBytes(b.ToString()));
    }

    /// <summary>watch -d: the characters that differ from the same line's last round in reverse video; a new line whole.</summary>
    private static string Highlight(ViewLine line, string text, string? old, bool haveRound)
    {
        var styled = Paint(line with { Text = text }, true);
        if (!haveRound || text.Length == 0) return styled;
        if (old is null) return $"\e[7m{text}\e[0m";
        if (old == text) return styled;
        var b = new StringBuilder();
        var inverse = false;
        for (var i = 0; i < text.Length; i++)
        {
            var changed = i >= old.Length || old[i] != text[i];
            if (changed != inverse)
            {
                b.Append(changed ? "\e[7m" : "\e[27m");
                inverse = changed;
            }

            b.Append(text[i]);
        }

        if (inverse) b.Append("\e[27m");
        return line.Style == LineStyle.Header ? $"\e[1m{b}\e[0m" : b.ToString();
    }

    private static string Cut(string s, int width) => width > 0 && s.Length > width ? s[..width] : s;
}
