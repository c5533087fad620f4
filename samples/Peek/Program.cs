using System.Globalization;
using System.Text;
using Nozoki;
using Nozoki.Mirror;
using Nozoki.Trace;
using Nozoki.Tracing;

// peek PID [N]: shows the next N writes of a running process to its stdout and stderr (mirrored: the process
// writes them where it always does), then its next N syscalls, and leaves it running. It uses the Nozoki library as
// any program would: a callback sink for the output, the IAsyncEnumerable adapter for the syscalls.

if (args.Length is < 1 or > 2 || !int.TryParse(args[0], CultureInfo.InvariantCulture, out var pid)
    || !int.TryParse(args.Length > 1 ? args[1] : "5", CultureInfo.InvariantCulture, out var count) || count < 1)
{
    Console.Error.WriteLine("usage: peek PID [N]");
    return 2;
}

try
{
    // 1. Mirror: the sink is called on the session's ptrace thread while the writing thread waits; be quick.
    var sink = new PrintingSink(count);
    using (var session = TraceSession.Attach(pid, new OutputMirror(sink, [1, 2])))
    {
        Console.WriteLine($"peek: attached to PID {pid}");
        await Task.WhenAny(sink.Enough, session.Completion, Task.Delay(TimeSpan.FromSeconds(10)));
    } // Dispose detaches every thread and leaves the process running.

    // 2. Trace: events as an IAsyncEnumerable. Cancelling the token detaches; the stream then ends.
    var events = new SyscallEventStream(capacity: 1024);
    var tracer = new SyscallTracer(events, new SyscallTracerOptions { SplitInterleaved = false });
    using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(10));
    var traced = TraceSession.Attach(pid, tracer, new TraceOptions(), stop.Token);
    events.CompleteWith(traced);
    var seen = 0;
    await foreach (var e in events.ReadAllAsync(CancellationToken.None))
    {
        if (e.LostBefore > 0) Console.WriteLine($"peek: {e.LostBefore} events lost (peek was too slow)");
        if (e.Kind != TraceEventKind.Syscall || ++seen > count) continue;
        Console.WriteLine($"peek: syscall {e.Text}");
        if (seen == count) await stop.CancelAsync();
    }

    var result = await traced.Completion;
    Console.WriteLine($"peek: detached from PID {pid} ({result.Reason}); {events.Lost} events lost");
    return 0;
}
catch (NozokiException e)
{
    // Typed errors: ProcessNotFoundException, TracePermissionException (with the reason), ProcessNotTraceableException...
    Console.Error.WriteLine($"peek: {e.Message}");
    return 1;
}

/// <summary>Prints each mirrored write as a line; completes <see cref="Enough"/> after N of them.</summary>
internal sealed class PrintingSink(int count) : IMirrorSink
{
    private readonly TaskCompletionSource _enough = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _writes;

    public Task Enough => _enough.Task;

    public void OnWrite(in MirroredWrite write, ReadOnlySpan<byte> data)
    {
        Console.WriteLine($"peek: out fd={write.Fd}: {Encoding.UTF8.GetString(data).TrimEnd('\n')}");
        if (++_writes == count) _enough.TrySetResult();
    }

    public void OnNotice(in MirrorNotice notice) => Console.WriteLine($"peek: {notice.Message}");

    public void OnProcessExited(in ProcessExit exit) => Console.WriteLine($"peek: PID {exit.Pid} {exit.Status}");
}
