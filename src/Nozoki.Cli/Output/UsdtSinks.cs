using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Nozoki.Probes;
using Nozoki.Tracing;
using Nozoki.Usdt;

namespace Nozoki.Cli.Output;

/// <summary>`TIME COMM PID TID provider:name arg1 arg2 ...` lines on stdout; messages on stderr.</summary>
internal sealed class TextUsdtSink(bool quiet) : IUsdtSink
{
    private readonly ArrayBufferWriter<byte> _out = new(1 << 16);

    // Hits can come a million a second (uprobes): the line is built without allocating, from cached pieces.
    private readonly Dictionary<int, (string Comm, int Pid, byte[] Bytes)> _who = [];
    private readonly Dictionary<object, byte[]> _names = new(ReferenceEqualityComparer.Instance);
    private long _offsetTicks;
    private long _offsetHour = -1;

    public void OnHit(in UsdtHit hit, ReadOnlySpan<UsdtArgument> args)
    {
        var span = _out.GetSpan(512);
        var n = WriteTime(hit.Time, span);
        span[n++] = (byte)' ';
        if (!_who.TryGetValue(hit.Tid, out var who) || !ReferenceEquals(who.Comm, hit.Comm) || who.Pid != hit.Pid)
            _who[hit.Tid] = who = (hit.Comm, hit.Pid, Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture, $"{hit.Comm} {hit.Pid} {hit.Tid} ")));
        if (!_names.TryGetValue(hit.Probe, out var name)) _names[hit.Probe] = name = Encoding.UTF8.GetBytes(hit.Probe.Site.FullName);
        if (n + who.Bytes.Length + name.Length + 1 > span.Length) span = Grow(n, who.Bytes.Length + name.Length + 1);
        who.Bytes.CopyTo(span[n..]);
        n += who.Bytes.Length;
        name.CopyTo(span[n..]);
        n += name.Length;
        foreach (var a in args)
        {
            if (n + 24 > span.Length) span = Grow(n, 24);
            span[n++] = (byte)' ';
            if (a.Status == ArgStatus.Ok && a.Text is null)
            {
                var v = a.Value;
                var ok = v.Signed ? v.AsInt64.TryFormat(span[n..], out var w, default, CultureInfo.InvariantCulture)
                    : v.AsUInt64.TryFormat(span[n..], out w, default, CultureInfo.InvariantCulture);
                if (!ok) throw new InvalidOperationException("no room for a number");
                n += w;
                continue;
            }

            var text = Encoding.UTF8.GetBytes(Format(a));
            if (n + text.Length > span.Length) span = Grow(n, text.Length);
            text.CopyTo(span[n..]);
            n += text.Length;
        }

        if (n + 1 > span.Length) span = Grow(n, 1);
        span[n++] = (byte)'\n';
        _out.Advance(n);
        if (_out.WrittenCount >= 1 << 16) Flush();
    }

    /// <summary>More room for the line being built (its first <paramref name="used"/> bytes are kept).</summary>
    private Span<byte> Grow(int used, int more)
    {
        var old = _out.GetSpan(used)[..used].ToArray();
        var span = _out.GetSpan(used + more + 512);
        old.CopyTo(span);
        return span;
    }

    /// <summary>HH:mm:ss.ffffff in local time (the zone's offset looked up once an hour).</summary>
    private int WriteTime(DateTime utc, Span<byte> span)
    {
        var hour = utc.Ticks / TimeSpan.TicksPerHour;
        if (hour != _offsetHour)
        {
            _offsetTicks = TimeZoneInfo.Local.GetUtcOffset(utc).Ticks;
            _offsetHour = hour;
        }

        var t = (utc.Ticks + _offsetTicks) % TimeSpan.TicksPerDay;
        var micros = t / 10 % 1_000_000;
        var secs = t / TimeSpan.TicksPerSecond;
        Two(span, 0, secs / 3600);
        span[2] = (byte)':';
        Two(span, 3, secs / 60 % 60);
        span[5] = (byte)':';
        Two(span, 6, secs % 60);
        span[8] = (byte)'.';
        for (var i = 14; i >= 9; i--)
        {
            span[i] = (byte)('0' + micros % 10);
            micros /= 10;
        }

        return 15;
    }

    private static void Two(Span<byte> span, int at, long v)
    {
        span[at] = (byte)('0' + v / 10);
        span[at + 1] = (byte)('0' + v % 10);
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

    public void OnProcessExited(in ProcessExit exit)
    {
        var (pid, status, _) = exit;
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
