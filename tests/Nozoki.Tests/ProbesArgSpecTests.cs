using Nozoki.Probes;
using Nozoki.Tracing;

namespace Nozoki.Tests;

/// <summary>Parsing and evaluating USDT argument specs, every operand form, without a process.</summary>
public sealed class ProbesArgSpecTests
{
    public static TheoryData<string, ArgLocation, int, bool> Locations => new()
    {
        { "-4@%eax", ArgLocation.Register, 4, true },
        { "8@%rax", ArgLocation.Register, 8, false },
        { "2@%ax", ArgLocation.Register, 2, false },
        { "-1@%sil", ArgLocation.Register, 1, true },
        { "1@%r10b", ArgLocation.Register, 1, false },
        { "-2@%r9w", ArgLocation.Register, 2, true },
        { "4@%r8d", ArgLocation.Register, 4, false },
        { "1@%ah", ArgLocation.Register, 1, false },
        { "8@-24(%rbp)", ArgLocation.Memory, 8, false },
        { "-4@12(%rsp)", ArgLocation.Memory, 4, true },
        { "8@(%rdi)", ArgLocation.Memory, 8, false },
        { "4@0x10(%rax,%rdx,4)", ArgLocation.Memory, 4, false },
        { "4@(,%rcx,8)", ArgLocation.Memory, 4, false },
        { "8@foo(%rip)", ArgLocation.Memory, 8, false },
        { "-4@g_s32+8(%rip)", ArgLocation.Memory, 4, true },
        { "8@counter.0(%rip)", ArgLocation.Memory, 8, false },
        { "8@%fs:0x28", ArgLocation.Memory, 8, false },
        { "8@%fs:-8(%rax)", ArgLocation.Memory, 8, false },
        { "4@$5", ArgLocation.Immediate, 4, false },
        { "-8@$-1234567890123", ArgLocation.Immediate, 8, true },
        { "1@$0xff", ArgLocation.Immediate, 1, false },
        { "8@$buf", ArgLocation.Immediate, 8, false },
        { "%rdi", ArgLocation.Register, 8, true },
        { "16@%xmm0", ArgLocation.Unsupported, 8, false },
        { "8@%xmm0", ArgLocation.Unsupported, 8, false },
        { "3@%eax", ArgLocation.Unsupported, 8, false },
        { "x@%eax", ArgLocation.Unsupported, 8, false },
        { "4@", ArgLocation.Unsupported, 8, false },
        { "4@$", ArgLocation.Unsupported, 8, false },
        { "4@8(%rax", ArgLocation.Unsupported, 8, false },
        { "4@(%eax)", ArgLocation.Unsupported, 8, false },
        { "4@(%rax,%rbx,3)", ArgLocation.Unsupported, 8, false },
        { "4@%cs:8", ArgLocation.Unsupported, 8, false },
        { "4@a+b(%rip)", ArgLocation.Unsupported, 8, false },
    };

    [Theory]
    [MemberData(nameof(Locations))]
    public void Parses_location_size_and_sign(string text, ArgLocation location, int size, bool signed)
    {
        var a = ArgSpec.Parse(text);
        Assert.Equal(text, a.Text);
        Assert.True(location == a.Location, $"{text}: {a.Location} ({a.Problem})");
        if (location == ArgLocation.Unsupported)
        {
            Assert.False(string.IsNullOrEmpty(a.Problem));
            return;
        }

        Assert.Equal(size, a.Size);
        Assert.Equal(signed, a.Signed);
    }

    [Fact]
    public void Memory_operands_keep_base_index_scale_displacement_and_symbol()
    {
        var a = ArgSpec.Parse("4@-0x10(%rax,%rdx,4)");
        Assert.Equal((X86Register.Rax, X86Register.Rdx, (byte)4, -16L, (string?)null), (a.Base, a.Index, a.Scale, a.Displacement, a.Symbol));
        a = ArgSpec.Parse("-4@g_s32+8(%rip)");
        Assert.Equal((X86Register.Rip, "g_s32", 8L), (a.Base, a.Symbol, a.Displacement));
        a = ArgSpec.Parse("8@-24(%rbp)");
        Assert.Equal((X86Register.Rbp, -24L), (a.Base, a.Displacement));
        a = ArgSpec.Parse("8@%fs:0x28");
        Assert.Equal((SegmentOverride.Fs, X86Register.None, 0x28L), (a.Segment, a.Base, a.Displacement));
    }

