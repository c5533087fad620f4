using System.Buffers.Binary;
using System.Diagnostics;
using Nozoki.Elf;
using Nozoki.Probes;
using Nozoki.Procfs;

namespace Nozoki.Tests;

/// <summary>The ELF reader against real binaries, and against truncated and corrupted copies of them.</summary>
public sealed class ElfTests
{
    [Fact]
    public void Reads_headers_sections_segments_and_symbols_of_the_fixture()
    {
        using var elf = ElfFile.Open(ProbesFixtures.Exe);
        Assert.Equal(ElfConstants.EM_X86_64, elf.Header.Machine);
        Assert.Equal(ElfConstants.ET_DYN, elf.Header.Type); // Debian's gcc builds PIE
        Assert.Contains(elf.Sections, s => s.Name == ".note.stapsdt" && s.Type == ElfConstants.SHT_NOTE);
        Assert.NotNull(elf.FindSection(".stapsdt.base"));
        Assert.NotNull(elf.FindSection(".probes"));
        Assert.Contains(elf.Segments, p => p.Type == ElfConstants.PT_LOAD);
        Assert.True(elf.TryFindSymbol("g_s32", out var sym));
        Assert.Equal(ProbesFixtures.NmValue(ProbesFixtures.Exe, "g_s32"), sym.Value);
        Assert.True(elf.TryFindSymbol("main", out var main));
        Assert.Equal(ProbesFixtures.NmValue(ProbesFixtures.Exe, "main"), main.Value);
        Assert.Equal(ElfConstants.STT_FUNC, main.Type);
    }

