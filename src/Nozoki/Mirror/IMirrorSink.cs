using Nozoki.Tracing;

namespace Nozoki.Mirror;

/// <summary>One mirrored write (or a piece of one, see <see cref="MirroredWrite.Continued"/>).</summary>
/// <param name="Time">When nozoki saw the syscall complete.</param>
/// <param name="Syscall">The syscall's name (write, writev, sendmsg, ...).</param>
/// <param name="Continued">True for every piece after the first of a write larger than the mirror's chunk size.</param>
public readonly record struct MirroredWrite(DateTime Time, int Pid, int Tid, int Fd, string Syscall, bool Continued);

/// <summary>Bytes the process wrote that the mirror cannot show, and why.</summary>
/// <param name="Bytes">How many bytes the kernel accepted that are not shown.</param>
public readonly record struct MirrorNotice(DateTime Time, int Pid, int Tid, int Fd, string Syscall, long Bytes, string Message);

/// <summary>
/// Where mirrored output goes. Called on the session's ptrace thread while the writing thread is stopped, in the
/// order the kernel completed the writes; `data` is only valid during the call. Throwing ends the session (detach).
/// The lifecycle (attached, exited, detached) is <see cref="ISessionSink"/>'s.
/// </summary>
public interface IMirrorSink : ISessionSink
{
    /// <summary>Bytes a traced thread wrote.</summary>
    void OnWrite(in MirroredWrite write, ReadOnlySpan<byte> data);

    /// <summary>Bytes that cannot be shown, and why.</summary>
    void OnNotice(in MirrorNotice notice);
}
