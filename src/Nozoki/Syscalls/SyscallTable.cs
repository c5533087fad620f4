using System.Text;

namespace Nozoki.Syscalls;

/// <summary>The x86_64 syscall table (generated from the kernel headers: see gen_tables.py and syscalls.in).</summary>
internal static partial class SyscallTable
{
    // Built in the static constructor: field initializers of a partial class in different files run in no defined order.
    private static readonly byte[]?[] Utf8Names;
    private static readonly Dictionary<string, int> ByName = new(StringComparer.Ordinal);

#pragma warning disable CA1810 // the generated tables must be initialized first
    static SyscallTable()
    {
        Utf8Names = new byte[]?[Count];
        for (var i = 0; i < Count; i++)
        {
            if (NameTable[i] is not { } n) continue;
            Utf8Names[i] = Encoding.ASCII.GetBytes(n);
            ByName[n] = i;
        }
    }
#pragma warning restore CA1810

    /// <summary>The name, or null for a number the headers do not define.</summary>
    public static string? Name(long nr) => nr >= 0 && nr < Count ? NameTable[nr] : null;

    /// <summary>The name as ASCII bytes, or null for an unknown number.</summary>
    public static byte[]? NameBytes(long nr) => nr >= 0 && nr < Count ? Utf8Names[nr] : null;

    public static int Lookup(string name) => ByName.TryGetValue(name, out var nr) ? nr : -1;

    public static IEnumerable<(int Nr, string Name)> All()
    {
        for (var i = 0; i < Count; i++)
        {
            if (NameTable[i] is { } n) yield return (i, n);
        }
    }

    /// <summary>The argument kinds, or null when the table does not describe the syscall.</summary>
    public static ArgKind[]? Args(long nr) => nr >= 0 && nr < Count ? ArgTable[nr] : null;

    public static ReturnKind Return(long nr) => nr >= 0 && nr < Count ? ReturnTable[nr] : ReturnKind.Int;

    public static SyscallClass Classes(long nr) => nr >= 0 && nr < Count ? ClassTable[nr] : SyscallClass.None;
}
