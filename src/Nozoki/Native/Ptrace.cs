using System.Runtime.InteropServices;

namespace Nozoki.Native;

/// <summary>ptrace(2) requests, options and events (linux/ptrace.h).</summary>
internal static class Ptrace
{
    internal const long PEEKDATA = 2;
    internal const long POKEDATA = 5;
    internal const long GETREGS = 12;
    internal const long SETREGS = 13;
    internal const long DETACH = 17;
    internal const long CONT = 7;
    internal const long SINGLESTEP = 9;
    internal const long GETREGSET = 0x4204;
    internal const long SETREGSET = 0x4205;
    internal const long SYSCALL = 24;
    internal const long SETOPTIONS = 0x4200;
    internal const long GETEVENTMSG = 0x4201;
    internal const long GETSIGINFO = 0x4202;
    internal const long SEIZE = 0x4206;
    internal const long INTERRUPT = 0x4207;
    internal const long LISTEN = 0x4208;
    internal const long GETSIGMASK = 0x420a;
    internal const long SETSIGMASK = 0x420b;
    internal const long GET_SYSCALL_INFO = 0x420e;

    internal const int O_TRACESYSGOOD = 0x01;
    internal const int O_TRACEFORK = 0x02;
    internal const int O_TRACEVFORK = 0x04;
    internal const int O_TRACECLONE = 0x08;
    internal const int O_TRACEEXEC = 0x10;
    internal const int O_TRACEVFORKDONE = 0x20;
    internal const int O_TRACEEXIT = 0x40;
    internal const int O_TRACESECCOMP = 0x80;
    internal const int O_EXITKILL = 0x100000;

    internal const int EVENT_FORK = 1;
    internal const int EVENT_VFORK = 2;
    internal const int EVENT_CLONE = 3;
    internal const int EVENT_EXEC = 4;
    internal const int EVENT_VFORK_DONE = 5;
    internal const int EVENT_EXIT = 6;
    internal const int EVENT_SECCOMP = 7;
    internal const int EVENT_STOP = 128;

    // Register sets for PTRACE_GETREGSET/SETREGSET (linux/elf.h NT_*).
    internal const int NT_PRSTATUS = 1;
    internal const int NT_PRFPREG = 2;
    internal const int NT_X86_XSTATE = 0x202;

    // si_code of SIGTRAP (asm-generic/siginfo.h): an int3 gives SI_KERNEL, a single-step TRAP_TRACE.
    internal const int TRAP_BRKPT = 1;
    internal const int TRAP_TRACE = 2;

    internal const byte SYSCALL_INFO_NONE = 0;
    internal const byte SYSCALL_INFO_ENTRY = 1;
    internal const byte SYSCALL_INFO_EXIT = 2;
    internal const byte SYSCALL_INFO_SECCOMP = 3;
}

/// <summary>waitpid(2) options and status decoding.</summary>
internal static class Wait
{
    internal const int WNOHANG = 1;
    internal const int WALL = 0x40000000;
    internal const int WNOTHREAD = 0x20000000;

    /// <summary>
    /// What a session's ptrace thread waits for: any child or tracee (__WALL) of this thread only (__WNOTHREAD), so
    /// that sessions on other threads, and children the host program started, are never reaped by it.
    /// </summary>
    internal const int Tracees = WALL | WNOTHREAD;

    internal static bool IfExited(int s) => (s & 0x7f) == 0;
    internal static int ExitStatus(int s) => (s >> 8) & 0xff;
    internal static bool IfSignaled(int s) => ((sbyte)((s & 0x7f) + 1) >> 1) > 0;
    internal static int TermSig(int s) => s & 0x7f;
    internal static bool IfStopped(int s) => (s & 0xff) == 0x7f;
    internal static int StopSig(int s) => (s >> 8) & 0xff;
    internal static int Event(int s) => (s >> 16) & 0xff;
}

/// <summary>struct ptrace_syscall_info (linux/ptrace.h, kernel 5.3+).</summary>
[StructLayout(LayoutKind.Explicit, Size = 88)]
internal unsafe struct PtraceSyscallInfo
{
    [FieldOffset(0)] public byte Op;
    [FieldOffset(4)] public uint Arch;
    [FieldOffset(8)] public ulong InstructionPointer;
    [FieldOffset(16)] public ulong StackPointer;
    // entry and seccomp: nr then args[6]
    [FieldOffset(24)] public ulong Nr;
    [FieldOffset(32)] public fixed ulong Args[6];
    // exit: rval, is_error
    [FieldOffset(24)] public long ReturnValue;
    [FieldOffset(32)] public byte IsError;
    [FieldOffset(80)] public uint SeccompRetData;

    public readonly ulong Arg(int index) => Args[index];
}

/// <summary>struct user_regs_struct for x86_64 (sys/user.h).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct UserRegs
{
    public ulong R15, R14, R13, R12, Rbp, Rbx, R11, R10, R9, R8, Rax, Rcx, Rdx, Rsi, Rdi, OrigRax, Rip, Cs, Eflags, Rsp, Ss, FsBase, GsBase, Ds, Es, Fs, Gs;
}
