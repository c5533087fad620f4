using System.Buffers.Binary;
using Nozoki.Memory;

namespace Nozoki.Unwinding;

/// <summary>Where an unwinder reads the stack (and anything else CFI asks for): one 8-byte word at a time.</summary>
public interface IMemorySource
{
    /// <summary>The little-endian word at ADDRESS; false when those bytes cannot be had (the unwind then ends).</summary>
    bool TryReadWord(ulong address, out ulong value);
}

/// <summary>
/// The memory of a live thread, read with process_vm_readv (PTRACE_PEEKDATA when that is refused). The thread must be
/// stopped for the stack to be consistent. Reads go through a small block cache, because CFI walks a stack upwards
/// word by word: one syscall fetches the next 512 bytes. Call <see cref="Invalidate"/> (the unwinder does) before each
/// unwind, since the thread ran in between.
/// </summary>
public sealed class LiveMemory(int tid) : IMemorySource
{
    private const int BlockSize = 512;
    private readonly byte[] _block = new byte[BlockSize];
    private ulong _blockStart = ulong.MaxValue;
    private int _blockLength;

    /// <summary>The thread whose memory is read.</summary>
    public int Tid { get; } = tid;

    /// <summary>Forgets the cached block.</summary>
    public void Invalidate()
    {
        _blockStart = ulong.MaxValue;
        _blockLength = 0;
    }

    /// <inheritdoc/>
    public bool TryReadWord(ulong address, out ulong value)
    {
        if (address >= _blockStart && address - _blockStart <= (ulong)(_blockLength - 8) && _blockLength >= 8)
        {
            value = BinaryPrimitives.ReadUInt64LittleEndian(_block.AsSpan((int)(address - _blockStart)));
            return true;
        }

        // A block from ADDRESS onwards (stacks are read upwards); cut at the page end, since the next page may be
        // unmapped and process_vm_readv would then return only the first part anyway.
        var pageLeft = 4096 - (int)(address & 4095);
        var want = address > ulong.MaxValue - BlockSize ? 8 : Math.Max(8, Math.Min(BlockSize, pageLeft));
        var r = ProcessMemory.Read(Tid, address, _block.AsSpan(0, want));
        if (r.BytesRead < 8)
        {
            Invalidate();
            Span<byte> word = stackalloc byte[8];
            if (ProcessMemory.Read(Tid, address, word).BytesRead != 8)
            {
                value = 0;
                return false;
            }

            value = BinaryPrimitives.ReadUInt64LittleEndian(word);
            return true;
        }

        _blockStart = address;
        _blockLength = r.BytesRead;
        value = BinaryPrimitives.ReadUInt64LittleEndian(_block);
        return true;
    }
}

/// <summary>
/// A copy of the top of a thread's stack, as a perf sample gives it (PERF_SAMPLE_STACK_USER: the bytes from rsp
/// upwards) or as a caller took it: only [Start, Start + Bytes.Length) can be read. A read above the copy is
/// remembered, so that the unwinder ends the backtrace with "stack copy ends here" instead of a wrong frame.
/// </summary>
public sealed class StackCopy(ulong start, ReadOnlyMemory<byte> bytes) : IMemorySource
{
    /// <summary>The address of the first byte of the copy (the stack pointer at the time it was taken).</summary>
    public ulong Start { get; } = start;

    /// <summary>The copied bytes.</summary>
    public ReadOnlyMemory<byte> Bytes { get; } = bytes;

    /// <summary>Whether a read since the last <see cref="Reset"/> wanted bytes above the end of the copy.</summary>
    public bool ReadPastEnd { get; private set; }

    /// <summary>Clears <see cref="ReadPastEnd"/> (the unwinder does, before each unwind).</summary>
    public void Reset() => ReadPastEnd = false;

    /// <inheritdoc/>
    public bool TryReadWord(ulong address, out ulong value)
    {
        var length = (ulong)Bytes.Length;
        if (address >= Start && address - Start <= length && length - (address - Start) >= 8)
        {
            value = BinaryPrimitives.ReadUInt64LittleEndian(Bytes.Span[(int)(address - Start)..]);
            return true;
        }

        if (address >= Start) ReadPastEnd = true;
        value = 0;
        return false;
    }
}
