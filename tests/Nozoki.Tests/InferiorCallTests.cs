using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Nozoki.Arch;
using Nozoki.Breakpoints;
using Nozoki.Symbols;
using Nozoki.Tests.Helpers;
using Nozoki.Tracing;
using Xunit.Abstractions;

namespace Nozoki.Tests;

/// <summary>
/// InferiorCall on real processes: fixtures/call_target.c (a loop that checks its own registers and stack around a
/// breakpoint at tick, and functions to call that print, fault, loop, sleep while a signal comes, clobber vector
/// registers), and Ruby's rb_backtrace at a breakpoint in libm's cbrt, against gdb's `call (void)rb_backtrace()`.
/// </summary>
[Collection(PtraceCollection.Name)]
public sealed partial class InferiorCallTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    /// <summary>Breaks at SITE; at each of the first CALLS hits, runs the call; then removes the site. Records, never throws.</summary>
    private sealed class Observer(ulong site, int calls, Func<InferiorCall, BreakpointStop, InferiorCallResult?> call) : ITraceObserver
    {
        public readonly BreakpointSet Breakpoints = new();
        public readonly List<InferiorCallResult?> Results = []; // null: a hit without a call (for the cost of the hit alone)
        public readonly List<string> RegisterDifferences = [];
        public int InsertError = -1;
        public volatile bool Done;
        public Exception? Error;
        private InferiorCall? _calls;

        public void OnStarted(ITraceControl control)
        {
            Breakpoints.OnStarted(control);
            _calls = new InferiorCall(control);
        }

        public void OnAttached(int pid, int threadCount) => InsertError = Breakpoints.For(pid).Insert(site).Errno;

        public bool OnBreakpoint(in BreakpointStop stop)
        {
            if (Breakpoints.Classify(stop, out var address, out _) != BreakpointSet.Trap.Hit) return false;
            if (Done) return Breakpoints.StepOver(stop, address);
            try
            {
                var before = new X86_64.RegisterState();
                var after = new X86_64.RegisterState();
                Assert.True(before.Save(stop.Tid));
                Results.Add(call(_calls!, stop));
                Assert.True(after.Save(stop.Tid));
                if (!before.General.SequenceEqual(after.General)) RegisterDifferences.Add("general registers");
                if (!before.Extended.SequenceEqual(after.Extended)) RegisterDifferences.Add("extended state (XSAVE)");
            }
            catch (Exception e)
            {
                Error = e;
            }

            if (Results.Count < calls && Error is null) return Breakpoints.StepOver(stop, address);
            // Done: the site goes, and the thread runs the instruction it displaced.
            Breakpoints.For(stop.Pid).Remove(site);
            stop.SetInstructionPointer(site);
            Done = true;
            return true;
        }

        public void OnSingleStep(in StepStop stop) => Breakpoints.OnSingleStep(stop);

        public void OnDetaching(int pid) => Breakpoints.OnDetaching(pid);
    }

    [GeneratedRegex(@"^status loops=(\d+) mismatches=(\d+) usr1=(\d+) usr1_in_call=(\d+) segv=(\d+) tick_ns=(\d+) other=(\d+)$", RegexOptions.Multiline)]
    private static partial Regex StatusLine();

    internal sealed record Status(long Loops, long Mismatches, int Usr1, int Usr1InCall, int Segv, long TickNs, long Other);

    /// <summary>Asks the fixture for its status line (SIGUSR2) and waits for a new one.</summary>
    internal static Status AskStatus(Tracee tracee)
    {
        var seen = StatusLine().Matches(tracee.StdoutFileText()).Count;
        Assert.True(Signals.Send(tracee.Pid, Signals.SIGUSR2).IsOk);
        MatchCollection all = StatusLine().Matches("");
        Poll.Until(() => (all = StatusLine().Matches(tracee.StdoutFileText())).Count > seen, Timeout, "the fixture's status line");
        var m = all[^1];
        long N(int i) => long.Parse(m.Groups[i].Value, CultureInfo.InvariantCulture);
        return new Status(N(1), N(2), (int)N(3), (int)N(4), (int)N(5), N(6), N(7));
    }

    private sealed record Run(Observer Observer, Tracee Tracee, TempDir Dir, Status Before, Status After) : IDisposable
    {
        public InferiorCallResult Result => Assert.Single(Observer.Results)!;

        public void Dispose()
        {
            Tracee.Dispose();
            Dir.Dispose();
        }
    }

    /// <summary>
    /// Starts call_target, resolves FUNCTION, attaches, calls it CALLS times at tick hits (DURING runs on the test thread
    /// meanwhile), detaches; then checks that the process is untraced, unharmed, its code as before.
    /// </summary>
    private static Run CallIn(string function, TimeSpan? timeout = null, int calls = 1, Action<Tracee>? during = null, bool call = true, string[]? args = null)
    {
        var dir = new TempDir();
        var tracee = Tracee.Start([Fixtures.Get("call_target"), .. args ?? []], stdoutPath: dir.File("out"), stderrPath: dir.File("err"));
        Poll.Until(() => tracee.StdoutFileText().Contains("ready", StringComparison.Ordinal), Timeout, "the fixture's ready line");
        var before = AskStatus(tracee);
        var symbols = ProcessSymbols.ForProcess(tracee.Pid);
        var tick = Assert.Single(symbols.Resolve("tick")).Address;
        var start = Assert.Single(symbols.Resolve("_start")).Address;
        var startByte = LiveByte(tracee.Pid, start);
        var target = InferiorCall.Resolve(symbols, function);
        var observer = new Observer(tick, calls, (c, stop) => call ? c.Call(stop, target, timeout) : null);
        using (var session = TraceSession.Attach(tracee.Pid, observer, new TraceOptions { TraceSyscalls = false }))
        {
            Poll.Until(() => Volatile.Read(ref observer.InsertError) != -1, Timeout, "the breakpoint to be inserted");
            Assert.Equal(0, observer.InsertError);
            during?.Invoke(tracee);
            Poll.Until(() => observer.Done, Timeout, "the calls");
            session.RequestDetach();
            Assert.Null(session.Completion.WaitAsync(Timeout).GetAwaiter().GetResult().Error);
        }

        Assert.Null(observer.Error);
        Assert.Empty(observer.RegisterDifferences);
        Assert.Equal(0, ProcStatus.Get(tracee.Pid).TracerPid);
        Assert.Equal(startByte, LiveByte(tracee.Pid, start));
        Assert.NotEqual(X86_64.Int3, LiveByte(tracee.Pid, tick));
        var after = AskStatus(tracee);
        Assert.True(after.Loops > before.Loops, "the fixture goes on looping");
        Assert.Equal(0, after.Mismatches);
        Assert.Equal(0, after.Segv);
        return new Run(observer, tracee, dir, before, after);
    }

    private static byte LiveByte(int pid, ulong address)
    {
        using var mem = new FileStream($"/proc/{pid}/mem", FileMode.Open, FileAccess.Read);
        mem.Seek((long)address, SeekOrigin.Begin);
        return (byte)mem.ReadByte();
    }

    [Fact]
    public void A_call_returns_its_value_and_its_output_is_captured_and_still_in_the_process_stdout_and_stderr()
    {
        using var run = CallIn("say_hello");
        var r = run.Result;
        Assert.Equal(CallOutcome.Returned, r.Outcome);
        Assert.Null(r.Problem);
        Assert.Equal(4242UL, r.ReturnValue);
        Assert.Equal("hello from the call\nhello on stderr\n", Encoding.UTF8.GetString(r.OutputBytes()));
        Assert.Equal([1, 2], r.Output.Select(o => o.Fd));
        Assert.Contains("hello from the call\n", run.Tracee.StdoutFileText(), StringComparison.Ordinal);
        Assert.Equal("hello on stderr\n", run.Tracee.StderrFileText());
        Assert.InRange(r.Held, TimeSpan.FromTicks(1), TimeSpan.FromSeconds(5));
    }

    [Fact]
    public void A_call_that_clobbers_every_vector_and_scratch_register_leaves_the_thread_as_it_was()
    {
        using var run = CallIn("clobber", calls: 20);
        Assert.All(run.Observer.Results, r => Assert.Equal((CallOutcome.Returned, 1UL), (r!.Outcome, r.ReturnValue)));
    }

    [Fact]
    public void The_other_threads_of_the_process_are_kept_stopped_during_a_call_and_go_on_after()
    {
        using var run = CallIn("other_moves", calls: 3, args: ["thread"]);
        Assert.Equal(2, Directory.GetDirectories($"/proc/{run.Tracee.Pid}/task").Length);
        Assert.All(run.Observer.Results, r => Assert.Equal((CallOutcome.Returned, 0UL), (r!.Outcome, r.ReturnValue)));
        Poll.Until(() => AskStatus(run.Tracee).Other > run.After.Other, Timeout, "the other thread to count on");
    }

    [Fact]
    public void A_call_that_faults_is_reported_and_the_fault_is_not_delivered()
    {
        using var run = CallIn("fault");
        var r = run.Result;
        Assert.Equal(CallOutcome.Faulted, r.Outcome);
        Assert.Equal(Signals.SIGSEGV, r.FaultSignal);
        Assert.Equal(8UL, r.FaultAddress);
        Assert.StartsWith("fault faulted: SIGSEGV at 0x8 (pc 0x", r.Problem, StringComparison.Ordinal);
        var fault = Assert.Single(ProcessSymbols.ForProcess(run.Tracee.Pid).Resolve("fault"));
        Assert.InRange(r.FaultPc, fault.Address, fault.Address + 64);
        Assert.Equal("", run.Tracee.StderrFileText()); // its SIGSEGV handler never ran
    }

    [Fact]
    public void A_call_that_does_not_return_is_abandoned_at_the_timeout_and_the_thread_restored()
    {
        var timeout = TimeSpan.FromMilliseconds(300);
        using var run = CallIn("spin", timeout);
        var r = run.Result;
        Assert.Equal(CallOutcome.TimedOut, r.Outcome);
        Assert.StartsWith("spin did not return within 0.3 s: abandoned", r.Problem, StringComparison.Ordinal);
        Assert.InRange(r.Held, timeout, timeout + TimeSpan.FromSeconds(3));
    }

    [Fact]
    public void A_signal_sent_during_a_call_is_held_and_delivered_once_after_it()
    {
        using var run = CallIn("slow", during: tracee =>
        {
            Poll.Until(() => tracee.StdoutFileText().Contains("slow start", StringComparison.Ordinal), Timeout, "the slow call to start");
            Assert.True(Signals.Send(tracee.Pid, Signals.SIGUSR1).IsOk);
        });
        var r = run.Result;
        Assert.Equal((CallOutcome.Returned, 7UL), (r.Outcome, r.ReturnValue));
        Assert.Equal("slow start\nslow end\n", Encoding.UTF8.GetString(r.OutputBytes()));
        Assert.Equal(0, r.HeldSignals); // blocked, so never delivered into the call: left pending
        Assert.Equal(run.Before.Usr1 + 1, run.After.Usr1);
        Assert.Equal(0, run.After.Usr1InCall);
        Assert.InRange(r.Held, TimeSpan.FromMilliseconds(300), TimeSpan.FromSeconds(5));
    }

    [Fact]
    public void A_signal_that_reaches_the_called_function_is_not_delivered_into_it_but_sent_again_after()
    {
        using var run = CallIn("slow_unblocked", during: tracee =>
        {
            Poll.Until(() => tracee.StdoutFileText().Contains("slow start", StringComparison.Ordinal), Timeout, "the slow call to start");
            Assert.True(Signals.Send(tracee.Pid, Signals.SIGUSR1).IsOk);
        });
        var r = run.Result;
        Assert.Equal((CallOutcome.Returned, 7UL), (r.Outcome, r.ReturnValue));
        Assert.Equal(1, r.HeldSignals); // the function unblocked it: its delivery stop came, and it was held
        Assert.Equal(run.Before.Usr1 + 1, run.After.Usr1);
        Assert.Equal(0, run.After.Usr1InCall);
    }

    [Fact]
    public void An_unknown_function_is_refused_before_anything_is_touched()
    {
        using var dir = new TempDir();
        using var tracee = Tracee.Start([Fixtures.Get("call_target")], stdoutPath: dir.File("out"));
        Poll.Until(() => tracee.StdoutFileText().Contains("ready", StringComparison.Ordinal), Timeout, "the fixture's ready line");
        var symbols = ProcessSymbols.ForProcess(tracee.Pid);
        var e = Assert.Throws<SymbolLookupException>(() => InferiorCall.Resolve(symbols, "say_helo"));
        Assert.Contains("say_hello", e.Suggestions);
        Assert.Equal(0, ProcStatus.Get(tracee.Pid).TracerPid);
    }

    [Fact]
    public async Task Ruby_rb_backtrace_called_at_a_breakpoint_prints_the_scripts_backtrace_as_gdbs_call_does()
    {
        using var dir = new TempDir();
        var script = Path.Combine(Fixtures.SourceDirectory, "call_ruby.rb");
        using var ruby = Tracee.Start(["/usr/bin/ruby", script], stdoutPath: dir.File("out"), stderrPath: dir.File("err"));
        Poll.Until(() => ruby.StdoutFileText().Contains("ready", StringComparison.Ordinal), Timeout, "ruby's ready line");
        var symbols = ProcessSymbols.ForProcess(ruby.Pid);
        var cbrt = Assert.Single(symbols.Resolve("libm.so.6:cbrt")).Address;
        var target = InferiorCall.Resolve(symbols, "rb_backtrace");
        Assert.StartsWith("libruby", target.Location.Module.Name, StringComparison.Ordinal);
        var observer = new Observer(cbrt, 1, (c, stop) => c.Call(stop, target));
        using (var session = TraceSession.Attach(ruby.Pid, observer, new TraceOptions { TraceSyscalls = false }))
        {
            Poll.Until(() => observer.Done, Timeout, "the call at cbrt");
            session.RequestDetach();
            Assert.Null((await session.Completion.WaitAsync(Timeout)).Error);
        }

        Assert.Null(observer.Error);
        Assert.Empty(observer.RegisterDifferences);
        var r = Assert.Single(observer.Results)!;
        Assert.Equal(CallOutcome.Returned, r.Outcome);
        var ours = Encoding.UTF8.GetString(r.OutputBytes());
        Assert.Matches(@"call_ruby\.rb:4:in .hot'", ours);
        Assert.Equal(ours, ruby.StderrFileText()); // the process's own stderr got it too

        // gdb at the same breakpoint: `call (void)rb_backtrace()` prints the same lines to ruby's stderr.
        Gdb.Run(ruby.Pid, "break cbrt", "continue", "call (void)rb_backtrace()");
        Poll.Until(() => ruby.StderrFileText().Length >= 2 * ours.Length, Timeout, () => $"gdb's backtrace in ruby's stderr:\n{ruby.StderrFileText()}");
        Assert.Equal(ours + ours, ruby.StderrFileText());

        // Untraced, and still running its loop.
        Assert.Equal(0, ProcStatus.Get(ruby.Pid).TracerPid);
        Assert.True(Signals.Send(ruby.Pid, Signals.SIGUSR2).IsOk);
        Poll.Until(() => ruby.StdoutFileText().Contains("alive ", StringComparison.Ordinal), Timeout, "ruby's alive line");
    }
}
