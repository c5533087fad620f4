using System.Text;
using Nozoki.Mirror;
using Nozoki.Tracing;

namespace Nozoki.Cli.Output;

/// <summary>
/// Mirrored bytes as they were written: fd 1 to nozoki's stdout, fd 2 to its stderr (optionally painted), any
/// other fd to stdout. nozoki's own messages are `nozoki: ` lines on stderr.
/// </summary>
internal sealed class TextMirrorSink(FdWriter stdout, FdWriter stderr, bool paintStderr, bool quiet, int targetPid) : IMirrorSink
{
    private static readonly byte[] Red = "\e[31m"u8.ToArray();
    private static readonly byte[] Reset = "\e[0m"u8.ToArray();
    private byte[] _painted = new byte[64 << 10];

    public void OnWrite(in MirroredWrite write, ReadOnlySpan<byte> data)
    {
        if (write.Fd != 2)
        {
            stdout.Write(data);
        }
        else if (!paintStderr)
        {
            stderr.Write(data);
        }
        else
        {
            // One write per painted piece, so that the colour never leaks into bytes of another stream.
            var size = Red.Length + data.Length + Reset.Length;
            if (_painted.Length < size) _painted = new byte[Math.Max(size, _painted.Length * 2)];
            Red.CopyTo(_painted, 0);
            data.CopyTo(_painted.AsSpan(Red.Length));
            Reset.CopyTo(_painted, Red.Length + data.Length);
            stderr.Write(_painted.AsSpan(0, size));
        }
    }

    public void OnNotice(in MirrorNotice notice) => Say($"[pid {notice.Tid}] {notice.Message}");

    public void OnAttached(int pid, int threadCount)
    {
        if (!quiet) Say($"attached to PID {pid} ({threadCount} thread{(threadCount == 1 ? "" : "s")})");
    }

    public void OnProcessExited(in ProcessExit exit)
    {
        var (pid, status, _) = exit;
        if (!quiet) Say($"PID {pid} {status}");
    }

    public void OnDetached(int pid)
    {
        if (!quiet && pid == targetPid) Say($"detached from PID {pid}");
    }

    public void Say(string message) => stderr.Write(Encoding.UTF8.GetBytes($"nozoki: {message}\n"));
}
