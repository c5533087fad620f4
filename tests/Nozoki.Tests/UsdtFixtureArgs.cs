namespace Nozoki.Tests;

/// <summary>What tests/fixtures/usdt.c's probes pass, as nozoki prints them; shared by the library and CLI tests.</summary>
internal static class UsdtFixtureArgs
{
    internal sealed record Values(string U8, string S8, string U16, string S16, string U32, string S32, string U64, string S64, string Str);

    /// <summary>The values one_iteration derives from s = seed + i (the fixture's seed is 1); Str is g_name's address.</summary>
    internal static Values For(ulong s, ulong str) => new(
        $"{(byte)s}", $"{(sbyte)-(sbyte)s}", $"{(ushort)(s * 7)}", $"{(short)-(short)(s * 7)}", $"{(uint)(s * 100003)}",
        $"{unchecked(-(int)(s * 100003))}", $"{s * 0x100000001UL}", $"{-(long)(s * 0x100000001UL)}", $"{str}");

    /// <summary>Every probe of the executable (not the library) with its arguments at loop i.</summary>
    internal static IEnumerable<(string Probe, string[] Args)> ExecutableProbes(int i, ulong nameAddress)
    {
        var e = For(1UL + (ulong)i, nameAddress);
        yield return ("fixture:zero", []);
        yield return ("fixture:one", [e.U8]);
        yield return ("fixture:two", [e.S8, e.U16]);
        yield return ("fixture:three", [e.S16, e.U32, e.S32]);
        yield return ("fixture:four", [e.U64, e.S64, e.U8, e.S8]);
        yield return ("fixture:five", [e.U8, e.S8, e.U16, e.S16, e.U32]);
        yield return ("fixture:six", [e.S32, e.U64, e.S64, e.U8, e.S16, e.Str]);
        yield return ("fixture:mem_unsigned", [e.U8, e.U16, e.U32, e.U64]);
        yield return ("fixture:mem_signed", [e.S8, e.S16, e.S32, e.S64]);
        yield return ("fixture:global_signed", [e.S8, e.S16, e.S32, e.S64]);
        yield return ("fixture:global_unsigned", [e.U8, e.U16, e.U32, e.U64]);
        yield return ("fixture:imm", ["255", "-128", "-32768", "4294967295", "-5", "1234567890123"]);
        yield return ("fixture:mixed", [$"{i}", e.Str, e.S32]);
        yield return ("fixture:guarded", [$"{i}", e.S64]);
        yield return ("fixture:guarded2", []);
    }
}
