using Nozoki.Native;
using Nozoki.Syscalls;

namespace Nozoki;

/// <summary>
/// The outcome of a system call made for the caller: success, or the errno it failed with. What the library's
/// non-throwing calls return (hot paths, or calls whose failure is an answer rather than an error), so that a
/// failure never comes back as a bare int, a bool plus a last error, or a negative number.
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

    /// <summary>ENOENT: no such file or directory.</summary>
    public bool IsNotFound => Errno == Native.Errno.ENOENT;

    /// <summary>EPIPE: the reading end has gone.</summary>
    public bool IsBrokenPipe => Errno == Native.Errno.EPIPE;

    /// <summary>EACCES or EPERM.</summary>
    public bool IsPermissionDenied => Errno is Native.Errno.EACCES or Native.Errno.EPERM;

    /// <inheritdoc/>
    public override string ToString() => Errno == 0 ? "OK" : $"{Name ?? Errno.ToString(System.Globalization.CultureInfo.InvariantCulture)} ({Message})";
}
