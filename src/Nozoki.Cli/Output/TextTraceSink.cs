using Nozoki.Syscalls;
using Nozoki.Trace;
using Nozoki.Tracing;

namespace Nozoki.Cli.Output;

/// <summary>strace's text: "[pid N] name(args) = ret", unfinished/resumed lines, "--- SIGxxx {...} ---", "+++ exited with N +++".</summary>
internal sealed class TextTraceSink(FdWriter writer, bool buffered, TextTraceSink.Style style) : TraceOutput(writer, buffered)
{
    internal enum PidPrefixMode
    {
        /// <summary>Only once more than one task is traced (strace without -f, or to stderr).</summary>
        WhenSeveral,

        /// <summary>Every line (strace -f -o FILE).</summary>
        Always,
    }

    /// <param name="Bare">The pid prefix is "1234 " (output to a file, like strace -o) rather than "[pid  1234] ".</param>
    internal sealed record Style(PidPrefixMode PidPrefix, bool Bare, int Timestamps, bool Relative, bool Durations, bool Paint, bool Quiet);

    private static readonly byte[] Bold = "\e[1m"u8.ToArray();
    private static readonly byte[] Red = "\e[31m"u8.ToArray();
    private static readonly byte[] Yellow = "\e[33m"u8.ToArray();
    private static readonly byte[] Reset = "\e[0m"u8.ToArray();
    private readonly TextBuffer _line = new(4096);
    private readonly long _utcOffsetMicros = (long)TimeZoneInfo.Local.GetUtcOffset(DateTime.UtcNow).TotalMicroseconds;
    private int _tasks = 1;
    private long _lastTimestamp;
    private int _openColumn; // visible width of a line started by an Entered record

    public override void OnTaskCount(int count) => _tasks = count;

    private void Leader(int tid, long timestamp)
    {
        _line.Clear();
        if (style.PidPrefix == PidPrefixMode.Always || _tasks > 1)
        {
            if (style.Bare)
            {
                var start = _line.Length;
                _line.AppendInt(tid);
                while (_line.Length - start < 5) _line.Append(' ');
                _line.Append(' ');
            }
            else
            {
                _line.Append("[pid ");
                var digits = tid < 10 ? 1 : tid < 100 ? 2 : tid < 1000 ? 3 : tid < 10000 ? 4 : 5;
                for (var i = digits; i < 5; i++) _line.Append(' ');
                _line.AppendInt(tid);
                _line.Append("] ");
            }
        }

        if (style.Timestamps > 0)
        {
            var micros = TraceClock.ToUnixMicros(timestamp);
            if (style.Timestamps == 3)
            {
                _line.AppendInt(micros / 1_000_000);
                _line.Append('.');
                _line.AppendPadded(micros % 1_000_000, 6);
            }
            else
            {
                var local = (micros + _utcOffsetMicros) % 86_400_000_000;
                var seconds = local / 1_000_000;
                _line.AppendPadded(seconds / 3600, 2);
                _line.Append(':');
                _line.AppendPadded(seconds / 60 % 60, 2);
                _line.Append(':');
                _line.AppendPadded(seconds % 60, 2);
                if (style.Timestamps == 2)
                {
                    _line.Append('.');
                    _line.AppendPadded(local % 1_000_000, 6);
                }
            }

            _line.Append(' ');
        }

        if (style.Relative)
        {
            var delta = _lastTimestamp == 0 ? 0 : TraceClock.ToMicros(timestamp - _lastTimestamp);
            _lastTimestamp = timestamp;
            var secs = delta / 1_000_000;
            var digits = secs < 10 ? 1 : secs < 100 ? 2 : secs < 1000 ? 3 : 4;
            for (var i = digits; i < 6; i++) _line.Append(' ');
            _line.AppendInt(secs);
            _line.Append('.');
            _line.AppendPadded(delta % 1_000_000, 6);
            _line.Append(' ');
        }
    }

    public override void OnSyscall(in SyscallRecord r)
    {
        if (r.Phase == SyscallPhase.Entered)
        {
            // The start of the line, now; the rest comes with the call's exit, or " <unfinished ...>".
            Leader(r.Tid, r.EnterTimestamp);
            var start = _line.Length;
            Head(r.Text, r.Layout, 0);
            _openColumn = start + r.Text.Length;
            Write(_line.Span);
            return;
        }

        if (r.Continues)
        {
            _line.Clear();
            if (r.Phase == SyscallPhase.Unfinished)
            {
                _line.Append(r.Text);
                _line.Append(" <unfinished ...>\n");
                Write(_line.Span);
                return;
            }

            AppendCall(r.Text, r.Layout, r.TextOffset, hasReturn: true, _openColumn);
            Durations(r);
            _line.Append('\n');
            Write(_line.Span);
            return;
        }

        Leader(r.Tid, r.Phase == SyscallPhase.Resumed ? r.ExitTimestamp : r.EnterTimestamp);
        var escapes = 0;
        if (r.Phase == SyscallPhase.Resumed)
        {
            _line.Append("<... ");
            if (style.Paint)
            {
                _line.Append(Bold);
                escapes += Bold.Length + Reset.Length;
            }

            SyscallDecoder.AppendName(_line, r.Number);
            if (style.Paint) _line.Append(Reset);
            _line.Append(" resumed>");
        }

        AppendCall(r.Text, r.Layout, r.TextOffset, r.Phase != SyscallPhase.Unfinished, _line.Length - escapes);
        if (r.Phase == SyscallPhase.Unfinished) _line.Append(" <unfinished ...>");
        else Durations(r);
        _line.Append('\n');
        Write(_line.Span);
    }

