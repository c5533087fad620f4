using Nozoki.Native;

namespace Nozoki.Cli.Output;

/// <summary>
/// nozoki's output could not be written (ENOSPC, EIO, EBADF, ...): unlike EPIPE (<see cref="OutputClosedException"/>,
/// the reader has gone) what nozoki shows is being lost, which is an error to report.
/// </summary>
internal sealed class OutputFailedException(string target, int errno) : IOException($"cannot write to {target}: {Libc.StrError(errno)}")
{
    public int Errno { get; } = errno;
}
