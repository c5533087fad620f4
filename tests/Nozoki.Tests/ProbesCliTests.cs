using System.Buffers.Binary;
using System.Globalization;
using System.Text.Json;
using Nozoki.Elf;
using Nozoki.Tests.Helpers;

namespace Nozoki.Tests;

/// <summary>`nozoki probes FILE` and `nozoki probes -p PID`, against readelf and against running fixtures.</summary>
[Collection(PtraceCollection.Name)]
public sealed class ProbesCliTests
{
    private static readonly TimeSpan Step = TimeSpan.FromSeconds(15);

    public static TheoryData<string> Files => ProbesTests.Files;

    private static string PathOf(string file) => file switch
    {
        "exe" => ProbesFixtures.Exe,
        "lib" => ProbesFixtures.Lib,
        _ => file,
    };

    /// <summary>Splits a text line: the fixed columns, then the arguments (the rest, which may contain spaces).</summary>
    private static (string[] Fixed, string Arguments) Columns(string line, int fixedCount)
    {
        var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(parts.Length >= fixedCount, $"too few columns: {line}");
        return (parts[..fixedCount], string.Join(' ', parts[fixedCount..]));
    }

    private static (int Code, string Stdout, string Stderr) Run(params string[] args)
    {
        var r = NozokiCli.Run(args);
        NozokiCli.AssertNoStackTrace(r.Stdout, r.Stderr);
        return r;
    }

    [Theory]
    [MemberData(nameof(Files))]
    public void Text_output_equals_readelf_field_by_field(string file)
    {
        var path = PathOf(file);
        var expected = ProbesFixtures.Readelf(path);
        var (code, stdout, stderr) = Run("probes", path);
        Assert.True(code == 0, stderr);
        var lines = stdout.TrimEnd('\n').Split('\n');
        Assert.Equal(["OBJECT", "PROVIDER", "NAME", "LOCATION", "BASE", "SEMAPHORE", "ARGUMENTS"], lines[0].Split(' ', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal(expected.Count, lines.Length - 1);
        for (var i = 0; i < expected.Count; i++)
        {
            var (f, args) = Columns(lines[i + 1], 6);
            Assert.Equal(path, f[0]);
            Assert.Equal(expected[i], new ReadelfProbe(f[1], f[2], f[3], f[4], f[5], args));
        }
    }

    [Theory]
    [MemberData(nameof(Files))]
    public void Json_output_equals_readelf_field_by_field(string file)
    {
        var path = PathOf(file);
        var expected = ProbesFixtures.Readelf(path);
        var (code, stdout, stderr) = Run("probes", "--json", path);
        Assert.True(code == 0, stderr);
        var objects = stdout.TrimEnd('\n').Split('\n').Select(NozokiCli.ParseJson).ToList();
        Assert.Equal(expected.Count, objects.Count);
        for (var i = 0; i < expected.Count; i++)
        {
            var o = objects[i];
            Assert.Equal(path, o.GetProperty("object").GetString());
            Assert.Equal(expected[i], new ReadelfProbe(o.GetProperty("provider").GetString()!, o.GetProperty("name").GetString()!,
                o.GetProperty("location").GetString()!, o.GetProperty("base").GetString()!, o.GetProperty("semaphore").GetString()!,
                o.GetProperty("arguments").GetString()!));
            Assert.Equal(expected[i].Arguments.Split(' ', StringSplitOptions.RemoveEmptyEntries),
                o.GetProperty("args").EnumerateArray().Select(a => a.GetProperty("spec").GetString()));
        }
    }

    [Theory]
    [InlineData("fixture:global_*", "global_signed global_unsigned")]
    [InlineData("*:guarded*", "guarded guarded2")]
    [InlineData("usdt:fixture:zero", "zero")]
    [InlineData("six", "six")]
    [InlineData("nope:*", "")]
    public void A_filter_selects_provider_and_name_with_wildcards(string filter, string names)
    {
        var (code, stdout, stderr) = Run("probes", "--no-header", ProbesFixtures.Exe, filter);
        Assert.Equal(0, code);
        var got = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => Columns(l, 6).Fixed[2]);
        Assert.Equal(names, string.Join(' ', got));
        if (names.Length == 0) Assert.Contains("no USDT probes matching", stderr, StringComparison.Ordinal);
    }

    /// <summary>Exit code as expected, exactly one stderr line "nozoki: error: ...", no stack trace.</summary>
    private static string AssertError(int expectedCode, params string[] args)
    {
        var (code, stdout, stderr) = Run(args);
        var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1 && lines[0].StartsWith("nozoki: error:", StringComparison.Ordinal),
            $"expected one 'nozoki: error:' line for `nozoki {string.Join(' ', args)}`, got:\n{stderr}");
        Assert.True(expectedCode == code, $"`nozoki {string.Join(' ', args)}`: expected exit {expectedCode}, got {code}: {stderr}");
        Assert.Equal("", stdout);
        return lines[0];
    }

