using System.Buffers.Binary;
using Nozoki.Native;

namespace Nozoki.Syscalls;

// clone, clone3, execve's argv/envp, wait4's status and options, prctl, arch_prctl, futex.
public sealed partial class SyscallDecoder
{
    private static readonly (ulong, string)[] CloneFlagNames =
    [
        (0x100, "CLONE_VM"), (0x200, "CLONE_FS"), (0x400, "CLONE_FILES"), (0x800, "CLONE_SIGHAND"), (0x1000, "CLONE_PIDFD"),
        (0x2000, "CLONE_PTRACE"), (0x4000, "CLONE_VFORK"), (0x8000, "CLONE_PARENT"), (0x10000, "CLONE_THREAD"),
        (0x20000, "CLONE_NEWNS"), (0x40000, "CLONE_SYSVSEM"), (0x80000, "CLONE_SETTLS"), (0x100000, "CLONE_PARENT_SETTID"),
        (0x200000, "CLONE_CHILD_CLEARTID"), (0x400000, "CLONE_UNTRACED"), (0x1000000, "CLONE_CHILD_SETTID"),
        (0x2000000, "CLONE_NEWCGROUP"), (0x4000000, "CLONE_NEWUTS"), (0x8000000, "CLONE_NEWIPC"), (0x10000000, "CLONE_NEWUSER"),
        (0x20000000, "CLONE_NEWPID"), (0x40000000, "CLONE_NEWNET"), (0x80000000, "CLONE_IO"), (0x80, "CLONE_NEWTIME"),
        (0x100000000, "CLONE_CLEAR_SIGHAND"), (0x200000000, "CLONE_INTO_CGROUP"),
    ];

    private static readonly (ulong, string)[] WaitOptionNames =
    [
        (1, "WNOHANG"), (2, "WSTOPPED"), (4, "WEXITED"), (8, "WCONTINUED"), (0x1000000, "WNOWAIT"),
        (0x20000000, "__WNOTHREAD"), (0x40000000, "__WALL"), (0x80000000, "__WCLONE"),
    ];

    private static readonly (ulong, string)[] ArchPrctlNames =
    [
        (0x1001, "ARCH_SET_GS"), (0x1002, "ARCH_SET_FS"), (0x1003, "ARCH_GET_FS"), (0x1004, "ARCH_GET_GS"),
        (0x1011, "ARCH_GET_CPUID"), (0x1012, "ARCH_SET_CPUID"), (0x1021, "ARCH_GET_XCOMP_SUPP"), (0x1022, "ARCH_GET_XCOMP_PERM"),
        (0x1023, "ARCH_REQ_XCOMP_PERM"), (0x1024, "ARCH_GET_XCOMP_GUEST_PERM"), (0x1025, "ARCH_REQ_XCOMP_GUEST_PERM"),
        (0x2001, "ARCH_MAP_VDSO_X32"), (0x2002, "ARCH_MAP_VDSO_32"), (0x2003, "ARCH_MAP_VDSO_64"),
    ];

    private static readonly (ulong, string)[] PrctlNames =
    [
        (1, "PR_SET_PDEATHSIG"), (2, "PR_GET_PDEATHSIG"), (3, "PR_GET_DUMPABLE"), (4, "PR_SET_DUMPABLE"), (5, "PR_GET_UNALIGN"),
        (6, "PR_SET_UNALIGN"), (7, "PR_GET_KEEPCAPS"), (8, "PR_SET_KEEPCAPS"), (9, "PR_GET_FPEMU"), (10, "PR_SET_FPEMU"),
        (11, "PR_GET_FPEXC"), (12, "PR_SET_FPEXC"), (13, "PR_GET_TIMING"), (14, "PR_SET_TIMING"), (15, "PR_SET_NAME"),
        (16, "PR_GET_NAME"), (19, "PR_GET_ENDIAN"), (20, "PR_SET_ENDIAN"), (21, "PR_GET_SECCOMP"), (22, "PR_SET_SECCOMP"),
        (23, "PR_CAPBSET_READ"), (24, "PR_CAPBSET_DROP"), (25, "PR_GET_TSC"), (26, "PR_SET_TSC"), (27, "PR_GET_SECUREBITS"),
        (28, "PR_SET_SECUREBITS"), (29, "PR_SET_TIMERSLACK"), (30, "PR_GET_TIMERSLACK"), (31, "PR_TASK_PERF_EVENTS_DISABLE"),
        (32, "PR_TASK_PERF_EVENTS_ENABLE"), (33, "PR_MCE_KILL"), (34, "PR_MCE_KILL_GET"), (35, "PR_SET_MM"),
        (36, "PR_SET_CHILD_SUBREAPER"), (37, "PR_GET_CHILD_SUBREAPER"), (38, "PR_SET_NO_NEW_PRIVS"), (39, "PR_GET_NO_NEW_PRIVS"),
        (40, "PR_GET_TID_ADDRESS"), (41, "PR_SET_THP_DISABLE"), (42, "PR_GET_THP_DISABLE"), (45, "PR_SET_FP_MODE"),
        (46, "PR_GET_FP_MODE"), (47, "PR_CAP_AMBIENT"), (53, "PR_GET_SPECULATION_CTRL"), (54, "PR_SET_SPECULATION_CTRL"),
        (57, "PR_SET_SYSCALL_USER_DISPATCH"), (59, "PR_SCHED_CORE"), (0x53564d41, "PR_SET_VMA"), (0x59616d61, "PR_SET_PTRACER"),
    ];

