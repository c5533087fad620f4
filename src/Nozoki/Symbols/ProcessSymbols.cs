using System.Globalization;
using System.IO.Enumeration;
using Nozoki.Elf;
using Nozoki.Procfs;

namespace Nozoki.Symbols;

/// <summary>An ELF object mapped in a process, with its load bias; its symbols are read on first use.</summary>
public sealed class LoadedModule
{
    private readonly Lazy<SymbolTable?> _symbols;

    internal LoadedModule(MappedObject mapped, Func<SymbolTable?> load)
    {
        Mapped = mapped;
        Name = System.IO.Path.GetFileName(mapped.Path);
        _symbols = new Lazy<SymbolTable?>(load, LazyThreadSafetyMode.ExecutionAndPublication);
    }

    /// <summary>The mappings of the object.</summary>
    public MappedObject Mapped { get; }

    /// <summary>The path the process mapped.</summary>
    public string Path => Mapped.Path;

    /// <summary>The file name (libc.so.6).</summary>
    public string Name { get; }

    /// <summary>The symbol table, or null when the file cannot be read (gone, not ELF, no permission).</summary>
    public SymbolTable? Symbols => _symbols.Value;

    /// <summary>What to add to a file virtual address to get the address in the process (0 for a non-PIE
    /// executable); null when the file cannot be read or no mapping matches its PT_LOAD segments.</summary>
    public ulong? Bias => Symbols is { } t ? Mapped.LoadBias(t.Segments) : null;

    /// <summary>Whether ADDRESS lies in one of the object's executable mappings.</summary>
    public bool ContainsCode(ulong address)
    {
        foreach (var m in Mapped.Mappings)
        {
            if (m.IsExecutable && address >= m.Start && address < m.End) return true;
        }

        return false;
    }

    /// <inheritdoc/>
    public override string ToString() => Path;
}

/// <summary>A code location in a process: the module, the symbol (null for a bare file address) and offset into it,
/// the link-time (file) address, and the address in the process.</summary>
public sealed record CodeLocation(LoadedModule Module, string? Symbol, ulong Offset, ulong FileAddress, ulong Address)
{
    /// <summary>`libc.so.6!malloc+0x10` (`module!symbol` at offset 0, `module+0xFILEADDRESS` without a symbol).</summary>
    public override string ToString() => SymbolFormat.Format(Module.Name, Symbol, Offset, FileAddress);
}

/// <summary>A symbol or location spec that names no code, with the nearest names that exist (at most 5).</summary>
public sealed class SymbolLookupException(string message, IReadOnlyList<string> suggestions) : Exception(message)
{
    /// <summary>Existing names close to the one asked for (for "did you mean"), best first.</summary>
    public IReadOnlyList<string> Suggestions { get; } = suggestions;
}

/// <summary>
/// The symbols of every ELF object mapped in a live process (/proc/PID/maps): an address to `module!symbol+0xoff`
/// for backtrace frames, and a spec to code addresses for breakpoints. Specs: `SYMBOL` (in every module),
/// `MODULE:SYMBOL` (MODULE a file name like libc.so.6, a path, or a glob such as *bcrypt*), `SYMBOL+0xN`, `MODULE:0xADDR`
/// (a file virtual address as nm and objdump print it), and globs in the symbol (`crypt_*`). Only code is accepted:
/// STT_FUNC or STT_GNU_IFUNC symbols, addresses in an executable segment.
/// </summary>
public sealed class ProcessSymbols
{
    private readonly object _gate = new();
    private List<LoadedModule> _modules;

    private ProcessSymbols(int pid, List<LoadedModule> modules)
    {
        Pid = pid;
        _modules = modules;
    }

    /// <summary>The process.</summary>
    public int Pid { get; }

    /// <summary>The ELF objects with code mapped in the process, in address order.</summary>
    public IReadOnlyList<LoadedModule> Modules
    {
        get
        {
            lock (_gate) return _modules;
        }
    }

