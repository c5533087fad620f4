using System.Buffers;
using System.Buffers.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Nozoki.Syscalls;
using Nozoki.Trace;
using Nozoki.Tracing;

namespace Nozoki.Cli.Output;

/// <summary>
/// --json: one object per completed syscall
/// ({"time","pid","tid","syscall","nr","args":[{"raw","text"}...],"ret","errno","error","duration","text"}) and objects
/// with an "event" key for signals, exits, attach and detach, and a leader superseded by another thread's execve
/// ({"event":"superseded","pid","by_tid"}, strace's "+++ superseded by execve in pid N +++"). Reuses one buffer: no allocation per call.
/// </summary>
internal sealed class JsonTraceSink : TraceOutput
{
    private static readonly JsonWriterOptions WriterOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping, SkipValidation = true };
    private readonly ArrayBufferWriter<byte> _buffer = new(16 << 10);
    private readonly Utf8JsonWriter _json;
    private readonly bool _quiet;

    public JsonTraceSink(FdWriter writer, bool buffered, bool quiet)
        : base(writer, buffered)
    {
        _json = new Utf8JsonWriter(_buffer, WriterOptions);
        _quiet = quiet;
    }

    public override void OnSyscall(in SyscallRecord r)
    {
        Begin(r.EnterTimestamp);
        _json.WriteNumber("pid"u8, r.Pid);
        _json.WriteNumber("tid"u8, r.Tid);
        var text = r.Text;
        var layout = r.Layout;
        _json.WriteString("syscall"u8, text[..Math.Min(layout.NameEnd, text.Length)]);
        _json.WriteNumber("nr"u8, r.Number);
        _json.WriteStartArray("args"u8);
        Span<byte> hex = stackalloc byte[18];
        for (var i = 0; i < layout.ArgCount; i++)
        {
            _json.WriteStartObject();
            hex[0] = (byte)'0';
            hex[1] = (byte)'x';
            Utf8Formatter.TryFormat(r.Args[Math.Min(i, 5)], hex[2..], out var n, new StandardFormat('x'));
            _json.WriteString("raw"u8, hex[..(n + 2)]);
            var start = layout.Args[i * 2];
            var end = layout.Args[i * 2 + 1];
            if (start >= 0 && end <= text.Length && start <= end) _json.WriteString("text"u8, text[start..end]);
            _json.WriteEndObject();
        }

        _json.WriteEndArray();
        if (r.Returned) _json.WriteNumber("ret"u8, r.Errno != 0 ? -1 : r.ReturnValue);
        else _json.WriteNull("ret"u8);
        if (r.Errno != 0)
        {
            _json.WriteString("errno"u8, Errnos.Name(r.Errno) ?? "E?");
            _json.WriteString("error"u8, Errnos.Message(r.Errno) ?? "");
        }
        else
        {
            _json.WriteNull("errno"u8);
        }

        if (r.Returned)
        {
            var micros = TraceClock.ToMicros(r.ExitTimestamp - r.EnterTimestamp);
            _json.WritePropertyName("duration"u8);
            Seconds(micros);
        }

        _json.WriteString("text"u8, text);
        End();
    }

    public override void OnSignal(in SignalRecord r)
    {
        Begin(r.Timestamp);
        _json.WriteString("event"u8, "signal"u8);
        _json.WriteNumber("pid"u8, r.Pid);
        _json.WriteNumber("tid"u8, r.Tid);
        _json.WriteString("signal"u8, Signals.Name(r.Signal));
        _json.WriteString("siginfo"u8, r.Text);
        End();
    }

    public override void OnProcessExited(in ProcessExit exit)
    {
        var (pid, status, timestamp) = exit;
        Begin(timestamp);
        _json.WriteString("event"u8, "exited"u8);
        _json.WriteNumber("pid"u8, pid);
        if (status.Signaled) _json.WriteString("signal"u8, Signals.Name(status.Signal));
        else _json.WriteNumber("status"u8, status.Code);
        End();
    }

    public override void OnExecSuperseded(in ExecSuperseded record)
    {
        Begin(record.Timestamp);
        _json.WriteString("event"u8, "superseded"u8);
        _json.WriteNumber("pid"u8, record.Pid);
        _json.WriteNumber("by_tid"u8, record.FormerTid);
        End();
    }

    public override void OnAttached(int pid, int threadCount)
    {
        if (_quiet) return;
        Begin(TraceClock.Now());
        _json.WriteString("event"u8, "attached"u8);
        _json.WriteNumber("pid"u8, pid);
        _json.WriteNumber("threads"u8, threadCount);
        End();
    }

    public override void OnDetached(int pid)
    {
        if (_quiet) return;
        Begin(TraceClock.Now());
        _json.WriteString("event"u8, "detached"u8);
        _json.WriteNumber("pid"u8, pid);
        End();
    }

    public override void WriteSummary(IReadOnlyList<SyscallStat> stats)
    {
        foreach (var s in stats.OrderByDescending(s => s.Ticks))
        {
            Begin(TraceClock.Now());
            _json.WriteString("event"u8, "summary"u8);
            _json.WriteString("syscall"u8, s.Name);
            _json.WriteNumber("nr"u8, s.Number);
            _json.WriteNumber("calls"u8, s.Calls);
            _json.WriteNumber("errors"u8, s.Errors);
            _json.WritePropertyName("seconds"u8);
            Seconds(TraceClock.ToMicros(s.Ticks));
            End();
        }
    }

    private void Seconds(long micros)
    {
        Span<byte> text = stackalloc byte[32];
        Utf8Formatter.TryFormat(micros / 1_000_000, text, out var n);
        text[n++] = (byte)'.';
        Utf8Formatter.TryFormat(micros % 1_000_000, text[n..], out var m, new StandardFormat('D', 6));
        _json.WriteRawValue(text[..(n + m)], skipInputValidation: true);
    }

    private void Begin(long timestamp)
    {
        _json.WriteStartObject();
        _json.WritePropertyName("time"u8);
        Seconds(TraceClock.ToUnixMicros(timestamp));
    }

    private void End()
    {
        _json.WriteEndObject();
        _json.Flush();
        _buffer.Write("\n"u8);
        Write(_buffer.WrittenSpan);
        _buffer.ResetWrittenCount();
        _json.Reset(_buffer);
    }
}
