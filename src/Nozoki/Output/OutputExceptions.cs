namespace Nozoki.Output;

/// <summary>Output (an <see cref="FdWriter"/>'s destination) that cannot be written any more.</summary>
public abstract class OutputException(string message, Exception? inner = null) : NozokiException(message, inner);

/// <summary>The reader of the output has gone (EPIPE, e.g. `| head -1`): a normal end of the output, not a failure.</summary>
public sealed class OutputClosedException(string message) : OutputException(message);

/// <summary>
/// Output could not be written (ENOSPC, EIO, EBADF, ...): unlike EPIPE (<see cref="OutputClosedException"/>, the
/// reader has gone) what is shown is being lost, which is an error to report.
/// </summary>
public sealed class OutputFailedException(string target, SysResult error)
    : OutputException($"cannot write to {target}: {error.Message}")
{
    /// <summary>Why: the errno of write(2).</summary>
    public SysResult Error { get; } = error;
}

/// <summary>A file to write output to could not be opened (<see cref="FdWriter.Create"/>).</summary>
public sealed class OutputOpenException(string path, SysResult error)
    : OutputException($"cannot open '{path}': {error.Message}")
{
    /// <summary>The path as given.</summary>
    public string Path { get; } = path;

    /// <summary>Why: the errno of open(2) ("Is a directory", "Permission denied", ...).</summary>
    public SysResult Error { get; } = error;
}
