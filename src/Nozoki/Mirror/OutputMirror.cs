using System.Buffers.Binary;
using Nozoki.Memory;
using Nozoki.Native;
using Nozoki.Syscalls;
using Nozoki.Tracing;

namespace Nozoki.Mirror;

/// <summary>
/// Mirrors what a process writes to chosen file descriptors: at each write-family syscall exit it reads from the
/// tracee's memory exactly the bytes the kernel accepted (the return value; partial writes, EAGAIN and EPIPE included)
/// and hands them to a sink. Bytes that never pass through the process's memory (sendfile, splice, copy_file_range,
/// vmsplice) and bytes that cannot be read are reported as notices, never dropped silently.
/// A write belongs to a chosen fd's stream when its descriptor refers to the open file description that fd referred
/// to at attach, whatever its number (a dup of fd 1 is stdout; fd 1 after dup2(2, 1) is stderr): see FdTargets.
/// </summary>
public sealed class OutputMirror : ITraceObserver
{
    /// <summary>Writes larger than this are handed to the sink in pieces of this size.</summary>
    public const int ChunkSize = 4 << 20;

    private readonly IMirrorSink _sink;
    private readonly int[] _fds;
    private const ulong CloseRangeCloexec = 4; // CLOSE_RANGE_CLOEXEC: marks close-on-exec, closes nothing
    private readonly Dictionary<int, FdTargets> _processes = [];
    private readonly Dictionary<int, int> _forkingThreads = []; // tid -> pid, from a fork-family entry to its event
    private int _pruneAt = 64;
    private int _lastPid = -1;
    private FdTargets? _last;
    private byte[] _buffer = new byte[64 << 10];
    private Iovec[] _iov = new Iovec[64];
    private Iovec[] _pieces = new Iovec[64];
    private readonly byte[] _msghdr = new byte[64];

    public OutputMirror(IMirrorSink sink, IEnumerable<int> fds)
    {
        ArgumentNullException.ThrowIfNull(sink);
        ArgumentNullException.ThrowIfNull(fds);
        _sink = sink;
        _fds = [.. fds.Distinct()];
        foreach (var fd in _fds) ArgumentOutOfRangeException.ThrowIfNegative(fd);
    }

    /// <summary>Recognise descriptions by /proc links and flags as where kcmp is refused (tests of that fallback).</summary>
    internal bool WithoutKcmp { get; init; }

    private FdTargets Targets(int pid)
    {
        if (pid == _lastPid) return _last!;
        if (!_processes.TryGetValue(pid, out var t)) _processes[pid] = t = FdTargets.Attach(pid, _fds, useKcmp: !WithoutKcmp);
        _lastPid = pid;
        return _last = t;
    }

    private void Forget(int pid)
    {
        _processes.Remove(pid);
        _lastPid = -1;
    }

    /// <summary>The watched streams are the descriptions the fds refer to at attach (if no stop has taken them already).</summary>
    public void OnAttached(int pid, int threadCount)
    {
        Targets(pid);
        _sink.OnAttached(pid, threadCount);
    }

    public void OnNewTask(int parentTid, int newTid, int newPid, bool isProcess)
    {
        if (!isProcess) return;
        // A child's table is a copy of its parent's: it has the parent's streams, even while the parent has fd 1
        // pointed elsewhere (`{ cmd; } >&2` forks cmd between dup2(2, 1) and the restore).
        var parentPid = _forkingThreads.Remove(parentTid, out var p) ? p
            : _processes.ContainsKey(parentTid) ? parentTid
            : Procfs.ProcessInfo.TryRead(parentTid)?.Tgid ?? parentTid;
        if (_processes.Count >= _pruneAt) Prune();
        _processes[newPid] = Targets(parentPid).Fork(newPid);
        _lastPid = -1;
    }

    /// <summary>
    /// A child that is not followed is let go without another word after <see cref="OnNewTask"/>: drop the state of
    /// processes no longer traced by this thread (the session's), now and then, so that a shell forking for hours
    /// does not grow it.
    /// </summary>
    private void Prune()
    {
        var self = Libc.gettid();
        foreach (var pid in _processes.Keys.ToList())
        {
            if (!TracedBy(pid, self)) _processes.Remove(pid);
        }

        _lastPid = -1;
        _pruneAt = Math.Max(64, 2 * _processes.Count);
    }

