using System.Diagnostics;
using System.Globalization;
using Nozoki.Memory;
using Nozoki.Tests.Helpers;
using Nozoki.Tracing;
using Nozoki.Unwinding;
using Xunit.Abstractions;

namespace Nozoki.Tests;

/// <summary>
/// Native backtraces through libdw against gdb's `bt` on the same blocked thread: frame for frame the same pc and the
/// same function, through -O2 code with and without frame pointers, 200 recursive frames, a signal frame and a second
/// thread; and unwinding from a copy of the stack, which ends with a marker, never a wrong frame, when the copy is
/// too short.
/// </summary>
[Collection(PtraceCollection.Name)]
public sealed class UnwindTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    private static string Fixture(bool framePointer) => framePointer
        ? Fixtures.Build("unwind_chain_fp", "unwind_chain.c", "gcc", "-g", "-fno-omit-frame-pointer")
        : Fixtures.Build("unwind_chain_nofp", "unwind_chain.c", "gcc", "-g", "-fomit-frame-pointer");

    /// <summary>A running fixture blocked in read(2), and the thread id it printed for WHAT ("ready", "handler").</summary>
    private sealed class Blocked : IDisposable
    {
        private readonly TempDir _dir = new();

        public Blocked(string exe, params string[] args)
        {
            Tracee = Tracee.Start([exe, .. args], stdinPipe: true, stdoutPath: _dir.File("out"));
        }

        public Tracee Tracee { get; }

        public int Pid => Tracee.Pid;

        public int WaitFor(string what)
        {
            var tid = 0;
            Poll.Until(() =>
            {
                foreach (var line in Tracee.StdoutFileText().Split('\n'))
                {
                    if (line.StartsWith(what + " ", StringComparison.Ordinal))
                    {
                        tid = int.Parse(line[(what.Length + 1)..], CultureInfo.InvariantCulture);
                        return true;
                    }
                }

                return false;
            }, Timeout, $"the fixture's \"{what}\" line");
            // The line is written just before the blocking call; wait until the thread is asleep in it.
            Poll.Until(() => File.ReadAllText($"/proc/{Pid}/task/{tid}/stat").Split(')')[1].Trim().StartsWith('S'), Timeout,
                $"thread {tid} to block");
            return tid;
        }

        public void Dispose()
        {
            Tracee.Dispose();
            _dir.Dispose();
        }
    }

    private static IReadOnlyList<Frame> UnwindLive(Unwinder unwinder, int tid) =>
        StoppedThread.With(tid, regs => unwinder.Unwind(tid, regs, new LiveMemory(tid)));

    /// <summary>gdb's frames and nozoki's, the same pc and function frame for frame, as far as gdb goes (gdb stops at
    /// main; nozoki goes on to _start).</summary>
    private void AssertSameAsGdb(List<GdbFrame> gdb, IReadOnlyList<Frame> ours)
    {
        output.WriteLine("gdb:\n" + string.Join('\n', gdb.Select(f => $"#{f.Index} {f.Pc:x} {f.Function}")));
        output.WriteLine("nozoki:\n" + Frame.FormatAll(ours));
        Assert.True(ours.Count >= gdb.Count, $"nozoki has {ours.Count} frames, gdb {gdb.Count}");
        for (var i = 0; i < gdb.Count; i++)
        {
            var g = gdb[i];
            var o = ours[i];
            if (g.IsSignalHandlerCalled)
            {
                Assert.Equal("__restore_rt", o.Symbol);
                continue;
            }

            Assert.True(g.Pc == o.Pc, $"frame {i}: gdb pc 0x{g.Pc:x} ({g.Function}), nozoki {o}");
            Assert.True(SameFunction(g.Function, o.Symbol), $"frame {i}: gdb says {g.Function}, nozoki {o}");
        }
    }

    // gdb names libc frames after their DWARF subprogram (__GI___libc_read), the ELF symbol table after the exported
    // alias (__libc_read, read): compare them without glibc's internal prefixes.
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

    private static void AssertEndsAtStart(IReadOnlyList<Frame> frames, string outermost)
    {
        Assert.Null(frames[^1].EndMarker);
        Assert.Equal(outermost, frames[^1].Symbol);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void A_call_chain_unwinds_as_gdb_shows_it_to_start(bool framePointer)
    {
        using var p = new Blocked(Fixture(framePointer), "chain");
        var tid = p.WaitFor("ready");
        var gdb = Gdb.Backtrace(p.Pid, tid);
        using var unwinder = Unwinder.ForProcess(p.Pid);
        var frames = UnwindLive(unwinder, tid);
        AssertSameAsGdb(gdb, frames);
        Assert.Equal(["block_in_read", "chain_c", "chain_b", "chain_a", "main"], frames.Skip(1).Take(5).Select(f => f.Symbol));
        Assert.All(frames.Skip(1).Take(5), f => Assert.Equal(Path.GetFileName(Fixture(framePointer)), f.Module));
        Assert.All(frames.Skip(1).Take(5), f => Assert.Equal("unwind_chain.c", Path.GetFileName(f.File)));
        Assert.Contains(frames, f => f.Module == "libc.so.6");
        AssertEndsAtStart(frames, "_start");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Two_hundred_recursive_frames_unwind_as_gdb_shows_them(bool framePointer)
    {
        using var p = new Blocked(Fixture(framePointer), "deep", "200");
        var tid = p.WaitFor("ready");
        var gdb = Gdb.Backtrace(p.Pid, tid);
        using var unwinder = Unwinder.ForProcess(p.Pid);
        var frames = UnwindLive(unwinder, tid);
        AssertSameAsGdb(gdb, frames);
        Assert.Equal(200, frames.Count(f => f.Symbol == "recurse"));
        AssertEndsAtStart(frames, "_start");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void A_signal_handler_frame_unwinds_through_restore_rt_into_the_interrupted_function(bool framePointer)
    {
        using var p = new Blocked(Fixture(framePointer), "signal");
        var tid = p.WaitFor("ready");
        Posix.Kill(p.Pid, 10); // SIGUSR1
        p.WaitFor("handler");
        var gdb = Gdb.Backtrace(p.Pid, tid);
        Assert.Contains(gdb, f => f.IsSignalHandlerCalled);
        using var unwinder = Unwinder.ForProcess(p.Pid);
        var frames = UnwindLive(unwinder, tid);
        AssertSameAsGdb(gdb, frames);
        var names = frames.Select(f => f.Symbol).ToList();
        var restore = names.IndexOf("__restore_rt");
        Assert.True(restore > 0, Frame.FormatAll(frames));
        Assert.Equal(["handler_block", "on_usr1"], names.Skip(restore - 2).Take(2));
        Assert.True(frames[restore + 1].IsActivation, "the interrupted frame's pc is exact: " + frames[restore + 1]);
        Assert.Equal(["sleep_in_pause", "signal_b", "signal_a", "main"], names.Skip(restore + 2).Take(4));
        AssertEndsAtStart(frames, "_start");
    }

    [Fact]
    public void A_second_thread_unwinds_as_gdb_shows_it_to_clone()
    {
        using var p = new Blocked(Fixture(false), "thread");
        var tid = p.WaitFor("ready");
        Assert.NotEqual(p.Pid, tid);
        var gdb = Gdb.Backtrace(p.Pid, tid);
        using var unwinder = Unwinder.ForProcess(p.Pid);
        var frames = UnwindLive(unwinder, tid);
        AssertSameAsGdb(gdb, frames);
        Assert.Equal(gdb.Count, frames.Count);
        Assert.Contains(frames, f => f.Symbol == "worker");
        Assert.Null(frames[^1].EndMarker);
        Assert.Contains("clone", frames[^1].Symbol); // __clone3 (glibc 2.34+) or clone
    }

    [Fact]
    public void Code_mapped_after_the_first_look_is_found_after_a_refresh()
    {
        var late = Fixtures.Build("libunwind_late.so", "unwind_symlib.c", "gcc", "-g", "-shared", "-fPIC");
        using var p = new Blocked(Fixture(false), "dlopen", late);
        var tid = p.WaitFor("ready");
        using var unwinder = Unwinder.ForProcess(p.Pid);
        var symbols = Nozoki.Symbols.ProcessSymbols.ForProcess(p.Pid);
        Assert.Contains("block_in_read", UnwindLive(unwinder, tid).Select(f => f.Symbol));
        Assert.Throws<Nozoki.Symbols.SymbolLookupException>(() => symbols.Resolve("symlib_block"));

        p.Tracee.Release();
        p.WaitFor("late");
        // The unwinder sees a pc in no reported module and reports the changed maps again by itself.
        var frames = UnwindLive(unwinder, tid);
        output.WriteLine(Frame.FormatAll(frames));
        var block = Assert.Single(frames, f => f.Symbol == "symlib_block");
        Assert.Equal("libunwind_late.so", block.Module);
        Assert.Equal("main", frames[block.Index + 1].Symbol);
        AssertEndsAtStart(frames, "_start");

        symbols.Refresh();
        var location = Assert.Single(symbols.Resolve("symlib_block"));
        Assert.Equal("libunwind_late.so", location.Module.Name);
        Assert.StartsWith("libunwind_late.so!symlib_block+0x", symbols.Format(block.Pc));
    }

    private static (IReadOnlyList<Frame> Live, IReadOnlyList<Frame> Copy) LiveAndCopy(Unwinder unwinder, int tid, int copySize) =>
        StoppedThread.With(tid, regs =>
        {
            var live = unwinder.Unwind(tid, regs, new LiveMemory(tid));
            // As perf does: up to COPYSIZE bytes, fewer when the stack ends sooner.
            var bytes = new byte[copySize];
            var read = ProcessMemory.Read(tid, regs.Rsp, bytes);
            Assert.InRange(read.BytesRead, Math.Min(copySize, 1024), copySize);
            return (live, unwinder.Unwind(tid, regs, new StackCopy(regs.Rsp, bytes.AsMemory(0, read.BytesRead))));
        });

    [Fact]
    public void A_big_enough_stack_copy_gives_the_live_frames()
    {
        using var p = new Blocked(Fixture(false), "chain");
        var tid = p.WaitFor("ready");
        using var unwinder = Unwinder.ForProcess(p.Pid);
        var (live, copy) = LiveAndCopy(unwinder, tid, 16 * 1024);
        output.WriteLine(Frame.FormatAll(copy));
        Assert.Equal(Frame.FormatAll(live), Frame.FormatAll(copy));
        AssertEndsAtStart(copy, "_start");
    }

    [Fact]
    public void A_too_short_stack_copy_ends_with_a_marker_after_correct_frames()
    {
        using var p = new Blocked(Fixture(false), "deep", "100");
        var tid = p.WaitFor("ready");
        using var unwinder = Unwinder.ForProcess(p.Pid);
        var (live, copy) = LiveAndCopy(unwinder, tid, 256);
        output.WriteLine(Frame.FormatAll(copy));
        Assert.Equal("stack copy ends here", copy[^1].EndMarker);
        Assert.InRange(copy.Count, 2, 20);
        for (var i = 0; i < copy.Count - 1; i++) Assert.Equal(live[i].ToString(), copy[i].ToString());
    }

    [Fact]
    public void A_warm_unwind_of_a_ten_frame_stack_is_cheap()
    {
        using var p = new Blocked(Fixture(false), "deep", "3");
        var tid = p.WaitFor("ready");
        using var unwinder = Unwinder.ForProcess(p.Pid);
        var (wall, cpu, frames) = StoppedThread.With(tid, regs =>
        {
            var memory = new LiveMemory(tid);
            var first = unwinder.Unwind(tid, regs, memory);
            for (var i = 0; i < 50; i++) unwinder.Unwind(tid, regs, memory);
            const int n = 5000;
            var cpu0 = ThreadCpuNanoseconds();
            var sw = Stopwatch.StartNew();
            for (var i = 0; i < n; i++) unwinder.Unwind(tid, regs, memory);
            return (sw.Elapsed / n, TimeSpan.FromTicks((ThreadCpuNanoseconds() - cpu0) / 100 / n), first.Count);
        });
        // For scale, measured on the same machine: gdb's `bt` of this stack costs ~1 ms of CPU (2.7 ms wall) in an
        // attached gdb whose frame cache is flushed before each bt (`maint flush register-cache`), and `gdb -batch -p
        // PID -ex bt` 0.5 s of CPU (1.3 s wall).
        output.WriteLine($"{frames} frames: {cpu.TotalMicroseconds:0.0} us CPU, {wall.TotalMicroseconds:0.0} us wall per unwind (warm)");
        Assert.InRange(frames, 9, 12);
        Assert.True(cpu < TimeSpan.FromMilliseconds(1), $"{cpu.TotalMicroseconds} us of CPU per unwind");
    }

    // The first field of /proc/thread-self/schedstat: the time this thread has run, in ns (wall time under a loaded
    // machine measures the neighbours).
    private static long ThreadCpuNanoseconds() =>
        long.Parse(File.ReadAllText("/proc/thread-self/schedstat").Split(' ')[0], CultureInfo.InvariantCulture);
}
