using System.Globalization;
using System.Text.RegularExpressions;
using Nozoki.Arch;
using Nozoki.Breakpoints;
using Nozoki.Elf;
using Nozoki.Tests.Helpers;
using Nozoki.Tracing;

namespace Nozoki.Tests;

/// <summary>
/// The Breakpoints piece on a real process (fixtures/breakpoints.c): an int3 over a function's first instruction (a
/// `push`, not a nop) hit from several threads, each call's result checked by the process itself; its own int3 and
/// trap-flag traps still its own; nothing left behind after the detach (code bytes as in the file, still runs).
/// </summary>
[Collection(PtraceCollection.Name)]
public sealed partial class BreakpointTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    private static string Fixture => Fixtures.Build("breakpoints", "breakpoints.c", "gcc", "-no-pie", "-fcf-protection=none", "-ldl");

    /// <summary>Puts one breakpoint at attach and counts what the session reports. Runs on the ptrace thread: records, never throws.</summary>
    private sealed class Observer(ulong site) : ITraceObserver
    {
        public readonly BreakpointSet Breakpoints = new();
        public int InsertError = -1;
        public int Hits, WrongRip, Steps, StepsNotAfterSite, ForeignSteps, NotOurs, TrapSignals;
        public readonly List<int> TrapCodes = [];
        public Func<int, string?>? AtFirstHit;
        public string? FirstHitResult;

        public void OnStarted(ITraceControl control) => Breakpoints.OnStarted(control);

        public void OnAttached(int pid, int threadCount) => InsertError = Breakpoints.For(pid).Insert(site).Errno;

        public bool OnBreakpoint(in BreakpointStop stop)
        {
            switch (Breakpoints.Classify(stop, out var address, out var regs))
            {
                case BreakpointSet.Trap.NotOurs:
                    NotOurs++;
                    return false;
                case BreakpointSet.Trap.Stale:
                    return true;
            }

            if (address != site || regs.Rip != site + X86_64.BreakpointLength) WrongRip++;
            if (Hits++ == 0 && AtFirstHit is not null) FirstHitResult = AtFirstHit(stop.Tid);
            return Breakpoints.StepOver(stop, address);
        }

        public void OnSingleStep(in StepStop stop)
        {
            if (!Breakpoints.OnSingleStep(stop))
            {
                ForeignSteps++;
                return;
            }

            Steps++;
            // `push %rbp` is one byte: one step from the site ends right after it.
            if (!stop.TryGetRegisters(out var regs) || regs.Rip != site + 1) StepsNotAfterSite++;
        }

        public void OnSignal(in SignalStop stop)
        {
            if (stop.Signal != Signals.SIGTRAP) return;
            TrapSignals++;
            TrapCodes.Add(stop.Info.Code);
        }

        public void OnDetaching(int pid) => Breakpoints.OnDetaching(pid);
    }

    [GeneratedRegex(@"^ready ([0-9a-f]+)$", RegexOptions.Multiline)]
    private static partial Regex ReadyLine();

    [GeneratedRegex(@"^round1 mismatches=(\d+) int3=(\d+) step=(\d+) other=(\d+)$", RegexOptions.Multiline)]
    private static partial Regex Round1Line();

    private static ulong StartAndWaitReady(Tracee tracee)
    {
        Match m = Match.Empty;
        Poll.Until(() => (m = ReadyLine().Match(tracee.StdoutFileText())).Success, Timeout, "the fixture's ready line");
        return ulong.Parse(m.Groups[1].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
    }

    /// <summary>The bytes of the function as the ELF file has them (the fixture is not PIE: addresses are the file's).</summary>
    private static byte[] FileBytes(ulong address, int count)
    {
        using var elf = ElfFile.Open(Fixture);
        Assert.True(elf.TryFindSymbol("work", out var symbol), "work in the fixture's symbol table");
        Assert.Equal(symbol.Value, address);
        var text = elf.LoadSegments.Single(s => address >= s.VirtualAddress && address < s.VirtualAddress + s.FileSize);
        return elf.ReadBytes(text.Offset + (address - text.VirtualAddress), (ulong)count, "work");
    }

    private static byte[] LiveBytes(int pid, ulong address, int count)
    {
        using var mem = new FileStream($"/proc/{pid}/mem", FileMode.Open, FileAccess.Read);
        mem.Seek((long)address, SeekOrigin.Begin);
        var b = new byte[count];
        mem.ReadExactly(b);
        return b;
    }

    [Theory]
    [InlineData(2, 3000)]
    [InlineData(4, 2000)]
    public async Task A_breakpoint_on_a_first_instruction_is_hit_by_every_call_of_every_thread_and_leaves_the_process_as_it_was(int threads, int calls)
    {
        const int Traps = 5;
        using var dir = new TempDir();
        using var tracee = Tracee.Start([Fixture, $"{threads}", $"{calls}", $"{Traps}"], stdinPipe: true, stdoutPath: dir.File("out"));
        var work = StartAndWaitReady(tracee);
        var original = FileBytes(work, 16);
        Assert.Equal(0x55, original[0]); // push %rbp: the step-over must run it, not skip it
        Assert.Equal(original, LiveBytes(tracee.Pid, work, 16));

        var observer = new Observer(work);
        TraceResult result;
        using (var session = TraceSession.Attach(tracee.Pid, observer, new TraceOptions { TraceSyscalls = false }))
        {
            Poll.Until(() => Volatile.Read(ref observer.InsertError) != -1, Timeout, "the breakpoint to be inserted");
            Assert.Equal(0, observer.InsertError);
            Assert.Equal(X86_64.Int3, LiveBytes(tracee.Pid, work, 1)[0]);
            tracee.Release();
            Match m = Match.Empty;
            Poll.Until(() => (m = Round1Line().Match(tracee.StdoutFileText())).Success, Timeout,
                () => $"the fixture's round1 line (stdout: {tracee.StdoutFileText()})");
            Assert.Equal("0", m.Groups[1].Value); // every call computed what it did untraced
            // The process's own traps are its own: each int3 and each trap-flag step reached its handler.
            Assert.Equal($"{Traps}", m.Groups[2].Value);
            Assert.Equal($"{Traps}", m.Groups[3].Value);
            Assert.Equal("0", m.Groups[4].Value);
            session.RequestDetach();
            result = await session.Completion.WaitAsync(Timeout);
        }

        Assert.Null(result.Error);
        Assert.Equal(threads * calls, observer.Hits);
        Assert.Equal(0, observer.WrongRip);
        Assert.Equal(threads * calls, observer.Steps);
        Assert.Equal(0, observer.StepsNotAfterSite);
        Assert.Equal(0, observer.ForeignSteps);
        // Its int3s were asked about (SI_KERNEL, not ours); its trap-flag traps (TRAP_TRACE) were not breakpoints.
        Assert.Equal(Traps, observer.NotOurs);
        Assert.Equal(2 * Traps, observer.TrapSignals);
        Assert.Equal(Traps, observer.TrapCodes.Count(c => c == 0x80));
        Assert.Equal(Traps, observer.TrapCodes.Count(c => c == 2));

        // Untouched after the detach: the code as in the file, and it runs its calls again, untraced, rightly.
        Assert.Equal(original, LiveBytes(tracee.Pid, work, 16));
        Assert.Equal(0, ProcStatus.Get(tracee.Pid).TracerPid);
        tracee.Release();
        Assert.Equal(new ExitStatus(0, 0), tracee.WaitForExit());
        Assert.Contains("round2 mismatches=0", tracee.StdoutFileText(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_detach_while_threads_step_over_the_breakpoint_leaves_them_computing_right()
    {
        const int Threads = 3;
        using var dir = new TempDir();
        using var tracee = Tracee.Start([Fixture, "loop", $"{Threads}"], stdinPipe: true, stdoutPath: dir.File("out"));
        var work = StartAndWaitReady(tracee);
        var original = FileBytes(work, 16);
        var observer = new Observer(work);
        using (var session = TraceSession.Attach(tracee.Pid, observer, new TraceOptions { TraceSyscalls = false }))
        {
            Assert.Equal(0, observer.InsertError);
            tracee.Release();
            // Detached in the middle of the calls: some thread is likely between its trap and its step.
            Poll.Until(() => Volatile.Read(ref observer.Hits) >= 3000, Timeout, "3000 hits");
            session.RequestDetach();
            Assert.Null((await session.Completion.WaitAsync(Timeout)).Error);
        }

        Assert.Equal(0, observer.WrongRip);
        Assert.Equal(0, observer.StepsNotAfterSite);
        // A hit while detaching is not stepped: the thread is left at the site, to run the original instruction.
        Assert.InRange(observer.Hits - observer.Steps, 0, Threads);
        Assert.Equal(original, LiveBytes(tracee.Pid, work, 16));
        Assert.Equal(0, ProcStatus.Get(tracee.Pid).TracerPid);
        tracee.Release();
        Assert.Equal(new ExitStatus(0, 0), tracee.WaitForExit());
        Assert.Matches(@"^loop mismatches=0 calls=\d+$", tracee.StdoutFileText().Split('\n')[1]);
    }

    /// <summary>Watches the loader's link map and records what it is told.</summary>
    private sealed class LinkMapObserver : ITraceObserver, ILinkMapListener
    {
        public readonly BreakpointSet Breakpoints = new();
        public readonly LinkMapWatcher Watcher;
        public readonly List<string> Mapped = [], Unmapped = [];
        public int Changes, Consistent, NotOurs;
        public string? WatchProblem = "not yet";

        public LinkMapObserver() => Watcher = new LinkMapWatcher(Breakpoints, this);

        public void OnStarted(ITraceControl control) => Breakpoints.OnStarted(control);

        public void OnAttached(int pid, int threadCount)
        {
            WatchProblem = Watcher.Watch(pid, out var watching) ?? (watching ? null : "not watching");
        }

        public bool OnBreakpoint(in BreakpointStop stop)
        {
            if (Breakpoints.Classify(stop, out var site, out _) != BreakpointSet.Trap.Hit)
            {
                NotOurs++;
                return false;
            }

            return Watcher.OnHit(stop, site);
        }

        public void OnDetaching(int pid)
        {
            Breakpoints.OnDetaching(pid);
            Watcher.Forget(pid);
        }

        public void OnLinkMapChanged(int pid, bool consistent)
        {
            Changes++;
            if (consistent) Consistent++;
        }

        public void OnModuleMapped(int pid, in LinkMapModule module) => Mapped.Add(module.Name);

        public void OnModuleUnmapped(int pid, in LinkMapModule module) => Unmapped.Add(module.Name);
    }

    [Fact]
    public async Task The_link_map_watcher_sees_a_library_loaded_and_unloaded()
    {
        using var dir = new TempDir();
        using var tracee = Tracee.Start([Fixture, "1", "1", "0", "libm.so.6"], stdinPipe: true, stdoutPath: dir.File("out"));
        StartAndWaitReady(tracee);
        Assert.DoesNotContain("libm.so", File.ReadAllText($"/proc/{tracee.Pid}/maps"), StringComparison.Ordinal);
        var observer = new LinkMapObserver();
        using (var session = TraceSession.Attach(tracee.Pid, observer, new TraceOptions { TraceSyscalls = false }))
        {
            Assert.Null(observer.WatchProblem);
            tracee.Release();
            Poll.Until(() => tracee.StdoutFileText().Contains("round1", StringComparison.Ordinal), Timeout, "the fixture's round1 line");
            session.RequestDetach();
            Assert.Null((await session.Completion.WaitAsync(Timeout)).Error);
        }

        Assert.Contains("dl ok", tracee.StdoutFileText(), StringComparison.Ordinal);
        Assert.Equal(0, observer.NotOurs);
        // dlopen: RT_ADD then RT_CONSISTENT; dlclose: RT_DELETE then RT_CONSISTENT.
        Assert.Equal(4, observer.Changes);
        Assert.Equal(2, observer.Consistent);
        Assert.Contains(observer.Mapped, n => n.EndsWith("/libm.so.6", StringComparison.Ordinal));
        Assert.Contains(observer.Mapped, n => n.EndsWith("/libc.so.6", StringComparison.Ordinal));
        Assert.Equal([observer.Mapped.Single(n => n.EndsWith("/libm.so.6", StringComparison.Ordinal))], observer.Unmapped);
        tracee.Release();
        Assert.Equal(new ExitStatus(0, 0), tracee.WaitForExit());
    }

    [Fact]
    public async Task The_whole_register_state_round_trips_on_a_stopped_thread()
    {
        using var dir = new TempDir();
        using var tracee = Tracee.Start([Fixture, "1", "1"], stdinPipe: true, stdoutPath: dir.File("out"));
        var work = StartAndWaitReady(tracee);
        var observer = new Observer(work) { AtFirstHit = RoundTrip };
        using (var session = TraceSession.Attach(tracee.Pid, observer, new TraceOptions { TraceSyscalls = false }))
        {
            Poll.Until(() => Volatile.Read(ref observer.InsertError) != -1, Timeout, "the breakpoint to be inserted");
            tracee.Release();
            Poll.Until(() => tracee.StdoutFileText().Contains("round1", StringComparison.Ordinal), Timeout, "the fixture's round1 line");
            session.RequestDetach();
            Assert.Null((await session.Completion.WaitAsync(Timeout)).Error);
        }

        Assert.Equal(1, observer.Hits);
        Assert.Equal("ok", observer.FirstHitResult);
        Assert.Contains("round1 mismatches=0", tracee.StdoutFileText(), StringComparison.Ordinal);
        tracee.Release();
        Assert.Equal(new ExitStatus(0, 0), tracee.WaitForExit());
    }

    /// <summary>
    /// On the ptrace thread at a stop: saves every register, changes xmm15 and r15 through the register sets, reads
    /// the change back, restores, and checks the state is byte for byte what was saved.
    /// </summary>
    private static string RoundTrip(int tid)
    {
        var saved = new X86_64.RegisterState();
        if (!saved.Save(tid)) return "save failed";
        if (saved.ExtendedRegset != Native.Ptrace.NT_X86_XSTATE || saved.Extended.Length <= X86_64.FxsaveSize)
            return $"no XSAVE area (regset {saved.ExtendedRegset}, {saved.Extended.Length} bytes)";

        // xmm15 is at byte 160 + 15 * 16 of the FXSAVE part; r15 first in user_regs_struct.
        var extended = saved.Extended.ToArray();
        for (var i = 0; i < 16; i++) extended[400 + i] = (byte)(0xA0 + i);
        var general = saved.General.ToArray();
        general[0] ^= 0xFF;
        if (!X86_64.SetExtendedState(tid, saved.ExtendedRegset, extended)) return "set extended failed";
        if (!Native.PtraceCalls.SetRegSet(tid, Native.Ptrace.NT_PRSTATUS, general).IsOk) return "set general failed";

        var changed = new X86_64.RegisterState();
        if (!changed.Save(tid)) return "second save failed";
        if (!changed.Extended.Slice(400, 16).SequenceEqual(extended.AsSpan(400, 16))) return "xmm15 not changed";
        if (changed.General[0] != general[0]) return "r15 not changed";

        if (!saved.Restore(tid)) return "restore failed";
        var restored = new X86_64.RegisterState();
        if (!restored.Save(tid)) return "third save failed";
        if (!restored.General.SequenceEqual(saved.General)) return "general registers differ after restore";
        if (!restored.Extended.SequenceEqual(saved.Extended)) return "extended state differs after restore";
        return "ok";
    }
}
