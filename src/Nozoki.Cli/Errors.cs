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

    /// <summary>After a session: says how much output was given up, if any (on stderr, which may itself be full).</summary>
    public static void ReportDropped()
    {
        if (FdWriter.Dropped > 0)
            FdWriter.Stderr.Write(System.Text.Encoding.UTF8.GetBytes($"nozoki: {FdWriter.Dropped} bytes of output were dropped: the reader did not take them before nozoki was told to stop\n"));
    }

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
