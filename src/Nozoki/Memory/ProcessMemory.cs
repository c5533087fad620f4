using System.Runtime.InteropServices;
using Nozoki.Native;

namespace Nozoki.Memory;

/// <summary>The outcome of a memory read: how many bytes arrived, and the errno that stopped it short (0 if none).</summary>
public readonly record struct MemoryReadResult(int BytesRead, int Errno)
{
    public bool Complete(int wanted) => BytesRead == wanted;
}

/// <summary>
/// Reads a tracee's memory with process_vm_readv (one syscall for many ranges, ~70x faster than PEEKDATA on large
/// buffers). PEEKDATA is the fallback when process_vm_readv is refused (EPERM) or missing (ENOSYS); it must be called
/// from the ptrace thread with the thread stopped, which is where all callers of this class run.
/// </summary>
internal static unsafe class ProcessMemory
{
    private const int IovMax = 1024;

    /// <summary>Reads remote [address, address+dest.Length) into dest.</summary>
    internal static MemoryReadResult Read(int tid, ulong address, Span<byte> dest)
    {
        if (dest.IsEmpty) return new MemoryReadResult(0, 0);
        fixed (byte* p = dest)
        {
            var local = new Iovec { Base = (ulong)p, Length = (ulong)dest.Length };
            var remote = new Iovec { Base = address, Length = (ulong)dest.Length };
            return ReadVector(tid, &local, &remote, 1, dest.Length);
        }
    }

    /// <summary>
    /// Writes data to remote [address, address+data.Length) with process_vm_writev, which (unlike /proc/PID/mem and
    /// PTRACE_POKEDATA) respects the mapping's protection: a guard page or read-only memory fails with EFAULT instead of
    /// being written. For scratch space in a stopped thread's own writable memory (below its stack pointer).
    /// </summary>
    internal static SysResult WriteWritable(int tid, ulong address, ReadOnlySpan<byte> data)
    {
        fixed (byte* p = data)
        {
            var local = new Iovec { Base = (ulong)p, Length = (ulong)data.Length };
            var remote = new Iovec { Base = address, Length = (ulong)data.Length };
            var n = Libc.process_vm_writev(tid, &local, 1, &remote, 1, 0);
            if (n == data.Length) return SysResult.Ok;
            return n < 0 ? SysResult.LastPInvokeError() : new SysResult(Errno.EFAULT);
        }
    }

    /// <summary>
    /// Reads the remote ranges (already cut so that they add up to dest.Length) one after another into dest.
    /// The kernel stops at the first range it cannot read fully, so BytesRead is an exact prefix.
    /// </summary>
    internal static MemoryReadResult ReadScattered(int tid, ReadOnlySpan<Iovec> remote, Span<byte> dest)
    {
        var done = 0;
        var errno = 0;
        fixed (byte* p = dest)
        fixed (Iovec* r = remote)
        {
            for (var start = 0; start < remote.Length && errno == 0; start += IovMax)
            {
                var count = Math.Min(IovMax, remote.Length - start);
                long want = 0;
                for (var i = 0; i < count; i++) want += (long)r[start + i].Length;
                var local = new Iovec { Base = (ulong)(p + done), Length = (ulong)want };
                var res = ReadVector(tid, &local, r + start, count, (int)want);
                done += res.BytesRead;
                if (res.BytesRead != want) errno = res.Errno == 0 ? Errno.EFAULT : res.Errno;
            }
        }

        return new MemoryReadResult(done, errno);
    }

    private static MemoryReadResult ReadVector(int tid, Iovec* local, Iovec* remote, int remoteCount, int want)
    {
        var n = Libc.process_vm_readv(tid, local, 1, remote, (ulong)remoteCount, 0);
        if (n == want) return new MemoryReadResult(want, 0);
        if (n >= 0) return new MemoryReadResult((int)n, Errno.EFAULT);
        var errno = Marshal.GetLastPInvokeError();
        if (errno is not (Errno.EPERM or Errno.ENOSYS)) return new MemoryReadResult(0, errno);
        var done = 0;
        for (var i = 0; i < remoteCount; i++)
        {
            var r = PeekData(tid, remote[i].Base, new Span<byte>((byte*)local->Base + done, (int)remote[i].Length));
            done += r.BytesRead;
            if (r.Errno != 0) return new MemoryReadResult(done, r.Errno);
        }

        return new MemoryReadResult(done, 0);
    }

    /// <summary>Word-by-word PTRACE_PEEKDATA. PEEKDATA returns the word itself, so errno is cleared first.</summary>
    internal static MemoryReadResult PeekData(int tid, ulong address, Span<byte> dest)
    {
        var done = 0;
        var aligned = address & ~7UL;
        var skip = (int)(address - aligned);
        while (done < dest.Length)
        {
            Marshal.SetLastPInvokeError(0);
            var word = Libc.ptrace(Ptrace.PEEKDATA, tid, (nint)aligned, 0);
            var errno = Marshal.GetLastPInvokeError();
            if (word == -1 && errno != 0) return new MemoryReadResult(done, errno);
            var bytes = new ReadOnlySpan<byte>(&word, 8)[skip..];
            var take = Math.Min(bytes.Length, dest.Length - done);
            bytes[..take].CopyTo(dest[done..]);
            done += take;
            aligned += 8;
            skip = 0;
        }

        return new MemoryReadResult(done, 0);
    }
}

/// <summary>
/// Writes into a tracee's memory through /proc/PID/mem, which (like PTRACE_POKEDATA, and unlike process_vm_writev)
/// may write read-only private mappings such as code: how breakpoints are inserted and removed.
/// </summary>
internal static class ProcessMemoryWriter
{
    /// <summary>Ok, or EFAULT when the memory (or the process) is gone, EPERM when it may not be written.</summary>
    internal static SysResult Write(int pid, ulong address, ReadOnlySpan<byte> data)
    {
        try
        {
            using var mem = File.OpenHandle($"/proc/{pid}/mem", FileMode.Open, FileAccess.ReadWrite);
            RandomAccess.Write(mem, data, (long)address);
            return SysResult.Ok;
        }
        catch (IOException)
        {
            return new SysResult(Errno.EFAULT);
        }
        catch (UnauthorizedAccessException)
        {
            return new SysResult(Errno.EPERM);
        }
    }

    /// <summary>
    /// Writes a few bytes (a breakpoint's, a return address) through TID, a thread of PID in a ptrace stop: word by
    /// word with PTRACE_POKEDATA (PEEKDATA first for a word written in part), which may write code as /proc/PID/mem
    /// does, with no file to open (an open costs tens of microseconds, a poke one syscall). When the thread refuses
    /// (not stopped, gone), the write goes through /proc/PID/mem.
    /// </summary>
    internal static unsafe SysResult Write(int tid, int pid, ulong address, ReadOnlySpan<byte> data)
    {
        if (data.Length > 64) return Write(pid, address, data);
        var aligned = address & ~7UL;
        var skip = (int)(address - aligned);
        var done = 0;
        while (done < data.Length)
        {
            long word = 0;
            var take = Math.Min(8 - skip, data.Length - done);
            var bytes = new Span<byte>(&word, 8);
            if (take < 8 && ProcessMemory.PeekData(tid, aligned, bytes).BytesRead != 8) return Write(pid, address + (ulong)done, data[done..]);
            data.Slice(done, take).CopyTo(bytes[skip..]);
            if (Libc.ptrace(Ptrace.POKEDATA, tid, (nint)aligned, (nint)word) != 0) return Write(pid, address + (ulong)done, data[done..]);
            done += take;
            aligned += 8;
            skip = 0;
        }

        return SysResult.Ok;
    }
}