    [Fact]
    public void Malformed_elf_files_exit_2_with_one_line()
    {
        using var dir = new TempDir();
        var bytes = File.ReadAllBytes(ProbesFixtures.Exe);

        var truncated = dir.File("truncated");
        File.WriteAllBytes(truncated, bytes[..(bytes.Length / 2)]);
        Assert.Contains("malformed ELF file", AssertError(2, "probes", truncated), StringComparison.Ordinal);

        var header = dir.File("header");
        File.WriteAllBytes(header, bytes[..50]);
        Assert.Contains("truncated ELF header", AssertError(2, "probes", header), StringComparison.Ordinal);

        ElfSection note;
        using (var elf = ElfFile.FromBytes(bytes, "x")) note = elf.FindSection(".note.stapsdt")!;
        var badNote = dir.File("badnote");
        var copy = (byte[])bytes.Clone();
        BinaryPrimitives.WriteUInt32LittleEndian(copy.AsSpan((int)note.Offset + 4), 0xffff_fff0);
        File.WriteAllBytes(badNote, copy);
        Assert.Contains("descriptor size", AssertError(2, "probes", badNote), StringComparison.Ordinal);

        var badName = dir.File("badname");
        copy = (byte[])bytes.Clone();
        BinaryPrimitives.WriteUInt32LittleEndian(copy.AsSpan((int)note.Offset), 0x1000_0000);
        File.WriteAllBytes(badName, copy);
        Assert.Contains("name size", AssertError(2, "probes", badName), StringComparison.Ordinal);
    }

    [Fact]
    public void Files_that_are_not_elf_exit_5_directories_2_missing_files_3()
    {
        using var dir = new TempDir();
        var script = dir.File("script.sh");
        File.WriteAllText(script, "#!/bin/sh\necho hi\n");
        Assert.Contains("not an ELF file", AssertError(5, "probes", script), StringComparison.Ordinal);
        var elf32 = dir.File("elf32");
        var bytes = File.ReadAllBytes(ProbesFixtures.Exe);
        bytes[4] = 1;
        File.WriteAllBytes(elf32, bytes);
        Assert.Contains("32-bit", AssertError(5, "probes", elf32), StringComparison.Ordinal);
        var empty = dir.File("empty");
        File.WriteAllBytes(empty, []);
        AssertError(5, "probes", empty);
        Assert.Contains("is a directory", AssertError(2, "probes", dir.Path), StringComparison.Ordinal); // not a regular file: 2
        Assert.Contains("no such file", AssertError(3, "probes", dir.File("missing")), StringComparison.Ordinal);
    }

    public static TheoryData<string[]> BadArguments => new()
    {
        new[] { "probes" },
        new[] { "probes", "a", "b", "c" },
        new[] { "probes", "/bin/true", ":x" },
        new[] { "probes", "-p", "abc" },
        new[] { "probes", "-p", "0" },
        new[] { "probes", "-p", "1", "a:b", "c:d" },
    };

    [Theory]
    [MemberData(nameof(BadArguments))]
    public void Bad_arguments_exit_2(string[] args) => AssertError(2, args);

    [Fact]
    public void A_missing_pid_exits_3()
    {
        int pid;
        using (var child = Tracing.ChildProcess.Start(["/bin/true"]))
        {
            pid = child.Pid;
            Assert.NotNull(child.WaitForExit(Step));
        }

        AssertError(3, "probes", "-p", pid.ToString(CultureInfo.InvariantCulture));
    }

