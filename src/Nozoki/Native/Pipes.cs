using System.Runtime.InteropServices;

namespace Nozoki.Native;

internal static unsafe class Pipes
{
    /// <summary>pipe2(O_CLOEXEC): neither end leaks into a spawned program unless dup2'd onto 0/1/2.</summary>
    internal static (int Read, int Write) Create()
    {
        var fds = stackalloc int[2];
        if (Libc.pipe2(fds, Libc.O_CLOEXEC) != 0) throw new IOException($"pipe2: {Libc.StrError(Marshal.GetLastPInvokeError())}");
        return (fds[0], fds[1]);
    }
}