    private void Durations(in SyscallRecord r)
    {
        if (style.Durations)
        {
            if (!r.Returned)
            {
                _line.Append(" <unavailable>");
            }
            else
            {
                var micros = TraceClock.ToMicros(r.ExitTimestamp - r.EnterTimestamp);
                _line.Append(" <");
                _line.AppendInt(micros / 1_000_000);
                _line.Append('.');
                _line.AppendPadded(micros % 1_000_000, 6);
                _line.Append('>');
            }
        }
    }

    /// <summary>
    /// The call text; like strace, " = " is moved to column 40 when the line is shorter; with colour, the name is
    /// bold and a failed call's result red.
    /// </summary>
    private void AppendCall(ReadOnlySpan<byte> text, in CallLayout layout, int offset, bool hasReturn, int visibleStart)
    {
        var eq = layout.ReturnStart - 3 - offset;
        if (!hasReturn || eq < 0 || eq + 3 > text.Length || !text.Slice(eq, 3).SequenceEqual(" = "u8))
        {
            Head(text, layout, offset);
            return;
        }

        Head(text[..eq], layout, offset);
        _line.Append(' ');
        for (var col = visibleStart + eq + 1; col < 40; col++) _line.Append(' ');
        var tail = text[(eq + 1)..];
        if (style.Paint && layout.ErrorStart >= 0)
        {
            _line.Append(Red);
            _line.Append(tail);
            _line.Append(Reset);
        }
        else
        {
            _line.Append(tail);
        }
    }

    private void Head(ReadOnlySpan<byte> head, in CallLayout layout, int offset)
    {
        if (style.Paint && offset == 0 && layout.NameEnd > 0 && layout.NameEnd <= head.Length)
        {
            _line.Append(Bold);
            _line.Append(head[..layout.NameEnd]);
            _line.Append(Reset);
            _line.Append(head[layout.NameEnd..]);
            return;
        }

        _line.Append(head);
    }

    public override void OnSignal(in SignalRecord r)
    {
        Leader(r.Tid, r.Timestamp);
        if (style.Paint) _line.Append(Yellow);
        _line.Append("--- ");
        _line.Append(Signals.Name(r.Signal));
        _line.Append(' ');
        _line.Append(r.Text);
        _line.Append(" ---");
        if (style.Paint) _line.Append(Reset);
        _line.Append('\n');
        Write(_line.Span);
    }

    public override void OnProcessExited(in ProcessExit exit)
    {
        var (pid, status, timestamp) = exit;
        Leader(pid, timestamp);
        if (style.Paint) _line.Append(Bold);
        if (status.Signaled)
        {
            _line.Append("+++ killed by ");
            _line.Append(Signals.Name(status.Signal));
            _line.Append(" +++");
        }
        else
        {
            _line.Append("+++ exited with ");
            _line.AppendInt(status.Code);
            _line.Append(" +++");
        }

        if (style.Paint) _line.Append(Reset);
        _line.Append('\n');
        Write(_line.Span);
    }

    public override void OnExecSuperseded(in ExecSuperseded record)
    {
        Leader(record.Pid, record.Timestamp);
        if (style.Paint) _line.Append(Bold);
        _line.Append("+++ superseded by execve in pid ");
        _line.AppendInt(record.FormerTid);
        _line.Append(" +++");
        if (style.Paint) _line.Append(Reset);
        _line.Append('\n');
        Write(_line.Span);
    }

    public override void OnAttached(int pid, int threadCount)
    {
        if (!style.Quiet && pid > 0 && threadCount > 0 && !Launched) Say($"attached to PID {pid} ({threadCount} thread{(threadCount == 1 ? "" : "s")})");
    }

    public override void OnDetached(int pid)
    {
        if (!style.Quiet && !Launched) Say($"detached from PID {pid}");
    }

    /// <summary>Set for a launched command: strace prints no attach/detach messages for it.</summary>
    public bool Launched { get; set; }
}