    private static bool TracedBy(int pid, int tracer)
    {
        try
        {
            return Procfs.ProcessInfo.TryRead(pid)?.TracerPid == tracer;
        }
        catch (Exception e) when (e is ArgumentException or FormatException or IndexOutOfRangeException or OverflowException)
        {
            return false; // read while it was going away
        }
    }

    public void OnExec(int pid, int tid) => Targets(pid).Execed();

    public void OnThreadExited(int pid, int tid) => _forkingThreads.Remove(tid);

    public void OnProcessExited(int pid, ExitStatus status)
    {
        Forget(pid);
        _sink.OnProcessExited(new ProcessExit(pid, status, Trace.TraceClock.Now()));
    }

    public void OnDetached(int pid)
    {
        Forget(pid);
        _sink.OnDetached(pid);
    }

    /// <summary>Before a descriptor is closed or replaced, or a program replaced: a stream it keeps must move (see FdTargets).</summary>
    public void OnSyscallEnter(in SyscallEnterStop stop)
    {
        var a = stop.Args;
        switch (stop.Number)
        {
            case SyscallNumbers.Close:
                Targets(stop.Pid).Closing(stop.Tid, Fd(a.A0), Fd(a.A0));
                return;
            case SyscallNumbers.Dup2 or SyscallNumbers.Dup3:
                if (a.A0 != a.A1) Targets(stop.Pid).Closing(stop.Tid, Fd(a.A1), Fd(a.A1));
                return;
            case SyscallNumbers.CloseRange:
                if ((a.A2 & CloseRangeCloexec) == 0) Targets(stop.Pid).Closing(stop.Tid, Fd(a.A0), Fd(a.A1));
                return;
            case SyscallNumbers.Execve or SyscallNumbers.Execveat:
                Targets(stop.Pid).Execing();
                return;
            case SyscallNumbers.Clone or SyscallNumbers.Clone3 or SyscallNumbers.Fork or SyscallNumbers.Vfork:
                _forkingThreads[stop.Tid] = stop.Pid;
                return;
        }
    }

    /// <summary>An fd argument (an unsigned int to the kernel) as a number; beyond int.MaxValue: int.MaxValue.</summary>
    private static int Fd(ulong arg) => (uint)arg > int.MaxValue ? int.MaxValue : (int)(uint)arg;

    public void OnSyscallExit(in SyscallExitStop stop)
    {
        var a = stop.Args;
        switch (stop.Number)
        {
            // Even when they fail: close releases the descriptor whatever it returns (EINTR, EIO), and forgetting
            // an answer is always safe.
            case SyscallNumbers.Close:
                Targets(stop.Pid).Closed(stop.Tid, Fd(a.A0), Fd(a.A0), closedNothing: false);
                return;
            case SyscallNumbers.Dup2 or SyscallNumbers.Dup3:
                if (a.A0 == a.A1) return;
                var targets = Targets(stop.Pid);
                targets.Closed(stop.Tid, Fd(a.A1), Fd(a.A1), closedNothing: stop.IsError);
                if (!stop.IsError) targets.Duplicated(Fd(a.A0), Fd(a.A1));
                return;
            case SyscallNumbers.CloseRange:
                if ((a.A2 & CloseRangeCloexec) == 0) Targets(stop.Pid).Closed(stop.Tid, Fd(a.A0), Fd(a.A1), closedNothing: stop.IsError);
                return;
        }

        if (stop.IsError) return;
        if (stop.ReturnValue <= 0) return;
        int fd;
        switch (stop.Number)
        {
            case SyscallNumbers.Write or SyscallNumbers.Pwrite64 or SyscallNumbers.Sendto:
                if ((fd = Classify(stop, a.A0)) >= 0) MirrorLinear(stop, fd, Name(stop.Number), a.A1, stop.ReturnValue);
                break;
            case SyscallNumbers.Writev or SyscallNumbers.Pwritev or SyscallNumbers.Pwritev2:
                if ((fd = Classify(stop, a.A0)) >= 0) MirrorVector(stop, fd, Name(stop.Number), a.A1, a.A2, stop.ReturnValue);
                break;
            case SyscallNumbers.Sendmsg:
                if ((fd = Classify(stop, a.A0)) >= 0) MirrorMessage(stop, fd, a.A1, stop.ReturnValue);
                break;
            case SyscallNumbers.Sendmmsg:
                if ((fd = Classify(stop, a.A0)) >= 0) MirrorMessages(stop, fd, a.A1, stop.ReturnValue);
                break;
            case SyscallNumbers.Sendfile or SyscallNumbers.Vmsplice:
                if ((fd = Classify(stop, a.A0)) >= 0) Unseen(stop, fd, Name(stop.Number), stop.ReturnValue);
                break;
            case SyscallNumbers.Splice or SyscallNumbers.CopyFileRange:
                if ((fd = Classify(stop, a.A2)) >= 0) Unseen(stop, fd, Name(stop.Number), stop.ReturnValue);
                break;
        }
    }