    /// <summary>Reads /proc/PID/maps (IOException/UnauthorizedAccessException as MemoryMaps.Read throws them).</summary>
    public static ProcessSymbols ForProcess(int pid) => new(pid, ReadModules(pid, []));

    /// <summary>Reads /proc/PID/maps again (after dlopen, dlclose, exec); unchanged modules keep their tables.</summary>
    public void Refresh()
    {
        lock (_gate) _modules = ReadModules(Pid, _modules);
    }

    private static List<LoadedModule> ReadModules(int pid, List<LoadedModule> previous)
    {
        var list = new List<LoadedModule>();
        foreach (var obj in MemoryMaps.GroupObjects(pid, MemoryMaps.Read(pid)))
        {
            if (!obj.Mappings.Any(m => m.IsExecutable)) continue;
            var old = previous.FirstOrDefault(m => m.Path == obj.Path && m.Mapped.Start == obj.Start
                && m.Mapped.Mappings[0].SameFile(obj.Mappings[0]));
            list.Add(old ?? new LoadedModule(obj, () => LoadTable(obj)));
        }

        return list;
    }

    private static SymbolTable? LoadTable(MappedObject obj)
    {
        // The path as mapped; when it is not reachable from here (another mount namespace, deleted), the very file
        // through /proc/PID/map_files.
        foreach (var from in new[] { obj.Path, obj.MapFilesPath })
        {
            try
            {
                return SymbolTable.Load(obj.Path, from);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or ElfFormatException)
            {
            }
        }

        return null;
    }

    /// <summary>The module and symbol at ADDRESS, or null when no mapped object has code there.</summary>
    public CodeLocation? Describe(ulong address)
    {
        foreach (var m in Modules)
        {
            if (address < m.Mapped.Start || address >= m.Mapped.End) continue;
            if (m.Bias is not { } bias) return null;
            var fileAddress = address - bias;
            if (m.Symbols!.TryFindByAddress(fileAddress, out var sym))
                return new CodeLocation(m, sym.Name, fileAddress - sym.FileAddress, fileAddress, address);
            return new CodeLocation(m, null, 0, fileAddress, address);
        }

        return null;
    }

    /// <summary>`module!symbol+0xoff` for ADDRESS, `module+0xFILEADDRESS` without a symbol, `0x...` outside every
    /// module.</summary>
    public string Format(ulong address) =>
        Describe(address)?.ToString() ?? "0x" + address.ToString("x", CultureInfo.InvariantCulture);

