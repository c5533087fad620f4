using System.Globalization;
using System.Text.RegularExpressions;
using Nozoki.Tests.Helpers;

namespace Nozoki.Tests;

/// <summary>One probe as `readelf -n` prints it (the text of each field).</summary>
internal sealed record ReadelfProbe(string Provider, string Name, string Location, string Base, string Semaphore, string Arguments);

/// <summary>The USDT fixtures (built with sys/sdt.h) and the reference tools (readelf, nm) the probe tests compare with.</summary>
internal static partial class ProbesFixtures
{
    public const string LibStdCxx = "/usr/lib/x86_64-linux-gnu/libstdc++.so.6";
    public const string Python = "/usr/bin/python3.11";

    /// <summary>fixtures/usdt.c: probes of 0..6 arguments in every operand form, with and without semaphores.</summary>
    public static string Exe => Fixtures.Build("usdt", "usdt.c", "gcc", "-ldl");

    /// <summary>fixtures/usdtlib.c as a shared library (usdt --lib PATH dlopens it).</summary>
    public static string Lib => Fixtures.Build("libusdtlib.so", "usdtlib.c", "gcc", "-shared", "-fPIC");

    /// <summary>fixtures/usdt_throw.cpp: throws N C++ exceptions (libstdc++'s libstdcxx:throw probe).</summary>
    public static string Throw => Fixtures.Build("usdt_throw", "usdt_throw.cpp", "g++");

    /// <summary>Runs a tool to completion and returns its stdout (fails the test on a non-zero exit).</summary>
    public static string Tool(string file, params string[] args)
    {
        using var p = ExternalProcess.Start(file, file, args);
        var code = p.WaitForExit(TimeSpan.FromSeconds(60));
        Assert.True(code == 0, $"{file} {string.Join(' ', args)} exited {code}: {p.StderrText()}");
        return p.StdoutText();
    }

    /// <summary>The stapsdt probes `readelf -n` shows for a file, in its order.</summary>
    public static List<ReadelfProbe> Readelf(string path)
    {
        var text = Tool("readelf", "-n", path);
        var list = new List<ReadelfProbe>();
        foreach (Match m in ReadelfProbeRegex().Matches(text))
        {
            list.Add(new ReadelfProbe(m.Groups["provider"].Value, m.Groups["name"].Value, m.Groups["loc"].Value,
                m.Groups["base"].Value, m.Groups["sem"].Value, m.Groups["args"].Value));
        }

        Assert.Equal(Regex.Matches(text, "NT_STAPSDT").Count, list.Count);
        return list;
    }

    // readelf.c print_stapsdt_note: "    Provider: %s\n    Name: %s\n    Location: 0x..., Base: 0x..., Semaphore: 0x...\n    Arguments: %s\n"
    [GeneratedRegex(@"^    Provider: (?<provider>.*)\n    Name: (?<name>.*)\n    Location: (?<loc>0x[0-9a-f]+), Base: (?<base>0x[0-9a-f]+), Semaphore: (?<sem>0x[0-9a-f]+)\n    Arguments: (?<args>.*)$", RegexOptions.Multiline)]
    private static partial Regex ReadelfProbeRegex();

    /// <summary>A symbol's value as `nm` prints it.</summary>
    public static ulong NmValue(string path, string symbol)
    {
        foreach (var line in Tool("nm", path).Split('\n'))
        {
            var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length == 3 && parts[2] == symbol) return ulong.Parse(parts[0], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        }

        Assert.Fail($"nm {path} shows no symbol {symbol}");
        return 0;
    }

    public static ulong Hex(string s) => ulong.Parse(s.StartsWith("0x", StringComparison.Ordinal) ? s[2..] : s, NumberStyles.HexNumber, CultureInfo.InvariantCulture);

    /// <summary>The "key value" lines the usdt fixture prints (e.g. "sem fixture:guarded 0x55..." → ("sem fixture:guarded", 0x55...)).</summary>
    public static Dictionary<string, ulong> FixtureAddresses(string stdout)
    {
        var d = new Dictionary<string, ulong>(StringComparer.Ordinal);
        foreach (var line in stdout.Split('\n'))
        {
            var parts = line.Split(' ');
            if (parts.Length == 3 && parts[2].StartsWith("0x", StringComparison.Ordinal)) d[$"{parts[0]} {parts[1]}"] = Hex(parts[2]);
        }

        return d;
    }
}
