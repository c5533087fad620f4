using Nozoki.Syscalls;
using Nozoki.Tests.Helpers;
using Nozoki.Trace;
using Nozoki.Tracing;

namespace Nozoki.Tests;

/// <summary>The SyscallTracer library in-process: the hot path allocates nothing, filters parse as strace's.</summary>
[Collection(PtraceCollection.Name)]
public sealed class TraceLibraryTests
{
    /// <summary>Keeps a copy of each line in a preallocated buffer, like an output would, and counts.</summary>
    private sealed class CountingSink : ISyscallSink
    {
        private readonly byte[] _copy = new byte[1 << 16];
        public long Calls;
        public long Signals;
        public ExitStatus? Exit;

        public void OnSyscall(in SyscallRecord record)
        {
            Calls++;
            record.Text[..Math.Min(record.Text.Length, _copy.Length)].CopyTo(_copy);
        }

        public void OnSignal(in SignalRecord record) => Signals++;

        public void OnProcessExited(in ProcessExit exit) => Exit = exit.Status;
    }

    [Fact]
    public async Task Tracing_every_syscall_allocates_nothing_per_stop()
    {
        // dd bs=1: a read and a write per byte, two stops each: 50,000 stops. The smallest .NET object is 24 bytes, so
        // one allocation per stop would be 1.2 MB on its own.
        const int Count = 12_500;
        var sink = new CountingSink();
        var tracer = new SyscallTracer(sink, new SyscallTracerOptions { Count = true, Decode = new DecodeOptions { StringLimit = 32 } });
        var options = new TraceOptions { StageCommand = NozokiCli.Command };
        var before = GC.GetTotalAllocatedBytes(precise: true);
        using (var session = TraceSession.Launch(["dd", "if=/dev/zero", "of=/dev/null", "bs=1", $"count={Count}", "status=none"], tracer, options))
        {
            var result = await session.Completion.WaitAsync(TimeSpan.FromSeconds(120));
            Assert.Null(result.Error);
        }

        var allocated = GC.GetTotalAllocatedBytes(precise: true) - before;
        Assert.Equal(new ExitStatus(0, 0), sink.Exit);
        Assert.True(sink.Calls >= 2 * Count, $"only {sink.Calls} calls seen");
        var reads = tracer.Statistics().Single(s => s.Name == "read");
        Assert.True(reads.Calls >= Count, $"{reads.Calls} reads counted");
        // What remains is the session's start and this process's other threads.
        Assert.True(allocated < 1_000_000, $"{allocated} bytes allocated while tracing {sink.Calls} calls");
    }

    [Theory]
    [InlineData("openat,close", "openat", true)]
    [InlineData("openat,close", "read", false)]
    [InlineData("!openat", "openat", false)]
    [InlineData("!openat", "read", true)]
    [InlineData("%file", "openat", true)]
    [InlineData("%file", "read", false)]
    [InlineData("%desc", "read", true)]
    [InlineData("%memory", "mmap", true)]
    [InlineData("%network", "connect", true)]
    [InlineData("%process", "clone3", true)]
    [InlineData("%signal", "rt_sigaction", true)]
    [InlineData("%ipc", "shmget", true)]
    [InlineData("/^stat", "statx", true)]
    [InlineData("/^stat", "newfstatat", false)]
    [InlineData("none", "read", false)]
    [InlineData("all", "read", true)]
    public void Syscall_sets_parse_like_strace(string spec, string name, bool expected)
    {
        var set = SyscallSet.Parse(spec);
        Assert.Equal(expected, set.Contains(SyscallTable.Lookup(name)));
        Assert.True(set.Contains(500), "numbers the table does not know are always traced, as by strace");
    }

    [Fact]
    public void Unknown_names_are_errors_unless_optional()
    {
        Assert.Throws<FormatException>(() => SyscallSet.Parse("nosuchcall"));
        Assert.False(SyscallSet.Parse("?nosuchcall,read").Contains(SyscallTable.Lookup("write")));
        Assert.True(SignalSet.Parse("CHLD,SIGUSR1,15").Contains(15));
        Assert.False(SignalSet.Parse("!SIGCHLD").Contains(17));
        Assert.Throws<FormatException>(() => SignalSet.Parse("SIGNOPE"));
    }