    [Fact]
    public void Section_names_and_addresses_equal_readelf()
    {
        using var elf = ElfFile.Open(ProbesFixtures.LibStdCxx);
        var text = ProbesFixtures.Tool("readelf", "-SW", ProbesFixtures.LibStdCxx);
        foreach (var s in elf.Sections.Where(s => s.Index > 0))
        {
            var line = text.Split('\n').FirstOrDefault(l => l.Contains($"] {s.Name} ", StringComparison.Ordinal));
            Assert.True(line is not null, $"readelf -S shows no section {s.Name}");
            Assert.Contains($" {s.Address:x16} {s.Offset:x6} {s.Size:x6} ", line, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Notes_are_those_readelf_shows()
    {
        foreach (var path in new[] { ProbesFixtures.Exe, ProbesFixtures.Lib, ProbesFixtures.LibStdCxx, ProbesFixtures.Python })
        {
            using var elf = ElfFile.Open(path);
            var text = ProbesFixtures.Tool("readelf", "-nW", path);
            var notes = elf.ReadNotes();
            Assert.Equal(text.Split('\n').Count(l => l.StartsWith("  stapsdt ", StringComparison.Ordinal)), notes.Count(n => n.Owner == "stapsdt"));
            Assert.Equal(text.Split('\n').Count(l => l.StartsWith("  GNU ", StringComparison.Ordinal)), notes.Count(n => n.Owner == "GNU"));
            Assert.Contains(notes, n => n.Owner == "GNU" && n.Type == 3); // NT_GNU_BUILD_ID
        }
    }

    [Fact]
    public void Not_an_elf_file_and_unsupported_classes_are_told_apart()
    {
        var e = Assert.Throws<ElfFormatException>(() => ElfFile.FromBytes("#!/bin/sh\necho hi\n"u8.ToArray(), "script"));
        Assert.Equal(ElfErrorKind.NotElf, e.Kind);
        Assert.Equal(ElfErrorKind.NotElf, Assert.Throws<ElfFormatException>(() => ElfFile.FromBytes(Array.Empty<byte>(), "empty")).Kind);

        var bytes = File.ReadAllBytes(ProbesFixtures.Exe);
        var elf32 = (byte[])bytes.Clone();
        elf32[4] = 1;
        e = Assert.Throws<ElfFormatException>(() => ElfFile.FromBytes(elf32, "x32"));
        Assert.Equal(ElfErrorKind.Unsupported, e.Kind);
        Assert.Contains("32-bit", e.Message, StringComparison.Ordinal);
        var big = (byte[])bytes.Clone();
        big[5] = 2;
        e = Assert.Throws<ElfFormatException>(() => ElfFile.FromBytes(big, "be"));
        Assert.Equal(ElfErrorKind.Unsupported, e.Kind);
        Assert.Contains("big-endian", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Truncated_header_and_tables_are_malformed_with_one_line_messages()
    {
        var bytes = File.ReadAllBytes(ProbesFixtures.Exe);
        var e = Assert.Throws<ElfFormatException>(() => ElfFile.FromBytes(bytes.AsMemory(0, 40), "short"));
        Assert.Equal(ElfErrorKind.Malformed, e.Kind);
        Assert.StartsWith("short: truncated ELF header", e.Message, StringComparison.Ordinal);
        e = Assert.Throws<ElfFormatException>(() => ElfFile.FromBytes(bytes.AsMemory(0, bytes.Length - 100), "cut"));
        Assert.Contains("section header table", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void A_note_whose_descriptor_size_is_too_large_is_malformed()
    {
        var bytes = File.ReadAllBytes(ProbesFixtures.Exe);
        var note = NoteSection(bytes);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan((int)note.Offset + 4), 0x7fff_0000); // descsz of the first note
        using var elf = ElfFile.FromBytes(bytes, "badnote");
        var e = Assert.Throws<ElfFormatException>(() => elf.ReadNotes());
        Assert.Equal(ElfErrorKind.Malformed, e.Kind);
        Assert.Contains("descriptor size", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_stapsdt_note_too_small_for_its_addresses_is_malformed()
    {
        var bytes = File.ReadAllBytes(ProbesFixtures.Exe);
        var note = NoteSection(bytes);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan((int)note.Offset + 4), 16); // descsz 16 < 3 addresses
        // ... and the section ends after that note (12-byte header, "stapsdt\0", 16 bytes), so it is the only one.
        ulong shoff;
        using (var original = ElfFile.FromBytes(bytes, "x")) shoff = original.Header.SectionHeaderOffset;
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan((int)shoff + (note.Index * 64) + 32), 36);
        using var elf = ElfFile.FromBytes(bytes, "smallnote");
        var e = Assert.Throws<ElfFormatException>(() => StapsdtNotes.Read(elf));
        Assert.Contains("stapsdt note 0", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Truncated_and_corrupted_copies_only_ever_give_ElfFormatException()
    {
        var work = Task.Run(() =>
        {
            var count = 0;
            count += Fuzz(File.ReadAllBytes(ProbesFixtures.Exe), flips: 1500, seed: 1);
            count += Fuzz(File.ReadAllBytes(ProbesFixtures.Lib), flips: 500, seed: 2);
            count += Fuzz(File.ReadAllBytes(ProbesFixtures.LibStdCxx), flips: 150, seed: 3);
            return count;
        });
        // A hang shows as a TimeoutException here.
        var variants = await work.WaitAsync(TimeSpan.FromSeconds(90));
        Assert.True(variants > 1000);
    }

    /// <summary>Parses truncated copies (every length near each structure's boundaries, and spread over the file) and
    /// copies with random bytes changed in the headers, tables and notes. Returns the number of variants.</summary>
    private static int Fuzz(byte[] original, int flips, int seed)
    {
        var n = 0;
        using (var elf = ElfFile.FromBytes(original, "original"))
        {
            var cuts = new SortedSet<int>();
            for (var i = 0; i <= 128; i++) cuts.Add(i);
            for (var i = 0; i < 100; i++) cuts.Add((int)((long)original.Length * i / 100));
            foreach (var s in elf.Sections.Where(s => s.Type != ElfConstants.SHT_NOBITS))
            {
                foreach (var d in new[] { -1, 0, 1, 7, 12, 13, 24, 40 })
                {
                    cuts.Add((int)Math.Clamp((long)s.Offset + d, 0, original.Length));
                    cuts.Add((int)Math.Clamp((long)(s.Offset + s.Size) + d, 0, original.Length));
                }
            }

            cuts.Add((int)Math.Min(original.Length, (long)elf.Header.SectionHeaderOffset + 1));
            foreach (var cut in cuts)
            {
                ParseEverything(original.AsMemory(0, cut), $"truncated to {cut} bytes");
                n++;
            }
        }

        var rng = new Random(seed);
        var hot = HotRanges(original);
        for (var i = 0; i < flips; i++)
        {
            var copy = (byte[])original.Clone();
            var (start, length) = hot[rng.Next(hot.Count)];
            var changes = 1 + rng.Next(4);
            for (var c = 0; c < changes; c++)
            {
                var at = start + rng.Next(Math.Max(1, length));
                copy[Math.Min(at, copy.Length - 1)] = rng.Next(4) switch
                {
                    0 => 0xff,
                    1 => 0,
                    2 => 0x7f,
                    _ => (byte)rng.Next(256),
                };
            }

            ParseEverything(copy, $"variant {i} (seed {seed})");
            n++;
        }

        return n;
    }

    private static List<(int Start, int Length)> HotRanges(byte[] bytes)
    {
        using var elf = ElfFile.FromBytes(bytes, "original");
        var list = new List<(int, int)> { (0, 64), ((int)elf.Header.ProgramHeaderOffset, elf.Header.ProgramHeaderCount * 56),
            ((int)elf.Header.SectionHeaderOffset, elf.Header.SectionHeaderCount * 64) };
        foreach (var s in elf.Sections.Where(s => s.Type is ElfConstants.SHT_NOTE or ElfConstants.SHT_STRTAB && s.Size > 0))
            list.Add(((int)s.Offset, (int)Math.Min(s.Size, 4096)));
        foreach (var s in elf.Sections.Where(s => s.Type is ElfConstants.SHT_DYNSYM or ElfConstants.SHT_SYMTAB && s.Size > 0))
            list.Add(((int)s.Offset, (int)Math.Min(s.Size, 4096)));
        return list;
    }

    private static void ParseEverything(ReadOnlyMemory<byte> bytes, string what)
    {
        try
        {
            using var elf = ElfFile.FromBytes(bytes, "fuzz");
            _ = elf.ReadNotes();
            _ = StapsdtNotes.Read(elf);
            _ = elf.Symbols;
            elf.TryFindSymbol("main", out _);
            foreach (var s in elf.Sections) _ = elf.ReadSection(s);
            var maps = new[] { new MemoryMapping(0x10000, 0x20000, "r-xp", 0, 8, 1, 42, "/fuzz") };
            _ = new MappedObject(1, "/fuzz", maps).LoadBias(elf);
        }
        catch (ElfFormatException e)
        {
            Assert.False(e.Message.Contains('\n', StringComparison.Ordinal), $"{what}: multi-line message: {e.Message}");
        }
        catch (Exception e)
        {
            Assert.Fail($"{what}: {e.GetType().Name} instead of ElfFormatException: {e.Message}\n{e.StackTrace}");
        }
    }

    private static ElfSection NoteSection(byte[] bytes)
    {
        using var elf = ElfFile.FromBytes(bytes, "x");
        return elf.FindSection(".note.stapsdt") ?? throw new UnreachableException("no .note.stapsdt");
    }
}
