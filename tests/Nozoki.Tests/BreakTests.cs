using System.Globalization;
using System.Text.Json;
using Nozoki.Memory;
using Nozoki.Probes;
using Nozoki.Symbols;
using Nozoki.Tests.Helpers;
using Xunit.Abstractions;

namespace Nozoki.Tests;

/// <summary>
/// `nozoki break`: the backtraces of its hits (kernel uprobes unwound from a stack copy, and ptrace breakpoints
/// unwound from live memory) name the same functions as gdb's `bt` at the same instruction, frame for frame; a
/// library loaded after the attach is armed when it is mapped; python3's malloc gives the same stacks both ways; bad
/// input gives one line and its own exit code; and the tracee is left as it was (untraced, its code bytes those of its
/// file, its own results right) after --count, SIGINT, SIGTERM and its own exit.
/// </summary>
[Collection(PtraceCollection.Name)]
public sealed class BreakTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    internal static string Chain(bool framePointer) => framePointer
        ? Fixtures.Build("brk_chain_fp", "brk_chain.c", "gcc", "-g", "-fno-omit-frame-pointer")
        : Fixtures.Build("brk_chain_nofp", "brk_chain.c", "gcc", "-g", "-fomit-frame-pointer");

    internal static string Lib => Fixtures.Build("libbrk.so", "brk_lib.c", "gcc", "-g", "-shared", "-fPIC");

    /// <summary>A running brk_chain: stdin a pipe (one byte ends its loop), stdout a file.</summary>
    internal sealed class Running : IDisposable
    {
        private readonly TempDir _dir = new();

        public Running(string exe, params string[] args)
        {
            Exe = exe;
            Tracee = Tracee.Start([exe, .. args], stdinPipe: true, stdoutPath: _dir.File("out"));
        }

        public string Exe { get; }

        public Tracee Tracee { get; }

        public int Pid => Tracee.Pid;

        public void WaitFor(string what) =>
            Poll.Until(() => Tracee.StdoutFileText().Split('\n').Any(l => l.StartsWith(what + " ", StringComparison.Ordinal)), Timeout,
                $"the fixture's \"{what}\" line");

        /// <summary>Ends its loop and checks that it exits 0 with every one of its own results right.</summary>
        public void AssertFinishesRight()
        {
            Tracee.Release();
            Assert.Equal(new Nozoki.Tracing.ExitStatus(0, 0), Tracee.WaitForExit());
            var text = Tracee.StdoutFileText();
            Assert.Matches(@"(?m)^ok calls=[1-9]\d* wrong=0$", text);
        }

        public void Dispose()
        {
            Tracee.Dispose();
            _dir.Dispose();
        }
    }

    /// <summary>The process is not traced and the code at every site of SYMBOL is byte for byte its file's.</summary>
    internal static void AssertLeftAsItWas(int pid, params string[] symbols)
    {
        Assert.Equal(0, ProcStatus.Get(pid).TracerPid);
        var process = ProcessSymbols.ForProcess(pid);
        foreach (var symbol in symbols)
        {
            foreach (var location in process.Resolve(symbol))
            {
                var table = location.Module.Symbols!;
                var offset = ProbeResolver.ToFileOffset(table.Segments, location.FileAddress)!.Value;
                var inFile = new byte[16];
                using (var f = File.OpenRead(location.Module.Path))
                {
                    f.Position = (long)offset;
                    f.ReadExactly(inFile);
                }

                var inMemory = new byte[16];
                Assert.Equal(16, ProcessMemory.Read(pid, location.Address, inMemory).BytesRead);
                Assert.True(inFile.AsSpan().SequenceEqual(inMemory),
                    $"{location}: memory {Convert.ToHexString(inMemory)} differs from the file's {Convert.ToHexString(inFile)}");
            }
        }
    }

    private static List<JsonElement> Hits(string stdout) =>
        ExternalProcess.SplitLines(stdout).Select(NozokiCli.ParseJson).Where(o => o.TryGetProperty("location", out _)).ToList();

    private static List<string?> Names(JsonElement hit) =>
        hit.GetProperty("frames").EnumerateArray().Where(f => !f.TryGetProperty("end", out _))
            .Select(f => f.TryGetProperty("symbol", out var s) ? s.GetString() : null).ToList();

    private static bool HasEndMarker(JsonElement hit) => hit.GetProperty("frames").EnumerateArray().Any(f => f.TryGetProperty("end", out _));

    // gdb names libc frames after their DWARF subprogram (__GI___poll), the symbol table after the alias (__poll, poll).
    private static bool SameFunction(string gdb, string? ours)
    {
        if (ours is null) return false;
        if (gdb == ours) return true;
        static string Core(string s)
        {
            if (s.StartsWith("__GI_", StringComparison.Ordinal)) s = s[5..];
            s = s.TrimStart('_');
            if (s.StartsWith("libc_", StringComparison.Ordinal)) s = s[5..];
            return s.TrimStart('_');
        }

        return Core(gdb) == Core(ours);
    }

    /// <summary>Frame for frame, as far as gdb goes (gdb stops at main or clone3; nozoki may go on to _start).</summary>
    private void AssertSameNamesAsGdb(List<GdbFrame> gdb, JsonElement hit)
    {
        var ours = Names(hit);
        output.WriteLine("gdb:\n" + string.Join('\n', gdb.Select(f => $"#{f.Index} {f.Pc:x} {f.Function}")));
        output.WriteLine("nozoki:\n" + string.Join('\n', hit.GetProperty("frames").EnumerateArray().Select(f => f.ToString())));
        Assert.True(ours.Count >= gdb.Count, $"nozoki has {ours.Count} frames, gdb {gdb.Count}");
        for (var i = 0; i < gdb.Count; i++)
        {
            if (gdb[i].IsSignalHandlerCalled) Assert.Equal("__restore_rt", ours[i]);
            else Assert.True(SameFunction(gdb[i].Function, ours[i]), $"frame {i}: gdb says {gdb[i].Function}, nozoki {ours[i]}");
        }
    }

    [Theory]
    [InlineData("chain", true, "uprobe")]
    [InlineData("chain", false, "uprobe")]
    [InlineData("chain", false, "ptrace")]
    [InlineData("deep", false, "uprobe")]
    [InlineData("deep", true, "ptrace")]
    [InlineData("signal", false, "uprobe")]
    [InlineData("signal", true, "ptrace")]
    [InlineData("thread", true, "uprobe")]
    [InlineData("thread", false, "ptrace")]
    public void Backtraces_name_the_functions_gdb_names_at_the_same_instruction(string mode, bool framePointer, string via)
    {
        var function = mode == "signal" ? "brk_in_handler" : "brk_target";
        using var p = mode == "deep" ? new Running(Chain(framePointer), mode, "200") : new Running(Chain(framePointer), mode);
        p.WaitFor("ready");
        var gdb = Gdb.BacktraceAtBreak(p.Pid, "*" + function);
        if (mode == "deep") Assert.True(gdb.Count > 200, $"gdb shows {gdb.Count} frames");

        var (code, stdout, stderr) = NozokiCli.Run("break", "-p", $"{p.Pid}", function, "--backtrace", "--count", "1", "--json", "--via", via);
        output.WriteLine(stderr);
        NozokiCli.AssertNoStackTrace(stdout, stderr);
        Assert.Equal(0, code);
        var hits = Hits(stdout);
        Assert.Single(hits);
        Assert.Equal(p.Pid, hits[0].GetProperty("pid").GetInt32());
        Assert.EndsWith("!" + function, hits[0].GetProperty("location").GetString(), StringComparison.Ordinal);
        AssertSameNamesAsGdb(gdb, hits[0]);
        Assert.Contains($"\"event\":\"armed\",\"pid\":{p.Pid},\"spec\":\"{function}\",\"sites\":1,\"via\":\"{via}\"", stdout, StringComparison.Ordinal);
        Assert.Matches(@"(?m)^nozoki: 1 hit", stderr);

        AssertLeftAsItWas(p.Pid, function);
        p.AssertFinishesRight();
    }

    [Fact]
    public void A_stack_deeper_than_the_copy_ends_with_the_marker_never_a_wrong_frame()
    {
        using var p = new Running(Chain(false), "deep", "200");
        p.WaitFor("ready");
        var (code, stdout, stderr) = NozokiCli.Run("break", "-p", $"{p.Pid}", "brk_target", "-b", "--count", "1", "--json", "--stack-size", "1024");
        Assert.Equal(0, code);
        var hit = Assert.Single(Hits(stdout));
        Assert.True(HasEndMarker(hit), $"no end marker with a 1 KiB copy of a 200-frame stack:\n{stdout}\n{stderr}");
        var names = Names(hit);
        Assert.Equal(["brk_target", "chain_c", "chain_b", "chain_a", "run_loop"], names.Take(5));
        Assert.All(names.Skip(5), n => Assert.Equal("recurse", n));
        p.AssertFinishesRight();
    }

    [Theory]
    [InlineData("uprobe")]
    [InlineData("ptrace")]
    public void A_library_dlopened_after_the_attach_is_armed_when_it_is_mapped(string via)
    {
        using var p = new Running(Chain(false), "dlopen", Lib);
        p.WaitFor("ready");
        using var nozoki = NozokiCli.Start(["break", "-p", $"{p.Pid}", "--pending", "libbrk.so:brk_lib_target", "-b", "--count", "3", "--json", "--via", via]);
        nozoki.WaitForJsonAttached(p.Pid);
        p.Tracee.Release();
        Assert.Equal(0, nozoki.WaitForExit(NozokiCli.ExitTimeout));
        nozoki.AssertNoStackTrace();
        var hits = Hits(nozoki.StdoutText());
        Assert.Equal(3, hits.Count);
        Assert.All(hits, h => Assert.Equal("libbrk.so!brk_lib_target", h.GetProperty("location").GetString()));

        var gdb = Gdb.BacktraceAtBreak(p.Pid, "*brk_lib_target");
        AssertSameNamesAsGdb(gdb, hits[0]);
        AssertLeftAsItWas(p.Pid, "libbrk.so:brk_lib_target");
        p.AssertFinishesRight();
    }

    [Fact]
    public void Malloc_in_python_has_the_same_stacks_with_uprobes_and_with_ptrace()
    {
        using var dir = new TempDir();
        var script = dir.File("alloc.py");
        File.WriteAllText(script, """
            import sys
            def grow(n):
                return bytearray(n)
            def work():
                total = 0
                while True:
                    total += len(grow(1 << 17))
            print("ready", flush=True)
            work()
            """);
        using var python = Tracee.Start(["python3", script], stdoutPath: dir.File("out"));
        Poll.Until(() => TempDir.ReadText(dir.File("out")).Contains("ready", StringComparison.Ordinal), Timeout, "python's ready line");

        List<List<string?>> Stacks(string via)
        {
            var (code, stdout, stderr) = NozokiCli.Run("break", "-p", $"{python.Pid}", "libc.so.6:malloc", "--count", "1000", "--backtrace", "--json", "--via", via);
            NozokiCli.AssertNoStackTrace(stdout, stderr);
            Assert.True(code == 0, $"exit {code}: {stderr}");
            var hits = Hits(stdout);
            Assert.Equal(1000, hits.Count);
            Assert.All(hits, h => Assert.Equal("libc.so.6!malloc", h.GetProperty("location").GetString()));
            return hits.Select(Names).ToList();
        }

        var traps = Stacks("ptrace");
        var uprobes = Stacks("uprobe");
        AssertLeftAsItWas(python.Pid, "libc.so.6:malloc");
        Assert.True(python.Child.WaitForExit(TimeSpan.Zero) is null, "python stopped running");

        // Every ptrace stack is whole (python's main thread ends at _start); a uprobe stack may end early at the copy's
        // end. The frames a uprobe stack has are those of some ptrace stack: the same call paths, named the same.
        Assert.True(traps.Count(s => s.LastOrDefault() == "_start") >= 990, "ptrace stacks do not reach _start");
        Assert.True(uprobes.Average(s => s.Count) >= 8, $"uprobe stacks are short: {uprobes.Average(s => s.Count)} frames on average");
        var known = traps.Select(s => string.Join('/', s)).ToHashSet(StringComparer.Ordinal);
        var agreeing = uprobes.Count(u => known.Any(k => k.StartsWith(string.Join('/', u), StringComparison.Ordinal)));
        output.WriteLine($"{agreeing} of {uprobes.Count} uprobe stacks are the start of a ptrace stack");
        output.WriteLine("ptrace: " + traps.GroupBy(s => string.Join('/', s)).OrderByDescending(g => g.Count()).First().Key);
        output.WriteLine("uprobe: " + uprobes.GroupBy(s => string.Join('/', s)).OrderByDescending(g => g.Count()).First().Key);
        Assert.True(agreeing >= 950, $"only {agreeing} of 1000 uprobe stacks agree with a ptrace stack");
    }

    [Theory]
    [InlineData(2, "uprobe")]   // SIGINT
    [InlineData(15, "uprobe")]  // SIGTERM
    [InlineData(2, "ptrace")]
    [InlineData(15, "ptrace")]
    public void A_signal_to_nozoki_leaves_the_process_untraced_with_its_code_restored(int signo, string via)
    {
        using var p = new Running(Chain(true), "thread");
        p.WaitFor("ready");
        using var nozoki = NozokiCli.Start(["break", "-p", $"{p.Pid}", "brk_target", "-b", "--via", via]);
        nozoki.WaitForAttached(p.Pid);
        nozoki.WaitForStdout(s => s.Contains("!brk_target", StringComparison.Ordinal), Timeout, "a hit");
        nozoki.Signal(signo);
        Assert.Equal(0, nozoki.WaitForExit(NozokiCli.ExitTimeout));
        nozoki.AssertNoStackTrace();
        Assert.Matches(@"(?m)^nozoki: [1-9]\d* hits?", nozoki.StderrText());
        AssertLeftAsItWas(p.Pid, "brk_target");
        p.AssertFinishesRight();
    }

    [Fact]
    public void A_process_that_exits_while_armed_ends_nozoki_with_exit_6()
    {
        using var p = new Running(Chain(false), "chain");
        p.WaitFor("ready");
        using var nozoki = NozokiCli.Start(["break", "-p", $"{p.Pid}", "brk_target"]);
        nozoki.WaitForAttached(p.Pid);
        p.AssertFinishesRight();
        Assert.Equal(6, nozoki.WaitForExit(NozokiCli.ExitTimeout));
        Assert.Contains($"nozoki: error: PID {p.Pid} exited while armed", nozoki.StderrText(), StringComparison.Ordinal);
    }

    [Fact]
    public void A_launched_command_runs_to_its_end_with_count_hits_reported()
    {
        var (code, stdout, stderr) = NozokiCli.Run("break", "brk_target", "--count", "5", "--args", "--", Chain(false), "bench", "1000", "now");
        output.WriteLine(stderr);
        Assert.Equal(0, code);
        var lines = ExternalProcess.SplitLines(stdout).Where(l => l.Contains("!brk_target", StringComparison.Ordinal)).ToList();
        Assert.Equal(5, lines.Count);
        // brk_target(x) is called with x = i + 3 for i = 0, 1, 2...
        Assert.Contains(" rdi=0x3 ", lines[0], StringComparison.Ordinal);
        Assert.Matches(@"(?m)^ns_per_call=[\d.]+ ok calls=1000 wrong=0$", stdout);
    }

    [Theory]
    [InlineData("brk_targte", 3, "nearest: brk_target")]
    [InlineData("nosuchlib.so:malloc", 3, "nosuchlib.so")]
    [InlineData("brk_chain_nofp:calls", 2, "not code")]
    [InlineData("brk_chain_nofp:0x1", 2, "executable")]
    [InlineData("brk_target+0x100000", 2, "outside the executable segments")]
    [InlineData("brk_target+0x30", 2, "past the end of brk_target")]
    public void A_bad_location_is_one_line_with_its_exit_code_and_nothing_left_behind(string location, int expected, string says)
    {
        using var p = new Running(Chain(false), "chain");
        p.WaitFor("ready");
        var (code, stdout, stderr) = NozokiCli.Run("break", "-p", $"{p.Pid}", location, "-b");
        NozokiCli.AssertNoStackTrace(stdout, stderr);
        var lines = ExternalProcess.SplitLines(stderr);
        Assert.True(lines.Length == 1 && lines[0].StartsWith("nozoki: error: ", StringComparison.Ordinal), stderr);
        Assert.Contains(says, lines[0], StringComparison.Ordinal);
        Assert.Equal(expected, code);
        AssertLeftAsItWas(p.Pid, "brk_target");
        p.AssertFinishesRight();
    }

    [Theory]
    [InlineData(2, "break", "brk_target")]                                   // neither -p nor a command
    [InlineData(2, "break", "-p", "1", "--stack-size", "12", "brk_target")]   // not a multiple of 8
    [InlineData(2, "break", "-p", "1", "--via", "bpf", "brk_target")]
    [InlineData(2, "break", "-p", "1", "--count", "0", "brk_target")]
    [InlineData(3, "break", "-p", "2147483646", "brk_target")]               // no such process
    public void Bad_arguments_are_one_line_with_their_exit_code(int expected, params string[] args)
    {
        var (code, stdout, stderr) = NozokiCli.Run(args);
        NozokiCli.AssertNoStackTrace(stdout, stderr);
        Assert.Single(ExternalProcess.SplitLines(stderr));
        Assert.StartsWith("nozoki: error: ", stderr, StringComparison.Ordinal);
        Assert.Equal(expected, code);
    }

    [Fact]
    public void An_unprivileged_user_is_refused_a_root_process_with_exit_4()
    {
        Assert.True(Posix.GetEuid() == 0, "this test must run as root");
        using var p = new Running(Chain(false), "chain");
        p.WaitFor("ready");
        using var nozoki = NozokiCli.StartAsNobody(["break", "-p", $"{p.Pid}", "brk_target"]);
        Assert.Equal(4, nozoki.WaitForExit(NozokiCli.ExitTimeout));
        Assert.StartsWith("nozoki: error: ", nozoki.StderrText(), StringComparison.Ordinal);
        AssertLeftAsItWas(p.Pid, "brk_target");
        p.AssertFinishesRight();
    }

    [Fact]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public void Without_uprobes_an_unprivileged_user_gets_ptrace_breakpoints()
    {
        var paranoid = File.ReadAllText("/proc/sys/kernel/perf_event_paranoid").Trim();
        using var dir = new TempDir();
        File.SetUnixFileMode(dir.Path, (UnixFileMode)0x1ED); // 0755: nobody must reach the copy
        var exe = dir.File("brk_chain");
        File.Copy(Chain(false), exe);
        File.SetUnixFileMode(exe, (UnixFileMode)0x1ED);
        using var nozoki = NozokiCli.StartAsNobody(["break", "brk_target", "--count", "3", "-b", "--", exe, "bench", "1000", "now"]);
        Assert.Equal(0, nozoki.WaitForExit(NozokiCli.ExitTimeout));
        var stderr = nozoki.StderrText();
        output.WriteLine($"perf_event_paranoid {paranoid}\n{stderr}");
        Assert.Equal(3, ExternalProcess.SplitLines(nozoki.StdoutText()).Count(l => !l.StartsWith(' ') && l.Contains("!brk_target", StringComparison.Ordinal)));
        // Kernel uprobes need CAP_PERFMON (or root) whatever perf_event_paranoid says: nobody falls back to ptrace.
        Assert.Contains("(ptrace breakpoint)", stderr, StringComparison.Ordinal);
        Assert.Contains("using a ptrace breakpoint", stderr, StringComparison.Ordinal);
        Assert.Matches(@"held per hit \(ptrace stop to resume\): median [\d.]+ us", stderr);
    }
}
