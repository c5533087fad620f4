namespace Nozoki.Syscalls;

/// <summary>
/// x86_64 numbers (asm/unistd_64.h) of the syscalls that move bytes to a file descriptor, or change what a descriptor number refers to. The full table with every
/// number the kernel headers define comes with the syscall tracer; the output mirror needs only these.
/// </summary>
public static class SyscallNumbers
{
    public const long Write = 1;
    public const long Close = 3;
    public const long Dup2 = 33;
    public const long Execve = 59;
    public const long Dup3 = 292;
    public const long Execveat = 322;
    public const long CloseRange = 436;
    public const long Pwrite64 = 18;
    public const long Writev = 20;
    public const long Sendfile = 40;
    public const long Sendto = 44;
    public const long Sendmsg = 46;
    public const long Splice = 275;
    public const long Vmsplice = 278;
    public const long Pwritev = 296;
    public const long Sendmmsg = 307;
    public const long CopyFileRange = 326;
    public const long Pwritev2 = 328;
}
