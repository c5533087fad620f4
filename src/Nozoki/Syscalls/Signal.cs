using System.Buffers.Binary;
using Nozoki.Native;
using Nozoki.Tracing;

namespace Nozoki.Syscalls;

// Signal sets, sigaction, and the "--- SIGCHLD {si_signo=...} ---" lines.
public sealed partial class SyscallDecoder
{
    private static readonly (ulong, string)[] SigHowNames = [(0, "SIG_BLOCK"), (1, "SIG_UNBLOCK"), (2, "SIG_SETMASK")];

    private static readonly (ulong, string)[] SaFlagNames =
    [
        (0x04000000, "SA_RESTORER"), (0x08000000, "SA_ONSTACK"), (0x10000000, "SA_RESTART"), (0x40000000, "SA_NODEFER"),
        (0x80000000, "SA_RESETHAND"), (1, "SA_NOCLDSTOP"), (2, "SA_NOCLDWAIT"), (4, "SA_SIGINFO"), (0x400, "SA_UNSUPPORTED"),
        (0x800, "SA_EXPOSE_TAGBITS"),
    ];

    /// <summary>A kernel sigset (64 bits on x86_64): [INT TERM], or ~[...] when more than half are set.</summary>
    private void SigSetArg(TextBuffer b, ulong address)
    {
        if (address == 0)
        {
            b.Append("NULL");
            return;
        }

        if (!ReadU64(address, out var set))
        {
            b.AppendHex(address);
            return;
        }

        SigSet(b, set);
    }

