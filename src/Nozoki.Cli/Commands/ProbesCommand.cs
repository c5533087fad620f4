using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Nozoki.Cli.Output;
using Nozoki.Elf;
using Nozoki.Probes;
using Nozoki.Tracing;

namespace Nozoki.Cli.Commands;

/// <summary>`nozoki probes FILE [FILTER]` / `nozoki probes -p PID [FILTER]`: list USDT probe sites.</summary>
internal static class ProbesCommand
{
    public static Command Create()
    {
        var targets = new Argument<string[]>("TARGET")
        {
            Description = "an ELF file, then optionally a filter [OBJECT:]PROVIDER:NAME with * wildcards (with -p: only the filter)",
            Arity = ArgumentArity.ZeroOrMore,
        };
        var pid = Arguments.PidOption("list the probes of every ELF object mapped in this process (with addresses and semaphore values)");
        var json = new Option<bool>("--json") { Description = "one JSON object per probe site" };
        var noHeader = new Option<bool>("--no-header") { Description = "no column header line" };
        var cmd = new Command("probes", "List USDT (systemtap SDT) probe sites of an ELF file or of a running process")
        {
            targets, pid, json, noHeader,
        };
        cmd.SetAction(r =>
        {
            var args = r.GetValue(targets) ?? [];
            var p = r.GetValue(pid);
            string? file = null;
            string? filter;
            if (p is null)
            {
                if (args.Length is 0 or > 2) return Usage("probes: give an ELF file (and optionally a filter), or -p PID");
                file = args[0];
                filter = args.Length > 1 ? args[1] : null;
            }
            else
            {
                if (args.Length > 1) return Usage("probes -p PID: give at most one filter, and no file");
                filter = args.Length > 0 ? args[0] : null;
            }

            var pattern = ProbePattern.All;
            if (filter is not null && !ProbePattern.TryParse(filter, out pattern, out var problem)) return Usage(problem);
            try
            {
                return file is not null
                    ? ListFile(file, pattern, r.GetValue(json), r.GetValue(noHeader))
                    : ListProcess(p!.Value, pattern, r.GetValue(json), r.GetValue(noHeader));
            }
            catch (OutputClosedException)
            {
                return (int)ReturnCode.Success; // `nozoki probes ... | head`
            }
        });
        return cmd;
    }

    private static int Usage(string message)
    {
        Console.Error.WriteLine($"nozoki: error: {message}");
        return (int)ReturnCode.Usage;
    }

    /// <summary>
    /// Exit codes for files: no such file 3, permission 4, malformed ELF 2, not a regular file (a directory, FIFO,
    /// device or socket) 2, a regular file that is not an ELF (or not one nozoki reads) 5.
    /// </summary>
    private static int ListFile(string path, ProbePattern pattern, bool json, bool noHeader)
    {
        if (path.Length == 0) return Usage("probes: the file name is empty");
        // Before opening: opening a FIFO would wait for a writer forever, and reading /dev/zero would never end.
        var stat = FileKinds.Get(path, out var kind);
        var code = Errors.Code(stat);
        if (code == ReturnCode.NotFound) return Fail(code, $"{path}: no such file");
        if (code == ReturnCode.PermissionDenied) return Fail(code, $"{path}: permission denied");
        if (!stat.IsOk) return Fail(code, $"{path}: {stat.Message}");
        if (kind != FileKind.Regular) return Usage($"{path}: is {kind.Describe()}, not an ELF file");

        List<ProbeSite> sites;
        try
        {
            using var elf = ElfFile.Open(path);
            sites = StapsdtNotes.Read(elf, resolveSymbols: false);
        }
        catch (ElfFormatException e)
        {
            return Errors.Report(e, e.Kind == ElfErrorKind.Malformed ? $"malformed ELF file {e.Message}" : e.Message);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return Errors.Report(e, $"{path}: no such file");
        }
        catch (UnauthorizedAccessException e)
        {
            return Errors.Report(e, $"{path}: permission denied");
        }
        catch (IOException e)
        {
            return Fail(ReturnCode.Error, $"{path}: {e.Message}");
        }

        var rows = sites.Where(s => pattern.Matches(path, s)).Select(s => new Row(path, s, null, null)).ToList();
        Print(rows, json, noHeader, withProcess: false);
        if (rows.Count == 0 && !json) Console.Error.WriteLine($"nozoki: no USDT probes{Matching(pattern)} in {path}");
        return (int)ReturnCode.Success;
    }

    private static int ListProcess(int pid, ProbePattern pattern, bool json, bool noHeader)
    {
        ProbeScan scan;
        try
        {
            scan = new ProbeResolver().Scan(pid, pattern);
        }
        catch (TraceException e)
        {
            return Errors.Report(e);
        }

        foreach (var problem in scan.Problems) Console.Error.WriteLine($"nozoki: warning: skipped {problem.Message}");
        var rows = scan.Probes.Select(p => new Row(p.ObjectPath, p.Site, p,
            p.HasSemaphore && Semaphores.TryRead(pid, p.SemaphoreAddress, out var v) ? v : null)).ToList();
        Print(rows, json, noHeader, withProcess: true);
        if (rows.Count == 0 && !json) Console.Error.WriteLine($"nozoki: no USDT probes{Matching(pattern)} in PID {pid}");
        return (int)ReturnCode.Success;
    }

