using System.Buffers;
using System.Buffers.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Unicode;
using Nozoki.Mirror;
using Nozoki.Tracing;

namespace Nozoki.Cli.Output;

/// <summary>
/// JSON Lines on stdout: one object per mirrored write
/// ({"time","pid","tid","fd","data","encoding"}: data as UTF-8 text when it is valid UTF-8, else base64),
/// and objects with an "event" key for attach, exit, detach and notices. Reuses one buffer: no allocation per write.
/// </summary>
internal sealed class JsonMirrorSink : IMirrorSink
{
    private static readonly JsonWriterOptions WriterOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping, SkipValidation = true };
    private readonly FdWriter _stdout;
    private readonly ArrayBufferWriter<byte> _buffer = new(64 << 10);
    private readonly Utf8JsonWriter _json;

    public JsonMirrorSink(FdWriter stdout)
    {
        _stdout = stdout;
        _json = new Utf8JsonWriter(_buffer, WriterOptions);
    }

    public void OnWrite(in MirroredWrite write, ReadOnlySpan<byte> data)
    {
        Begin(write.Time);
        _json.WriteNumber("pid", write.Pid);
        _json.WriteNumber("tid", write.Tid);
        _json.WriteNumber("fd", write.Fd);
        if (Utf8.IsValid(data))
        {
            _json.WriteString("data", data);
            _json.WriteString("encoding", "utf8"u8);
        }
        else
        {
            _json.WriteBase64String("data", data);
            _json.WriteString("encoding", "base64"u8);
        }

        if (write.Continued) _json.WriteBoolean("continued", true);
        End();
    }

    public void OnNotice(in MirrorNotice notice)
    {
        Begin(notice.Time);
        _json.WriteString("event", "notice"u8);
        _json.WriteNumber("pid", notice.Pid);
        _json.WriteNumber("tid", notice.Tid);
        _json.WriteNumber("fd", notice.Fd);
        _json.WriteString("syscall", notice.Syscall);
        _json.WriteNumber("bytes", notice.Bytes);
        _json.WriteString("message", notice.Message);
        End();
    }

    public void OnAttached(int pid, int threadCount)
    {
        Begin(DateTime.UtcNow);
        _json.WriteString("event", "attached"u8);
        _json.WriteNumber("pid", pid);
        _json.WriteNumber("threads", threadCount);
        End();
    }

    public void OnProcessExited(in ProcessExit exit)
    {
        var (pid, status, _) = exit;
        Begin(DateTime.UtcNow);
        _json.WriteString("event", "exited"u8);
        _json.WriteNumber("pid", pid);
        if (status.Signaled) _json.WriteString("signal", Signals.Name(status.Signal));
        else _json.WriteNumber("status", status.Code);
        End();
    }

    public void OnDetached(int pid)
    {
        Begin(DateTime.UtcNow);
        _json.WriteString("event", "detached"u8);
        _json.WriteNumber("pid", pid);
        End();
    }

    private void Begin(DateTime time)
    {
        _json.WriteStartObject();
        // Unix seconds with microseconds, written as a literal so that no precision is lost to a double.
        var micros = (time.Ticks - DateTime.UnixEpoch.Ticks) / 10;
        Span<byte> text = stackalloc byte[32];
        Utf8Formatter.TryFormat(micros / 1_000_000, text, out var n);
        text[n++] = (byte)'.';
        Utf8Formatter.TryFormat(micros % 1_000_000, text[n..], out var m, new StandardFormat('D', 6));
        _json.WritePropertyName("time"u8);
        _json.WriteRawValue(text[..(n + m)], skipInputValidation: true);
    }

    private void End()
    {
        _json.WriteEndObject();
        _json.Flush();
        _buffer.Write("\n"u8);
        _stdout.Write(_buffer.WrittenSpan);
        _buffer.ResetWrittenCount();
        _json.Reset(_buffer);
    }
}
