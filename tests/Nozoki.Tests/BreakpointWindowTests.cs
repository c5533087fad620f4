using Nozoki.Breakpoints;
using Nozoki.Probes;
using Nozoki.Tests.Helpers;
using Nozoki.Tracing;
using Nozoki.Usdt;

namespace Nozoki.Tests;

/// <summary>
/// Breakpoints are written into a process's code only while every thread of it is in a ptrace stop (state 't' in
/// /proc/PID/task/TID/stat), even threads that spin in code of their own and never stop for anything: at attach,
/// at a dlopen (the loader hook's hit, in one thread), and at detach. Checked at each write, from the ptrace thread.
/// </summary>
[Collection(PtraceCollection.Name)]
public sealed class BreakpointWindowTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    private sealed class Sink : IUsdtSink
    {
        public int Armed;
        public readonly List<string> Problems = [];

        public void OnHit(in UsdtHit hit, ReadOnlySpan<UsdtArgument> args)
        {
        }

        public void OnProblem(string message) => Problems.Add(message);

        public void OnArmed(int pid, int sites) => Interlocked.Add(ref Armed, sites);
    }

    /// <summary>The state letter of each thread of PID (from stat, after the command's closing parenthesis).</summary>
    private static Dictionary<int, char> ThreadStates(int pid)
    {
        var states = new Dictionary<int, char>();
        foreach (var dir in Directory.GetDirectories($"/proc/{pid}/task"))
        {
            var tid = int.Parse(Path.GetFileName(dir), System.Globalization.CultureInfo.InvariantCulture);
            try
            {
                var stat = File.ReadAllText(Path.Combine(dir, "stat"));
                var paren = stat.LastIndexOf(')');
                states[tid] = stat[paren + 2];
            }
            catch (IOException)
            {
                // gone meanwhile
            }
        }

        return states;
    }

    [Fact]
    public async Task Usdt_inserts_and_removes_breakpoints_only_while_every_thread_is_stopped()
    {
        const int Spinners = 3;
        using var dir = new TempDir();
        using var tracee = Tracee.Start([ProbesFixtures.Exe, "--spin", $"{Spinners}", "--lib", ProbesFixtures.Lib, "--wait", "--loops", "3"],
            stdinPipe: true, stdoutPath: dir.File("out"));
        var pid = tracee.Pid;
        Poll.Until(() => tracee.StdoutFileText().Contains("ready\n", StringComparison.Ordinal), Timeout, "the usdt fixture to print ready");
        // The spinners run (R) and never enter the kernel: nothing but nozoki's interrupt stops them.
        Poll.Until(() => ThreadStates(pid).Count(kv => kv.Key != pid && kv.Value == 'R') == Spinners, Timeout, "the spinning threads to run");

        Assert.True(ProbePattern.TryParse("fixture:one", out var one, out _));
        Assert.True(ProbePattern.TryParse("fixturelib:*", out var lib, out _));
        var sink = new Sink();
        var writes = new List<(ulong Address, string Running)>();
        using var tracer = new UsdtTracer([one, lib], sink, new UsdtOptions { Mechanism = UsdtMechanism.Ptrace });
        tracer.Breakpoints.Writing = (table, address) =>
        {
            var running = string.Join(' ', ThreadStates(table.Pid).Where(kv => kv.Value is not ('t' or 'Z' or 'X')).Select(kv => $"{kv.Key}:{kv.Value}"));
            lock (writes) writes.Add((address, running));
        };

        int Writes()
        {
            lock (writes) return writes.Count;
        }

        TraceResult result;
        using (var session = TraceSession.Attach(pid, tracer, new TraceOptions { TraceSyscalls = false }))
        {
            // fixture:one and the loader's hook.
            Poll.Until(() => Volatile.Read(ref sink.Armed) >= 1 && Writes() >= 2, Timeout, "fixture:one and the loader hook to be armed");
            var atAttach = Writes();
            tracee.Release(); // dlopen: the hook's hit (main thread) arms the library's probes while the spinners run
            Poll.Until(() => tracee.StdoutFileText().Contains("loaded\n", StringComparison.Ordinal), Timeout, "the fixture to load its library");
            Poll.Until(() => Volatile.Read(ref sink.Armed) >= 4, Timeout, "the library's 3 probes to be armed");
            Assert.Equal(atAttach + 3, Writes());
            session.RequestDetach();
            result = await session.Completion.WaitAsync(Timeout);
        }

        Assert.Null(result.Error);
        Assert.Empty(sink.Problems);
        List<(ulong Address, string Running)> seen;
        lock (writes) seen = [.. writes];
        // Inserted: fixture:one, the hook, 3 in the library; each removed at the detach.
        Assert.Equal(10, seen.Count);
        Assert.True(seen.All(w => w.Running.Length == 0),
            "threads running at a write: " + string.Join("; ", seen.Where(w => w.Running.Length > 0).Select(w => $"0x{w.Address:x}: {w.Running}")));

        // Every byte is back: the loops run untraced (an int3 left behind would kill the process) and it exits.
        tracee.Release();
        Assert.Equal(new ExitStatus(0, 0), tracee.WaitForExit(Timeout));
        Assert.Contains("checksum ", tracee.StdoutFileText(), StringComparison.Ordinal);
    }
}
