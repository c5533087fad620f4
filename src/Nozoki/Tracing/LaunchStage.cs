using System.Runtime.CompilerServices;
using System.Text;
using Nozoki.Native;
using Nozoki.Procfs;

namespace Nozoki.Tracing;

/// <summary>
/// The first moments of a launched command. A seccomp filter applies to the thread that installs it, so nozoki
/// cannot install it in its own process (it would filter nozoki's own writes). Instead the program re-executes
/// itself in this hidden mode: the stage waits until the tracer has attached, stops itself once (the tracer
/// swallows that SIGSTOP: it marks the point from which the tracer is in control), installs the filter on its
/// only thread that matters, restores the signal state the .NET runtime changed, and execve()s the command.
/// A program that calls <see cref="TraceSession.Launch"/> must therefore call <see cref="RunIfRequested"/> first
/// thing in Main (Launch checks that it did: <see cref="IsInstalled"/>), or name another program that does in
/// <see cref="TraceOptions.StageCommand"/>:
/// <code>
/// static int Main(string[] args)
/// {
///     LaunchStage.RunIfRequested(args);   // in the stage: runs the command's first moments, never returns
///     ...
/// }
/// </code>
/// </summary>
public static class LaunchStage
{
    /// <summary>The first argument that asks this program to be the launch stage.</summary>
    public const string Marker = "__nozoki_stage";

    private static volatile bool s_installed;

    /// <summary>Whether this program has called <see cref="RunIfRequested"/>, so that it can be its own launch stage.</summary>
    public static bool IsInstalled => s_installed;

    /// <summary>If args ask for the stage, runs it and never returns; otherwise returns at once.</summary>
    public static void RunIfRequested(string[] args)
    {
        ArgumentNullException.ThrowIfNull(args);
        s_installed = true;
        if (args.Length < 4 || args[0] != Marker || args[3] != "--") return;
        Libc._exit(Run(args[1], args[2], args[4..]));
    }

    /// <summary>The command line that runs the stage for argv (whose program is already resolved to path).</summary>
    internal static List<string> CommandLine(IReadOnlyList<string> stagePrefix, SeccompFilter? filter, string path, IReadOnlyList<string> argv)
    {
        var list = new List<string>(stagePrefix) { Marker, filter?.Serialize() ?? "-", path, "--" };
        list.AddRange(argv);
        return list;
    }

    /// <summary>
    /// How to start this program again. Its executable is named by /proc/self/exe, not by a path: that is this very
    /// file even when it was replaced or deleted since nozoki started (an upgrade, the launcher's rebuild), and it
    /// works alike for the native binary, an apphost (the Nozoki.Cli build, a global tool's shim) and the dotnet host.
    /// Only the last runs a main assembly it is given on its command line, so that one gets it again.
    /// </summary>
    internal static List<string> DefaultPrefix()
    {
        // NativeAOT (no dynamic code): the executable is the program.
        if (!RuntimeFeature.IsDynamicCodeSupported) return [SelfExe];
        var exe = Environment.ProcessPath ?? throw new InvalidOperationException("cannot find this program's executable");
        // An apphost (any name but dotnet's) finds its main assembly itself; GetCommandLineArgs()[0] names the
        // assembly in both cases, so only the host's name tells them apart.
        if (Path.GetFileNameWithoutExtension(exe) != "dotnet") return [SelfExe];
        var entry = Environment.GetCommandLineArgs()[0];
        return [SelfExe, Path.GetFullPath(entry)];
    }

    private const string SelfExe = "/proc/self/exe";

    // The stage writes nothing: its stdout and stderr are the command's, and whatever it wrote would look like the
    // command's output (painted by `run`, under the command's name in a trace). It says why it failed in its exit
    // status instead, which nozoki reads before the command has run at all (see Failure).

    /// <summary>Exit status of a stage that saw no tracer attach within 30 s.</summary>
    internal const int ExitNoTracer = 255;

    /// <summary>Exit status of a stage that could not install the seccomp filter: this plus the errno (capped).</summary>
    internal const int ExitSeccompFailed = 200;

    // Any other exit status (1..133) is the errno of the command's execve.

    private static int Run(string filterText, string path, string[] argv)
    {
        // Wait for the tracer: a syscall the filter traps fails with ENOSYS while no tracer is attached.
        var deadline = Environment.TickCount64 + 30_000;
        while (ProcessInfo.TryRead(Environment.ProcessId)?.TracerPid is null or 0)
        {
            if (Environment.TickCount64 > deadline) return ExitNoTracer;
            Thread.Sleep(1);
        }

        Libc.raise(Signals.SIGSTOP);
        if (filterText != "-")
        {
            var errno = Seccomp.Install(SeccompFilter.Parse(filterText).Compile()).Errno;
            if (errno != 0) return ExitSeccompFailed + Math.Min(errno, ExitNoTracer - 1 - ExitSeccompFailed);
        }

        // On success this never returns; on failure, out at once, before anything else of ours runs.
        return PosixSpawn.Execve(path, argv).Errno;
    }

    /// <summary>
    /// Why the command did not start, from the exit status of a stage that ended before the command's execve
    /// succeeded; null when the stage was killed by a signal (a Ctrl-C during start-up: not a failure of ours).
    /// <paramref name="stopped"/>: whether the stage got as far as its SIGSTOP (before it, only the runtime ran).
    /// </summary>
    internal static TraceException? Failure(ExitStatus exit, bool stopped, string command, string path)
    {
        if (exit.Signaled) return null;
        var code = exit.Code;
        if (code == ExitNoTracer) return new TraceException($"cannot start {command}: no tracer attached to nozoki's launch stage within 30 s");
        if (!stopped || code == 0) return new TraceException($"cannot start {command}: nozoki's launch stage exited with status {code} before it could");
        if (code >= ExitSeccompFailed)
            return new TraceException($"cannot start {command}: cannot install the seccomp filter: {Libc.StrError(code - ExitSeccompFailed)}");
        return ChildProcess.ExecFailed(command, path, code);
    }
}
