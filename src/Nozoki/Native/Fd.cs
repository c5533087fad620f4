using System.Runtime.InteropServices;

namespace Nozoki.Native;

/// <summary>Small file-descriptor queries the CLI needs (it declares no P/Invoke of its own).</summary>
internal static unsafe class Fd
{
    internal static bool IsTerminal(int fd) => Libc.isatty(fd) == 1;

    /// <summary>
    /// write(2) until every byte is out, at the descriptor's own file offset (a FileStream would pwrite at an offset
    /// of its own and overwrite a redirected file). Returns 0 or the errno that stopped it (EPIPE: reader gone).
    /// </summary>
    internal static int WriteAll(int fd, ReadOnlySpan<byte> data)
    {
        fixed (byte* p = data)
        {
            var done = 0;
            while (done < data.Length)
            {
                var n = Libc.write(fd, p + done, (nuint)(data.Length - done));
                if (n > 0)
                {
                    done += (int)n;
                    continue;
                }

                var errno = n == 0 ? Errno.EIO : Marshal.GetLastPInvokeError();
                if (errno == Errno.EINTR) continue;
                if (errno == Errno.EAGAIN)
                {
                    // An inherited non-blocking descriptor: wait until it takes more.
                    var pfd = new PollFd { Fd = fd, Events = Libc.POLLOUT };
                    Libc.poll(&pfd, 1, -1);
                    continue;
                }

                return errno;
            }

            return 0;
        }
    }

    /// <summary>
    /// Blocks until the peer of fd hangs up (a pipe whose reader has gone: POLLERR; a terminal hung up: POLLHUP).
    /// Asking for no events means only those conditions wake it. Returns false if poll fails.
    /// </summary>
    internal static bool WaitForHangup(int fd)
    {
        var p = new PollFd { Fd = fd, Events = 0 };
        while (true)
        {
            var r = Libc.poll(&p, 1, -1);
            if (r > 0) return (p.Revents & (Libc.POLLERR | Libc.POLLHUP)) != 0;
            if (r < 0 && Marshal.GetLastPInvokeError() != Errno.EINTR) return false;
        }
    }
}
