using System.Buffers.Binary;
using System.Globalization;
using Nozoki.Memory;
using Nozoki.Tracing;

namespace Nozoki.Probes;

/// <summary>Where a USDT argument's value is.</summary>
public enum ArgLocation : byte
{
    /// <summary>`N@%reg`: in a register (at the width the name says).</summary>
    Register,

    /// <summary>`N@disp(%base,%index,scale)`, `N@sym(%rip)`, `N@sym`, `N@%fs:disp`: in memory.</summary>
    Memory,

    /// <summary>`N@$imm` or `N@$sym`: a constant.</summary>
    Immediate,

    /// <summary>Text nozoki cannot decode (kept, and shown raw).</summary>
    Unsupported,
}

/// <summary>Why an argument could not be evaluated.</summary>
public enum ArgStatus : byte
{
    Ok,

    /// <summary>The memory operand's address could not be read.</summary>
    MemoryFault,

    /// <summary>The operand names a symbol whose address is not known (not in .symtab/.dynsym, or not resolved).</summary>
    UnresolvedSymbol,

    /// <summary>The spec could not be parsed.</summary>
    Unsupported,
}

/// <summary>Reads a traced process's memory without allocating (a struct, so the evaluator is not boxed per hit).</summary>
public interface IProbeMemory
{
    MemoryReadResult Read(ulong address, Span<byte> destination);
}

/// <summary>Reads with process_vm_readv (PEEKDATA fallback) from one thread of a process.</summary>
public readonly struct ProcessMemoryReader(int tid) : IProbeMemory
{
    public MemoryReadResult Read(ulong address, Span<byte> destination) => ProcessMemory.Read(tid, address, destination);
}

/// <summary>An argument's value: the raw bits of its Size bytes, sign- or zero-extended to 64 bits.</summary>
public readonly record struct ArgValue(ulong Bits, int Size, bool Signed)
{
    public long AsInt64 => (long)Bits;

    public ulong AsUInt64 => Bits;

    /// <summary>Decimal: signed arguments as signed numbers, unsigned ones as unsigned. Does not allocate.</summary>
    public bool TryFormat(Span<char> destination, out int written) =>
        Signed ? ((long)Bits).TryFormat(destination, out written, default, CultureInfo.InvariantCulture)
               : Bits.TryFormat(destination, out written, default, CultureInfo.InvariantCulture);

    public override string ToString() => Signed ? ((long)Bits).ToString(CultureInfo.InvariantCulture) : Bits.ToString(CultureInfo.InvariantCulture);

    /// <summary>Keeps the low <paramref name="size"/> bytes of <paramref name="raw"/> and extends them by sign.</summary>
    public static ArgValue FromRaw(ulong raw, int size, bool signed)
    {
        if (size >= 8) return new ArgValue(raw, 8, signed);
        var bits = size * 8;
        var v = raw & ((1UL << bits) - 1);
        if (signed && (v & (1UL << (bits - 1))) != 0) v |= ~0UL << bits;
        return new ArgValue(v, size, signed);
    }
}

/// <summary>
/// One argument of a systemtap SDT probe, parsed from its spec ("-4@%eax", "8@-24(%rbp)", "4@$5", "8@foo(%rip)",
/// "-1@%sil", "2@%ax", "8@16(%rax,%rdx,8)", "8@%fs:0x28"): `[-]SIZE@OPERAND`, SIZE 1/2/4/8, a minus for signed.
/// Operands are GNU as AT&amp;T syntax as gcc prints them into the note. A spec without `SIZE@` is read as 8 bytes,
/// signed (what old sdt.h versions meant).
/// </summary>
public sealed record ArgSpec
{
    /// <summary>The spec as written in the note.</summary>
    public required string Text { get; init; }

    /// <summary>Bytes: 1, 2, 4 or 8.</summary>
    public int Size { get; init; } = 8;

    public bool Signed { get; init; }

    public ArgLocation Location { get; init; }

    /// <summary>For <see cref="ArgLocation.Register"/>.</summary>
    public RegisterOperand Register { get; init; }

    /// <summary>Memory: base register (None when absent; Rip for rip-relative).</summary>
    public X86Register Base { get; init; }

    /// <summary>Memory: index register (None when absent).</summary>
    public X86Register Index { get; init; }

    /// <summary>Memory: 1, 2, 4 or 8.</summary>
    public byte Scale { get; init; } = 1;

    /// <summary>Memory: the numeric displacement; Immediate: the constant.</summary>
    public long Displacement { get; init; }

    /// <summary>Memory or immediate: a symbol whose address is added (`foo(%rip)`, `foo+8(%rip)`, `$foo`).</summary>
    public string? Symbol { get; init; }

    /// <summary>
    /// The symbol's address once resolved: the link-time value in <see cref="ProbeSite.Args"/>, the address in the
    /// process in <see cref="ResolvedProbe.Args"/>. Null while unknown.
    /// </summary>
    public ulong? SymbolAddress { get; init; }

