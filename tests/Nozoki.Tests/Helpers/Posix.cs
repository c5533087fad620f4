using System.Runtime.InteropServices;
using Nozoki.Native;

namespace Nozoki.Tests.Helpers;

/// <summary>The few libc calls the tests make themselves, through the library's Native layer (the one place P/Invoke lives).</summary>
internal static class Posix
{
    public const int SIGHUP = Signals.SIGHUP;
    public const int SIGINT = Signals.SIGINT;
    public const int SIGKILL = Signals.SIGKILL;
    public const int SIGUSR1 = Signals.SIGUSR1;
    public const int SIGUSR2 = Signals.SIGUSR2;
    public const int SIGTERM = Signals.SIGTERM;
    public const int SIGCONT = Signals.SIGCONT;
    public const int SIGSTOP = Signals.SIGSTOP;

    public static uint GetEuid() => Libc.geteuid();

    /// <summary>kill(2); fails the test if the call fails.</summary>
    public static void Kill(int pid, int signo)
    {
        if (Libc.kill(pid, signo) != 0)
            Assert.Fail($"kill({pid}, {signo}) failed: errno {Marshal.GetLastPInvokeError()}");
    }

    /// <summary>kill(2) that ignores failures (for cleanup).</summary>
    public static void TryKill(int pid, int signo) => _ = Libc.kill(pid, signo);
}
