using System.Runtime.InteropServices;

namespace Nozoki.Native;

/// <summary>struct sock_filter: one classic BPF instruction (linux/filter.h).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct SockFilter(ushort code, byte jt, byte jf, uint k)
{
    public ushort Code = code;
    public byte Jt = jt;
    public byte Jf = jf;
    public uint K = k;
}

/// <summary>seccomp-bpf constants (linux/seccomp.h, linux/bpf_common.h, linux/audit.h).</summary>
internal static unsafe class Seccomp
{
    internal const ushort BPF_LD_W_ABS = 0x00 | 0x00 | 0x20;   // BPF_LD | BPF_W | BPF_ABS
    internal const ushort BPF_JEQ_K = 0x05 | 0x10 | 0x00;      // BPF_JMP | BPF_JEQ | BPF_K
    internal const ushort BPF_JGT_K = 0x05 | 0x20 | 0x00;      // BPF_JMP | BPF_JGT | BPF_K
    internal const ushort BPF_JGE_K = 0x05 | 0x30 | 0x00;      // BPF_JMP | BPF_JGE | BPF_K
    internal const ushort BPF_RET_K = 0x06 | 0x00;             // BPF_RET | BPF_K
    internal const uint RET_ALLOW = 0x7fff0000;
    internal const uint RET_TRACE = 0x7ff00000;
    internal const uint AUDIT_ARCH_X86_64 = 0xc000003e;

    // struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6];
    internal const uint OffsetNr = 0;
    internal const uint OffsetArch = 4;
    internal static uint OffsetArgLow(int index) => 16 + (uint)index * 8;

    /// <summary>
    /// Installs the filter on the calling thread (it is inherited across execve and fork). Without CAP_SYS_ADMIN the
    /// kernel requires no_new_privs first. A failure is the errno.
    /// </summary>
    internal static SysResult Install(ReadOnlySpan<SockFilter> program)
    {
        fixed (SockFilter* p = program)
        {
            var prog = stackalloc ulong[2];
            prog[0] = (ulong)program.Length; // unsigned short len, padded
            prog[1] = (ulong)p;
            var r = SysResult.Of(Libc.prctl(Libc.PR_SET_SECCOMP, Libc.SECCOMP_MODE_FILTER, (nuint)prog, 0, 0) == 0);
            if (r.Errno != Errno.EACCES) return r;
            if (Libc.prctl(Libc.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return SysResult.LastPInvokeError();
            return SysResult.Of(Libc.prctl(Libc.PR_SET_SECCOMP, Libc.SECCOMP_MODE_FILTER, (nuint)prog, 0, 0) == 0);
        }
    }
}
