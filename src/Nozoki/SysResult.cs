using System.Runtime.InteropServices;
using Nozoki.Native;
using Nozoki.Syscalls;

namespace Nozoki;

/// <summary>
/// The outcome of a system call: success, or the errno it failed with. The one result type of the library's
/// non-throwing calls (hot paths such as the stop loop's ptrace requests, or calls whose failure is an answer rather
/// than an error), so that a failure never comes back as a bare int, a bool plus a last error, or a negative number.
/// A readonly struct of one int: returning it allocates nothing. Exceptions (NozokiException) are for the edges.
/// </summary>
/// <param name="Errno">0 for success, else the errno (ENOENT = 2, EACCES = 13, EPIPE = 32, ...).</param>
public readonly record struct SysResult(int Errno)
{
    /// <summary>Success.</summary>
    public static SysResult Ok => default;

    /// <summary>True when the call succeeded.</summary>
    public bool IsOk => Errno == 0;

    /// <summary>The errno's symbolic name ("ENOENT"), or null for success or an unknown number.</summary>
    public string? Name => Errno == 0 ? null : Errnos.Name(Errno);

    /// <summary>The errno's message as strerror(3) says it ("No such file or directory").</summary>
    public string Message => Errno == 0 ? "Success" : Libc.StrError(Errno);

    /// <summary>
    /// ESRCH: the process or thread is gone (exited, killed); for a ptrace request, also a thread not in a ptrace
    /// stop.
    /// </summary>
    public bool IsGone => Errno == Native.Errno.ESRCH;

    /// <summary>Neither done nor gone: a failure to report (for requests where a thread gone is an answer).</summary>
    internal bool Failed => Errno != 0 && Errno != Native.Errno.ESRCH;

    /// <summary>The errno a failed P/Invoke (declared with SetLastError) left: call right after it.</summary>
    internal static SysResult LastPInvokeError() => new(Marshal.GetLastPInvokeError());

    /// <summary>Ok when the call succeeded, else the errno it left.</summary>
    internal static SysResult Of(bool succeeded) => succeeded ? default : LastPInvokeError();

    /// <summary>ENOENT: no such file or directory.</summary>
    public bool IsNotFound => Errno == Native.Errno.ENOENT;

    /// <summary>EPIPE: the reading end has gone.</summary>
    public bool IsBrokenPipe => Errno == Native.Errno.EPIPE;

    /// <summary>EACCES or EPERM.</summary>
    public bool IsPermissionDenied => Errno is Native.Errno.EACCES or Native.Errno.EPERM;

    /// <inheritdoc/>
    public override string ToString() => Errno == 0 ? "OK" : $"{Name ?? Errno.ToString(System.Globalization.CultureInfo.InvariantCulture)} ({Message})";
}
