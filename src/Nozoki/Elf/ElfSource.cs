using Microsoft.Win32.SafeHandles;

namespace Nozoki.Elf;

/// <summary>The bytes of an ELF object: a file read with pread (never whole into memory), or a byte array.</summary>
internal abstract class ElfSource : IDisposable
{
    public abstract long Length { get; }

    /// <summary>Fills dest from offset; false when the bytes are not there (the caller has checked the bounds, so
    /// this means the file shrank while being read).</summary>
    public abstract bool TryRead(long offset, Span<byte> dest);

    public virtual void Dispose()
    {
    }

    internal sealed class File(SafeFileHandle handle) : ElfSource
    {
        private readonly long _length = RandomAccess.GetLength(handle);

        public override long Length => _length;

        public override bool TryRead(long offset, Span<byte> dest)
        {
            while (!dest.IsEmpty)
            {
                var n = RandomAccess.Read(handle, dest, offset);
                if (n <= 0) return false;
                dest = dest[n..];
                offset += n;
            }

            return true;
        }

        public override void Dispose() => handle.Dispose();
    }

    internal sealed class Memory(ReadOnlyMemory<byte> bytes) : ElfSource
    {
        public override long Length => bytes.Length;

        public override bool TryRead(long offset, Span<byte> dest)
        {
            if (offset < 0 || offset > bytes.Length - dest.Length) return false;
            bytes.Span.Slice((int)offset, dest.Length).CopyTo(dest);
            return true;
        }
    }
}
