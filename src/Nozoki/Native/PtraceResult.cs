using System.Runtime.InteropServices;

namespace Nozoki.Native;

/// <summary>
/// The outcome of a ptrace request that fills nothing (resume, PTRACE_INTERRUPT, PTRACE_LISTEN, PTRACE_DETACH): a
/// value, not an exception, as it is asked on every stop. ESRCH means the thread is gone (killed, or exited) or not in
/// a ptrace stop; anything else is a failure to report.
/// </summary>
internal readonly struct PtraceResult
{
    private PtraceResult(int errno) => Errno = errno;

    /// <summary>0 when the request was carried out.</summary>
    public int Errno { get; }

    public bool Done => Errno == 0;

    public bool Gone => Errno == Native.Errno.ESRCH;

    /// <summary>Neither done nor gone: something the session must report.</summary>
    public bool Failed => Errno != 0 && !Gone;

    /// <summary>PTRACE_REQUEST(tid, 0, data).</summary>
    public static PtraceResult Request(long request, int tid, nint data) =>
        Libc.ptrace(request, tid, 0, data) == 0 ? default : new PtraceResult(Marshal.GetLastPInvokeError());

    public static string RequestName(long request) => request switch
    {
        Ptrace.CONT => "PTRACE_CONT",
        Ptrace.SYSCALL => "PTRACE_SYSCALL",
        Ptrace.DETACH => "PTRACE_DETACH",
        Ptrace.INTERRUPT => "PTRACE_INTERRUPT",
        Ptrace.LISTEN => "PTRACE_LISTEN",
        Ptrace.SINGLESTEP => "PTRACE_SINGLESTEP",
        _ => $"ptrace request {request}",
    };
}
