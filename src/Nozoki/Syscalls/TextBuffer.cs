using System.Buffers.Text;

namespace Nozoki.Syscalls;

/// <summary>A growable byte buffer for formatted ASCII/UTF-8 text: reused across stops, so formatting allocates nothing.</summary>
public sealed class TextBuffer
{
    private byte[] _data;

    public TextBuffer(int capacity = 4096) => _data = new byte[capacity];

    public int Length { get; private set; }

    public ReadOnlySpan<byte> Span => _data.AsSpan(0, Length);

    public ReadOnlySpan<byte> Slice(int start, int end) => _data.AsSpan(start, end - start);

    public void Clear() => Length = 0;

    public void Truncate(int length) => Length = Math.Min(Length, length);

    private Span<byte> Reserve(int n)
    {
        if (Length + n > _data.Length) Array.Resize(ref _data, Math.Max(_data.Length * 2, Length + n));
        return _data.AsSpan(Length);
    }

    public void Append(byte c)
    {
        Reserve(1)[0] = c;
        Length++;
    }

    public void Append(char c) => Append((byte)c);

    public void Append(ReadOnlySpan<byte> bytes)
    {
        bytes.CopyTo(Reserve(bytes.Length));
        Length += bytes.Length;
    }

    /// <summary>Appends an ASCII string (names, flags) without encoding it into a new array.</summary>
    public void Append(ReadOnlySpan<char> ascii)
    {
        var dest = Reserve(ascii.Length);
        for (var i = 0; i < ascii.Length; i++) dest[i] = (byte)ascii[i];
        Length += ascii.Length;
    }

    public void AppendInt(long value)
    {
        Utf8Formatter.TryFormat(value, Reserve(20), out var n);
        Length += n;
    }

    public void AppendUInt(ulong value)
    {
        Utf8Formatter.TryFormat(value, Reserve(20), out var n);
        Length += n;
    }

    /// <summary>0x1f (0 is "0", as strace prints it).</summary>
    public void AppendHex(ulong value)
    {
        if (value == 0)
        {
            Append('0');
            return;
        }

        Append("0x");
        Utf8Formatter.TryFormat(value, Reserve(16), out var n, new System.Buffers.StandardFormat('x'));
        Length += n;
    }

    /// <summary>Zero-padded decimal of a fixed width (fractions of seconds).</summary>
    public void AppendPadded(long value, int width)
    {
        Utf8Formatter.TryFormat(value, Reserve(20 + width), out var n, new System.Buffers.StandardFormat('D', (byte)width));
        Length += n;
    }

    /// <summary>Octal with a leading 0 (file modes): 0644; 0 stays "0".</summary>
    public void AppendOctal(ulong value)
    {
        Span<byte> tmp = stackalloc byte[24];
        var i = tmp.Length;
        do
        {
            tmp[--i] = (byte)('0' + (value & 7));
            value >>= 3;
        }
        while (value != 0);
        if (tmp[i] != '0') tmp[--i] = (byte)'0';
        Append(tmp[i..]);
    }
}
