using System.Runtime.InteropServices;

namespace Nozoki.Native;

/// <summary>
/// Safe wrappers for ptrace requests. Each returns a <see cref="SysResult"/>: a value, not an exception, as they are
/// asked on every stop. For a request on a thread, ESRCH (<see cref="SysResult.IsGone"/>) means the thread is gone
/// (killed, or exited) or not in a ptrace stop.
/// </summary>
internal static unsafe class PtraceCalls
{
    /// <summary>PTRACE_REQUEST(tid, 0, data), for the requests that fill nothing (resume, PTRACE_INTERRUPT, PTRACE_LISTEN, PTRACE_DETACH).</summary>
    internal static SysResult Request(long request, int tid, nint data) => SysResult.Of(Libc.ptrace(request, tid, 0, data) == 0);

    internal static string RequestName(long request) => request switch
    {
        Ptrace.CONT => "PTRACE_CONT",
        Ptrace.SYSCALL => "PTRACE_SYSCALL",
        Ptrace.DETACH => "PTRACE_DETACH",
        Ptrace.INTERRUPT => "PTRACE_INTERRUPT",
        Ptrace.LISTEN => "PTRACE_LISTEN",
        Ptrace.SINGLESTEP => "PTRACE_SINGLESTEP",
        _ => $"ptrace request {request}",
    };

    /// <summary>PTRACE_GET_SYSCALL_INFO (the kernel returns the bytes it filled; none is an I/O error here).</summary>
    internal static SysResult GetSyscallInfo(int tid, out PtraceSyscallInfo info)
    {
        long n;
        fixed (PtraceSyscallInfo* p = &info) n = Libc.ptrace(Ptrace.GET_SYSCALL_INFO, tid, sizeof(PtraceSyscallInfo), (nint)p);
        return n > 0 ? default : n < 0 ? SysResult.LastPInvokeError() : new SysResult(Errno.EIO);
    }

    internal static SysResult GetRegs(int tid, out UserRegs regs)
    {
        fixed (UserRegs* p = &regs) return SysResult.Of(Libc.ptrace(Ptrace.GETREGS, tid, 0, (nint)p) == 0);
    }

    internal static SysResult SetRegs(int tid, in UserRegs regs)
    {
        fixed (UserRegs* p = &regs) return SysResult.Of(Libc.ptrace(Ptrace.SETREGS, tid, 0, (nint)p) == 0);
    }

    internal static SysResult GetEventMsg(int tid, out ulong message)
    {
        fixed (ulong* p = &message) return SysResult.Of(Libc.ptrace(Ptrace.GETEVENTMSG, tid, 0, (nint)p) == 0);
    }

    /// <summary>PTRACE_GETREGSET: fills buffer with register set NT; length is the bytes the kernel wrote.</summary>
    internal static SysResult GetRegSet(int tid, int nt, Span<byte> buffer, out int length)
    {
        fixed (byte* b = buffer)
        {
            var iov = new Iovec { Base = (ulong)b, Length = (ulong)buffer.Length };
            var r = SysResult.Of(Libc.ptrace(Ptrace.GETREGSET, tid, nt, (nint)(&iov)) == 0);
            length = r.IsOk ? (int)iov.Length : 0;
            return r;
        }
    }

    /// <summary>PTRACE_SETREGSET: writes register set NT from state (as GetRegSet returned it).</summary>
    internal static SysResult SetRegSet(int tid, int nt, ReadOnlySpan<byte> state)
    {
        fixed (byte* b = state)
        {
            var iov = new Iovec { Base = (ulong)b, Length = (ulong)state.Length };
            return SysResult.Of(Libc.ptrace(Ptrace.SETREGSET, tid, nt, (nint)(&iov)) == 0);
        }
    }

    /// <summary>PTRACE_GETSIGMASK: the thread's blocked signals (bit SIG-1 for signal SIG), as the kernel's 8-byte sigset_t.</summary>
    internal static SysResult GetSigMask(int tid, out ulong mask)
    {
        fixed (ulong* p = &mask) return SysResult.Of(Libc.ptrace(Ptrace.GETSIGMASK, tid, sizeof(ulong), (nint)p) == 0);
    }

    /// <summary>PTRACE_SETSIGMASK (Linux 3.11+); the kernel leaves SIGKILL and SIGSTOP unblocked whatever is asked.</summary>
    internal static SysResult SetSigMask(int tid, ulong mask) => SysResult.Of(Libc.ptrace(Ptrace.SETSIGMASK, tid, sizeof(ulong), (nint)(&mask)) == 0);

    internal static SysResult GetSigInfo(int tid, out SigInfoRaw info)
    {
        fixed (SigInfoRaw* p = &info) return SysResult.Of(Libc.ptrace(Ptrace.GETSIGINFO, tid, 0, (nint)p) == 0);
    }
}

/// <summary>siginfo_t (128 bytes) with the union members nozoki reads at their x86_64 offsets.</summary>
[StructLayout(LayoutKind.Explicit, Size = 128)]
internal struct SigInfoRaw
{
    [FieldOffset(0)] public int Signo;
    [FieldOffset(4)] public int Errno;
    [FieldOffset(8)] public int Code;
    [FieldOffset(16)] public int Pid;
    [FieldOffset(20)] public uint Uid;
    [FieldOffset(24)] public int Status;
    [FieldOffset(16)] public ulong Address;
    [FieldOffset(24)] public ulong Value;
    [FieldOffset(32)] public long UserTime;
    [FieldOffset(40)] public long SystemTime;
}
