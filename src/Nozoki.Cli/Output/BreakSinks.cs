using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Nozoki.Breakpoints;
using Nozoki.Symbols;
using Nozoki.Tracing;
using Nozoki.Unwinding;

namespace Nozoki.Cli.Output;

/// <summary>
/// `TIME COMM PID TID LOCATION [rdi=0x.. ...]` per hit on stdout, then with --backtrace its frames
/// (`#0 0x00007f.. module!symbol+0xoff (file:line)`), indented; with --call the call's line
/// (`call FUNC() = 0xRAX (HELD us)`, or what went wrong) and the bytes it wrote to fds 1 and 2, as written, each line
/// indented; messages on stderr.
/// </summary>
internal sealed class TextBreakSink(bool quiet, bool args) : IBreakSink
{
    private static readonly string[] ArgNames = ["rdi", "rsi", "rdx", "rcx", "r8", "r9"];
    private const string Indent = "    ";
    private const int FlushChars = 1 << 16;
    private readonly StringBuilder _sb = new(FlushChars + 4096);
    private readonly ArrayBufferWriter<byte> _bytes = new(3 * (FlushChars + 4096));

    // A hot location is hit thousands of times with the same frames: its text and each frame's line are made once.
    private const int MaxCachedFrames = 1 << 16;
    private readonly Dictionary<(int Index, ulong Pc), string> _frameLines = [];
    private CodeLocation? _location;
    private string _locationText = "";

    public void OnHit(in BreakHit hit)
    {
        var ic = CultureInfo.InvariantCulture;
        if (!ReferenceEquals(hit.Location, _location))
        {
            _location = hit.Location;
            _locationText = hit.Location.ToString();
        }

        Span<char> number = stackalloc char[32];
        hit.Time.ToLocalTime().TryFormat(number, out var n, "HH:mm:ss.ffffff", ic);
        _sb.Append(number[..n]).Append(' ').Append(hit.Comm).Append(' ').Append(hit.Pid).Append(' ').Append(hit.Tid).Append(' ').Append(_locationText);
        if (args)
        {
            for (var i = 0; i < hit.Args.Length; i++)
            {
                hit.Args[i].TryFormat(number, out n, "x", ic);
                _sb.Append(' ').Append(ArgNames[i]).Append("=0x").Append(number[..n]);
            }
        }

        _sb.Append('\n');
        if (hit.Frames is { } frames)
        {
            foreach (var f in frames) _sb.Append(Indent).Append(FrameLine(f)).Append('\n');
        }

        if (hit.Call is { } call) AppendCall(call);
        if (_sb.Length + _bytes.WrittenCount >= FlushChars) Flush();
    }

    private string FrameLine(Frame f)
    {
        if (f.EndMarker is not null) return f.ToString();
        if (_frameLines.TryGetValue((f.Index, f.Pc), out var line)) return line;
        line = f.ToString();
        if (_frameLines.Count >= MaxCachedFrames) _frameLines.Clear();
        _frameLines[(f.Index, f.Pc)] = line;
        return line;
    }

    private void AppendCall(InferiorCallResult call)
    {
        var ic = CultureInfo.InvariantCulture;
        var held = (call.Held.Ticks / 10.0).ToString("0.0", ic) + " us";
        _sb.Append(Indent).Append("call ").Append(call.Function).Append("()");
        if (call.Outcome == CallOutcome.Returned) _sb.Append(" = 0x").Append(call.ReturnValue.ToString("x", ic));
        else _sb.Append(": ").Append(call.Problem);
        _sb.Append(" (").Append(held).Append(')').Append('\n');
        // The bytes as the function wrote them (not decoded: nothing changed, nothing lost), a line at a time, indented.
        var output = call.OutputBytes();
        if (output.Length == 0) return;
        MoveText();
        var start = true;
        foreach (var b in output)
        {
            if (start) Encoding.ASCII.GetBytes(Indent, _bytes);
            _bytes.Write([b]);
            start = b == (byte)'\n';
        }

        if (!start) _bytes.Write("\n"u8);
    }

    /// <summary>The text so far into the byte buffer (where raw output bytes follow it).</summary>
    private void MoveText()
    {
        if (_sb.Length == 0) return;
        foreach (var chunk in _sb.GetChunks()) Encoding.UTF8.GetBytes(chunk.Span, _bytes);
        _sb.Clear();
    }

    public void Flush()
    {
        MoveText();
        if (_bytes.WrittenCount == 0) return;
        FdWriter.Stdout.WriteLines(_bytes.WrittenSpan);
        _bytes.ResetWrittenCount();
    }

    public void OnProblem(string message) => Say(message);

    public void OnAttached(int pid, int threadCount)
    {
        if (!quiet) Say($"attached to PID {pid} ({threadCount} thread{(threadCount == 1 ? "" : "s")})");
    }

    public void OnArmed(int pid, string spec, int sites, bool uprobe)
    {
        if (!quiet) Say($"{spec}: armed {sites} site{(sites == 1 ? "" : "s")} in PID {pid} ({(uprobe ? "kernel uprobe" : "ptrace breakpoint")}{(sites == 1 ? "" : "s")})");
    }

    public void OnProcessExited(in ProcessExit exit)
    {
        var (pid, status, _) = exit;
        if (!quiet) Say($"PID {pid} {status}");
    }

    public void OnDetached(int pid)
    {
        if (!quiet) Say($"detached from PID {pid}; every site removed");
    }