    private static readonly (ulong, string)[] CapabilityNames =
    [
        (0, "CAP_CHOWN"), (1, "CAP_DAC_OVERRIDE"), (2, "CAP_DAC_READ_SEARCH"), (3, "CAP_FOWNER"), (4, "CAP_FSETID"), (5, "CAP_KILL"),
        (6, "CAP_SETGID"), (7, "CAP_SETUID"), (8, "CAP_SETPCAP"), (9, "CAP_LINUX_IMMUTABLE"), (10, "CAP_NET_BIND_SERVICE"),
        (11, "CAP_NET_BROADCAST"), (12, "CAP_NET_ADMIN"), (13, "CAP_NET_RAW"), (14, "CAP_IPC_LOCK"), (15, "CAP_IPC_OWNER"),
        (16, "CAP_SYS_MODULE"), (17, "CAP_SYS_RAWIO"), (18, "CAP_SYS_CHROOT"), (19, "CAP_SYS_PTRACE"), (20, "CAP_SYS_PACCT"),
        (21, "CAP_SYS_ADMIN"), (22, "CAP_SYS_BOOT"), (23, "CAP_SYS_NICE"), (24, "CAP_SYS_RESOURCE"), (25, "CAP_SYS_TIME"),
        (26, "CAP_SYS_TTY_CONFIG"), (27, "CAP_MKNOD"), (28, "CAP_LEASE"), (29, "CAP_AUDIT_WRITE"), (30, "CAP_AUDIT_CONTROL"),
        (31, "CAP_SETFCAP"), (32, "CAP_MAC_OVERRIDE"), (33, "CAP_MAC_ADMIN"), (34, "CAP_SYSLOG"), (35, "CAP_WAKE_ALARM"),
        (36, "CAP_BLOCK_SUSPEND"), (37, "CAP_AUDIT_READ"), (38, "CAP_PERFMON"), (39, "CAP_BPF"), (40, "CAP_CHECKPOINT_RESTORE"),
    ];

    private static readonly (ulong, string)[] FutexCmdNames =
    [
        (0, "FUTEX_WAIT"), (1, "FUTEX_WAKE"), (2, "FUTEX_FD"), (3, "FUTEX_REQUEUE"), (4, "FUTEX_CMP_REQUEUE"), (5, "FUTEX_WAKE_OP"),
        (6, "FUTEX_LOCK_PI"), (7, "FUTEX_UNLOCK_PI"), (8, "FUTEX_TRYLOCK_PI"), (9, "FUTEX_WAIT_BITSET"), (10, "FUTEX_WAKE_BITSET"),
        (11, "FUTEX_WAIT_REQUEUE_PI"), (12, "FUTEX_CMP_REQUEUE_PI"), (13, "FUTEX_LOCK_PI2"),
    ];

