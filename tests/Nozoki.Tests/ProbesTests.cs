using System.Buffers.Binary;
using Nozoki.Elf;
using Nozoki.Probes;
using Nozoki.Procfs;
using Nozoki.Tests.Helpers;
using Nozoki.Tracing;

namespace Nozoki.Tests;

/// <summary>The probe model: stapsdt notes, fix-ups, patterns, /proc/PID/maps and load bias, resolving in a process.</summary>
[Collection(PtraceCollection.Name)]
public sealed class ProbesTests
{
    private static readonly TimeSpan Step = TimeSpan.FromSeconds(15);

    public static TheoryData<string> Files => new() { "exe", "lib", ProbesFixtures.LibStdCxx, ProbesFixtures.Python };

    private static string PathOf(string file) => file switch
    {
        "exe" => ProbesFixtures.Exe,
        "lib" => ProbesFixtures.Lib,
        _ => file,
    };

    [Theory]
    [MemberData(nameof(Files))]
    public void Sites_equal_what_readelf_prints(string file)
    {
        var path = PathOf(file);
        using var elf = ElfFile.Open(path);
        var sites = StapsdtNotes.Read(elf);
        var expected = ProbesFixtures.Readelf(path);
        Assert.NotEmpty(expected);
        Assert.Equal(expected.Count, sites.Count);
        for (var i = 0; i < sites.Count; i++)
        {
            var s = sites[i];
            var e = expected[i];
            Assert.Equal(e, new ReadelfProbe(s.Provider, s.Name, $"0x{s.Location:x16}", $"0x{s.Base:x16}", $"0x{s.Semaphore:x16}", s.Arguments));
            // Unmoved objects: the .stapsdt.base fix-up is zero.
            Assert.Equal(s.Location, s.Address);
            Assert.Equal(s.Semaphore, s.SemaphoreAddress);
            Assert.DoesNotContain(s.Args, a => a.Location == ArgLocation.Unsupported);
        }
    }

    [Fact]
    public void The_fixture_has_every_operand_form_arity_and_semaphore_kind()
    {
        using var elf = ElfFile.Open(ProbesFixtures.Exe);
        var sites = StapsdtNotes.Read(elf);
        for (var n = 0; n <= 6; n++) Assert.Contains(sites, s => s.Args.Count == n);
        var args = sites.SelectMany(s => s.Args).ToList();
        foreach (var size in new[] { 1, 2, 4, 8 })
        {
            foreach (var signed in new[] { false, true })
            {
                Assert.Contains(args, a => a.Location == ArgLocation.Register && a.Register.Bytes == size && a.Size == size && a.Signed == signed);
                Assert.Contains(args, a => a.Location == ArgLocation.Memory && a.Symbol is null && a.Base is X86Register.Rsp or X86Register.Rbp && a.Size == size && a.Signed == signed);
                Assert.Contains(args, a => a.Location == ArgLocation.Memory && a.Symbol is not null && a.Base == X86Register.Rip && a.Size == size && a.Signed == signed);
            }
        }

        Assert.Contains(args, a => a.Location == ArgLocation.Immediate && a.Displacement < 0);
        Assert.Contains(sites, s => s.HasSemaphore);
        Assert.Contains(sites, s => !s.HasSemaphore);
        // Symbols of sym(%rip) operands get their link-time values from .symtab.
        var g = args.First(a => a.Symbol == "g_s32");
        Assert.Equal(ProbesFixtures.NmValue(ProbesFixtures.Exe, "g_s32"), g.SymbolAddress);
        // The semaphores are the fixture's variables in .probes.
        Assert.Equal(ProbesFixtures.NmValue(ProbesFixtures.Exe, "fixture_guarded_semaphore"), sites.Single(s => s.Name == "guarded").SemaphoreAddress);
    }

