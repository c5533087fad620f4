using Microsoft.Win32.SafeHandles;
using Nozoki.Native;

namespace Nozoki.Output;

/// <summary>
/// A file descriptor of this process (its stdout, its stderr, a file it opened), written unbuffered with write(2).
/// Console streams swallow EPIPE, and a FileStream would pwrite at an offset of its own; this reports EPIPE as
/// <see cref="OutputClosedException"/>, which is how a program learns that its reader has gone, and appends like
/// any shell redirection expects. Any other failure (a full disk, an I/O error) loses output and is an
/// <see cref="OutputFailedException"/>, to be reported. <paramref name="name"/> names the destination in that
/// error: a file's path, or stdout/stderr.
/// A write to a pipe, FIFO, terminal or socket whose reader does not read must not hold nozoki (and so the tracee)
/// for ever once nozoki is told to stop: those are written through a private non-blocking description and wait in
/// poll, which <see cref="Abandon"/> ends. What is then not written is counted (<see cref="Dropped"/>), never lost
/// silently. The writer does not own fd (see <see cref="Create"/> for one that does); it is safe from several
/// threads as long as each write is meant to go out whole on its own.
/// </summary>
/// <param name="fd">The file descriptor; it stays open after the writer.</param>
/// <param name="name">How errors name the destination.</param>
public sealed class FdWriter(int fd, string name) : IDisposable
{
    /// <summary>This process's fd 1.</summary>
    public static readonly FdWriter Stdout = new(1, "stdout");

    /// <summary>This process's fd 2.</summary>
    public static readonly FdWriter Stderr = new(2, "stderr");

    private readonly int _fd = fd;
    private SafeFileHandle? _owned;

    /// <summary>The file descriptor written to.</summary>
    public int Fd => _fd;

    /// <summary>How errors name the destination.</summary>
    public string Name => name;

    /// <summary>Whether the descriptor is a terminal (isatty(3)), as a program deciding whether to colour its output asks.</summary>
    public bool IsTerminal => Native.Fd.IsTerminal(_fd);

    /// <summary>
    /// Opens path for writing as strace opens -o FILE (O_WRONLY|O_CREAT|O_TRUNC, mode 0666 less the umask) and
    /// returns a writer that owns the descriptor (Dispose closes it). Throws <see cref="OutputOpenException"/> with
    /// the errno: "Is a directory", "Permission denied", ...
    /// </summary>
    public static FdWriter Create(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        var handle = PathFiles.OpenForWriting(path, out var opened) ?? throw new OutputOpenException(path, opened);
        return new FdWriter((int)handle.DangerousGetHandle(), path) { _owned = handle };
    }

    /// <summary>
    /// Writes every byte of data to fd with write(2), at its own file offset, retrying EINTR and waiting in poll on
    /// EAGAIN. No exception: the result says why it stopped (EPIPE: reader gone). For a caller that must not throw
    /// (an observer on a session's ptrace thread writing to a descriptor it shares with the tracee).
    /// </summary>
    public static SysResult TryWriteAll(int fd, ReadOnlySpan<byte> data) => Native.Fd.WriteAll(fd, data);

    /// <summary>
    /// Blocks until the peer of the descriptor hangs up (a pipe whose reader has gone, a terminal hung up): how a
    /// program notices `| head -1` has ended while it has nothing to write. False if that cannot be waited for.
    /// Run it on a thread of its own.
    /// </summary>
    public bool WaitForHangup() => Native.Fd.WaitForHangup(_fd);

    /// <summary>Closes the descriptor if this writer opened it (<see cref="Create"/>); otherwise does nothing.</summary>
    public void Dispose() => _owned?.Dispose();

    private static readonly Lazy<int> AbandonSignal = new(Native.Fd.CreateAbandonSignal);
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
        if (AbandonSignal.Value >= 0) Native.Fd.RaiseAbandonSignal(AbandonSignal.Value);
    }

    /// <summary>Bytes of nozoki's output given up after <see cref="Abandon"/> because the reader did not take them.</summary>
    public static long Dropped => Interlocked.Read(ref s_dropped);

    /// <summary>
    /// Writes every byte, or throws: <see cref="OutputClosedException"/> when the reader has gone (EPIPE),
    /// <see cref="OutputFailedException"/> for any other failure. After <see cref="Abandon"/>, what a full pipe,
    /// FIFO, terminal or socket does not take at once is counted in <see cref="Dropped"/> instead.
    /// </summary>
    public void Write(ReadOnlySpan<byte> data)
    {
        Prepare();
        SysResult result;
        if (_waitable)
        {
            result = Native.Fd.WriteAllUnlessAbandoned(_writeFd, _socket, data, AbandonSignal.Value, once: s_abandoned, out var written, out var abandoned);
            if (abandoned)
            {
                Interlocked.Add(ref s_dropped, data.Length - written);
                return;
            }
        }
        else
        {
            result = Native.Fd.WriteAll(_fd, data);
        }

        if (result.IsOk) return;
        if (result.IsBrokenPipe) throw new OutputClosedException($"write to {name}: {result.Message}");
        throw new OutputFailedException(Describe(), result);
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
            var type = Native.Fd.FileType(_fd);
            if (AbandonSignal.Value >= 0)
            {
                if (type == Libc.S_IFSOCK)
                {
                    _socket = _waitable = true;
                }
                else if (type is Libc.S_IFIFO or Libc.S_IFCHR)
                {
                    var own = Native.Fd.OpenNonBlocking(_fd);
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