    /// <summary>
    /// strace (6.1 here) is the oracle: each -e expression is accepted or refused as strace does, with strace's message.
    /// It refuses an empty set (`trace=`, `trace=!`, `trace=,`), `none` among other items (and `all` among others for
    /// signal= and status=), and takes blanks as part of a name; each leading ! inverts.
    /// </summary>
    [Theory]
    [InlineData("trace=")]
    [InlineData("trace=!")]
    [InlineData("trace=,")]
    [InlineData("trace=!,")]
    [InlineData("trace=all,none")]
    [InlineData("trace=none,all")]
    [InlineData("trace=%file,none")]
    [InlineData("trace=none")]
    [InlineData("trace=!none")]
    [InlineData("trace=all")]
    [InlineData("trace=!all")]
    [InlineData("trace=!!open")]
    [InlineData("trace=open,all")]
    [InlineData("trace=?")]
    [InlineData("trace=?nosuchcall,read")]
    [InlineData("trace=open,")]
    [InlineData("trace=read,,write")]
    [InlineData("trace= open")]
    [InlineData("trace=open ")]
    [InlineData("trace=nosuchcall")]
    [InlineData("trace=/")]
    [InlineData("trace=-1")]
    [InlineData("signal=")]
    [InlineData("signal=!")]
    [InlineData("signal=,")]
    [InlineData("signal=INT,all")]
    [InlineData("signal=none,INT")]
    [InlineData("signal=all")]
    [InlineData("signal=!none")]
    [InlineData("signal=!!INT")]
    [InlineData("signal=SIGKILL,")]
    [InlineData("signal=sigint")]
    [InlineData("signal=?INT")]
    [InlineData("signal=RT_0")]
    [InlineData("signal=SIGRT_3")]
    [InlineData("status=")]
    [InlineData("status=!")]
    [InlineData("status=,")]
    [InlineData("status=all,none")]
    [InlineData("status=none")]
    [InlineData("status=!all")]
    [InlineData("status=!!failed")]
    [InlineData("status=failed,,")]
    [InlineData("status=successful,failed")]
    [InlineData("status=maybe")]
    public void Filter_expressions_are_accepted_and_refused_as_by_strace(string expression)
    {
        using var strace = ExternalProcess.Start("strace", "strace", ["-o", "/dev/null", "-e", expression, "true"]);
        var straceCode = strace.WaitForExit(TimeSpan.FromSeconds(30));
        var straceError = strace.StderrLines().FirstOrDefault() ?? "";

        var eq = expression.IndexOf('=', StringComparison.Ordinal);
        var (key, value) = (expression[..eq], expression[(eq + 1)..]);
        string? error = null;
        try
        {
            _ = key switch
            {
                "trace" => (object)SyscallSet.Parse(value),
                "signal" => SignalSet.Parse(value),
                _ => StatusFilters.Parse(value),
            };
        }
        catch (FormatException e)
        {
            error = e.Message;
        }

        Assert.True((straceCode == 0) == (error is null), $"-e {expression}: strace exits {straceCode} ({straceError}), nozoki {(error is null ? "accepts it" : $"refuses it: {error}")}");
        if (error is not null) Assert.Equal(straceError, $"strace: {error}");
    }

    [Fact]
    public void Table_covers_every_number_the_headers_define()
    {
        var header = File.ReadAllLines("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
            .Select(l => System.Text.RegularExpressions.Regex.Match(l, @"^#define __NR_(\w+) (\d+)"))
            .Where(m => m.Success)
            .ToDictionary(m => int.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture), m => m.Groups[1].Value);
        Assert.True(header.Count > 300);
        foreach (var (nr, name) in header) Assert.Equal(name, SyscallTable.Name(nr));
        Assert.Equal("ENOENT", Errnos.Name(2));
        Assert.Equal("No such file or directory", Errnos.Message(2));
        Assert.Equal("ERESTARTSYS", Errnos.Name(512));
        Assert.Equal("KVM_RUN", Ioctls.Name(0xae80));
        Assert.Equal("TCGETS", Ioctls.Name(0x5401));
        var b = new TextBuffer();
        Ioctls.FormatUnknown(b, 0x80089901);
        Assert.Equal("_IOC(_IOC_READ, 0x99, 0x1, 0x8)", System.Text.Encoding.ASCII.GetString(b.Span));
    }
}