    /// <summary>
    /// The code locations SPEC names (see the class summary), in module order. A name defined in several modules
    /// gives one location per module (and per distinct address). Throws <see cref="SymbolLookupException"/> when
    /// nothing matches, when the location is not code, or when MODULE:0xADDR names several modules.
    /// </summary>
    public IReadOnlyList<CodeLocation> Resolve(string spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var (modulePattern, rest) = SplitModule(spec.Trim());
        if (rest.Length == 0) throw new SymbolLookupException($"{spec}: no symbol or address after the module", []);
        var modules = MatchModules(modulePattern, spec);
        if (rest.StartsWith("0x", StringComparison.OrdinalIgnoreCase)) return ResolveAddress(spec, modulePattern, modules, rest);

        var plus = rest.IndexOf('+');
        var name = plus >= 0 ? rest[..plus] : rest;
        ulong offset = 0;
        if (plus >= 0 && !TryParseNumber(rest[(plus + 1)..], out offset))
            throw new SymbolLookupException($"{spec}: \"{rest[(plus + 1)..]}\" is not an offset (0xN or N)", []);
        var glob = name.AsSpan().IndexOfAny('*', '?') >= 0;

        var result = new List<CodeLocation>();
        var notCode = new List<string>();
        foreach (var m in modules)
        {
            if (m.Symbols is not { } table || m.Bias is not { } bias) continue;
            IEnumerable<ModuleSymbol> found = glob
                ? table.CodeNames.Where(n => FileSystemName.MatchesSimpleExpression(name, n, ignoreCase: false)).Order(StringComparer.Ordinal).SelectMany(table.FindCode)
                : table.FindCode(name);
            var seen = new HashSet<ulong>();
            foreach (var sym in found)
            {
                var fileAddress = sym.FileAddress + offset;
                if (!seen.Add(fileAddress)) continue;
                if (!table.IsExecutable(fileAddress))
                {
                    notCode.Add($"{m.Name}:{sym.Name}+0x{offset:x} is outside the executable segments");
                    continue;
                }

                if (sym.Size != 0 && offset >= sym.Size)
                {
                    notCode.Add($"{m.Name}:{sym.Name}+0x{offset:x} is past the end of {sym.Name} ({sym.Size} bytes)");
                    continue;
                }

                result.Add(new CodeLocation(m, sym.Name, offset, fileAddress, fileAddress + bias));
            }

            if (!glob && table.FindCode(name).Count == 0)
            {
                foreach (var other in table.FindAny(name))
                    notCode.Add($"{name} in {m.Name} is not code (a {TypeName(other.Type)} symbol)");
            }
        }

        if (result.Count > 0) return result;
        if (notCode.Count > 0) throw new SymbolLookupException($"{spec}: {notCode[0]}", []);
        var where = modulePattern is null ? "in any module" : $"in {string.Join(", ", modules.Select(m => m.Name).Distinct())}";
        var suggestions = Suggest(glob ? name.Replace("*", "").Replace("?", "") : name, modules.SelectMany(m => m.Symbols?.CodeNames ?? []));
        throw new SymbolLookupException($"{spec}: no function {(glob ? "matches " : "")}{name} {where}" + DidYouMean(suggestions), suggestions);
    }

    private IReadOnlyList<CodeLocation> ResolveAddress(string spec, string? modulePattern, List<LoadedModule> modules, string rest)
    {
        if (modulePattern is null)
            throw new SymbolLookupException($"{spec}: a file address needs its module (MODULE:0xADDR, e.g. libc.so.6:{rest})", []);
        if (!TryParseNumber(rest, out var fileAddress)) throw new SymbolLookupException($"{spec}: \"{rest}\" is not a hex address", []);
        var files = modules.Select(m => m.Path).Distinct().ToList();
        if (files.Count > 1)
            throw new SymbolLookupException($"{spec}: {modulePattern} matches {files.Count} modules ({string.Join(", ", modules.Select(m => m.Name).Distinct().Take(5))}); name one", []);
        var result = new List<CodeLocation>();
        foreach (var m in modules)
        {
            if (m.Symbols is not { } table || m.Bias is not { } bias) continue;
            if (!table.IsExecutable(fileAddress))
                throw new SymbolLookupException($"{spec}: 0x{fileAddress:x} is not in an executable segment of {m.Name}", []);
            var location = table.TryFindByAddress(fileAddress, out var sym) && sym.IsCode
                ? new CodeLocation(m, sym.Name, fileAddress - sym.FileAddress, fileAddress, fileAddress + bias)
                : new CodeLocation(m, null, 0, fileAddress, fileAddress + bias);
            result.Add(location);
        }

        if (result.Count == 0) throw new SymbolLookupException($"{spec}: the symbols of {modulePattern} cannot be read", []);
        return result;
    }

    // MODULE:REST splits at a single colon (C++ names keep their "::").
    private static (string? Module, string Location) SplitModule(string spec)
    {
        for (var i = 0; i < spec.Length; i++)
        {
            if (spec[i] != ':') continue;
            if (i + 1 < spec.Length && spec[i + 1] == ':')
            {
                i++;
                continue;
            }

            return (spec[..i], spec[(i + 1)..]);
        }

        return (null, spec);
    }