    public static TheoryData<string, X86Register, int, int> RegisterNames()
    {
        var d = new TheoryData<string, X86Register, int, int>();
        string[][] legacy =
        [
            ["rax", "eax", "ax", "al", "ah"], ["rbx", "ebx", "bx", "bl", "bh"], ["rcx", "ecx", "cx", "cl", "ch"],
            ["rdx", "edx", "dx", "dl", "dh"], ["rsi", "esi", "si", "sil"], ["rdi", "edi", "di", "dil"],
            ["rbp", "ebp", "bp", "bpl"], ["rsp", "esp", "sp", "spl"],
        ];
        for (var i = 0; i < legacy.Length; i++)
        {
            var reg = X86Register.Rax + (byte)i;
            d.Add(legacy[i][0], reg, 8, 0);
            d.Add(legacy[i][1], reg, 4, 0);
            d.Add(legacy[i][2], reg, 2, 0);
            d.Add(legacy[i][3], reg, 1, 0);
            if (legacy[i].Length > 4) d.Add(legacy[i][4], reg, 1, 8);
        }

        for (var n = 8; n <= 15; n++)
        {
            var reg = X86Register.R8 + (byte)(n - 8);
            d.Add($"r{n}", reg, 8, 0);
            d.Add($"r{n}d", reg, 4, 0);
            d.Add($"r{n}w", reg, 2, 0);
            d.Add($"r{n}b", reg, 1, 0);
            d.Add($"r{n}l", reg, 1, 0);
        }

        d.Add("rip", X86Register.Rip, 8, 0);
        return d;
    }

    [Theory]
    [MemberData(nameof(RegisterNames))]
    public void Every_register_name_reads_its_part_of_the_register(string name, X86Register reg, int bytes, int shift)
    {
        Assert.True(RegisterOperand.TryParse(name, out var op), name);
        Assert.Equal(new RegisterOperand(reg, (byte)bytes, (byte)shift), op);
        // Put a distinct pattern in every register; the operand must read exactly its bytes of its register.
        var regs = Pattern();
        var full = X86RegisterFile.Get(regs, reg);
        var expected = (full >> shift) & (bytes == 8 ? ulong.MaxValue : (1UL << (bytes * 8)) - 1);
        Assert.Equal(expected, op.Read(regs));
        var spec = ArgSpec.Parse($"{bytes}@%{name}");
        var mem = new NoMemory();
        Assert.Equal(ArgStatus.Ok, spec.TryEvaluate(regs, ref mem, out var v));
        Assert.Equal(expected, v.Bits);
    }

    public static TheoryData<string, string> Values => new()
    {
        // registers (Rax = 0x1122334455667788 ... see Pattern), sizes and signs
        { "8@%rax", "1234605616436508552" },
        { "-8@%rcx", "-1" },
        { "4@%ecx", "4294967295" },
        { "-4@%ecx", "-1" },
        { "-4@%eax", "1432778632" },
        { "1@%al", "136" },
        { "-1@%al", "-120" },
        { "-1@%ah", "119" },
        { "2@%ax", "30600" },
        { "-2@%dx", "-2" },
        { "2@%dx", "65534" },
        { "4@%eax", "1432778632" },
        { "-4@%edi", "-5" },
        { "8@%eax", "1432778632" },
        // immediates are cut to their size
        { "1@$-1", "255" },
        { "-1@$-128", "-128" },
        { "-2@$-32768", "-32768" },
        { "4@$-1", "4294967295" },
        { "-4@$-5", "-5" },
        { "-8@$1234567890123", "1234567890123" },
        { "4@$0x10", "16" },
        // memory: the fake memory holds byte (address & 0xff) at each address
        { "1@-29(%rsp)", "227" },  // rsp = 0x1000: 0x1000-29 = 0xfe3
        { "-1@-29(%rsp)", "-29" },
        { "2@8(%rsp)", "2312" },   // bytes 0x08 0x09
        { "-8@-8(%rsp)", "-283686952306184" }, // f8 f9 fa fb fc fd fe ff
        { "4@16(%rsp,%rdi,1)", "235736075" }, // rsp + 16 + (-5) = 0x100b: 0b 0c 0d 0e
        { "4@(,%rsi,4)", "185207048" }, // 0x402 * 4 = 0x1008: 08 09 0a 0b
        { "4@%fs:0x28", "724183336" }, // fs_base 0x2000 + 0x28 = 0x2028: 28 29 2a 2b
    };

    [Theory]
    [MemberData(nameof(Values))]
    public void Evaluates_registers_memory_and_immediates(string spec, string expected)
    {
        var a = ArgSpec.Parse(spec);
        var regs = Pattern();
        var mem = new PatternMemory();
        Assert.Equal(ArgStatus.Ok, a.TryEvaluate(regs, ref mem, out var v));
        Assert.Equal(expected, v.ToString());
        Span<char> buf = stackalloc char[24];
        Assert.True(v.TryFormat(buf, out var n));
        Assert.Equal(expected, buf[..n].ToString());
    }

