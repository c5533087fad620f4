using System.Diagnostics;
using System.Text;

namespace Nozoki.Tests.Helpers;

/// <summary>Receives a chunk of a process's stdout; returns false to stop reading (the pipe is left open).</summary>
internal delegate bool OutputSink(ReadOnlySpan<byte> chunk);

/// <summary>
/// A non-traced helper process (nozoki itself, strace, sh) started with System.Diagnostics.Process, whose stdout and
/// stderr are read by background threads. All waits have timeouts; Dispose kills whatever is still running.
/// </summary>
internal sealed class ExternalProcess : IDisposable
{
    private readonly Process _process;
    private readonly object _gate = new(); // Monitor, for Wait/PulseAll
    private readonly MemoryStream _stdout = new();
    private readonly MemoryStream _stderr = new();
    private readonly OutputSink? _stdoutSink;
    private readonly Thread _stdoutPump;
    private readonly Thread _stderrPump;
    private bool _stdoutDone;
    private bool _stderrDone;
    private long _stdoutCount;

    private ExternalProcess(string name, ProcessStartInfo psi, OutputSink? stdoutSink)
    {
        Name = name;
        _stdoutSink = stdoutSink;
        _process = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {psi.FileName}");
        var stdout = _process.StandardOutput.BaseStream;
        var stderr = _process.StandardError.BaseStream;
        _stdoutPump = new Thread(() => Pump(stdout, isStdout: true)) { IsBackground = true, Name = name + " stdout" };
        _stderrPump = new Thread(() => Pump(stderr, isStdout: false)) { IsBackground = true, Name = name + " stderr" };
        _stdoutPump.Start();
        _stderrPump.Start();
    }

    public string Name { get; }

    public int Pid => _process.Id;

    public bool HasExited => _process.HasExited;

    /// <summary>Number of stdout bytes read so far (also counted when a custom sink consumes them).</summary>
    public long StdoutCount
    {
        get
        {
            lock (_gate) return _stdoutCount;
        }
    }

    /// <summary>Writes TEXT to the process's stdin (a pipe) and flushes it.</summary>
    public void WriteStdin(string text)
    {
        _process.StandardInput.Write(text);
        _process.StandardInput.Flush();
    }

