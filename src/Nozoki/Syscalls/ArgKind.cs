namespace Nozoki.Syscalls;

/// <summary>
/// How one syscall argument is shown. Kinds named Out* are filled in by the kernel: they are decoded at syscall
/// exit, and every argument after the first of them is decoded at exit too (strace's model: "read(3, " at entry,
/// "\"...\", 832) = 832" at exit).
/// </summary>
internal enum ArgKind : byte
{
    Int, UInt, Long, ULong, Hex, Ptr,
    Fd, DirFd, Path, Str, OutPath,
    InBuf, OutBuf, OutLinkBuf,
    OpenFlags, OpenMode, Mode, AccessMode, AtFlags,
    Prot, MapFlags, MremapFlags, MsyncFlags, Madvice,
    Clone, Clone3, CloneFlags,
    Signal, SigHow, SigSet, OutSigSet, SigAction, OutSigAction,
    Fcntl, SockDomain, SockType, SockProto, SockFlags, MsgFlags, ShutHow, SockAddr, OutSockAddr,
    PollFds, EpollOp, EpollEvent, OutEpollEvents,
    WaitOptions, OutWaitStatus,
    Prctl, ArchPrctl, Whence, FutexOp,
    OutStat, OutStatx, StatxMask,
    Timespec, OutTimespec, OutTimeval, ClockId,
    Iovec, OutIovec, OutPipe, OutDirents,
    Argv, Envp, IoctlRequest, IoctlArg, GetrandomFlags,
    RlimitResource, Rlimit, OutRlimit, Fadvice, FdFlags, EpollFlags, SigFrame,
    OutUtsname, OutSysinfo, OutStatfs, OutGids, Gids, OutCpuSet, CpuSet,
}

internal static class ArgKinds
{
    /// <summary>Decoded at syscall exit: the kernel writes it (PollFds is read at entry and its revents shown at exit).</summary>
    public static bool IsOut(ArgKind k) => k is ArgKind.OutPath or ArgKind.OutBuf or ArgKind.OutLinkBuf or ArgKind.OutSigSet
        or ArgKind.OutSigAction or ArgKind.OutSockAddr or ArgKind.OutEpollEvents or ArgKind.OutWaitStatus or ArgKind.OutStat
        or ArgKind.OutStatx or ArgKind.OutTimespec or ArgKind.OutTimeval or ArgKind.OutIovec or ArgKind.OutPipe
        or ArgKind.OutDirents or ArgKind.IoctlArg or ArgKind.OutRlimit
        or ArgKind.OutUtsname or ArgKind.OutSysinfo or ArgKind.OutStatfs or ArgKind.OutGids or ArgKind.OutCpuSet;
}

/// <summary>How a syscall's return value is shown.</summary>
internal enum ReturnKind : byte
{
    Int,
    Fd,
    Hex,

    /// <summary>Octal (umask).</summary>
    Octal,

    /// <summary>Never returns (exit, exit_group): "= ?".</summary>
    None,
}

/// <summary>strace's syscall classes, as used by -e trace=%file etc.</summary>
[Flags]
public enum SyscallClass : ushort
{
    None = 0,
    File = 1,
    Desc = 2,
    Process = 4,
    Network = 8,
    Signal = 16,
    Ipc = 32,
    Memory = 64,
    Stat = 128,
}