    [Fact]
    public void Symbol_rip_operands_read_at_the_symbol_address_not_rip_plus_it()
    {
        var a = ArgSpec.Parse("-4@g_s32(%rip)");
        var regs = Pattern();
        var mem = new PatternMemory();
        Assert.Equal(ArgStatus.UnresolvedSymbol, a.TryEvaluate(regs, ref mem, out _));
        a = a.WithSymbolAddress(0x3040);
        Assert.Equal(ArgStatus.Ok, a.TryEvaluate(regs, ref mem, out var v));
        Assert.Equal(0x43424140UL, v.Bits);
        Assert.True(a.TryAddress(regs, out var address) == ArgStatus.Ok && address == 0x3040);
        var plus = ArgSpec.Parse("1@g_u8+3(%rip)").WithSymbolAddress(0x3040);
        Assert.Equal(ArgStatus.Ok, plus.TryEvaluate(regs, ref mem, out v));
        Assert.Equal(0x43UL, v.Bits);
        // A numeric rip-relative operand is relative to the probe address given as Rip.
        var numeric = ArgSpec.Parse("1@16(%rip)");
        Assert.True(numeric.TryAddress(regs, out address) == ArgStatus.Ok && address == regs.Rip + 16);
        var immediate = ArgSpec.Parse("8@$buf");
        Assert.Equal(ArgStatus.UnresolvedSymbol, immediate.TryEvaluate(regs, ref mem, out _));
        Assert.Equal(ArgStatus.Ok, immediate.WithSymbolAddress(0x601040).TryEvaluate(regs, ref mem, out v));
        Assert.Equal(0x601040UL, v.Bits);
    }

    [Fact]
    public void Unreadable_memory_and_unsupported_specs_are_statuses_not_exceptions()
    {
        var regs = Pattern();
        var mem = new NoMemory();
        Assert.Equal(ArgStatus.MemoryFault, ArgSpec.Parse("8@-24(%rbp)").TryEvaluate(regs, ref mem, out var v));
        Assert.Equal(0UL, v.Bits);
        Assert.Equal(ArgStatus.Unsupported, ArgSpec.Parse("8@%xmm0").TryEvaluate(regs, ref mem, out _));
    }

    [Fact]
    public void ParseAll_splits_on_spaces_and_keeps_order()
    {
        var args = ArgSpec.ParseAll("-4@%edi 8@%rsi -8@%rax 1@%dl -2@%r9w 8@%rbp");
        Assert.Equal(["-4@%edi", "8@%rsi", "-8@%rax", "1@%dl", "-2@%r9w", "8@%rbp"], args.Select(a => a.Text));
        Assert.Empty(ArgSpec.ParseAll(""));
    }

    [Fact]
    public void Evaluation_does_not_allocate()
    {
        var specs = ArgSpec.ParseAll("-4@%eax 8@-24(%rbp) 4@$5 -1@%sil 2@%ax").ToArray();
        var regs = Pattern();
        var mem = new PatternMemory();
        Span<char> buf = stackalloc char[24];
        foreach (var s in specs) s.TryEvaluate(regs, ref mem, out _); // warm up
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1000; i++)
        {
            foreach (var s in specs)
            {
                s.TryEvaluate(regs, ref mem, out var v);
                v.TryFormat(buf, out _);
            }
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    /// <summary>Distinct values in every register.</summary>
    internal static X86Registers Pattern() => default(X86Registers) with
    {
        Rax = 0x1122334455667788, Rbx = 0x0102030405060708, Rcx = ulong.MaxValue, Rdx = 0xfffe, Rsi = 0x402,
        Rdi = unchecked((ulong)-5L), Rbp = 0x7ffd_0000_1000, Rsp = 0x1000, R8 = 0x8888_8888_8888_8808,
        R9 = 0x9999_0000_9999_0009, R10 = 0xa0a0_a0a0_a0a0_a0aa, R11 = 0xb000_0000_0000_000b, R12 = 0xc0c0_c0c0_0000_cccc,
        R13 = 0x0d0d_0d0d_0d0d_0d0d, R14 = 0xe0e0_0000_0000_00ee, R15 = 0xf0f0_f0f0_f0f0_f0ff, Rip = 0x55_0000_1234,
        FsBase = 0x2000, GsBase = 0x3000,
    };

    /// <summary>Memory where the byte at each address is the address's low byte; every address is readable.</summary>
    private struct PatternMemory : IProbeMemory
    {
        public readonly Memory.MemoryReadResult Read(ulong address, Span<byte> destination)
        {
            for (var i = 0; i < destination.Length; i++) destination[i] = (byte)(address + (ulong)i);
            return new Memory.MemoryReadResult(destination.Length, 0);
        }
    }

    private struct NoMemory : IProbeMemory
    {
        public readonly Memory.MemoryReadResult Read(ulong address, Span<byte> destination) => new(0, 14);
    }
}
