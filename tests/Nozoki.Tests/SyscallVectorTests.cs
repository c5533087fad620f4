using System.Globalization;
using System.Text;
using Nozoki.Memory;
using Nozoki.Syscalls;
using Nozoki.Tracing;
using Nozoki.Tests.Helpers;

namespace Nozoki.Tests;

/// <summary>
/// The syscall decoder against strace's own texts, one case per line of vectors/syscalls.txt (iced's way: language-
/// neutral vectors in one data file, one test that reads them). Each line carries the arguments, the memory a real
/// call left behind and its return value; the decoder reads that memory instead of a stopped thread's.
/// </summary>
public sealed class SyscallVectorTests
{
    private static readonly string VectorFile = Path.Combine(Repository.Root, "tests", "Nozoki.Tests", "vectors", "syscalls.txt");

    /// <summary>strace's texts the decoder does not match yet (vectors/syscalls-known-differences.txt), with why.</summary>
    private static readonly Dictionary<string, string> KnownDifferences = File.ReadLines(Path.ChangeExtension(VectorFile, null) + "-known-differences.txt")
        .Where(l => l.Length > 0 && l[0] != '#')
        .Select(l => l.Split(" | ", 2))
        .ToDictionary(p => p[1], p => p[0], StringComparer.Ordinal);

    public static TheoryData<int, string> Vectors
    {
        get
        {
            var data = new TheoryData<int, string>();
            var n = 0;
            foreach (var line in File.ReadLines(VectorFile))
            {
                n++;
                if (line.Length == 0 || line[0] == '#') continue;
                data.Add(n, line);
            }

            return data;
        }
    }

    [Fact]
    public void The_vector_file_covers_every_family_the_brief_names()
    {
        var names = Vectors.Select(v => ((string)v[1]).Split(" | ")[1]).ToHashSet(StringComparer.Ordinal);
        foreach (var n in new[] { "openat", "open", "fstat", "newfstatat", "read", "write", "mmap", "socket", "connect", "poll", "rt_sigaction", "rt_sigprocmask", "ioctl", "clone" })
            Assert.Contains(n, names);
        Assert.True(Vectors.Count() >= 60, $"only {Vectors.Count()} vectors");
        var texts = Vectors.Select(v => ((string)v[1]).Split(" | ", 6)[5]).ToHashSet(StringComparer.Ordinal);
        foreach (var known in KnownDifferences.Keys)
            Assert.True(texts.Contains(known), $"syscalls-known-differences.txt names a text no vector has: {known}");
    }

    [Theory]
    [MemberData(nameof(Vectors))]
    public void Decoding_matches_strace(int lineNumber, string line)
    {
        var f = line.Split(" | ", 6);
        Assert.True(f.Length == 6, $"syscalls.txt:{lineNumber}: want 6 fields separated by \" | \"");
        var options = new DecodeOptions { StringLimit = f[0] == "-" ? 32 : int.Parse(f[0].AsSpan(3), CultureInfo.InvariantCulture) };
        var nr = SyscallTable.Lookup(f[1]);
        Assert.True(nr >= 0, $"syscalls.txt:{lineNumber}: unknown syscall {f[1]}");
        var a = f[2].Split(' ').Select(x => ulong.Parse(x, NumberStyles.HexNumber, CultureInfo.InvariantCulture)).ToArray();
        var args = new SyscallArgs(a[0], a[1], a[2], a[3], a[4], a[5]);
        var ret = long.Parse(f[4], CultureInfo.InvariantCulture);
        var decoder = new SyscallDecoder(options) { Memory = FixedMemory.Parse(f[3]) };

        var b = new TextBuffer();
        var layout = default(CallLayout);
        var memory = (FixedMemory)decoder.Memory!;
        var next = decoder.Enter(b, ref layout, 1000, 1000, nr, args);
        memory.Exited = true;
        decoder.Exit(b, ref layout, 0, 1000, 1000, nr, args, next, ret, isError: ret is >= -4095 and < 0);

        var text = Encoding.UTF8.GetString(b.Span);
        if (KnownDifferences.TryGetValue(f[5], out var why))
        {
            Assert.True(text != f[5], $"syscalls.txt:{lineNumber} now matches strace: remove it from syscalls-known-differences.txt ({why})");
            return;
        }

        Assert.Equal(f[5], text);
    }

    /// <summary>The chunks of a vector's memory column; every other address is unreadable.</summary>
    private sealed class FixedMemory : ITraceeMemory
    {
        private readonly List<(ulong Address, byte[] Bytes, char Phase)> _chunks = [];

        /// <summary>The call has returned: read the ADDR&gt;HEX chunks instead of the ADDR&lt;HEX ones.</summary>
        public bool Exited { get; set; }

        public static FixedMemory Parse(string column)
        {
            var m = new FixedMemory();
            if (column == "-") return m;
            foreach (var chunk in column.Split(' '))
            {
                var colon = chunk.IndexOfAny([':', '<', '>']);
                var address = ulong.Parse(chunk.AsSpan(0, colon), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                var hex = chunk[(colon + 1)..];
                var zeros = 0;
                if (hex.IndexOf('+', StringComparison.Ordinal) is var plus and >= 0)
                {
                    zeros = int.Parse(hex.AsSpan(plus + 1), CultureInfo.InvariantCulture);
                    hex = hex[..plus];
                }

                m._chunks.Add((address, [.. Convert.FromHexString(hex), .. new byte[zeros]], chunk[colon]));
            }

            return m;
        }

        public MemoryReadResult Read(ulong address, Span<byte> dest)
        {
            foreach (var (start, bytes, phase) in _chunks)
            {
                if (phase == (Exited ? '<' : '>')) continue;
                if (address < start || address >= start + (ulong)bytes.Length) continue;
                var n = Math.Min(dest.Length, bytes.Length - (int)(address - start));
                bytes.AsSpan((int)(address - start), n).CopyTo(dest);
                return new MemoryReadResult(n, n == dest.Length ? 0 : 14);
            }

            return new MemoryReadResult(0, 14);
        }
    }
}