    /// <summary>
    /// rt_sigreturn's argument as strace shows it: the signal mask it restores, {mask=[...]}, read from the signal
    /// frame at the stack pointer (ucontext's uc_sigmask, 296 bytes in). The stack pointer comes from
    /// /proc/TID/syscall, which the kernel fills for a thread stopped in a syscall (this call is rare: it may allocate).
    /// </summary>
    private void SigFrame(TextBuffer b)
    {
        ulong sp = 0;
        try
        {
            var fields = File.ReadAllText($"/proc/{_tid}/syscall").Split(' ');
            if (fields.Length >= 9 && fields[7].StartsWith("0x", StringComparison.Ordinal))
                sp = ulong.Parse(fields[7].AsSpan(2), System.Globalization.NumberStyles.HexNumber, System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
        }

        if (sp != 0 && ReadU64(sp + 296, out var mask))
        {
            b.Append("{mask=");
            SigSet(b, mask);
            b.Append('}');
            return;
        }

        b.Append("{mask=?}");
    }

    internal static void SigSet(TextBuffer b, ulong set)
    {
        var invert = System.Numerics.BitOperations.PopCount(set) > 32;
        if (invert)
        {
            b.Append('~');
            set = ~set;
        }

        b.Append('[');
        var first = true;
        for (var sig = 1; sig <= 64; sig++)
        {
            if ((set & (1UL << (sig - 1))) == 0) continue;
            if (!first) b.Append(' ');
            first = false;
            var name = Signals.Name(sig);
            b.Append(name.StartsWith("SIG", StringComparison.Ordinal) ? name.AsSpan(3) : name);
        }

        b.Append(']');
    }

    /// <summary>struct kernel_sigaction: {sa_handler=..., sa_mask=[...], sa_flags=..., sa_restorer=...}.</summary>
    private void SigAction(TextBuffer b, ulong address)
    {
        Span<byte> s = stackalloc byte[32];
        if (address == 0)
        {
            b.Append("NULL");
            return;
        }

        if (!Read(address, s))
        {
            b.AppendHex(address);
            return;
        }

        var handler = BinaryPrimitives.ReadUInt64LittleEndian(s);
        var flags = BinaryPrimitives.ReadUInt64LittleEndian(s[8..]);
        var restorer = BinaryPrimitives.ReadUInt64LittleEndian(s[16..]);
        var mask = BinaryPrimitives.ReadUInt64LittleEndian(s[24..]);
        b.Append("{sa_handler=");
        if (handler == 0) b.Append("SIG_DFL");
        else if (handler == 1) b.Append("SIG_IGN");
        else b.AppendHex(handler);
        b.Append(", sa_mask=");
        SigSet(b, mask);
        b.Append(", sa_flags=");
        Flags(b, flags, SaFlagNames, "0");
        if ((flags & 0x04000000) != 0)
        {
            b.Append(", sa_restorer=");
            b.AppendHex(restorer);
        }

        b.Append('}');
    }

    private static readonly (ulong, string)[] SiCodeNames =
    [
        (0, "SI_USER"), (0x80, "SI_KERNEL"), (unchecked((ulong)-1), "SI_QUEUE"), (unchecked((ulong)-2), "SI_TIMER"),
        (unchecked((ulong)-3), "SI_MESGQ"), (unchecked((ulong)-4), "SI_ASYNCIO"), (unchecked((ulong)-5), "SI_SIGIO"),
        (unchecked((ulong)-6), "SI_TKILL"), (unchecked((ulong)-7), "SI_DETHREAD"), (unchecked((ulong)-60), "SI_ASYNCNL"),
    ];

    private static readonly string[] ChldCodes = ["CLD_EXITED", "CLD_KILLED", "CLD_DUMPED", "CLD_TRAPPED", "CLD_STOPPED", "CLD_CONTINUED"];
    private static readonly string[] SegvCodes = ["SEGV_MAPERR", "SEGV_ACCERR", "SEGV_BNDERR", "SEGV_PKUERR", "SEGV_ACCADI", "SEGV_ADIDERR", "SEGV_ADIPERR", "SEGV_MTEAERR", "SEGV_MTESERR", "SEGV_CPERR"];
    private static readonly string[] BusCodes = ["BUS_ADRALN", "BUS_ADRERR", "BUS_OBJERR", "BUS_MCEERR_AR", "BUS_MCEERR_AO"];
    private static readonly string[] TrapCodes = ["TRAP_BRKPT", "TRAP_TRACE", "TRAP_BRANCH", "TRAP_HWBKPT", "TRAP_UNK", "TRAP_PERF"];
    private static readonly string[] IllCodes = ["ILL_ILLOPC", "ILL_ILLOPN", "ILL_ILLADR", "ILL_ILLTRP", "ILL_PRVOPC", "ILL_PRVREG", "ILL_COPROC", "ILL_BADSTK", "ILL_BADIADDR"];
    private static readonly string[] FpeCodes = ["FPE_INTDIV", "FPE_INTOVF", "FPE_FLTDIV", "FPE_FLTOVF", "FPE_FLTUND", "FPE_FLTRES", "FPE_FLTINV", "FPE_FLTSUB", "FPE_FLTUNK", "FPE_CONDTRAP"];
    private static readonly string[] PollCodes = ["POLL_IN", "POLL_OUT", "POLL_MSG", "POLL_ERR", "POLL_PRI", "POLL_HUP"];

    /// <summary>
    /// The body of a signal line, as strace prints it: {si_signo=SIGCHLD, si_code=CLD_EXITED, si_pid=12, si_uid=0,
    /// si_status=0, si_utime=0, si_stime=0}.
    /// </summary>
    public static void FormatSigInfo(TextBuffer b, int signo, in SigInfo info)
    {
        b.Append("{si_signo=");
        SignalName(b, signo);
        var code = info.Code;
        b.Append(", si_code=");
        string? name = null;
        if (code > 0 && code < 0x80)
        {
            var table = signo switch
            {
                Signals.SIGCHLD => ChldCodes, Signals.SIGSEGV => SegvCodes, Signals.SIGBUS => BusCodes,
                Signals.SIGTRAP => TrapCodes, Signals.SIGILL => IllCodes, Signals.SIGFPE => FpeCodes, Signals.SIGIO => PollCodes,
                _ => null,
            };
            if (table is not null && code - 1 < table.Length) name = table[code - 1];
            if (signo == Signals.SIGSYS && code == 1) name = "SYS_SECCOMP";
        }
        else
        {
            name = Lookup(unchecked((ulong)(long)code), SiCodeNames);
        }

        if (name is not null) b.Append(name);
        else b.AppendInt(code);
        if (info.Errno != 0)
        {
            b.Append(", si_errno=");
            b.AppendInt(info.Errno);
        }

        if (code <= 0 || code == 0x80)
        {
            if (code == -2) // SI_TIMER
            {
                b.Append(", si_timerid=");
                b.AppendHex((uint)info.Pid);
                b.Append(", si_overrun=");
                b.AppendInt((int)info.Uid);
            }
            else if (code != 0x80 || signo is not (Signals.SIGSEGV or Signals.SIGBUS))
            {
                b.Append(", si_pid=");
                b.AppendInt(info.Pid);
                b.Append(", si_uid=");
                b.AppendUInt(info.Uid);
            }
            else
            {
                b.Append(", si_addr=");
                Ptr(b, info.Address);
            }

            if (code is -1 or -2 or -3)
            {
                b.Append(", si_int=");
                b.AppendInt((int)info.Value);
                b.Append(", si_ptr=");
                b.AppendHex(info.Value);
            }
        }
        else if (signo == Signals.SIGCHLD)
        {
            b.Append(", si_pid=");
            b.AppendInt(info.Pid);
            b.Append(", si_uid=");
            b.AppendUInt(info.Uid);
            b.Append(", si_status=");
            if (code == 1) b.AppendInt(info.Status);
            else SignalName(b, info.Status);
            b.Append(", si_utime=");
            b.AppendInt(info.UserTime);
            b.Append(", si_stime=");
            b.AppendInt(info.SystemTime);
        }
        else if (signo is Signals.SIGSEGV or Signals.SIGBUS or Signals.SIGILL or Signals.SIGFPE or Signals.SIGTRAP)
        {
            b.Append(", si_addr=");
            Ptr(b, info.Address);
        }

        b.Append('}');
    }
}
