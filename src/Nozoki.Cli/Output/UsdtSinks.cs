using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Nozoki.Native;
using Nozoki.Probes;
using Nozoki.Tracing;
using Nozoki.Usdt;

namespace Nozoki.Cli.Output;

/// <summary>`TIME COMM PID TID provider:name arg1 arg2 ...` lines on stdout; messages on stderr.</summary>
internal sealed class TextUsdtSink(bool quiet) : IUsdtSink
{
    private readonly StringBuilder _line = new();
    private readonly ArrayBufferWriter<byte> _out = new(1 << 16);

    public void OnHit(in UsdtHit hit, ReadOnlySpan<UsdtArgument> args)
    {
        _line.Clear();
        _line.Append(hit.Time.ToLocalTime().ToString("HH:mm:ss.ffffff", CultureInfo.InvariantCulture)).Append(' ')
            .Append(hit.Comm).Append(' ').Append(hit.Pid).Append(' ').Append(hit.Tid).Append(' ').Append(hit.Probe.Site.FullName);
        foreach (var a in args) _line.Append(' ').Append(Format(a));
        _line.Append('\n');
        foreach (var chunk in _line.GetChunks()) Encoding.UTF8.GetBytes(chunk.Span, _out);
        if (_out.WrittenCount >= 1 << 16) Flush();
    }

    public void Flush()
    {
        if (_out.WrittenCount == 0) return;
        FdWriter.Stdout.WriteLines(_out.WrittenSpan);
        _out.ResetWrittenCount();
    }

    internal static string Format(in UsdtArgument a) => a.Status switch
    {
        ArgStatus.Ok when a.Text is not null => Quote(a.Text),
        ArgStatus.Ok => a.Value.ToString(),
        ArgStatus.MemoryFault => "<fault>",
        ArgStatus.UnresolvedSymbol => "<unresolved>",
        _ => "<unsupported>",
    };

    /// <summary>A C-style quoted string, as strace prints one.</summary>
    private static string Quote(string text)
    {
        var sb = new StringBuilder(text.Length + 2).Append('"');
        foreach (var c in text)
        {
            _ = c switch
            {
                '"' => sb.Append("\\\""),
                '\\' => sb.Append("\\\\"),
                '\n' => sb.Append("\\n"),
                '\t' => sb.Append("\\t"),
                < ' ' => sb.Append(CultureInfo.InvariantCulture, $"\\x{(int)c:x2}"),
                _ => sb.Append(c),
            };
        }

        return sb.Append('"').ToString();
    }

    public void OnProblem(string message) => Say(message);

    public void OnArmed(int pid, int sites)
    {
        if (!quiet) Say($"armed {sites} probe site{(sites == 1 ? "" : "s")} in PID {pid}");
    }

    public void OnProcessExited(int pid, ExitStatus status)
    {
        if (!quiet) Say($"PID {pid} {status}");
    }

    public void OnDetached(int pid)
    {
        if (!quiet) Say($"detached from PID {pid}; every probe site and semaphore restored");
    }

    private void Say(string message)
    {
        Flush(); // hits before the message come before it
        FdWriter.Stderr.Write(Encoding.UTF8.GetBytes($"nozoki: {message}\n"));
    }
}

/// <summary>One JSON object per hit: time, comm, pid, tid, probe, object, args (numbers, strings, or null).</summary>
internal sealed class JsonUsdtSink : IUsdtSink
{
    private readonly ArrayBufferWriter<byte> _buffer = new(4096);
    private readonly Utf8JsonWriter _json;

    public JsonUsdtSink() => _json = new Utf8JsonWriter(_buffer, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping });

    public void OnHit(in UsdtHit hit, ReadOnlySpan<UsdtArgument> args)
    {
        _json.WriteStartObject();
        _json.WriteNumber("time", Math.Round((hit.Time - DateTime.UnixEpoch).TotalSeconds, 6));
        _json.WriteString("comm", hit.Comm);
        _json.WriteNumber("pid", hit.Pid);
        _json.WriteNumber("tid", hit.Tid);
        _json.WriteString("probe", hit.Probe.Site.FullName);
        _json.WriteString("object", hit.Probe.ObjectPath);
        _json.WriteStartArray("args");
        foreach (var a in args)
        {
            if (a.Status != ArgStatus.Ok) _json.WriteNullValue();
            else if (a.Text is not null) _json.WriteStringValue(a.Text);
            else if (a.Value.Signed) _json.WriteNumberValue(a.Value.AsInt64);
            else _json.WriteNumberValue(a.Value.AsUInt64);
        }

        _json.WriteEndArray();
        _json.WriteEndObject();
        _json.Flush();
        _buffer.Write("\n"u8);
        _json.Reset(_buffer);
        if (_buffer.WrittenCount >= 1 << 16) Flush();
    }

    public void OnProblem(string message)
    {
        _json.WriteStartObject();
        _json.WriteString("event", "problem");
        _json.WriteString("message", message);
        _json.WriteEndObject();
        EndEvent();
    }

    public void OnDetached(int pid)
    {
        _json.WriteStartObject();
        _json.WriteString("event", "detached");
        _json.WriteNumber("pid", pid);
        _json.WriteEndObject();
        EndEvent();
    }

    private void EndEvent()
    {
        _json.Flush();
        _buffer.Write("\n"u8);
        _json.Reset(_buffer);
        Flush();
    }

    public void Flush()
    {
        _json.Flush();
        if (_buffer.WrittenCount == 0) return;
        FdWriter.Stdout.WriteLines(_buffer.WrittenSpan);
        _buffer.ResetWrittenCount();
        _json.Reset(_buffer);
    }
}