    private List<LoadedModule> MatchModules(string? pattern, string spec)
    {
        var all = Modules;
        if (pattern is null) return [.. all];
        var glob = pattern.AsSpan().IndexOfAny('*', '?') >= 0;
        var byPath = pattern.Contains('/');
        var list = all.Where(m =>
        {
            var subject = byPath ? m.Path : m.Name;
            return glob ? FileSystemName.MatchesSimpleExpression(pattern, subject, ignoreCase: false) : subject == pattern;
        }).ToList();
        if (list.Count > 0) return list;
        var suggestions = Suggest(pattern, all.Select(m => m.Name).Distinct());
        throw new SymbolLookupException($"{spec}: no module {pattern} is mapped in process {Pid}" + DidYouMean(suggestions), suggestions);
    }

    private static string DidYouMean(IReadOnlyList<string> suggestions) =>
        suggestions.Count == 0 ? "" : $" (nearest: {string.Join(", ", suggestions)})";

    private static bool TryParseNumber(string text, out ulong value) =>
        text.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
            ? ulong.TryParse(text.AsSpan(2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out value)
            : ulong.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out value);

    private static string TypeName(byte type) => type switch
    {
        ElfConstants.STT_OBJECT => "data (STT_OBJECT)",
        ElfConstants.STT_NOTYPE => "untyped (STT_NOTYPE)",
        ElfConstants.STT_TLS => "thread-local (STT_TLS)",
        _ => $"type {type}",
    };

    /// <summary>At most 5 of CANDIDATES nearest to NAME: by edit distance, ties by longer common prefix; only those
    /// within a third of the name's length, or sharing a prefix of 4 or more characters.</summary>
    public static IReadOnlyList<string> Suggest(string name, IEnumerable<string> candidates)
    {
        var scored = new List<(int Distance, int Prefix, string Name)>();
        var limit = Math.Max(2, name.Length / 3);
        foreach (var c in candidates.Distinct(StringComparer.Ordinal))
        {
            var prefix = CommonPrefix(name, c);
            var d = EditDistance(name, c, Math.Max(limit, c.Length));
            if (d <= limit || prefix >= Math.Min(4, name.Length)) scored.Add((d, prefix, c));
        }

        return scored.OrderBy(s => s.Distance).ThenByDescending(s => s.Prefix).ThenBy(s => s.Name, StringComparer.Ordinal)
            .Take(5).Select(s => s.Name).ToList();
    }

    private static int CommonPrefix(string a, string b)
    {
        var n = Math.Min(a.Length, b.Length);
        var i = 0;
        while (i < n && a[i] == b[i]) i++;
        return i;
    }

    private static int EditDistance(string a, string b, int max)
    {
        if (Math.Abs(a.Length - b.Length) > max) return max + 1;
        var prev = new int[b.Length + 1];
        var cur = new int[b.Length + 1];
        for (var j = 0; j <= b.Length; j++) prev[j] = j;
        for (var i = 1; i <= a.Length; i++)
        {
            cur[0] = i;
            for (var j = 1; j <= b.Length; j++)
                cur[j] = Math.Min(Math.Min(prev[j] + 1, cur[j - 1] + 1), prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            (prev, cur) = (cur, prev);
        }

        return prev[b.Length];
    }
}

/// <summary>The `module!symbol+0xoff` form shared by symbol lookups and backtraces.</summary>
public static class SymbolFormat
{
    /// <summary>`module!symbol+0xoff` (`module!symbol` at offset 0), `module+0xFILEADDRESS` without a symbol.</summary>
    public static string Format(string module, string? symbol, ulong offset, ulong fileAddress)
    {
        var ic = CultureInfo.InvariantCulture;
        if (symbol is null) return string.Create(ic, $"{module}+0x{fileAddress:x}");
        return offset == 0 ? $"{module}!{symbol}" : string.Create(ic, $"{module}!{symbol}+0x{offset:x}");
    }
}
