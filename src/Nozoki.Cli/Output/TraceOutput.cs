using System.Globalization;
using System.Text;
using Nozoki.Syscalls;
using Nozoki.Trace;
using Nozoki.Tracing;

namespace Nozoki.Cli.Output;

/// <summary>
/// The destination of `nozoki trace`: stderr (a line per write, so that it interleaves with the command's own
/// output as it happens) or -o FILE (buffered, flushed at 32 KiB and at the end).
/// </summary>
internal abstract class TraceOutput(FdWriter writer, bool buffered) : ISyscallSink
{
    private readonly TextBuffer _pending = new(64 << 10);

    public abstract void OnSyscall(in SyscallRecord record);

    public abstract void OnSignal(in SignalRecord record);

    public abstract void OnProcessExited(in ProcessExit exit);

    public virtual void OnAttached(int pid, int threadCount)
    {
    }

    public virtual void OnDetached(int pid)
    {
    }

    public virtual void OnExecSuperseded(in ExecSuperseded record)
    {
    }

    public virtual void OnTaskCount(int count)
    {
    }

    /// <summary>
    /// Called (once) when the reader of the output has gone (EPIPE: `nozoki trace ... 2>&amp;1 | head`). Output stops
    /// there; throwing into the session instead would end it in the middle of a stop.
    /// </summary>
    public Action? OutputClosed { get; set; }

    public bool Closed { get; private set; }

    /// <summary>Why output stopped when it was not the reader going away (a full disk, an I/O error): to be reported.</summary>
    public OutputFailedException? Failure { get; private set; }

    protected void Write(ReadOnlySpan<byte> line)
    {
        if (Closed) return;
        if (!buffered)
        {
            Send(line);
            return;
        }

        _pending.Append(line);
        if (_pending.Length >= 32 << 10) Flush();
    }

    public void Flush()
    {
        if (_pending.Length == 0) return;
        if (!Closed) Send(_pending.Span);
        _pending.Clear();
    }

    private void Send(ReadOnlySpan<byte> data)
    {
        try
        {
            writer.Write(data);
        }
        catch (OutputClosedException)
        {
            Closed = true;
            OutputClosed?.Invoke();
        }
        catch (OutputFailedException e)
        {
            // The rest of the trace would be lost too: stop writing, as for a closed reader, and say it at the end.
            Closed = true;
            Failure = e;
            OutputClosed?.Invoke();
        }
    }

    /// <summary>nozoki's own messages (attach, detach) go to stderr, whatever -o says, as strace's do.</summary>
    protected static void Say(string message) => FdWriter.Stderr.Write(Encoding.UTF8.GetBytes($"nozoki: {message}\n"));

    /// <summary>The -c table, as strace prints it.</summary>
    public virtual void WriteSummary(IReadOnlyList<SyscallStat> stats)
    {
        var sb = new StringBuilder();
        var rows = stats.OrderByDescending(s => s.Ticks).ThenByDescending(s => s.Calls).ThenBy(s => s.Name, StringComparer.Ordinal).ToList();
        var totalTicks = rows.Sum(s => s.Ticks);
        var totalCalls = rows.Sum(s => s.Calls);
        var totalErrors = rows.Sum(s => s.Errors);
        var inv = CultureInfo.InvariantCulture;
        const string dashes = "------ ----------- ----------- --------- --------- ----------------";
        sb.Append(inv, $"{"% time",6} {"seconds",11} {"usecs/call",11} {"calls",9} {"errors",9} syscall\n");
        sb.Append(dashes).Append('\n');
        foreach (var s in rows)
        {
            var micros = TraceClock.ToMicros(s.Ticks);
            var pct = totalTicks == 0 ? 0.0 : 100.0 * s.Ticks / totalTicks;
            sb.Append(inv, $"{pct,6:F2} {micros / 1e6,11:F6} {micros / s.Calls,11} {s.Calls,9} {(s.Errors == 0 ? "" : s.Errors.ToString(inv)),9} {s.Name}\n");
        }

        var totalMicros = TraceClock.ToMicros(totalTicks);
        sb.Append(dashes).Append('\n');
        sb.Append(inv, $"{"100.00",6} {totalMicros / 1e6,11:F6} {(totalCalls == 0 ? 0 : totalMicros / totalCalls),11} {totalCalls,9} {(totalErrors == 0 ? "" : totalErrors.ToString(inv)),9} total\n");
        Write(Encoding.UTF8.GetBytes(sb.ToString()));
    }
}
