using System.Runtime.InteropServices;
using Nozoki.Native;
using Nozoki.Tracing;

namespace Nozoki.Tests.Helpers;

/// <summary>
/// Stops one thread of a running process for as long as an action runs: PTRACE_SEIZE + PTRACE_INTERRUPT from a
/// dedicated thread (every ptrace call of a tracee must come from the thread that attached), the registers read with
/// PTRACE_GETREGS, then PTRACE_DETACH, which lets the thread run on (a read(2) it was blocked in is restarted).
/// </summary>
internal static unsafe class StoppedThread
{
    public static T With<T>(int tid, Func<X86Registers, T> action)
    {
        T result = default!;
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                result = Run(tid, action);
            }
            catch (Exception e)
            {
                failure = e;
            }
        }) { IsBackground = true, Name = "StoppedThread " + tid };
        thread.Start();
        if (!thread.Join(TimeSpan.FromSeconds(60))) Assert.Fail($"stopping thread {tid} did not finish within 60 s");
        if (failure is not null) throw new InvalidOperationException($"with thread {tid} stopped: {failure.Message}", failure);
        return result;
    }

    private static T Run<T>(int tid, Func<X86Registers, T> action)
    {
        if (Libc.ptrace(Ptrace.SEIZE, tid, 0, 0) != 0) Fail("PTRACE_SEIZE", tid);
        try
        {
            if (Libc.ptrace(Ptrace.INTERRUPT, tid, 0, 0) != 0) Fail("PTRACE_INTERRUPT", tid);
            int status;
            int rc;
            do rc = Libc.waitpid(tid, &status, Wait.WALL);
            while (rc < 0 && Marshal.GetLastPInvokeError() == Errno.EINTR);
            if (rc != tid || !Wait.IfStopped(status)) Assert.Fail($"waitpid({tid}) gave {rc}, status 0x{status:x}, not a stop");
            if (!PtraceCalls.GetRegs(tid, out var regs).IsOk) Fail("PTRACE_GETREGS", tid);
            return action(X86Registers.From(regs));
        }
        finally
        {
            _ = Libc.ptrace(Ptrace.DETACH, tid, 0, 0);
        }
    }

    private static void Fail(string what, int tid) =>
        Assert.Fail($"{what} of {tid} failed: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
}
