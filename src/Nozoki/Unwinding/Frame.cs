using System.Globalization;
using System.Text;

namespace Nozoki.Unwinding;

/// <summary>
/// One frame of a native backtrace. <see cref="Pc"/> is the frame's program counter as the stack gives it: the
/// interrupted instruction for frame 0 and for a frame a signal interrupted (<see cref="IsActivation"/>), else the
/// return address, which lies after the call; symbol and line are looked up at Pc - 1 in that case, inside the call.
/// A frame with <see cref="EndMarker"/> set is no frame: it says why the backtrace ends there (its other fields are
/// empty).
/// </summary>
public sealed record Frame(
    int Index, ulong Pc, bool IsActivation, string? Module, string? ModulePath, string? Symbol, ulong Offset,
    string? File, int? Line, string? EndMarker = null)
{
    /// <summary>The address symbol and line were looked up at: Pc, or Pc - 1 for a return address.</summary>
    public ulong LookupPc => IsActivation || Pc == 0 ? Pc : Pc - 1;

    /// <summary>`#0 0x00007f0123456789 libc.so.6!read+0x1d (file.c:12)`; unknown parts are left out
    /// (`module+0xoff` without a symbol, the bare address without a module).</summary>
    public override string ToString() => Format(new StringBuilder()).ToString();

    /// <summary>Appends the line of <see cref="ToString"/> to SB (no newline).</summary>
    public StringBuilder Format(StringBuilder sb)
    {
        var ic = CultureInfo.InvariantCulture;
        sb.Append('#').Append(Index.ToString(ic)).Append(' ');
        if (EndMarker is not null) return sb.Append("-- ").Append(EndMarker).Append(" --");
        sb.Append("0x").Append(Pc.ToString("x16", ic));
        if (Module is not null)
        {
            sb.Append(' ').Append(Module);
            if (Symbol is not null) sb.Append('!').Append(Symbol);
            sb.Append("+0x").Append(Offset.ToString("x", ic));
        }

        if (File is not null)
        {
            sb.Append(" (").Append(File);
            if (Line is { } line) sb.Append(':').Append(line.ToString(ic));
            sb.Append(')');
        }

        return sb;
    }

    /// <summary>The lines of <see cref="ToString"/> for every frame, joined by newlines.</summary>
    public static string FormatAll(IEnumerable<Frame> frames)
    {
        var sb = new StringBuilder();
        foreach (var f in frames) f.Format(sb).Append('\n');
        return sb.ToString();
    }
}

/// <summary>Unwinding could not start: libdw.so.1 is missing, the process is gone, or libdw refused it.</summary>
public sealed class UnwindException(string message, int errno = 0) : Exception(message)
{
    /// <summary>The errno behind the failure, or 0.</summary>
    public int Errno { get; } = errno;
}
