using Nozoki.Elf;
using Nozoki.Tracing;

namespace Nozoki.Cli;

/// <summary>
/// Maps the library's typed exceptions to one `nozoki: error:` line and an exit code: the one place where an error
/// becomes an exit code, so that the same situation gives the same code in every command (see <see cref="ReturnCode"/>).
/// </summary>
internal static class Errors
{
    /// <summary>The exit code for an error.</summary>
    public static ReturnCode Code(Exception e) => e switch
    {
        ProcessNotFoundException => ReturnCode.NotFound,
        TracePermissionException => ReturnCode.PermissionDenied,
        ProcessNotTraceableException => ReturnCode.NotTraceable,
        CommandNotStartedException { NotFound: true } => ReturnCode.CommandNotFound,
        CommandNotStartedException => ReturnCode.CannotExecute,
        // A file given on the command line that is malformed is a bad argument; one that is not an ELF file nozoki
        // reads cannot be inspected, as a process that cannot be traced.
        ElfFormatException { Kind: ElfErrorKind.Malformed } => ReturnCode.Usage,
        ElfFormatException => ReturnCode.NotTraceable,
        FileNotFoundException or DirectoryNotFoundException => ReturnCode.NotFound,
        UnauthorizedAccessException => ReturnCode.PermissionDenied,
        // The reader has gone: a normal end.
        OutputClosedException => ReturnCode.Success,
        _ => ReturnCode.Error,
    };

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

    /// <summary>The exit code for a path that could not be looked at (statx, open): no such file 3, permission 4, else 1.</summary>
    public static ReturnCode Code(SysResult error) => error.Name switch
    {
        null => ReturnCode.Success,
        "ENOENT" or "ENOTDIR" => ReturnCode.NotFound,
        "EACCES" => ReturnCode.PermissionDenied,
        _ => ReturnCode.Error,
    };

    /// <summary>Says the error (its message, or <paramref name="message"/>) in one line and returns its exit code.</summary>
    public static int Report(Exception e, string? message = null)
    {
        Console.Error.WriteLine($"nozoki: error: {message ?? e.Message}");
        return (int)Code(e);
    }
}
