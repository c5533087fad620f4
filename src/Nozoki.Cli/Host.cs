using Nozoki.Tracing;

namespace Nozoki.Cli;

/// <summary>
/// What nozoki takes from its environment for the library, which reads none itself: PATH, to find a command to
/// launch as a shell would, and two tuning knobs of the stop loop (for benchmarks): NOZOKI_FOLLOW_CPU=0 keeps the
/// ptrace thread off the tracee's CPU, NOZOKI_SPIN_US sets how long it polls before it sleeps in waitpid.
/// </summary>
internal static class Host
{
    /// <summary>The PATH commands are looked up in (null: unset, the library's default).</summary>
    public static string? SearchPath => Environment.GetEnvironmentVariable("PATH");

    /// <summary>The options every session of nozoki starts from.</summary>
    public static TraceOptions Options => new()
    {
        SearchPath = SearchPath,
        FollowTraceeCpu = (Environment.GetEnvironmentVariable("NOZOKI_FOLLOW_CPU") ?? "1") != "0",
        SpinMicroseconds = int.TryParse(Environment.GetEnvironmentVariable("NOZOKI_SPIN_US"), out var us) ? us : 50,
    };
}
