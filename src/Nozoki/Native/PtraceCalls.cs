using System.Runtime.InteropServices;

namespace Nozoki.Native;

/// <summary>Safe wrappers for the ptrace requests that fill a struct. Each returns false (errno in LastPInvokeError) on failure.</summary>
internal static unsafe class PtraceCalls
{
    internal static bool GetSyscallInfo(int tid, out PtraceSyscallInfo info)
    {
        fixed (PtraceSyscallInfo* p = &info) return Libc.ptrace(Ptrace.GET_SYSCALL_INFO, tid, sizeof(PtraceSyscallInfo), (nint)p) > 0;
    }

    internal static bool GetRegs(int tid, out UserRegs regs)
    {
        fixed (UserRegs* p = &regs) return Libc.ptrace(Ptrace.GETREGS, tid, 0, (nint)p) == 0;
    }

    internal static bool SetRegs(int tid, in UserRegs regs)
    {
        fixed (UserRegs* p = &regs) return Libc.ptrace(Ptrace.SETREGS, tid, 0, (nint)p) == 0;
    }

    internal static bool GetEventMsg(int tid, out ulong message)
    {
        fixed (ulong* p = &message) return Libc.ptrace(Ptrace.GETEVENTMSG, tid, 0, (nint)p) == 0;
    }

    /// <summary>PTRACE_GETREGSET: fills buffer with register set NT; returns the bytes the kernel wrote, or -1.</summary>
    internal static int GetRegSet(int tid, int nt, Span<byte> buffer)
    {
        fixed (byte* b = buffer)
        {
            var iov = new Iovec { Base = (ulong)b, Length = (ulong)buffer.Length };
            return Libc.ptrace(Ptrace.GETREGSET, tid, nt, (nint)(&iov)) == 0 ? (int)iov.Length : -1;
        }
    }

    /// <summary>PTRACE_SETREGSET: writes register set NT from state (as GetRegSet returned it).</summary>
    internal static bool SetRegSet(int tid, int nt, ReadOnlySpan<byte> state)
    {
        fixed (byte* b = state)
        {
            var iov = new Iovec { Base = (ulong)b, Length = (ulong)state.Length };
            return Libc.ptrace(Ptrace.SETREGSET, tid, nt, (nint)(&iov)) == 0;
        }
    }

    /// <summary>PTRACE_GETSIGMASK: the thread's blocked signals (bit SIG-1 for signal SIG), as the kernel's 8-byte sigset_t.</summary>
    internal static bool GetSigMask(int tid, out ulong mask)
    {
        fixed (ulong* p = &mask) return Libc.ptrace(Ptrace.GETSIGMASK, tid, sizeof(ulong), (nint)p) == 0;
    }

    /// <summary>PTRACE_SETSIGMASK (Linux 3.11+); the kernel leaves SIGKILL and SIGSTOP unblocked whatever is asked.</summary>
    internal static bool SetSigMask(int tid, ulong mask) => Libc.ptrace(Ptrace.SETSIGMASK, tid, sizeof(ulong), (nint)(&mask)) == 0;

    internal static bool GetSigInfo(int tid, out SigInfoRaw info)
    {
        fixed (SigInfoRaw* p = &info) return Libc.ptrace(Ptrace.GETSIGINFO, tid, 0, (nint)p) == 0;
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