    [Fact]
    public void Pid_lists_executable_and_dlopened_library_with_addresses_and_semaphore_values()
    {
        using var dir = new TempDir();
        using var tracee = ProbesTests.StartWaitingFixture(dir, "--set-sem", "7");
        var printed = ProbesFixtures.FixtureAddresses(tracee.StdoutFileText());
        var exeBias = printed["func main"] - ProbesFixtures.NmValue(ProbesFixtures.Exe, "main");
        var libBias = printed["func fixturelib_run"] - ProbesFixtures.NmValue(ProbesFixtures.Lib, "fixturelib_run");
        var pid = tracee.Pid.ToString(CultureInfo.InvariantCulture);

        var (code, stdout, stderr) = Run("probes", "-p", pid);
        Assert.True(code == 0, stderr);
        var lines = stdout.TrimEnd('\n').Split('\n');
        Assert.Equal(["OBJECT", "PROVIDER", "NAME", "LOCATION", "BASE", "SEMAPHORE", "ADDRESS", "SEM_ADDRESS", "SEM", "ARGUMENTS"],
            lines[0].Split(' ', StringSplitOptions.RemoveEmptyEntries));
        var rows = lines[1..].Select(l => Columns(l, 9)).ToList();
        foreach (var (path, bias) in new[] { (ProbesFixtures.Exe, exeBias), (ProbesFixtures.Lib, libBias) })
        {
            var expected = ProbesFixtures.Readelf(path);
            var mine = rows.Where(r => r.Fixed[0] == path).ToList();
            Assert.Equal(expected.Count, mine.Count);
            for (var i = 0; i < expected.Count; i++)
            {
                var (f, args) = mine[i];
                Assert.Equal(expected[i], new ReadelfProbe(f[1], f[2], f[3], f[4], f[5], args));
                Assert.Equal(ProbesFixtures.Hex(f[3]) + bias, ProbesFixtures.Hex(f[6]));
                var sem = ProbesFixtures.Hex(f[5]);
                Assert.Equal(sem == 0 ? "-" : $"0x{sem + bias:x16}", f[7]);
            }
        }

        string Sem(string path, string name) => rows.Single(r => r.Fixed[0] == path && r.Fixed[2] == name).Fixed[8];
        Assert.Equal("7", Sem(ProbesFixtures.Exe, "guarded"));
        Assert.Equal("0", Sem(ProbesFixtures.Exe, "guarded2"));
        Assert.Equal("-", Sem(ProbesFixtures.Exe, "one"));
        Assert.Equal("7", Sem(ProbesFixtures.Lib, "guarded"));
        Assert.Equal("0", Sem(ProbesFixtures.Lib, "tick"));
        Assert.Equal($"0x{printed["sem fixturelib:guarded"]:x16}", rows.Single(r => r.Fixed[0] == ProbesFixtures.Lib && r.Fixed[2] == "guarded").Fixed[7]);

        (code, stdout, stderr) = Run("probes", "--json", "-p", pid, "*:guarded");
        Assert.True(code == 0, stderr);
        var objects = stdout.TrimEnd('\n').Split('\n').Select(NozokiCli.ParseJson).ToList();
        Assert.Equal(2, objects.Count);
        foreach (var o in objects)
        {
            Assert.Equal(tracee.Pid, o.GetProperty("pid").GetInt32());
            Assert.Equal(7, o.GetProperty("semaphore_value").GetInt32());
            var isLib = o.GetProperty("object").GetString() == ProbesFixtures.Lib;
            Assert.Equal($"0x{(isLib ? libBias : exeBias):x16}", o.GetProperty("load_bias").GetString());
            Assert.Equal($"0x{printed[isLib ? "sem fixturelib:guarded" : "sem fixture:guarded"]:x16}", o.GetProperty("semaphore_address").GetString());
        }

        tracee.Release();
        Assert.Equal(0, tracee.WaitForExit().Code);
    }

    [Fact]
    public void Pid_of_a_running_python_lists_its_probes_and_libstdcxx_in_a_cxx_program()
    {
        using var python = Tracee.Start([ProbesFixtures.Python, "-c", "import sys; sys.stdin.read(1)"], stdinPipe: true);
        Poll.Until(() => File.ReadAllText($"/proc/{python.Pid}/maps").Contains(ProbesFixtures.Python, StringComparison.Ordinal), Step, "python to start");
        var (code, stdout, stderr) = Run("probes", "--no-header", "-p", $"{python.Pid}", "python:function__entry");
        Assert.True(code == 0, stderr);
        var expected = ProbesFixtures.Readelf(ProbesFixtures.Python).Single(p => p.Name == "function__entry");
        var (f, args) = Columns(stdout.TrimEnd('\n'), 9);
        Assert.Equal(expected, new ReadelfProbe(f[1], f[2], f[3], f[4], f[5], args));
        Assert.Equal(f[3], f[6]); // python3.11 is not PIE: loaded where linked
        Assert.Equal(f[5], f[7]);
        Assert.Equal("0", f[8]);
        python.Release();
        python.WaitForExit();

        using var dir = new TempDir();
        using var cxx = Tracee.Start([ProbesFixtures.Throw, "3", "--wait"], stdinPipe: true, stdoutPath: dir.File("out"));
        Poll.Until(() => cxx.StdoutFileText().Contains("ready", StringComparison.Ordinal), Step, "usdt_throw to start");
        (code, stdout, stderr) = Run("probes", "--json", "-p", $"{cxx.Pid}", "libstdcxx:throw");
        Assert.True(code == 0, stderr);
        var o = NozokiCli.ParseJson(stdout.TrimEnd('\n'));
        var lib = o.GetProperty("object").GetString()!;
        Assert.Equal(Nozoki.Native.RealPath.Resolve(ProbesFixtures.LibStdCxx), lib); // the mapped file: libstdc++.so.6.0.30
        (code, var viaSoname, _) = Run("probes", "--json", "-p", $"{cxx.Pid}", "libstdc++.so.6:libstdcxx:throw");
        Assert.Equal(stdout, viaSoname);
        (code, var viaSymlink, _) = Run("probes", "--json", "-p", $"{cxx.Pid}", "/lib/x86_64-linux-gnu/libstdc++.so.6:libstdcxx:throw");
        Assert.Equal(stdout, viaSymlink);
        // libstdc++'s first PT_LOAD is at vaddr 0: the bias is where its first mapping starts.
        var start = File.ReadAllLines($"/proc/{cxx.Pid}/maps").First(l => l.EndsWith(lib, StringComparison.Ordinal)).Split('-')[0];
        Assert.Equal($"0x{ulong.Parse(start, NumberStyles.HexNumber, CultureInfo.InvariantCulture):x16}", o.GetProperty("load_bias").GetString());
        cxx.Release();
        Assert.Equal(0, cxx.WaitForExit().Code);
        Assert.Contains("thrown 3", cxx.StdoutFileText(), StringComparison.Ordinal);
    }
}