    /// <summary>clone(2) on x86_64: (flags, stack, parent_tid, child_tid, tls), shown as strace names them.</summary>
    private int Clone(TextBuffer b)
    {
        var flags = _a[0];
        b.Append("child_stack=");
        Ptr(b, _a[1]);
        b.Append(", flags=");
        CloneFlags(b, flags, withSignal: true);
        if ((flags & (0x100000 | 0x1000)) != 0)
        {
            b.Append(", parent_tid=");
            Ptr(b, _a[2]);
        }

        if ((flags & (0x1000000 | 0x200000)) != 0)
        {
            b.Append(", child_tidptr=");
            Ptr(b, _a[3]);
        }

        if ((flags & 0x80000) != 0)
        {
            b.Append(", tls=");
            Ptr(b, _a[4]);
        }

        return ConsumedAll;
    }

    private static void CloneFlags(TextBuffer b, ulong v, bool withSignal)
    {
        if (!withSignal)
        {
            Flags(b, v, CloneFlagNames, "0");
            return;
        }

        var sig = (int)(v & 0xff);
        var rest = v & ~0xffUL;
        if (rest != 0) Flags(b, rest, CloneFlagNames, "0");
        if (sig != 0)
        {
            if (rest != 0) b.Append('|');
            SignalName(b, sig);
        }
        else if (rest == 0)
        {
            b.Append('0');
        }
    }

    /// <summary>struct clone_args, decoded at entry: {flags=..., child_tid=..., parent_tid=..., exit_signal=..., stack=..., stack_size=..., tls=...}.</summary>
    private void Clone3(TextBuffer b, ulong address, ulong size)
    {
        Span<byte> s = stackalloc byte[88];
        if (size < 64 || !Read(address, s[..64]))
        {
            Ptr(b, address);
            return;
        }

        static ulong At(ReadOnlySpan<byte> s, int i) => BinaryPrimitives.ReadUInt64LittleEndian(s[(i * 8)..]);
        var flags = At(s, 0);
        b.Append("{flags=");
        Flags(b, flags, CloneFlagNames, "0");
        if ((flags & 0x1000) != 0)
        {
            b.Append(", pidfd=");
            b.AppendHex(At(s, 1));
        }

        if ((flags & (0x1000000 | 0x200000)) != 0)
        {
            b.Append(", child_tid=");
            b.AppendHex(At(s, 2));
        }

        if ((flags & 0x100000) != 0)
        {
            b.Append(", parent_tid=");
            b.AppendHex(At(s, 3));
        }

        b.Append(", exit_signal=");
        if (At(s, 4) == 0) b.Append('0');
        else SignalName(b, (int)At(s, 4));
        b.Append(", stack=");
        b.AppendHex(At(s, 5));
        b.Append(", stack_size=");
        b.AppendHex(At(s, 6));
        if ((flags & 0x80000) != 0)
        {
            b.Append(", tls=");
            b.AppendHex(At(s, 7));
        }

        b.Append('}');
    }

    /// <summary>execve's argv (strings and elements cut at -s) or envp (with -v; else its address and count).</summary>
    private void StringArray(TextBuffer b, ulong address, bool env)
    {
        if (address == 0)
        {
            b.Append("NULL");
            return;
        }

        if (env && !_o.Verbose)
        {
            var count = 0;
            while (count < 4096 && ReadU64(address + (ulong)count * 8, out var p) && p != 0) count++;
            b.AppendHex(address);
            b.Append(" /* ");
            b.AppendInt(count);
            b.Append(count == 1 ? " var */" : " vars */");
            return;
        }

        b.Append('[');
        for (var i = 0; ; i++)
        {
            if (!ReadU64(address + (ulong)i * 8, out var p))
            {
                if (UnreadableArray(b, address, i)) return;
                b.Append(", ...");
                break;
            }

            if (p == 0) break;
            if (i > 0) b.Append(", ");
            if (i >= _o.StringLimit)
            {
                b.Append("...");
                break;
            }

            StrArg(b, p, -1);
        }

        b.Append(']');
    }

    /// <summary>wait4's status: [{WIFEXITED(s) &amp;&amp; WEXITSTATUS(s) == 0}].</summary>
    private void WaitStatus(TextBuffer b, ulong address)
    {
        if (address == 0 || _ret == 0)
        {
            Ptr(b, address);
            return;
        }

        if (!ReadI32(address, out var s))
        {
            b.AppendHex(address);
            return;
        }

        b.Append("[{");
        if ((s & 0x7f) == 0)
        {
            b.Append("WIFEXITED(s) && WEXITSTATUS(s) == ");
            b.AppendInt((s >> 8) & 0xff);
        }
        else if ((s & 0xff) == 0x7f)
        {
            b.Append("WIFSTOPPED(s) && WSTOPSIG(s) == ");
            SignalName(b, (s >> 8) & 0xff);
            if ((s >> 16) != 0)
            {
                b.Append(" && s >> 16 == ");
                b.AppendInt(s >> 16);
            }
        }
        else if (s == 0xffff)
        {
            b.Append("WIFCONTINUED(s)");
        }
        else
        {
            b.Append("WIFSIGNALED(s) && WTERMSIG(s) == ");
            SignalName(b, s & 0x7f);
            if ((s & 0x80) != 0) b.Append(" && WCOREDUMP(s)");
        }

        b.Append("}]");
    }