    public static ExternalProcess Start(string name, string fileName, IEnumerable<string> args, OutputSink? stdoutSink = null)
    {
        var psi = new ProcessStartInfo(fileName)
        {
            RedirectStandardInput = true, // nozoki must not share the test host's stdin
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        return new ExternalProcess(name, psi, stdoutSink);
    }

    private void Pump(Stream stream, bool isStdout)
    {
        var buffer = new byte[1 << 16];
        try
        {
            while (true)
            {
                int n = stream.Read(buffer, 0, buffer.Length);
                if (n <= 0) break;
                lock (_gate)
                {
                    var keepReading = true;
                    if (!isStdout)
                    {
                        _stderr.Write(buffer, 0, n);
                    }
                    else
                    {
                        _stdoutCount += n;
                        if (_stdoutSink is null) _stdout.Write(buffer, 0, n);
                        else keepReading = _stdoutSink(buffer.AsSpan(0, n));
                    }

                    Monitor.PulseAll(_gate);
                    if (!keepReading) break;
                }
            }
        }
        catch (IOException)
        {
        }
        catch (ObjectDisposedException)
        {
        }
        finally
        {
            lock (_gate)
            {
                if (isStdout) _stdoutDone = true;
                else _stderrDone = true;
                Monitor.PulseAll(_gate);
            }
        }
    }

    public byte[] StdoutBytes()
    {
        lock (_gate) return _stdout.ToArray();
    }

    public string StdoutText()
    {
        lock (_gate) return Encoding.UTF8.GetString(_stdout.GetBuffer(), 0, (int)_stdout.Length);
    }

    public byte[] StderrBytes()
    {
        lock (_gate) return _stderr.ToArray();
    }

    public string StderrText()
    {
        lock (_gate) return Encoding.UTF8.GetString(_stderr.GetBuffer(), 0, (int)_stderr.Length);
    }

    public string[] StdoutLines() => SplitLines(StdoutText());

    public string[] StderrLines() => SplitLines(StderrText());

    /// <summary>Complete lines (terminated by \n) of a text; an unterminated tail is dropped.</summary>
    public static string[] SplitLines(string text)
    {
        var end = text.LastIndexOf('\n');
        return end < 0 ? [] : text[..end].Split('\n');
    }

    /// <summary>A description for failure messages: state, exit code and the tails of stdout and stderr.</summary>
    public string Describe()
    {
        static string Tail(string s) => s.Length <= 3000 ? s : "..." + s[^3000..];
        var state = _process.HasExited ? $"exited with code {_process.ExitCode}" : "still running";
        var stdout = _stdoutSink is null ? Tail(StdoutText()) : $"({StdoutCount} bytes consumed by a sink)";
        return $"{Name} (pid {Pid}) {state}\n--- stdout ---\n{stdout}\n--- stderr ---\n{Tail(StderrText())}\n--- end ---";
    }

    /// <summary>
    /// Waits until <paramref name="condition"/> holds. It is re-evaluated whenever output arrives and at least every
    /// 20 ms. Fails (with the process's output) on timeout, or when the process has exited and closed its output
    /// without the condition becoming true.
    /// </summary>
    public void WaitUntil(Func<bool> condition, TimeSpan timeout, string what)
    {
        var sw = Stopwatch.StartNew();
        lock (_gate)
        {
            while (!condition())
            {
                if (_stdoutDone && _stderrDone && _process.HasExited)
                {
                    if (condition()) return;
                    Assert.Fail($"{Name} exited before {what}.\n{Describe()}");
                }

                var left = timeout - sw.Elapsed;
                if (left <= TimeSpan.Zero)
                    Assert.Fail($"Timed out after {timeout.TotalSeconds:0.#} s waiting for {what}.\n{Describe()}");
                Monitor.Wait(_gate, TimeSpan.FromMilliseconds(Math.Min(20, left.TotalMilliseconds)));
            }
        }
    }

    public void WaitForStdout(Func<string, bool> predicate, TimeSpan timeout, string what) =>
        WaitUntil(() => predicate(StdoutText()), timeout, what);

    public void WaitForStderr(Func<string, bool> predicate, TimeSpan timeout, string what) =>
        WaitUntil(() => predicate(StderrText()), timeout, what);

    /// <summary>
    /// Waits for the process to exit and its output pipes to reach EOF; returns the exit code. On timeout kills it
    /// and fails the test.
    /// </summary>
    public int WaitForExit(TimeSpan timeout)
    {
        if (!_process.WaitForExit(timeout))
        {
            var description = Describe();
            Kill();
            Assert.Fail($"{Name} did not exit within {timeout.TotalSeconds:0.#} s.\n{description}");
        }

        var closeTimeout = TimeSpan.FromSeconds(10);
        if (!_stdoutPump.Join(closeTimeout) || !_stderrPump.Join(closeTimeout))
            Assert.Fail($"{Name} exited, but its stdout/stderr were still open {closeTimeout.TotalSeconds} s later " +
                        $"(a leftover child holds them?).\n{Describe()}");
        return _process.ExitCode;
    }

    /// <summary>Sends a signal to the process.</summary>
    public void Signal(int signo) => Posix.Kill(Pid, signo);

    /// <summary>
    /// Closes the test's read end of the process's stdout. Only valid after a stdout sink returned false (so that no
    /// read is in progress); waits for that first.
    /// </summary>
    public void CloseStdout()
    {
        if (!_stdoutPump.Join(TimeSpan.FromSeconds(30)))
            Assert.Fail($"stdout reader of {Name} did not stop.\n{Describe()}");
        _process.StandardOutput.Dispose();
    }

    public void Kill()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                _process.WaitForExit(5000);
            }
        }
        catch (InvalidOperationException)
        {
        }
        catch (System.ComponentModel.Win32Exception)
        {
        }
    }

    public void Dispose()
    {
        Kill();
        _process.Dispose();
    }
}