    private int Classify(in SyscallExitStop stop, ulong fd) => fd > int.MaxValue ? -1 : Targets(stop.Pid).Classify((int)fd);

    private static string Name(long nr) => nr switch
    {
        SyscallNumbers.Write => "write",
        SyscallNumbers.Pwrite64 => "pwrite64",
        SyscallNumbers.Sendto => "sendto",
        SyscallNumbers.Writev => "writev",
        SyscallNumbers.Pwritev => "pwritev",
        SyscallNumbers.Pwritev2 => "pwritev2",
        SyscallNumbers.Sendmsg => "sendmsg",
        SyscallNumbers.Sendmmsg => "sendmmsg",
        SyscallNumbers.Sendfile => "sendfile",
        SyscallNumbers.Vmsplice => "vmsplice",
        SyscallNumbers.Splice => "splice",
        SyscallNumbers.CopyFileRange => "copy_file_range",
        _ => "syscall",
    };

    private void Unseen(in SyscallExitStop stop, int fd, string syscall, long bytes) =>
        _sink.OnNotice(new MirrorNotice(DateTime.UtcNow, stop.Pid, stop.Tid, fd, syscall, bytes,
            $"{bytes} bytes moved by {syscall} without passing through the process's memory; not shown"));

    private void MirrorLinear(in SyscallExitStop stop, int fd, string syscall, ulong address, long count)
    {
        var time = DateTime.UtcNow;
        long done = 0;
        while (done < count)
        {
            var n = (int)Math.Min(count - done, ChunkSize);
            var buf = Buffer(n);
            var r = ProcessMemory.Read(stop.Tid, address + (ulong)done, buf);
            if (r.BytesRead > 0) _sink.OnWrite(new MirroredWrite(time, stop.Pid, stop.Tid, fd, syscall, done > 0), buf[..r.BytesRead]);
            done += r.BytesRead;
            if (r.BytesRead < n)
            {
                Unreadable(stop, fd, syscall, count - done, r.Errno);
                return;
            }
        }
    }

    /// <summary>Reads the iovec array, then the first `count` bytes it describes, in one process_vm_readv per chunk.</summary>
    private void MirrorVector(in SyscallExitStop stop, int fd, string syscall, ulong iovAddress, ulong iovCount, long count)
    {
        if (iovCount > 1024)
        {
            Unreadable(stop, fd, syscall, count, Errno.EINVAL);
            return;
        }

        var n = (int)iovCount;
        if (_iov.Length < n) _iov = new Iovec[n];
        var raw = Buffer(n * 16);
        var r = ProcessMemory.Read(stop.Tid, iovAddress, raw[..(n * 16)]);
        if (r.BytesRead < n * 16)
        {
            Unreadable(stop, fd, syscall, count, r.Errno);
            return;
        }

        for (var i = 0; i < n; i++)
        {
            _iov[i].Base = BinaryPrimitives.ReadUInt64LittleEndian(raw[(i * 16)..]);
            _iov[i].Length = BinaryPrimitives.ReadUInt64LittleEndian(raw[(i * 16 + 8)..]);
        }

        MirrorIovecs(stop, fd, syscall, n, count);
    }

