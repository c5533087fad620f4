using System.Globalization;
using System.Text.RegularExpressions;
using Nozoki.Symbols;
using Nozoki.Tests.Helpers;

namespace Nozoki.Tests;

/// <summary>
/// Symbol lookup in a live process against gdb (`info symbol ADDR`, `info address NAME`), nm -D and readelf -s: a C
/// fixture and its shared library (one name defined in both), libc (its symbols from the build-id debug file), and a
/// stripped executable whose static functions come back through .gnu_debuglink.
/// </summary>
[Collection(PtraceCollection.Name)]
public sealed partial class SymbolsTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    private static string Library => Fixtures.Build("libunwind_symlib.so", "unwind_symlib.c", "gcc", "-g", "-shared", "-fPIC",
        "-Wl,-soname,libunwind_symlib.so");

    private static string Executable => Fixtures.Build("unwind_symbols", "unwind_symbols.c", "gcc", "-g", Library,
        "-Wl,-rpath," + Path.GetDirectoryName(Library));

    private sealed class Running : IDisposable
    {
        private readonly TempDir _dir = new();

        public Running(string exe)
        {
            Tracee = Tracee.Start([exe], stdinPipe: true, stdoutPath: _dir.File("out"));
            Poll.Until(() => Tracee.StdoutFileText().Contains("ready"), Timeout, "the fixture's ready line");
            Symbols = ProcessSymbols.ForProcess(Tracee.Pid);
        }

        public Tracee Tracee { get; }

        public int Pid => Tracee.Pid;

        public ProcessSymbols Symbols { get; }

        public void Dispose()
        {
            Tracee.Dispose();
            _dir.Dispose();
        }
    }

    private static ulong Hex(string s) => ulong.Parse(s.StartsWith("0x", StringComparison.Ordinal) ? s[2..] : s, NumberStyles.HexNumber, CultureInfo.InvariantCulture);

    [GeneratedRegex(@"^(\S+?)(?: \+ (\d+))? in section \S+")]
    private static partial Regex InfoSymbolLine();

    [GeneratedRegex(@"^Symbol ""(\S+)"" is (?:a function at address|at) (0x[0-9a-f]+)")]
    private static partial Regex InfoAddressLine();

    [Fact]
    public void Addresses_name_the_symbols_gdb_names()
    {
        using var p = new Running(Executable);
        var s = p.Symbols;
        // Addresses inside functions of the executable, the library and libc, at various offsets.
        var addresses = new List<ulong>();
        foreach (var (spec, offsets) in new[]
                 {
                     ("unwind_symbols:twice", new ulong[] { 0, 1, 3 }), ("unwind_symbols:main", [0, 7]),
                     ("unwind_symbols:local_helper", [2]), ("libunwind_symlib.so:twice", [0, 2]),
                     ("libunwind_symlib.so:symlib_entry", [4]), ("libc.so.6:malloc", [0, 20]), ("libc.so.6:read", [13]),
                     ("libc.so.6:__libc_start_main", [5]), ("libc.so.6:pthread_create", [30]),
                 })
        {
            var at = Assert.Single(s.Resolve(spec)).Address;
            addresses.AddRange(offsets.Select(o => at + o));
        }

        var gdb = Gdb.Run(p.Pid, addresses.Select(a => $"info symbol 0x{a:x}").ToArray())
            .Split('\n').Where(l => InfoSymbolLine().IsMatch(l) || l.StartsWith("No symbol", StringComparison.Ordinal)).ToList();
        Assert.Equal(addresses.Count, gdb.Count);
        for (var i = 0; i < addresses.Count; i++)
        {
            var m = InfoSymbolLine().Match(gdb[i]);
            Assert.True(m.Success, gdb[i]);
            var gdbName = m.Groups[1].Value;
            var gdbOffset = m.Groups[2].Success ? ulong.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture) : 0;
            var ours = s.Describe(addresses[i]);
            Assert.NotNull(ours);
            // The same function start; gdb's name is ours or an alias at that start (malloc and __libc_malloc).
            Assert.True(ours.Offset == gdbOffset, $"0x{addresses[i]:x}: gdb says {gdb[i]}, nozoki {ours}");
            var aliases = ours.Module.Symbols!.Symbols.Where(x => x.FileAddress == ours.FileAddress - ours.Offset).Select(x => x.Name).ToList();
            Assert.True(aliases.Contains(gdbName), $"0x{addresses[i]:x}: gdb says {gdb[i]}, nozoki {ours} (aliases {string.Join(' ', aliases)})");
        }

        Assert.Equal("unwind_symbols!twice+0x3", s.Format(addresses[2]));
        Assert.Equal("libc.so.6!malloc", s.Format(s.Resolve("libc.so.6:malloc")[0].Address));
    }

    [Fact]
    public void Names_resolve_to_the_addresses_gdb_gives()
    {
        using var p = new Running(Executable);
        string[] names = ["main", "local_helper", "symlib_entry", "malloc", "pthread_create", "__libc_start_main"];
        var gdb = Gdb.Run(p.Pid, names.Select(n => "info address " + n).ToArray())
            .Split('\n').Select(l => InfoAddressLine().Match(l)).Where(m => m.Success).ToList();
        Assert.Equal(names, gdb.Select(m => m.Groups[1].Value));
        foreach (var m in gdb)
        {
            var ours = p.Symbols.Resolve(m.Groups[1].Value);
            Assert.Contains(Hex(m.Groups[2].Value), ours.Select(l => l.Address));
        }
    }

    [Fact]
    public void Every_function_nm_and_readelf_list_resolves_to_its_address()
    {
        using var p = new Running(Executable);
        var libc = Assert.Single(p.Symbols.Modules, m => m.Name == "libc.so.6");
        var nm = RunTool("nm", "-D", "--defined-only", libc.Path);
        var checkedCount = 0;
        foreach (var line in nm.Split('\n'))
        {
            var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length != 3 || parts[1] is not ("T" or "W" or "i")) continue;
            var name = parts[2].Split('@')[0];
            var want = Hex(parts[0]) + libc.Bias!.Value;
            Assert.Contains(want, p.Symbols.Resolve("libc.so.6:" + name).Select(l => l.Address));
            checkedCount++;
        }

        Assert.InRange(checkedCount, 1000, 100_000);

        // readelf -s: the executable's .symtab, local functions included.
        var exe = Assert.Single(p.Symbols.Modules, m => m.Name == "unwind_symbols");
        var readelf = RunTool("readelf", "-sW", exe.Path);
        var functions = 0;
        foreach (var line in readelf.Split('\n'))
        {
            var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (f.Length < 8 || f[3] != "FUNC" || f[6] == "UND" || Hex(f[1]) == 0) continue;
            var name = f[7].Split('@')[0];
            Assert.Contains(Hex(f[1]) + exe.Bias!.Value, p.Symbols.Resolve("unwind_symbols:" + name).Select(l => l.Address));
            functions++;
        }

        Assert.InRange(functions, 4, 100);
    }

    private static string RunTool(string tool, params string[] args)
    {
        using var proc = ExternalProcess.Start(tool, tool, args);
        Assert.Equal(0, proc.WaitForExit(Timeout));
        return proc.StdoutText();
    }

    [Fact]
    public void Specs_name_every_definition_a_module_a_glob_an_offset_or_a_file_address()
    {
        using var p = new Running(Executable);
        var s = p.Symbols;
        var both = s.Resolve("twice");
        Assert.Equal(["unwind_symbols", "libunwind_symlib.so"], both.Select(l => l.Module.Name).Order().Reverse());
        Assert.All(both, l => Assert.Equal(l.Module.Bias + l.FileAddress, l.Address));

        var lib = Assert.Single(s.Resolve("*symlib*:twice"));
        Assert.Equal("libunwind_symlib.so", lib.Module.Name);
        Assert.Equal(lib.Address, Assert.Single(s.Resolve(lib.Module.Path + ":twice")).Address);

        var plus = Assert.Single(s.Resolve("unwind_symbols:main+0x4"));
        Assert.Equal(Assert.Single(s.Resolve("main")).Address + 4, plus.Address);
        Assert.Equal(("main", 4UL), (plus.Symbol, plus.Offset));

        var exe = s.Modules.Single(m => m.Name == "unwind_symbols");
        var fileAddress = exe.Symbols!.FindCode("local_helper")[0].FileAddress + 2;
        var byAddress = Assert.Single(s.Resolve($"unwind_symbols:0x{fileAddress:x}"));
        Assert.Equal(("local_helper", 2UL, fileAddress + exe.Bias!.Value), (byAddress.Symbol, byAddress.Offset, byAddress.Address));
        Assert.Equal($"unwind_symbols!local_helper+0x2", byAddress.ToString());

        var glob = s.Resolve("libc.so.6:pthread_mutex_*lock");
        Assert.Superset(new HashSet<string?> { "pthread_mutex_lock", "pthread_mutex_unlock", "pthread_mutex_trylock" }, glob.Select(l => l.Symbol).ToHashSet());
    }

    [Fact]
    public void What_is_not_code_or_not_there_is_an_error_with_the_nearest_names()
    {
        using var p = new Running(Executable);
        var s = p.Symbols;
        var data = Assert.Throws<SymbolLookupException>(() => s.Resolve("symbol_counter"));
        Assert.Contains("not code", data.Message);

        var exe = s.Modules.Single(m => m.Name == "unwind_symbols");
        var counter = exe.Symbols!.FindAny("symbol_counter").Single().FileAddress;
        Assert.Contains("not in an executable segment", Assert.Throws<SymbolLookupException>(() => s.Resolve($"unwind_symbols:0x{counter:x}")).Message);

        var typo = Assert.Throws<SymbolLookupException>(() => s.Resolve("symlib_entyr"));
        Assert.Equal("symlib_entry", typo.Suggestions[0]);
        Assert.InRange(typo.Suggestions.Count, 1, 5);
        Assert.DoesNotContain('\n', typo.Message);

        var module = Assert.Throws<SymbolLookupException>(() => s.Resolve("libc.so.7:malloc"));
        Assert.Equal("libc.so.6", module.Suggestions[0]);

        var many = Assert.Throws<SymbolLookupException>(() => s.Resolve("lib*:0x1000"));
        Assert.Contains("modules", many.Message);
        Assert.Throws<SymbolLookupException>(() => s.Resolve("unwind_symbols:main+0x100000"));
        Assert.Throws<SymbolLookupException>(() => s.Resolve("0x1000"));
    }

    [Fact]
    public void A_stripped_executable_gets_its_static_functions_back_through_gnu_debuglink()
    {
        using var dir = new TempDir();
        var exe = dir.File("unwind_symbols_stripped");
        Directory.CreateDirectory(dir.File(".debug"));
        RunTool("objcopy", "--only-keep-debug", Executable, dir.File(".debug/unwind_symbols_stripped.debug"));
        // objcopy stores the link's file name and CRC from the file it is given; the debug file is looked up in .debug/.
        var tmpDebug = dir.File("unwind_symbols_stripped.debug");
        File.Copy(dir.File(".debug/unwind_symbols_stripped.debug"), tmpDebug);
        RunTool("objcopy", "--strip-all", "--remove-section=.note.gnu.build-id", "--add-gnu-debuglink=" + tmpDebug, Executable, exe);
        File.Delete(tmpDebug);
        Assert.DoesNotContain("local_helper", RunTool("nm", "-a", exe) + RunTool("nm", "-D", exe));

        using var p = new Running(exe);
        var module = p.Symbols.Modules.Single(m => m.Name == "unwind_symbols_stripped");
        Assert.Equal(dir.File(".debug/unwind_symbols_stripped.debug"), module.Symbols!.DebugFile);
        var helper = Assert.Single(p.Symbols.Resolve("local_helper"));
        Assert.Equal("unwind_symbols_stripped!local_helper+0x1", p.Symbols.Format(helper.Address + 1));
    }

    [Fact]
    public void Libc_symbols_come_from_its_build_id_debug_file_when_installed()
    {
        using var p = new Running(Executable);
        var libc = p.Symbols.Modules.Single(m => m.Name == "libc.so.6");
        var notes = RunTool("readelf", "-n", libc.Path);
        var id = BuildIdLine().Match(notes).Groups[1].Value;
        var debug = $"/usr/lib/debug/.build-id/{id[..2]}/{id[2..]}.debug";
        if (!File.Exists(debug))
        {
            Assert.Null(libc.Symbols!.DebugFile);
            return; // libc6-dbg is not installed (tests/run installs it)
        }

        Assert.Equal(debug, libc.Symbols!.DebugFile);
        // A static function of libc: only in the debug file's .symtab, not in .dynsym.
        Assert.DoesNotContain(" __libc_start_call_main", RunTool("nm", "-D", libc.Path));
        Assert.Single(p.Symbols.Resolve("libc.so.6:__libc_start_call_main"));
    }

    [GeneratedRegex(@"Build ID: ([0-9a-f]+)")]
    private static partial Regex BuildIdLine();
}
