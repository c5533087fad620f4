using System.CommandLine;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;
using Nozoki.Cli.Output;
using Nozoki.Painting;
using Nozoki.Tracing;

namespace Nozoki.Cli.Commands;

/// <summary>`nozoki run -- CMD`: run a command with its stderr painted, order kept, terminal intact.</summary>
internal static partial class RunCommand
{
    private static readonly Dictionary<string, string> Styles = new()
    {
        ["bold-red"] = "1;31", ["red"] = "31", ["yellow"] = "33", ["bold-yellow"] = "1;33", ["magenta"] = "35",
        ["bold"] = "1", ["dim"] = "2", ["italic"] = "3", ["underline"] = "4", ["reverse"] = "7",
    };

    public static Command Create()
    {
        var style = new Option<string>("--style") { Description = $"how stderr looks: {string.Join(", ", Styles.Keys)}, or SGR parameters such as '1;38;5;208'", DefaultValueFactory = _ => "bold-red" };
        var fds = OutCommand.FdOption("paint writes to this file descriptor (repeatable; default: 2)");
        var color = OutCommand.ColorOption();
        var command = new Argument<string[]>("CMD") { Description = "the command and its arguments (after --)", Arity = ArgumentArity.OneOrMore };
        var cmd = new Command("run", "Run a command with its stderr painted red; stdout/stderr order kept exactly, the terminal still a terminal")
        {
            style, fds, color, command,
        };
        cmd.SetAction(r =>
        {
            var sgr = r.GetValue(style)!;
            if (Styles.TryGetValue(sgr, out var named)) sgr = named;
            else if (!SgrPattern().IsMatch(sgr))
            {
                Console.Error.WriteLine($"nozoki: error: --style must be a style name ({string.Join(", ", Styles.Keys)}) or SGR parameters such as '1;31': '{sgr}'");
                return (int)ReturnCode.Usage;
            }

            var selected = r.GetValue(fds) is { Length: > 0 } f ? f : [2];
            return Run(r.GetValue(command)!, sgr, selected, OutCommand.ShouldPaint(r.GetValue(color)!));
        });
        return cmd;
    }

    [GeneratedRegex("^[0-9]+(;[0-9]+)*$")]
    private static partial Regex SgrPattern();

    private static int Run(string[] argv, string sgr, int[] fds, bool paint)
    {
        var commandPid = 0;
        var pending = 0;
        var gate = new Lock();
        // Like a shell waiting for its foreground job: Ctrl-C and Ctrl-\ are the command's business (it is in our
        // process group and gets them too); nozoki must never die before it. SIGTERM and SIGHUP sent to nozoki
        // are passed on to the command.
        using var registrations = new Registrations(
            PosixSignalRegistration.Create(PosixSignal.SIGINT, c => c.Cancel = true),
            PosixSignalRegistration.Create(PosixSignal.SIGQUIT, c => c.Cancel = true),
            PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => Forward(c, Signals.SIGTERM)),
            PosixSignalRegistration.Create(PosixSignal.SIGHUP, c => Forward(c, Signals.SIGHUP)));

        if (!paint)
        {
            // Nothing to paint: run the command untraced, at no cost at all.
            ChildProcess child;
            try
            {
                child = ChildProcess.Start(argv, searchPath: Host.SearchPath);
            }
            catch (CommandNotStartedException e)
            {
                return Errors.Report(e);
            }

            using var owner = child;
            Started(child.Pid);
            return child.WaitForExit().ShellStatus;
        }

        using var painter = new WritePainter(new TerminalPainter(sgr), fds);
        var filter = SeccompFilter.IsAvailable() ? painter.Filter() : null;
        if (filter is null) Console.Error.WriteLine("nozoki: seccomp is not available: every syscall of the command will stop (slower)");
        TraceSession session;
        try
        {
            session = TraceSession.Launch(argv, painter, Host.Options with
            {
                Filter = filter, FollowForks = true, StandardDescriptors = painter.StandardDescriptors(),
            });
        }
        catch (Exception e) when (e is NozokiException or IOException)
        {
            return Errors.Report(e);
        }

        Started(session.TargetPid);
        var result = session.Completion.GetAwaiter().GetResult();
        // Detached by an error: the command runs on, nozoki's child still, and nozoki still never exits before it.
        var exit = session.WaitForCommand();
        if (result.Error is not null) return Errors.Report(result.Error);
        return exit.ShellStatus;

        // A signal that came while the command was being started (Launch returns once it has exec'd) is passed on then.
        void Started(int pid)
        {
            lock (gate)
            {
                commandPid = pid;
                if (pending != 0) Signals.Send(pid, pending);
            }
        }

        void Forward(PosixSignalContext c, int signo)
        {
            c.Cancel = true;
            lock (gate)
            {
                if (commandPid > 0) Signals.Send(commandPid, signo);
                else pending = signo;
            }
        }
    }

    /// <summary>Writes the start and reset sequences to nozoki's own fd: the painted one the write descends from (its file is where the write goes).</summary>
    private sealed class TerminalPainter(string sgr) : IPaintSink
    {
        private readonly byte[] _start = Encoding.ASCII.GetBytes($"\e[{sgr}m");
        private readonly byte[] _reset = "\e[0m"u8.ToArray();

        public ReadOnlySpan<byte> StartSequence => _start;

        public ReadOnlySpan<byte> ResetSequence => _reset;

        public void Begin(int pid, int tid, int fd) => FdWriter.TryWriteAll(fd, _start);

        public void End(int pid, int tid, int fd) => FdWriter.TryWriteAll(fd, _reset);
    }

    private sealed class Registrations(params IDisposable[] items) : IDisposable
    {
        public void Dispose()
        {
            foreach (var i in items) i.Dispose();
        }
    }
}