    /// <summary>Mirrors `count` bytes from the n iovecs in _iov, in pieces of at most ChunkSize.</summary>
    private void MirrorIovecs(in SyscallExitStop stop, int fd, string syscall, int n, long count)
    {
        var time = DateTime.UtcNow;
        var first = true;
        var remaining = count;
        var index = 0;
        ulong offsetInIov = 0;
        if (_pieces.Length < n) _pieces = new Iovec[n];
        var pieceList = _pieces;
        while (remaining > 0 && index < n)
        {
            // Gather up to ChunkSize bytes of consecutive iovec ranges.
            var want = (int)Math.Min(remaining, ChunkSize);
            var parts = 0;
            var gathered = 0;
            while (gathered < want && index < n)
            {
                var avail = _iov[index].Length - offsetInIov;
                var take = (int)Math.Min(avail, (ulong)(want - gathered));
                if (take > 0) pieceList[parts++] = new Iovec { Base = _iov[index].Base + offsetInIov, Length = (ulong)take };
                gathered += take;
                offsetInIov += (ulong)take;
                if (offsetInIov >= _iov[index].Length)
                {
                    index++;
                    offsetInIov = 0;
                }
            }

            if (gathered == 0) break;
            var buf = Buffer(gathered);
            var r = ProcessMemory.ReadScattered(stop.Tid, pieceList.AsSpan(0, parts), buf[..gathered]);
            if (r.BytesRead > 0) _sink.OnWrite(new MirroredWrite(time, stop.Pid, stop.Tid, fd, syscall, !first), buf[..r.BytesRead]);
            first = false;
            remaining -= r.BytesRead;
            if (r.BytesRead < gathered)
            {
                Unreadable(stop, fd, syscall, remaining, r.Errno);
                return;
            }
        }

        if (remaining > 0) Unreadable(stop, fd, syscall, remaining, Errno.EFAULT);
    }

    /// <summary>struct msghdr: msg_iov at offset 16, msg_iovlen at 24.</summary>
    private void MirrorMessage(in SyscallExitStop stop, int fd, ulong msghdrAddress, long count)
    {
        var r = ProcessMemory.Read(stop.Tid, msghdrAddress, _msghdr.AsSpan(0, 56));
        if (r.BytesRead < 56)
        {
            Unreadable(stop, fd, "sendmsg", count, r.Errno);
            return;
        }

        MirrorVector(stop, fd, "sendmsg", BinaryPrimitives.ReadUInt64LittleEndian(_msghdr.AsSpan(16)), BinaryPrimitives.ReadUInt64LittleEndian(_msghdr.AsSpan(24)), count);
    }

    /// <summary>sendmmsg returns the number of messages sent; each struct mmsghdr (64 bytes) holds its msg_len at offset 56.</summary>
    private void MirrorMessages(in SyscallExitStop stop, int fd, ulong vecAddress, long messages)
    {
        var entry = _msghdr;
        for (long i = 0; i < messages; i++)
        {
            var r = ProcessMemory.Read(stop.Tid, vecAddress + (ulong)(i * 64), entry);
            if (r.BytesRead < 64)
            {
                Unreadable(stop, fd, "sendmmsg", -1, r.Errno);
                return;
            }

            var len = BinaryPrimitives.ReadUInt32LittleEndian(entry.AsSpan(56));
            MirrorVector(stop, fd, "sendmmsg", BinaryPrimitives.ReadUInt64LittleEndian(entry.AsSpan(16)), BinaryPrimitives.ReadUInt64LittleEndian(entry.AsSpan(24)), len);
        }
    }

    private void Unreadable(in SyscallExitStop stop, int fd, string syscall, long bytes, int errno) =>
        _sink.OnNotice(new MirrorNotice(DateTime.UtcNow, stop.Pid, stop.Tid, fd, syscall, bytes,
            (bytes < 0 ? "some bytes" : $"{bytes} bytes") + $" written by {syscall} could not be read from the process's memory ({Libc.StrError(errno)}); not shown"));

    private Span<byte> Buffer(int size)
    {
        if (_buffer.Length < size) _buffer = new byte[Math.Max(size, Math.Min(_buffer.Length * 2, ChunkSize))];
        return _buffer.AsSpan(0, size);
    }
}