    /// <summary>prctl(option, ...): the arguments each option takes.</summary>
    private int Prctl(TextBuffer b, int i)
    {
        var option = _a[i];
        Enum(b, option, PrctlNames, "PR_???");
        switch (option)
        {
            case 2 or 3 or 7 or 16 or 19 or 21 or 27 or 30 or 37 or 39 or 42 or 46: // getters without arguments
                if (option is 2 or 16 or 37)
                {
                    b.Append(", ");
                    Ptr(b, _a[i + 1]);
                }

                return ConsumedAll;
            case 1: // PR_SET_PDEATHSIG
                b.Append(", ");
                if (_a[i + 1] == 0) b.Append('0');
                else SignalName(b, (int)_a[i + 1]);
                return ConsumedAll;
            case 15: // PR_SET_NAME
                b.Append(", ");
                StrArg(b, _a[i + 1], -1);
                return ConsumedAll;
            case 23 or 24: // PR_CAPBSET_READ, PR_CAPBSET_DROP
                b.Append(", ");
                Enum(b, _a[i + 1], CapabilityNames, "CAP_???");
                return ConsumedAll;
            case 4 or 8 or 29 or 36 or 41: // one integer
                b.Append(", ");
                b.AppendUInt(_a[i + 1]);
                return ConsumedAll;
            default:
                for (var j = 1; j < 5; j++)
                {
                    b.Append(", ");
                    b.AppendHex(_a[i + j]);
                }

                return ConsumedAll;
        }
    }

    /// <summary>futex(uaddr, op, val[, timeout[, uaddr2[, val3]]]): only the arguments the operation uses.</summary>
    private int Futex(TextBuffer b, int i)
    {
        var op = _a[i];
        var cmd = op & 0x7f;
        var name = Lookup(cmd, FutexCmdNames);
        if (name is null)
        {
            b.AppendHex(op);
            b.Append(" /* FUTEX_??? */");
        }
        else
        {
            b.Append(name);
            if ((op & 128) != 0) b.Append("_PRIVATE");
            if ((op & 256) != 0) b.Append("|FUTEX_CLOCK_REALTIME");
        }

        b.Append(", ");
        b.AppendInt((int)_a[i + 1]);
        switch (cmd)
        {
            case 0 or 6 or 13: // WAIT, LOCK_PI, LOCK_PI2: timeout
                b.Append(", ");
                Timespec(b, _a[i + 2]);
                break;
            case 9: // WAIT_BITSET: timeout, then val3 as a bitset
                b.Append(", ");
                Timespec(b, _a[i + 2]);
                b.Append(", ");
                if ((uint)_a[i + 4] == uint.MaxValue) b.Append("FUTEX_BITSET_MATCH_ANY");
                else b.AppendHex((uint)_a[i + 4]);
                break;
            case 10: // WAKE_BITSET
                b.Append(", ");
                if ((uint)_a[i + 4] == uint.MaxValue) b.Append("FUTEX_BITSET_MATCH_ANY");
                else b.AppendHex((uint)_a[i + 4]);
                break;
            case 3 or 4 or 5 or 11 or 12: // REQUEUE, CMP_REQUEUE, WAKE_OP, WAIT_REQUEUE_PI, CMP_REQUEUE_PI
                b.Append(", ");
                b.AppendUInt((uint)_a[i + 2]);
                b.Append(", ");
                Ptr(b, _a[i + 3]);
                if (cmd is 4 or 5 or 12)
                {
                    b.Append(", ");
                    b.AppendHex((uint)_a[i + 4]);
                }

                break;
        }

        return ConsumedAll;
    }

    private static void SignalName(TextBuffer b, int signo) => b.Append(Signals.Name(signo));
}
