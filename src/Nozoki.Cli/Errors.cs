using Nozoki.Tracing;

namespace Nozoki.Cli;

/// <summary>Maps the library's typed exceptions to one `nozoki: error:` line and an exit code.</summary>
internal static class Errors
{
    /// <summary>
    /// The exception that ended a session: an error while detaching (a second failure of the same output, say) comes
    /// wrapped with it in an AggregateException, first.
    /// </summary>
    public static Exception? Unwrap(Exception? e) => e is AggregateException { InnerExceptions: [var first, ..] } ? first : e;

    public static int Report(Exception e)
    {
        var code = e switch
        {
            ProcessNotFoundException => ReturnCode.NotFound,
            TracePermissionException => ReturnCode.PermissionDenied,
            ProcessNotTraceableException => ReturnCode.NotTraceable,
            CommandNotStartedException { NotFound: true } => ReturnCode.CommandNotFound,
            CommandNotStartedException => ReturnCode.CannotExecute,
            _ => ReturnCode.Error,
        };
        Console.Error.WriteLine($"nozoki: error: {e.Message}");
        return (int)code;
    }
}
