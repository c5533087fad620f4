using System.Runtime.InteropServices;

namespace Nozoki.Tests.Helpers;

/// <summary>The few libc calls the tests need themselves (independent of the library under test).</summary>
internal static partial class Posix
{
    public const int SIGHUP = 1;
    public const int SIGINT = 2;
    public const int SIGKILL = 9;
    public const int SIGUSR1 = 10;
    public const int SIGTERM = 15;
    public const int SIGCONT = 18;
    public const int SIGSTOP = 19;

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int SysKill(int pid, int signo);

    [LibraryImport("libc", EntryPoint = "geteuid")]
    public static partial uint GetEuid();

    /// <summary>kill(2); fails the test if the call fails.</summary>
    public static void Kill(int pid, int signo)
    {
        if (SysKill(pid, signo) != 0)
            Assert.Fail($"kill({pid}, {signo}) failed: errno {Marshal.GetLastPInvokeError()}");
    }

    /// <summary>kill(2) that ignores failures (for cleanup).</summary>
    public static void TryKill(int pid, int signo) => _ = SysKill(pid, signo);
}