    private static string Matching(ProbePattern p) => p == ProbePattern.All ? "" : $" matching '{p}'";

    private static int Fail(ReturnCode code, string message)
    {
        Console.Error.WriteLine($"nozoki: error: {message}");
        return (int)code;
    }

    private sealed record Row(string Object, ProbeSite Site, ResolvedProbe? Resolved, ushort? SemaphoreValue);

    private static readonly string[] FileColumns = ["OBJECT", "PROVIDER", "NAME", "LOCATION", "BASE", "SEMAPHORE", "ARGUMENTS"];
    private static readonly string[] ProcessColumns = ["OBJECT", "PROVIDER", "NAME", "LOCATION", "BASE", "SEMAPHORE", "ADDRESS", "SEM_ADDRESS", "SEM", "ARGUMENTS"];

    // readelf prints 64-bit addresses as 0x and 16 hex digits (print_vma FULL_HEX); so does nozoki.
    internal static string Hex(ulong v) => "0x" + v.ToString("x16", CultureInfo.InvariantCulture);

    private static void Print(List<Row> rows, bool json, bool noHeader, bool withProcess)
    {
        var text = json ? Json(rows, withProcess) : Table(rows, noHeader, withProcess);
        FdWriter.Stdout.Write(Encoding.UTF8.GetBytes(text));
    }

    private static string Table(List<Row> rows, bool noHeader, bool withProcess)
    {
        var table = new List<string[]>();
        if (rows.Count == 0) return "";
        if (!noHeader) table.Add(withProcess ? ProcessColumns : FileColumns);
        foreach (var r in rows)
        {
            var s = r.Site;
            table.Add(withProcess
                ? [r.Object, s.Provider, s.Name, Hex(s.Location), Hex(s.Base), Hex(s.Semaphore), Hex(r.Resolved!.Address),
                    r.Resolved.HasSemaphore ? Hex(r.Resolved.SemaphoreAddress) : "-",
                    r.Resolved.HasSemaphore ? r.SemaphoreValue?.ToString(CultureInfo.InvariantCulture) ?? "?" : "-", s.Arguments]
                : [r.Object, s.Provider, s.Name, Hex(s.Location), Hex(s.Base), Hex(s.Semaphore), s.Arguments]);
        }

        if (table.Count == 0) return "";
        var columns = table[0].Length;
        var widths = new int[columns];
        foreach (var row in table)
        {
            for (var c = 0; c < columns - 1; c++) widths[c] = Math.Max(widths[c], row[c].Length);
        }

        var sb = new StringBuilder();
        foreach (var row in table)
        {
            var line = new StringBuilder();
            for (var c = 0; c < columns; c++)
            {
                line.Append(c < columns - 1 ? row[c].PadRight(widths[c] + 2) : row[c]);
            }

            sb.Append(line.ToString().TrimEnd()).Append('\n');
        }

        return sb.ToString();
    }

    private static string Json(List<Row> rows, bool withProcess)
    {
        var sb = new StringBuilder();
        using var ms = new MemoryStream();
        foreach (var r in rows)
        {
            ms.SetLength(0);
            using (var w = new Utf8JsonWriter(ms))
            {
                var s = r.Site;
                w.WriteStartObject();
                if (withProcess) w.WriteNumber("pid", r.Resolved!.Pid);
                w.WriteString("object", r.Object);
                w.WriteString("provider", s.Provider);
                w.WriteString("name", s.Name);
                w.WriteString("location", Hex(s.Location));
                w.WriteString("base", Hex(s.Base));
                w.WriteString("semaphore", Hex(s.Semaphore));
                w.WriteString("arguments", s.Arguments);
                w.WriteStartArray("args");
                foreach (var a in s.Args)
                {
                    w.WriteStartObject();
                    w.WriteString("spec", a.Text);
                    w.WriteNumber("size", a.Size);
                    w.WriteBoolean("signed", a.Signed);
                    w.WriteString("kind", a.Location.ToString().ToLowerInvariant());
                    if (a.Problem is not null) w.WriteString("problem", a.Problem);
                    w.WriteEndObject();
                }

                w.WriteEndArray();
                if (withProcess)
                {
                    var p = r.Resolved!;
                    w.WriteString("load_bias", Hex(p.LoadBias));
                    w.WriteString("address", Hex(p.Address));
                    if (p.HasSemaphore) w.WriteString("semaphore_address", Hex(p.SemaphoreAddress));
                    else w.WriteNull("semaphore_address");
                    if (r.SemaphoreValue is { } v) w.WriteNumber("semaphore_value", v);
                    else w.WriteNull("semaphore_value");
                }

                w.WriteEndObject();
            }

            sb.Append(Encoding.UTF8.GetString(ms.GetBuffer(), 0, (int)ms.Length)).Append('\n');
        }

        return sb.ToString();
    }
}
