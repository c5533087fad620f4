using Nozoki.Native;

namespace Nozoki.Cli.Output;

/// <summary>
/// nozoki's own stdout (fd 1) and stderr (fd 2), written unbuffered with write(2). Console streams swallow EPIPE,
/// and a FileStream would pwrite at an offset of its own; this reports EPIPE, which is how nozoki learns that its
/// reader has gone, and appends like any shell redirection expects. Any other failure (a full disk, an I/O error)
/// loses output and is an <see cref="OutputFailedException"/>, to be reported. <paramref name="name"/> names the
/// destination in that error: a file's path, or stdout/stderr.
/// A write to a pipe, FIFO, terminal or socket whose reader does not read must not hold nozoki (and so the tracee)
/// for ever once nozoki is told to stop: those are written through a private non-blocking description and wait in
/// poll, which <see cref="Abandon"/> ends. What is then not written is counted (<see cref="Dropped"/>), never lost
/// silently.
/// </summary>
internal sealed class FdWriter(int fd, string name)
{
    public static readonly FdWriter Stdout = new(1, "stdout");
    public static readonly FdWriter Stderr = new(2, "stderr");

    private readonly int _fd = fd;

    private static readonly Lazy<int> AbandonSignal = new(Fd.CreateAbandonSignal);
    private static volatile bool s_abandoned;
    private static long s_dropped;

    private readonly Lock _prepare = new();
    private bool _prepared;
    private int _writeFd = -1;
    private bool _waitable;
    private bool _socket;

    /// <summary>
    /// From any thread (a signal handler's): writes blocked on a full pipe or terminal give up now, and later ones
    /// write what fits at once; the rest is counted in <see cref="Dropped"/>.
    /// </summary>
    public static void Abandon()
    {
        s_abandoned = true;
        if (AbandonSignal.Value >= 0) Fd.RaiseAbandonSignal(AbandonSignal.Value);
    }

    /// <summary>Bytes of nozoki's output given up after <see cref="Abandon"/> because the reader did not take them.</summary>
    public static long Dropped => Interlocked.Read(ref s_dropped);

    /// <summary>After the session: says how much output was given up, if any (on stderr, which may itself be full).</summary>
    public static void ReportDropped()
    {
        if (Dropped > 0)
            Stderr.Write(System.Text.Encoding.UTF8.GetBytes($"nozoki: {Dropped} bytes of output were dropped: the reader did not take them before nozoki was told to stop\n"));
    }

    public void Write(ReadOnlySpan<byte> data)
    {
        Prepare();
        int errno;
        if (_waitable)
        {
            errno = Fd.WriteAllUnlessAbandoned(_writeFd, _socket, data, AbandonSignal.Value, once: s_abandoned, out var written);
            if (errno == -1)
            {
                Interlocked.Add(ref s_dropped, data.Length - written);
                return;
            }
        }
        else
        {
            errno = Fd.WriteAll(_fd, data);
        }

        if (errno == 0) return;
        if (errno == Errno.EPIPE) throw new OutputClosedException(new IOException($"write to {name}: {Libc.StrError(errno)}"));
        throw new OutputFailedException(Describe(), errno);
    }

    /// <summary>stdout and stderr with what they were redirected to, as in `stdout (/dev/full)`.</summary>
    private string Describe()
    {
        if (_fd > 2) return name;
        try
        {
            var target = new FileInfo($"/proc/self/fd/{_fd}").LinkTarget;
            return target is null ? name : $"{name} ({target})";
        }
        catch (IOException)
        {
            return name;
        }
    }

    /// <summary>
    /// Writes whole lines in writes of at most PIPE_BUF (4096) bytes: a pipe shared with other writers (the traced
    /// command's own output) gets each write in one piece, so no line of ours is cut by theirs.
    /// </summary>
    public void WriteLines(ReadOnlySpan<byte> data)
    {
        const int PipeBuf = 4096;
        while (data.Length > PipeBuf)
        {
            var cut = data[..PipeBuf].LastIndexOf((byte)'\n') + 1;
            if (cut == 0) cut = PipeBuf; // a line longer than PIPE_BUF cannot be written in one piece anyway
            Write(data[..cut]);
            data = data[cut..];
        }

        if (!data.IsEmpty) Write(data);
    }

    /// <summary>Once, on first use: a pipe, FIFO or terminal gets a private non-blocking description; a socket is sent to with MSG_DONTWAIT.</summary>
    private void Prepare()
    {
        if (_prepared) return;
        lock (_prepare)
        {
            if (_prepared) return;
            _writeFd = _fd;
            var type = Fd.FileType(_fd);
            if (AbandonSignal.Value >= 0)
            {
                if (type == Libc.S_IFSOCK)
                {
                    _socket = _waitable = true;
                }
                else if (type is Libc.S_IFIFO or Libc.S_IFCHR)
                {
                    var own = Fd.OpenNonBlocking(_fd);
                    if (own >= 0)
                    {
                        _writeFd = own;
                        _waitable = true;
                    }
                }
            }

            _prepared = true;
        }
    }
}