    private void Say(string message)
    {
        Flush();
        FdWriter.Stderr.Write(Encoding.UTF8.GetBytes($"nozoki: {message}\n"));
    }
}

/// <summary>
/// One JSON object per hit: time, comm, pid, tid, location, spec, args[6], frames[] (with --backtrace), call (with --call:
/// function, outcome, return, output, held_us; fault or timeout details).
/// </summary>
internal sealed class JsonBreakSink : IBreakSink
{
    private readonly System.Buffers.ArrayBufferWriter<byte> _buffer = new(4096);
    private readonly Utf8JsonWriter _json;

    public JsonBreakSink() => _json = new Utf8JsonWriter(_buffer, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping });

    public void OnHit(in BreakHit hit)
    {
        _json.WriteStartObject();
        _json.WriteNumber("time", Math.Round((hit.Time - DateTime.UnixEpoch).TotalSeconds, 6));
        _json.WriteNumber("pid", hit.Pid);
        _json.WriteNumber("tid", hit.Tid);
        _json.WriteString("comm", hit.Comm);
        _json.WriteString("location", hit.Location.ToString());
        _json.WriteString("spec", hit.Spec);
        _json.WriteString("module", hit.Location.Module.Path);
        _json.WriteString("address", "0x" + hit.Location.Address.ToString("x", CultureInfo.InvariantCulture));
        _json.WriteStartArray("args");
        foreach (var a in hit.Args) _json.WriteNumberValue(a);
        _json.WriteEndArray();
        if (hit.Frames is { } frames)
        {
            _json.WriteStartArray("frames");
            foreach (var f in frames) WriteFrame(f);
            _json.WriteEndArray();
        }

        if (hit.Call is { } call) WriteCall(call);
        _json.WriteEndObject();
        EndLine();
        if (_buffer.WrittenCount >= 1 << 16) Flush();
    }

    private void WriteCall(InferiorCallResult call)
    {
        var ic = CultureInfo.InvariantCulture;
        _json.WriteStartObject("call");
        _json.WriteString("function", call.Function);
        _json.WriteString("outcome", call.Outcome switch
        {
            CallOutcome.Returned => "returned",
            CallOutcome.Faulted => "faulted",
            CallOutcome.TimedOut => "timed_out",
            CallOutcome.Lost => "lost",
            _ => "refused",
        });
        if (call.Outcome == CallOutcome.Returned) _json.WriteString("return", "0x" + call.ReturnValue.ToString("x", ic));
        if (call.Outcome == CallOutcome.Faulted)
        {
            _json.WriteString("signal", Signals.Name(call.FaultSignal));
            _json.WriteString("fault_address", "0x" + call.FaultAddress.ToString("x", ic));
            _json.WriteString("fault_pc", "0x" + call.FaultPc.ToString("x", ic));
        }

        if (call.Problem is { } problem) _json.WriteString("problem", problem);
        // Output that is not UTF-8 is given as its bytes' base64 instead, never changed.
        var output = call.OutputBytes();
        if (System.Text.Unicode.Utf8.IsValid(output)) _json.WriteString("output", output);
        else _json.WriteBase64String("output_base64", output);
        _json.WriteNumber("held_us", Math.Round(call.Held.Ticks / 10.0, 1));
        if (call.HeldSignals > 0) _json.WriteNumber("held_signals", call.HeldSignals);
        _json.WriteEndObject();
    }

    private void WriteFrame(Frame f)
    {
        _json.WriteStartObject();
        _json.WriteNumber("index", f.Index);
        if (f.EndMarker is not null)
        {
            _json.WriteString("end", f.EndMarker);
            _json.WriteEndObject();
            return;
        }

        _json.WriteString("pc", "0x" + f.Pc.ToString("x", CultureInfo.InvariantCulture));
        if (f.Module is not null) _json.WriteString("module", f.Module);
        if (f.Symbol is not null) _json.WriteString("symbol", f.Symbol);
        if (f.Module is not null) _json.WriteNumber("offset", f.Offset);
        if (f.File is not null) _json.WriteString("file", f.File);
        if (f.Line is { } line) _json.WriteNumber("line", line);
        if (f.IsActivation && f.Index > 0) _json.WriteBoolean("signal_frame", true);
        _json.WriteEndObject();
    }

    public void OnProblem(string message)
    {
        _json.WriteStartObject();
        _json.WriteString("event", "problem");
        _json.WriteString("message", message);
        _json.WriteEndObject();
        EndLine();
        Flush();
    }

    public void OnArmed(int pid, string spec, int sites, bool uprobe)
    {
        _json.WriteStartObject();
        _json.WriteString("event", "armed");
        _json.WriteNumber("pid", pid);
        _json.WriteString("spec", spec);
        _json.WriteNumber("sites", sites);
        _json.WriteString("via", uprobe ? "uprobe" : "ptrace");
        _json.WriteEndObject();
        EndLine();
        Flush();
    }

    public void OnAttached(int pid, int threadCount)
    {
        _json.WriteStartObject();
        _json.WriteString("event", "attached");
        _json.WriteNumber("pid", pid);
        _json.WriteNumber("threads", threadCount);
        _json.WriteEndObject();
        EndLine();
        Flush();
    }

    public void OnDetached(int pid)
    {
        _json.WriteStartObject();
        _json.WriteString("event", "detached");
        _json.WriteNumber("pid", pid);
        _json.WriteEndObject();
        EndLine();
        Flush();
    }

    private void EndLine()
    {
        _json.Flush();
        _buffer.Write("\n"u8);
        _json.Reset(_buffer);
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
