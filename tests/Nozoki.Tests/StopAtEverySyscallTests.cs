using Nozoki.Syscalls;
using Nozoki.Tests.Helpers;
using Nozoki.Tracing;

namespace Nozoki.Tests;

/// <summary>
/// ITraceControl.StopAtEverySyscall in a launch with a seccomp filter (which only `write` passes here): a thread
/// switched on stops at every syscall from then on, its trapped ones reported once (the seccomp stop that follows the
/// entry stop is not a second call), and switched off it stops at the filter's only again.
/// </summary>
[Collection(PtraceCollection.Name)]
public sealed class StopAtEverySyscallTests
{
    /// <summary>Records the command's syscalls; at its first write turns every-syscall stops on, at its OFFAT-th write off.</summary>
    private sealed class Switcher(int offAt) : ITraceObserver
    {
        private ITraceControl? _control;
        private int _writes;
        public readonly List<string> Seen = [];

        public void OnStarted(ITraceControl control) => _control = control;

        public void OnSyscallEnter(in SyscallEnterStop stop)
        {
            Seen.Add($"enter {stop.Number}");
            if (stop.Number != SyscallNumbers.Write) return;
            _writes++;
            if (_writes == 1) _control!.StopAtEverySyscall(stop.Tid, true);
            if (_writes == offAt) _control!.StopAtEverySyscall(stop.Tid, false);
        }

        public void OnSyscallExit(in SyscallExitStop stop) => Seen.Add($"exit {stop.Number}");
    }

    private static List<string> Run(int offAt)
    {
        var observer = new Switcher(offAt);
        using var devNull = File.OpenHandle("/dev/null", FileMode.Open, FileAccess.ReadWrite);
        var fd = checked((int)devNull.DangerousGetHandle());
        var options = new TraceOptions
        {
            StageCommand = NozokiCli.Command,
            Filter = new SeccompFilter([new SeccompRule(SyscallNumbers.Write)]),
            StandardDescriptors = [fd, fd, fd],
        };
        using (var session = TraceSession.Launch([Fixtures.Get("run_say"), "1", "a", "b", "c", "d"], observer, options))
        {
            var result = session.Completion.WaitAsync(TimeSpan.FromSeconds(60)).GetAwaiter().GetResult();
            Assert.Null(result.Error);
            Assert.Equal(new ExitStatus(0, 0), result.TargetExit);
        }

        // The launch stage's syscalls are not reported: these are the command's.
        return observer.Seen;
    }

    private static string Describe(List<string> seen) => string.Join(", ", seen);

    [Fact]
    public void Switched_on_a_thread_stops_at_every_syscall_and_reports_a_trapped_one_once()
    {
        var seen = Run(offAt: 0);
        var write = $"enter {SyscallNumbers.Write}";
        // Before the first write only the filter's syscalls stop it: none is reported.
        Assert.True(seen.Count > 0 && seen[0] == write, $"the first reported syscall is not the first write: {Describe(seen)}");
        // Four writes, each one entry and one exit, in order.
        Assert.True(seen.Count(s => s == write) == 4 && seen.Count(s => s == $"exit {SyscallNumbers.Write}") == 4,
            $"each write once: {Describe(seen)}");
        for (var i = 0; i + 1 < seen.Count; i++)
        {
            if (seen[i] == write) Assert.True(seen[i + 1] == $"exit {SyscallNumbers.Write}", $"a write entered twice or not left at {i}: {Describe(seen)}");
        }

        // exit_group is not in the filter: seen only because the thread stops at every syscall.
        Assert.Equal($"enter {Nr.ExitGroup}", seen[^1]);
    }

    [Fact]
    public void Switched_off_again_a_thread_stops_only_at_the_filters_syscalls()
    {
        var seen = Run(offAt: 3);
        Assert.Equal(4, seen.Count(s => s == $"enter {SyscallNumbers.Write}"));
        Assert.DoesNotContain($"enter {Nr.ExitGroup}", seen);
        Assert.Equal($"exit {SyscallNumbers.Write}", seen[^1]);
    }
}
