namespace Nozoki.Syscalls;

/// <summary>
/// x86_64 numbers (asm/unistd_64.h) of the syscalls that move bytes to a file descriptor, change what a descriptor number refers to, or copy a
/// descriptor table (fork). The full table is <see cref="Nr"/> (generated from the kernel headers); these names are the ones the output mirror uses.
/// </summary>
public static class SyscallNumbers
{
    public const long Write = Nr.Write;
    public const long Close = Nr.Close;
    public const long Dup2 = Nr.Dup2;
    public const long Execve = Nr.Execve;
    public const long Dup3 = Nr.Dup3;
    public const long Execveat = Nr.Execveat;
    public const long CloseRange = Nr.CloseRange;
    public const long Pwrite64 = Nr.Pwrite64;
    public const long Writev = Nr.Writev;
    public const long Sendfile = Nr.Sendfile;
    public const long Sendto = Nr.Sendto;
    public const long Sendmsg = Nr.Sendmsg;
    public const long Splice = Nr.Splice;
    public const long Vmsplice = Nr.Vmsplice;
    public const long Pwritev = Nr.Pwritev;
    public const long Sendmmsg = Nr.Sendmmsg;
    public const long CopyFileRange = Nr.CopyFileRange;
    public const long Pwritev2 = Nr.Pwritev2;
    public const long Clone = Nr.Clone;
    public const long Fork = Nr.Fork;
    public const long Vfork = Nr.Vfork;
    public const long Clone3 = Nr.Clone3;
}
