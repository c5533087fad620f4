using Nozoki.Native;

namespace Nozoki.Cli.Output;

/// <summary>
/// nozoki's own stdout (fd 1) and stderr (fd 2), written unbuffered with write(2). Console streams swallow EPIPE,
/// and a FileStream would pwrite at an offset of its own; this reports EPIPE, which is how nozoki learns that its
/// reader has gone, and appends like any shell redirection expects. Any other failure (a full disk, an I/O error)
/// loses output and is an <see cref="OutputFailedException"/>, to be reported. <paramref name="name"/> names the
/// destination in that error: a file's path, or stdout/stderr.
/// </summary>
internal readonly struct FdWriter(int fd, string name)
{
    public static readonly FdWriter Stdout = new(1, "stdout");
    public static readonly FdWriter Stderr = new(2, "stderr");

    public void Write(ReadOnlySpan<byte> data)
    {
        var errno = Fd.WriteAll(fd, data);
        if (errno == 0) return;
        if (errno == Errno.EPIPE) throw new OutputClosedException(new IOException($"write to {name}: {Libc.StrError(errno)}"));
        throw new OutputFailedException(Describe(), errno);
    }

    /// <summary>stdout and stderr with what they were redirected to, as in `stdout (/dev/full)`.</summary>
    private string Describe()
    {
        if (fd > 2) return name;
        try
        {
            var target = new FileInfo($"/proc/self/fd/{fd}").LinkTarget;
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
}
