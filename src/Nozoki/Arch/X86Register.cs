using Nozoki.Tracing;

// x86_64 facts live in Arch/; the types keep the namespace they were published in.
namespace Nozoki.Probes;

/// <summary>Reads registers by <see cref="X86Register"/> from the session's register set.</summary>
public static class X86RegisterFile
{
    /// <summary>The full 64-bit register.</summary>
    public static ulong Get(in X86Registers regs, X86Register r) => r switch
    {
        X86Register.Rax => regs.Rax,
        X86Register.Rbx => regs.Rbx,
        X86Register.Rcx => regs.Rcx,
        X86Register.Rdx => regs.Rdx,
        X86Register.Rsi => regs.Rsi,
        X86Register.Rdi => regs.Rdi,
        X86Register.Rbp => regs.Rbp,
        X86Register.Rsp => regs.Rsp,
        X86Register.R8 => regs.R8,
        X86Register.R9 => regs.R9,
        X86Register.R10 => regs.R10,
        X86Register.R11 => regs.R11,
        X86Register.R12 => regs.R12,
        X86Register.R13 => regs.R13,
        X86Register.R14 => regs.R14,
        X86Register.R15 => regs.R15,
        X86Register.Rip => regs.Rip,
        _ => 0,
    };
}

/// <summary>The x86_64 general-purpose registers (and rip), whatever width an operand names them at.</summary>
public enum X86Register : byte
{
    None,
    Rax, Rbx, Rcx, Rdx, Rsi, Rdi, Rbp, Rsp,
    R8, R9, R10, R11, R12, R13, R14, R15,
    Rip,
}

/// <summary>A register as an operand names it: %rax (8 bytes), %eax (4), %ax (2), %al (1) or %ah (1 byte, shift 8).</summary>
public readonly record struct RegisterOperand(X86Register Register, byte Bytes, byte Shift)
{
    private static readonly Dictionary<string, RegisterOperand> Names = BuildNames();

    /// <summary>The operand's value: its bytes of the full register, zero-extended.</summary>
    public ulong Read(in X86Registers regs)
    {
        var v = X86RegisterFile.Get(regs, Register) >> Shift;
        return Bytes >= 8 ? v : v & ((1UL << (Bytes * 8)) - 1);
    }

    /// <summary>Looks up an AT&amp;T register name without the '%' (rax, eax, ax, al, ah, r8, r8d, r8w, r8b, r8l, sil, rip ...).</summary>
    public static bool TryParse(ReadOnlySpan<char> name, out RegisterOperand operand)
    {
        Span<char> lower = stackalloc char[8];
        if (name.Length is 0 or > 8)
        {
            operand = default;
            return false;
        }

        name.ToLowerInvariant(lower);
        return Names.GetAlternateLookup<ReadOnlySpan<char>>().TryGetValue(lower[..name.Length], out operand);
    }

    private static Dictionary<string, RegisterOperand> BuildNames()
    {
        var d = new Dictionary<string, RegisterOperand>(StringComparer.Ordinal);
        // The eight legacy registers: 64, 32, 16, low-8 and (for a-d) high-8 names.
        (X86Register R, string Q, string D, string W, string B, string? H)[] legacy =
        [
            (X86Register.Rax, "rax", "eax", "ax", "al", "ah"),
            (X86Register.Rbx, "rbx", "ebx", "bx", "bl", "bh"),
            (X86Register.Rcx, "rcx", "ecx", "cx", "cl", "ch"),
            (X86Register.Rdx, "rdx", "edx", "dx", "dl", "dh"),
            (X86Register.Rsi, "rsi", "esi", "si", "sil", null),
            (X86Register.Rdi, "rdi", "edi", "di", "dil", null),
            (X86Register.Rbp, "rbp", "ebp", "bp", "bpl", null),
            (X86Register.Rsp, "rsp", "esp", "sp", "spl", null),
        ];
        foreach (var (r, q, dw, w, b, h) in legacy)
        {
            d[q] = new(r, 8, 0);
            d[dw] = new(r, 4, 0);
            d[w] = new(r, 2, 0);
            d[b] = new(r, 1, 0);
            if (h is not null) d[h] = new(r, 1, 8);
        }

        for (var i = 8; i <= 15; i++)
        {
            var r = (X86Register)((int)X86Register.R8 + i - 8);
            d[$"r{i}"] = new(r, 8, 0);
            d[$"r{i}d"] = new(r, 4, 0);
            d[$"r{i}w"] = new(r, 2, 0);
            d[$"r{i}b"] = new(r, 1, 0);
            d[$"r{i}l"] = new(r, 1, 0); // Intel's name for the low byte; some assemblers print it
        }

        d["rip"] = new(X86Register.Rip, 8, 0);
        d["eip"] = new(X86Register.Rip, 4, 0);
        return d;
    }
}
