using Nozoki.Native;

namespace Nozoki;

/// <summary>Signal numbers for x86_64 (asm/signal.h) and their names.</summary>
public static class Signals
{
    public const int SIGHUP = 1, SIGINT = 2, SIGQUIT = 3, SIGILL = 4, SIGTRAP = 5, SIGABRT = 6, SIGBUS = 7, SIGFPE = 8,
        SIGKILL = 9, SIGUSR1 = 10, SIGSEGV = 11, SIGUSR2 = 12, SIGPIPE = 13, SIGALRM = 14, SIGTERM = 15, SIGSTKFLT = 16,
        SIGCHLD = 17, SIGCONT = 18, SIGSTOP = 19, SIGTSTP = 20, SIGTTIN = 21, SIGTTOU = 22, SIGURG = 23, SIGXCPU = 24,
        SIGXFSZ = 25, SIGVTALRM = 26, SIGPROF = 27, SIGWINCH = 28, SIGIO = 29, SIGPWR = 30, SIGSYS = 31;

    private static readonly string[] Names =
    [
        "0", "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE", "SIGKILL", "SIGUSR1",
        "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGSTKFLT", "SIGCHLD", "SIGCONT", "SIGSTOP", "SIGTSTP",
        "SIGTTIN", "SIGTTOU", "SIGURG", "SIGXCPU", "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO", "SIGPWR", "SIGSYS",
    ];

    /// <summary>Name as strace prints it: SIGTERM, SIGRT_3, or the bare number when unknown.</summary>
    public static string Name(int signo) =>
        signo > 0 && signo < Names.Length ? Names[signo]
        : signo == 32 ? "SIGRTMIN" : signo > 32 && signo <= 64 ? $"SIGRT_{signo - 32}" : signo.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Sends signo to the process pid (kill(2)); the result says why it could not (ESRCH: no such process).</summary>
    public static SysResult Send(int pid, int signo) =>
        Libc.kill(pid, signo) == 0 ? SysResult.Ok : new SysResult(System.Runtime.InteropServices.Marshal.GetLastPInvokeError());

    /// <summary>The signals whose default action stops the process (job control).</summary>
    public static bool IsStopSignal(int signo) => signo is SIGSTOP or SIGTSTP or SIGTTIN or SIGTTOU;
}