    /// <summary>Memory: a %fs: or %gs: segment override (its base, FsBase/GsBase, is added to the address).</summary>
    public SegmentOverride Segment { get; init; }

    /// <summary>Why the spec is <see cref="ArgLocation.Unsupported"/>.</summary>
    public string? Problem { get; init; }

    public override string ToString() => Text;

    /// <summary>Parses a note's argument string (specs separated by spaces).</summary>
    public static IReadOnlyList<ArgSpec> ParseAll(string arguments)
    {
        var list = new List<ArgSpec>();
        foreach (var part in arguments.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries)) list.Add(Parse(part));
        return list;
    }

    /// <summary>Parses one spec; never throws: what cannot be decoded comes back as <see cref="ArgLocation.Unsupported"/>.</summary>
    public static ArgSpec Parse(string text)
    {
        var s = text.AsSpan();
        var size = 8;
        var signed = true;
        var at = s.IndexOf('@');
        if (at >= 0)
        {
            if (!int.TryParse(s[..at], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var n) || Math.Abs(n) is not (1 or 2 or 4 or 8))
                return Bad(text, $"bad size '{s[..at]}' (expected 1, 2, 4 or 8, negative for signed)");
            size = Math.Abs(n);
            signed = n < 0;
            s = s[(at + 1)..];
        }

        var spec = new ArgSpec { Text = text, Size = size, Signed = signed };
        if (s.IsEmpty) return Bad(text, "no operand");

        if (s[0] == '$')
        {
            if (!TryParseDisplacement(s[1..], out var imm, out var sym) || (s.Length == 1))
                return Bad(text, $"bad immediate '{s}'");
            return spec with { Location = ArgLocation.Immediate, Displacement = imm, Symbol = sym };
        }

        var segment = SegmentOverride.None;
        if (s.Length > 4 && s[0] == '%' && s[3] == ':')
        {
            segment = s[1..3] switch
            {
                "fs" => SegmentOverride.Fs,
                "gs" => SegmentOverride.Gs,
                _ => SegmentOverride.Other,
            };
            if (segment == SegmentOverride.Other) return Bad(text, $"segment override '{s[..3]}' is not supported");
            s = s[4..];
        }

        if (s[0] == '%' && segment == SegmentOverride.None)
        {
            if (!RegisterOperand.TryParse(s[1..], out var reg)) return Bad(text, $"unknown register '{s}'");
            return spec with { Location = ArgLocation.Register, Register = reg };
        }

        // disp(base,index,scale), each part optional; or a bare disp (absolute address or symbol).
        var open = s.IndexOf('(');
        var dispText = open >= 0 ? s[..open] : s;
        long disp = 0;
        string? symbol = null;
        if (!dispText.IsEmpty && !TryParseDisplacement(dispText, out disp, out symbol)) return Bad(text, $"bad displacement '{dispText}'");
        var baseReg = X86Register.None;
        var indexReg = X86Register.None;
        byte scale = 1;
        if (open >= 0)
        {
            if (s[^1] != ')') return Bad(text, "missing ')'");
            var inner = s[(open + 1)..^1];
            var parts = new Range[4];
            var count = inner.Split(parts, ',');
            if (count > 3) return Bad(text, "too many parts inside (...)");
            var b = inner[parts[0]].Trim();
            if (!b.IsEmpty && !TryFullRegister(b, out baseReg)) return Bad(text, $"bad base register '{b}'");
            if (count >= 2)
            {
                var x = inner[parts[1]].Trim();
                if (!x.IsEmpty && (!TryFullRegister(x, out indexReg) || indexReg == X86Register.Rip)) return Bad(text, $"bad index register '{x}'");
            }

            if (count == 3)
            {
                var sc = inner[parts[2]].Trim();
                if (!byte.TryParse(sc, NumberStyles.None, CultureInfo.InvariantCulture, out scale) || scale is not (1 or 2 or 4 or 8))
                    return Bad(text, $"bad scale '{sc}'");
            }

            if (baseReg == X86Register.None && indexReg == X86Register.None && open > 0 && count == 1) return Bad(text, "empty (...)");
        }
        else if (dispText.IsEmpty)
        {
            return Bad(text, "no operand");
        }

        return spec with
        {
            Location = ArgLocation.Memory, Base = baseReg, Index = indexReg, Scale = scale, Displacement = disp, Symbol = symbol,
            Segment = segment,
        };
    }

    /// <summary>This spec with its symbol's address set (no-op when it names no symbol).</summary>
    public ArgSpec WithSymbolAddress(ulong? address) => Symbol is null ? this : this with { SymbolAddress = address };

    /// <summary>
    /// The argument's value given the registers at the probe and the process's memory. Does not allocate or throw;
    /// <paramref name="value"/> is 0 unless the result is <see cref="ArgStatus.Ok"/>. Rip matters only for a numeric
    /// rip-relative operand (gcc always names a symbol there): pass the probe's address, as a uprobe would see it
    /// (after an int3 trap the thread's rip is one past it: <c>regs with { Rip = probe.Address }</c>).
    /// </summary>
    public ArgStatus TryEvaluate<TMemory>(in X86Registers regs, ref TMemory memory, out ArgValue value)
        where TMemory : struct, IProbeMemory
    {
        value = default;
        switch (Location)
        {
            case ArgLocation.Register:
                value = ArgValue.FromRaw(Register.Read(regs), Size, Signed);
                return ArgStatus.Ok;
            case ArgLocation.Immediate:
                if (Symbol is not null && SymbolAddress is null) return ArgStatus.UnresolvedSymbol;
                value = ArgValue.FromRaw(unchecked((ulong)Displacement + (SymbolAddress ?? 0)), Size, Signed);
                return ArgStatus.Ok;
            case ArgLocation.Memory:
                var status = TryAddress(regs, out var address);
                if (status != ArgStatus.Ok) return status;
                Span<byte> buf = stackalloc byte[8];
                buf.Clear();
                var r = memory.Read(address, buf[..Size]);
                if (r.BytesRead != Size) return ArgStatus.MemoryFault;
                value = ArgValue.FromRaw(BinaryPrimitives.ReadUInt64LittleEndian(buf), Size, Signed);
                return ArgStatus.Ok;
            default:
                return ArgStatus.Unsupported;
        }
    }

    /// <summary>The effective address of a memory operand (what `lea` would compute).</summary>
    public ArgStatus TryAddress(in X86Registers regs, out ulong address)
    {
        address = 0;
        if (Location != ArgLocation.Memory) return ArgStatus.Unsupported;
        ulong a = unchecked((ulong)Displacement);
        if (Symbol is not null)
        {
            // `sym(%rip)` is how the assembler spells "the address of sym" in position-independent code: the
            // symbol's own address, not rip + its value.
            if (SymbolAddress is not { } sa) return ArgStatus.UnresolvedSymbol;
            a = unchecked(a + sa);
            if (Base != X86Register.Rip && Base != X86Register.None) a = unchecked(a + X86RegisterFile.Get(regs, Base));
        }
        else if (Base != X86Register.None)
        {
            a = unchecked(a + X86RegisterFile.Get(regs, Base));
        }

        if (Index != X86Register.None) a = unchecked(a + (X86RegisterFile.Get(regs, Index) * Scale));
        if (Segment == SegmentOverride.Fs) a = unchecked(a + regs.FsBase);
        else if (Segment == SegmentOverride.Gs) a = unchecked(a + regs.GsBase);
        address = a;
        return ArgStatus.Ok;
    }

    private static bool TryFullRegister(ReadOnlySpan<char> s, out X86Register reg)
    {
        reg = X86Register.None;
        if (s.Length < 2 || s[0] != '%' || !RegisterOperand.TryParse(s[1..], out var op) || op.Bytes != 8) return false;
        reg = op.Register;
        return true;
    }

    /// <summary>`-24`, `0x10`, `foo`, `foo+8`, `foo-0x8`, `8+foo`: a number and at most one symbol.</summary>
    private static bool TryParseDisplacement(ReadOnlySpan<char> s, out long value, out string? symbol)
    {
        value = 0;
        symbol = null;
        var i = 0;
        var sign = 1L;
        var terms = 0;
        var pendingSign = false;
        while (i < s.Length)
        {
            if (s[i] is '+' or '-')
            {
                sign = s[i] == '-' ? -sign : sign;
                pendingSign = true;
                i++;
                continue;
            }

            if (terms > 0 && !pendingSign) return false;
            var start = i;
            if (char.IsAsciiDigit(s[i]))
            {
                while (i < s.Length && s[i] is not ('+' or '-')) i++;
                var num = s[start..i];
                ulong n;
                var ok = num.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
                    ? ulong.TryParse(num[2..], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out n)
                    : ulong.TryParse(num, NumberStyles.None, CultureInfo.InvariantCulture, out n);
                if (!ok) return false;
                value = unchecked(value + (sign * (long)n));
            }
            else if (char.IsAsciiLetter(s[i]) || s[i] is '_' or '.')
            {
                while (i < s.Length && (char.IsAsciiLetterOrDigit(s[i]) || s[i] is '_' or '.' or '$' or '@')) i++;
                if (symbol is not null || sign < 0) return false;
                symbol = s[start..i].ToString();
            }
            else
            {
                return false;
            }

            sign = 1;
            pendingSign = false;
            terms++;
        }

        return terms > 0 && !pendingSign;
    }

    private static ArgSpec Bad(string text, string problem) => new() { Text = text, Location = ArgLocation.Unsupported, Problem = problem };
}

/// <summary>A %fs:/%gs: prefix on a memory operand.</summary>
public enum SegmentOverride : byte
{
    None,
    Fs,
    Gs,
    Other,
}
