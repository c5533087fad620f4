using System.Text;
using System.Threading.Channels;
using Nozoki.Tracing;

namespace Nozoki.Trace;

/// <summary>What a <see cref="TraceEvent"/> reports.</summary>
public enum TraceEventKind
{
    /// <summary>A syscall (or a piece of one: see <see cref="TraceEvent.Phase"/>).</summary>
    Syscall,

    /// <summary>A signal about to be delivered.</summary>
    Signal,

    /// <summary>A traced process ended.</summary>
    ProcessExited,
}

/// <summary>
/// One event of a <see cref="SyscallEventStream"/>, copied out of the tracer's reused buffers (so it outlives the call).
/// </summary>
/// <param name="Kind">What happened.</param>
/// <param name="Pid">The process.</param>
/// <param name="Tid">The thread (the process for <see cref="TraceEventKind.ProcessExited"/>).</param>
/// <param name="Name">The syscall's name (null for an unknown number) or the signal's (SIGCHLD); null for an exit.</param>
/// <param name="Text">The syscall as strace shows it ("openat(AT_FDCWD, "/etc/passwd", O_RDONLY) = 3"), the siginfo, or the exit status.</param>
/// <param name="Phase">For a syscall, which part of its line Text is (always Complete without SplitInterleaved).</param>
/// <param name="ReturnValue">The syscall's return value (-1 when it failed, see Errno).</param>
/// <param name="Errno">The errno of a failed syscall, else 0.</param>
/// <param name="Timestamp">A Stopwatch timestamp (see <see cref="TraceClock"/>): the syscall's exit, the signal, the exit.</param>
/// <param name="LostBefore">Events dropped just before this one because the consumer was behind (0 normally).</param>
public sealed record TraceEvent(
    TraceEventKind Kind, int Pid, int Tid, string? Name, string Text, SyscallPhase Phase, long ReturnValue, int Errno, long Timestamp, long LostBefore);

/// <summary>
/// The opt-in <see cref="IAsyncEnumerable{T}"/> shape of a syscall trace, for a caller who prefers `await foreach` to
/// callbacks: give it to a <see cref="SyscallTracer"/> as its sink and read <see cref="ReadAllAsync"/>. Unlike the
/// callback sinks it allocates per event (a record and its text), on the ptrace thread.
/// The queue is bounded (<paramref name="capacity"/> events). A consumer that falls behind never holds the tracee
/// (the ptrace thread never waits for it): events that do not fit are dropped and counted, never silently: the
/// next event delivered says how many were dropped before it (<see cref="TraceEvent.LostBefore"/>), and
/// <see cref="Lost"/> is the total. Call <see cref="Complete"/> (or <see cref="CompleteWith"/>) so that the
/// enumeration ends.
/// </summary>
/// <param name="capacity">How many events may wait for the consumer.</param>
public sealed class SyscallEventStream(int capacity = 4096) : ISyscallSink
{
    private readonly Channel<TraceEvent> _channel = Channel.CreateBounded<TraceEvent>(
        new BoundedChannelOptions(capacity) { SingleReader = true, SingleWriter = false, FullMode = BoundedChannelFullMode.Wait });

    private long _lost;
    private long _pendingLost;

    /// <summary>Events dropped so far because the consumer was behind.</summary>
    public long Lost => Interlocked.Read(ref _lost);

    /// <summary>The events, until <see cref="Complete"/> has been called and every queued event was read.</summary>
    public IAsyncEnumerable<TraceEvent> ReadAllAsync(CancellationToken cancellationToken = default) =>
        _channel.Reader.ReadAllAsync(cancellationToken);

    /// <summary>No more events: the enumeration ends once the queued ones are read.</summary>
    public void Complete() => _channel.Writer.TryComplete();

    /// <summary>Completes the stream when the session ends.</summary>
    public void CompleteWith(TraceSession session)
    {
        ArgumentNullException.ThrowIfNull(session);
        session.Completion.ContinueWith(_ => Complete(), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    /// <inheritdoc/>
    public void OnSyscall(in SyscallRecord record) =>
        Post(TraceEventKind.Syscall, record.Pid, record.Tid, record.Name, Encoding.UTF8.GetString(record.Text), record.Phase,
            record.Errno != 0 ? -1 : record.ReturnValue, record.Errno, record.ExitTimestamp);

    /// <inheritdoc/>
    public void OnSignal(in SignalRecord record) =>
        Post(TraceEventKind.Signal, record.Pid, record.Tid, Signals.Name(record.Signal), Encoding.UTF8.GetString(record.Text),
            SyscallPhase.Complete, 0, 0, record.Timestamp);

    /// <inheritdoc/>
    public void OnProcessExited(in ProcessExit exit) =>
        Post(TraceEventKind.ProcessExited, exit.Pid, exit.Pid, null, exit.Status.ToString(), SyscallPhase.Complete, 0, 0, exit.Timestamp);

    private void Post(TraceEventKind kind, int pid, int tid, string? name, string text, SyscallPhase phase, long ret, int errno, long timestamp)
    {
        var lostBefore = Interlocked.Read(ref _pendingLost);
        if (_channel.Writer.TryWrite(new TraceEvent(kind, pid, tid, name, text, phase, ret, errno, timestamp, lostBefore)))
        {
            Interlocked.Add(ref _pendingLost, -lostBefore);
            return;
        }

        Interlocked.Increment(ref _pendingLost);
        Interlocked.Increment(ref _lost);
    }
}
