using System.Runtime.InteropServices;

namespace Nozoki.Native;

/// <summary>Small file-descriptor calls behind <see cref="Output.FdWriter"/>.</summary>
internal static unsafe class Fd
{
    internal static bool IsTerminal(int fd) => Libc.isatty(fd) == 1;

    /// <summary>
    /// write(2) until every byte is out, at the descriptor's own file offset (a FileStream would pwrite at an offset
    /// of its own and overwrite a redirected file). A failure is the errno that stopped it (EPIPE: reader gone).
    /// </summary>
    internal static SysResult WriteAll(int fd, ReadOnlySpan<byte> data)
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

                return new SysResult(errno);
            }

            return SysResult.Ok;
        }
    }

    /// <summary>What kind of file fd is open on (S_IFMT bits of its mode), or 0 if fstat fails.</summary>
    internal static uint FileType(int fd)
    {
        StatBuf st;
        return Libc.fstat(fd, &st) == 0 ? st.Mode & Libc.S_IFMT : 0;
    }

    /// <summary>
    /// A new, non-blocking open file description of the pipe, FIFO or terminal fd is open on (via /proc/self/fd), so
    /// that nozoki's own writes can wait in poll rather than in write(2) without setting O_NONBLOCK on a description
    /// it shares with others (a shell, a launched command). -1 when that cannot be done.
    /// </summary>
    internal static int OpenNonBlocking(int fd) =>
        Libc.open($"/proc/self/fd/{fd}", Libc.O_WRONLY | Libc.O_NONBLOCK | Libc.O_NOCTTY | Libc.O_CLOEXEC);

    /// <summary>
    /// A new open file description of the terminal or pipe fd is open on (opened via /proc/self/fd, which for these
    /// opens the same terminal or pipe), with fd's access mode and status flags (O_APPEND, O_NONBLOCK), close-on-exec
    /// here. Two descriptions of one terminal write to the same place, but kcmp(KCMP_FILE) tells them apart, and so
    /// does everything that belongs to a description (its status flags). A FIFO whose reader has gone gives ENXIO
    /// (opened without waiting for one); a file of another kind gives ENXIO too: a regular file's description has an
    /// offset of its own (two of them would overwrite each other's bytes), and a socket cannot be opened at all.
    /// </summary>
    internal static SysResult OpenAnew(int fd, out int newFd)
    {
        newFd = -1;
        var flags = Libc.fcntl(fd, Libc.F_GETFL, 0);
        if (flags < 0) return SysResult.LastPInvokeError();
        var type = FileType(fd);
        if (!(type == Libc.S_IFIFO || (type == Libc.S_IFCHR && IsTerminal(fd)))) return new SysResult(Errno.ENXIO);
        var opened = Libc.open($"/proc/self/fd/{fd}", (flags & Libc.O_ACCMODE) | Libc.O_NOCTTY | Libc.O_CLOEXEC | Libc.O_NONBLOCK);
        if (opened < 0) return SysResult.LastPInvokeError();
        // F_SETFL sets the status flags only (the access mode and creation flags are ignored): O_NONBLOCK back as it was.
        if (Libc.fcntl(opened, Libc.F_SETFL, flags) < 0)
        {
            var error = SysResult.LastPInvokeError();
            Libc.close(opened);
            return error;
        }

        newFd = opened;
        return SysResult.Ok;
    }

    /// <summary>An eventfd that tells blocked writers to give up (see <see cref="WriteAllUnlessAbandoned"/>).</summary>
    internal static int CreateAbandonSignal() => Libc.eventfd(0, Libc.EFD_CLOEXEC | Libc.EFD_NONBLOCK);

    internal static void RaiseAbandonSignal(int eventFd)
    {
        ulong one = 1;
        Libc.write(eventFd, (byte*)&one, 8);
    }

    /// <summary>
    /// Writes data to a non-blocking fd (a socket: sent with MSG_DONTWAIT), waiting in poll while it is full, until
    /// every byte is out or abandonFd becomes readable (abandoned, which is no failure). A failure is the errno that
    /// stopped it; written says how many bytes went out. With once, it gives up (abandoned) at the first EAGAIN.
    /// </summary>
    internal static SysResult WriteAllUnlessAbandoned(int fd, bool socket, ReadOnlySpan<byte> data, int abandonFd, bool once, out int written, out bool abandoned)
    {
        written = 0;
        abandoned = false;
        var pfds = stackalloc PollFd[2];
        fixed (byte* p = data)
        {
            while (written < data.Length)
            {
                var n = socket
                    ? Libc.send(fd, p + written, (nuint)(data.Length - written), Libc.MSG_DONTWAIT | MsgNoSignal)
                    : Libc.write(fd, p + written, (nuint)(data.Length - written));
                if (n > 0)
                {
                    written += (int)n;
                    continue;
                }

                var errno = n == 0 ? Errno.EIO : Marshal.GetLastPInvokeError();
                if (errno == Errno.EINTR) continue;
                if (errno != Errno.EAGAIN) return new SysResult(errno);
                abandoned = once;
                if (once) return SysResult.Ok;
                pfds[0] = new PollFd { Fd = fd, Events = Libc.POLLOUT };
                pfds[1] = new PollFd { Fd = abandonFd, Events = Libc.POLLIN };
                var r = Libc.poll(pfds, abandonFd >= 0 ? 2UL : 1UL, -1);
                if (r < 0 && Marshal.GetLastPInvokeError() != Errno.EINTR) return SysResult.LastPInvokeError();
                abandoned = abandonFd >= 0 && (pfds[1].Revents & Libc.POLLIN) != 0;
                if (abandoned) return SysResult.Ok;
            }

            return SysResult.Ok;
        }
    }

    // send(2) would raise SIGPIPE where write(2) on a socket returns EPIPE with SIGPIPE ignored (as .NET does).
    private const int MsgNoSignal = 0x4000;

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