    [Fact]
    public void A_moved_stapsdt_base_section_moves_pc_and_semaphore_by_the_same_amount()
    {
        var bytes = File.ReadAllBytes(ProbesFixtures.Exe);
        ElfSection sdtBase;
        ulong shoff;
        using (var original = ElfFile.FromBytes(bytes, "x"))
        {
            sdtBase = original.FindSection(".stapsdt.base")!;
            shoff = original.Header.SectionHeaderOffset;
        }

        // As prelink would: the section's address changes, the notes keep the base they were linked with.
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan((int)shoff + (sdtBase.Index * 64) + 16), sdtBase.Address + 0x10000);
        using var moved = ElfFile.FromBytes(bytes, "moved");
        foreach (var s in StapsdtNotes.Read(moved))
        {
            Assert.Equal(s.Location + 0x10000, s.Address);
            Assert.Equal(s.Semaphore == 0 ? 0 : s.Semaphore + 0x10000, s.SemaphoreAddress);
        }
    }

    public static TheoryData<string, string, string, string, bool> Patterns => new()
    {
        { "fixture:one", "/x/usdt", "fixture", "one", true },
        { "fixture:one", "/x/usdt", "fixture", "two", false },
        { "fixture:*", "/x/usdt", "fixture", "mem_signed", true },
        { "*:guarded*", "/x/usdt", "fixture", "guarded2", true },
        { "fix*:g?arded", "/x/usdt", "fixture", "guarded", true },
        { "throw", "/lib/libstdc++.so.6", "libstdcxx", "throw", true },
        { "throw", "/lib/libstdc++.so.6", "libstdcxx", "rethrow", false },
        { "libstdc++.so.6:libstdcxx:throw", "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "libstdcxx", "throw", true },
        { "libstdc++*:libstdcxx:throw", "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "libstdcxx", "throw", true },
        { "libstdc++.so.6:libstdcxx:throw", "/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30", "libstdcxx", "throw", true },
        { "libstdc++.so:libstdcxx:throw", "/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30", "libstdcxx", "throw", true },
        { "libstdc++.so.6:libstdcxx:throw", "/usr/lib/x86_64-linux-gnu/libstdc++.so.6x", "libstdcxx", "throw", false },
        { "/lib/x86_64-linux-gnu/libstdc++.so.6:libstdcxx:throw", "/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30", "libstdcxx", "throw", true },
        { "libc.so.6:libstdcxx:throw", "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "libstdcxx", "throw", false },
        { "/usr/bin/python3*:python:function__entry", "/usr/bin/python3.11", "python", "function__entry", true },
        { "/usr/lib/*:python:*", "/usr/bin/python3.11", "python", "line", false },
        { "/srv/c:x/lib.so:p:n", "/srv/c:x/lib.so", "p", "n", true },
    };

    [Theory]
    [MemberData(nameof(Patterns))]
    public void Patterns_match_object_provider_and_name_with_wildcards(string pattern, string path, string provider, string name, bool matches)
    {
        Assert.True(ProbePattern.TryParse(pattern, out var p, out var problem), problem);
        Assert.Equal(matches, p.Matches(path, provider, name));
    }

    [Theory]
    [InlineData("")]
    [InlineData(":name")]
    [InlineData("provider:")]
    [InlineData("::")]
    [InlineData("a:b:c:d:e")]
    [InlineData("a:b:c:d")]
    public void Bad_patterns_are_refused(string pattern) => Assert.False(ProbePattern.TryParse(pattern, out _, out _));

    [Fact]
    public void Maps_lines_parse_and_group_into_objects_with_their_load_bias()
    {
        const string maps = """
            55d0c1a00000-55d0c1a01000 r--p 00000000 08:01 1001                       /tmp/my app/usdt
            55d0c1a01000-55d0c1a02000 r-xp 00001000 08:01 1001                       /tmp/my app/usdt
            55d0c1a03000-55d0c1a05000 rw-p 00002000 08:01 1001                       /tmp/my app/usdt
            55d0c2000000-55d0c2021000 rw-p 00000000 00:00 0                          [heap]
            7f0000000000-7f0000001000 r--p 00000000 08:01 2002                       /usr/lib/libfoo.so (deleted)
            7f0000001000-7f0000003000 r-xp 00001000 08:01 2002                       /usr/lib/libfoo.so (deleted)
            7f0000100000-7f0000101000 r--p 00000000 08:01 2002                       /usr/lib/libfoo.so (deleted)
            7f0000101000-7f0000103000 r-xp 00001000 08:01 2002                       /usr/lib/libfoo.so (deleted)
            7f0000200000-7f0000201000 r--s 00003000 08:01 3003                       /var/cache/data.bin
            7ffc00000000-7ffc00002000 r-xp 00000000 00:00 0                          [vdso]
            """;
        var list = MemoryMaps.Parse(maps);
        Assert.Equal(10, list.Count);
        Assert.Equal("/tmp/my app/usdt", list[0].Path);
        Assert.Equal((0x55d0c1a01000UL, 0x1000UL, 8U, 1U, 1001UL), (list[1].Start, list[1].Offset, list[1].DeviceMajor, list[1].DeviceMinor, list[1].Inode));
        Assert.True(list[1].IsExecutable);
        Assert.True(list[4].IsDeleted);
        Assert.Equal("/usr/lib/libfoo.so", list[4].FilePath);
        Assert.False(list[9].IsFile);

        var objects = MemoryMaps.GroupObjects(42, list);
        Assert.Equal(["/tmp/my app/usdt", "/usr/lib/libfoo.so", "/usr/lib/libfoo.so"], objects.Select(o => o.Path));
        Assert.Equal([3, 2, 2], objects.Select(o => o.Mappings.Count));
        Assert.Equal("/proc/42/map_files/7f0000100000-7f0000101000", objects[2].MapFilesPath);

        // PIE: first PT_LOAD at vaddr 0, offset 0 → bias = the first mapping's start.
        ElfSegment[] pie = [new(ElfConstants.PT_LOAD, 4, 0, 0, 0, 0x1000, 0x1000, 0x1000), new(ElfConstants.PT_LOAD, 5, 0x1000, 0x1000, 0x1000, 0x1000, 0x1000, 0x1000)];
        Assert.Equal(0x55d0c1a00000UL, objects[0].LoadBias(pie));
        Assert.Equal(0x7f0000100000UL, objects[2].LoadBias(pie));
        // Non-PIE: vaddr 0x400000 mapped at 0x400000 → bias 0.
        var exec = MemoryMaps.GroupObjects(1, MemoryMaps.Parse("00400000-00401000 r--p 00000000 08:01 5 /bin/x\n00401000-00402000 r-xp 00001000 08:01 5 /bin/x"));
        ElfSegment[] fixedSegs = [new(ElfConstants.PT_LOAD, 4, 0, 0x400000, 0x400000, 0x1000, 0x1000, 0x1000)];
        Assert.Equal(0UL, exec[0].LoadBias(fixedSegs));
        // A segment whose file offset is not page-aligned (vaddr and offset agree modulo the page size).
        ElfSegment[] odd = [new(ElfConstants.PT_LOAD, 5, 0x1040, 0x201040, 0x201040, 0x100, 0x100, 0x1000)];
        Assert.Equal(0x55d0c1a01000UL + 0x40 - 0x201040, objects[0].LoadBias(odd));
    }

    [Fact]
    public void Resolves_sites_of_the_executable_and_a_dlopened_library_in_a_running_process()
    {
        using var dir = new TempDir();
        using var tracee = StartWaitingFixture(dir, "--set-sem", "5");
        var printed = ProbesFixtures.FixtureAddresses(tracee.StdoutFileText());
        var scan = new ProbeResolver().Scan(tracee.Pid);
        Assert.Empty(scan.Problems);

        var exeBias = printed["func main"] - ProbesFixtures.NmValue(ProbesFixtures.Exe, "main");
        var libBias = printed["func fixturelib_run"] - ProbesFixtures.NmValue(ProbesFixtures.Lib, "fixturelib_run");
        var exe = scan.Probes.Where(p => p.ObjectPath == ProbesFixtures.Exe).ToList();
        var lib = scan.Probes.Where(p => p.ObjectPath == ProbesFixtures.Lib).ToList();
        Assert.Equal(ProbesFixtures.Readelf(ProbesFixtures.Exe).Count, exe.Count);
        Assert.Equal(ProbesFixtures.Readelf(ProbesFixtures.Lib).Count, lib.Count);
        foreach (var p in exe)
        {
            Assert.Equal(exeBias, p.LoadBias);
            Assert.Equal(p.Site.Location + exeBias, p.Address);
        }

        foreach (var p in lib)
        {
            Assert.Equal(libBias, p.LoadBias);
            Assert.Equal(p.Site.Location + libBias, p.Address);
            Assert.True(p.HasSemaphore);
        }

        // Semaphore addresses are the fixture's own &semaphore; their values are what it stored (--set-sem 5).
        var guarded = exe.Single(p => p.Site.Name == "guarded");
        Assert.Equal(printed["sem fixture:guarded"], guarded.SemaphoreAddress);
        Assert.Equal(printed["sem fixture:guarded2"], exe.Single(p => p.Site.Name == "guarded2").SemaphoreAddress);
        var libGuarded = lib.Single(p => p.Site.Name == "guarded");
        Assert.Equal(printed["sem fixturelib:guarded"], libGuarded.SemaphoreAddress);
        Assert.True(Semaphores.TryRead(tracee.Pid, guarded.SemaphoreAddress, out var v) && v == 5);
        Assert.True(Semaphores.TryRead(tracee.Pid, libGuarded.SemaphoreAddress, out v) && v == 5);
        Assert.True(Semaphores.TryRead(tracee.Pid, exe.Single(p => p.Site.Name == "guarded2").SemaphoreAddress, out v) && v == 0);
        Assert.Equal(1, Semaphores.Counts(exe).GetValueOrDefault(guarded.SemaphoreAddress));

        // sym(%rip) arguments point into the process: reading them gives the globals' initial values.
        var globals = exe.Single(p => p.Site.Name == "global_signed");
        Assert.Equal(ProbesFixtures.NmValue(ProbesFixtures.Exe, "g_s32") + exeBias, globals.Args[2].SymbolAddress);
        var memory = new ProcessMemoryReader(tracee.Pid);
        var regs = default(X86Registers);
        long[] initial = [-8, -1600, -320000, -6400000000000];
        for (var i = 0; i < 4; i++)
        {
            Assert.Equal(ArgStatus.Ok, globals.Args[i].TryEvaluate(regs, ref memory, out var value));
            Assert.Equal(initial[i], value.AsInt64);
        }

        var unsigned = exe.Single(p => p.Site.Name == "global_unsigned");
        Assert.Equal(ArgStatus.Ok, unsigned.Args[3].TryEvaluate(regs, ref memory, out var u64));
        Assert.Equal(18000000000000000000UL, u64.AsUInt64);

        // Filtering by object, provider and name.
        Assert.True(ProbePattern.TryParse("libusdtlib.so:fixturelib:tick", out var pattern, out _));
        var only = new ProbeResolver().Scan(tracee.Pid, pattern);
        Assert.Equal(lib.Where(p => p.Site.Name == "tick").Select(p => p.Address), only.Probes.Select(p => p.Address));

        tracee.Release();
        Assert.Equal(0, tracee.WaitForExit().Code);
    }

    [Fact]
    public void The_loader_hook_is_ld_so_dl_debug_state_in_the_process()
    {
        using var dir = new TempDir();
        using var tracee = StartWaitingFixture(dir);
        var hook = ProbeResolver.FindLoaderHook(tracee.Pid);
        Assert.NotNull(hook);
        var (address, loader) = hook.Value;
        Assert.StartsWith("ld-linux", Path.GetFileName(loader.Path), StringComparison.Ordinal);
        var symbol = ProbesFixtures.Tool("nm", "-D", loader.Path).Split('\n').Single(l => l.Contains(" _dl_debug_state@", StringComparison.Ordinal));
        // ld.so's first PT_LOAD is at vaddr 0: its bias is where its first mapping starts.
        Assert.Equal(ProbesFixtures.Hex(symbol.Split(' ')[0]) + loader.Start, address);
        Span<byte> code = stackalloc byte[1];
        Assert.Equal(1, Memory.ProcessMemory.Read(tracee.Pid, address, code).BytesRead);
        Assert.Equal(0xc3, code[0]); // ret
        tracee.Release();
        Assert.Equal(0, tracee.WaitForExit().Code);
    }

    [Fact]
    public void Scanning_a_missing_process_is_ProcessNotFoundException()
    {
        int pid;
        using (var child = ChildProcess.Start(["/bin/true"]))
        {
            pid = child.Pid;
            Assert.NotNull(child.WaitForExit(Step));
        }

        Assert.Throws<ProcessNotFoundException>(() => new ProbeResolver().Scan(pid));
    }

    /// <summary>Starts usdt --lib libusdtlib.so --wait, lets it dlopen the library, and returns once it waits again.</summary>
    internal static Tracee StartWaitingFixture(TempDir dir, params string[] extra)
    {
        var tracee = Tracee.Start([ProbesFixtures.Exe, "--lib", ProbesFixtures.Lib, "--wait", .. extra], stdinPipe: true, stdoutPath: dir.File("out"));
        Poll.Until(() => tracee.StdoutFileText().Contains("ready\n", StringComparison.Ordinal), Step, "the usdt fixture to print ready");
        tracee.Release();
        Poll.Until(() => tracee.StdoutFileText().Contains("loaded\n", StringComparison.Ordinal), Step, "the usdt fixture to load its library");
        return tracee;
    }
}
