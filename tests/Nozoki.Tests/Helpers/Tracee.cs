using System.IO.Pipes;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using Nozoki.Tracing;

namespace Nozoki.Tests.Helpers;

/// <summary>
/// A fixture process started with the library's ChildProcess (posix_spawn), with optional stdin pipe (for --wait)
/// and stdout/stderr sent to files, to a caller-provided fd, or to /dev/null. Dispose kills and reaps it.
/// </summary>
internal sealed class Tracee : IDisposable
{
    public static readonly TimeSpan ExitTimeout = TimeSpan.FromSeconds(60);

    private readonly AnonymousPipeServerStream? _stdin;

    private Tracee(ChildProcess child, AnonymousPipeServerStream? stdin, string? stdoutPath, string? stderrPath)
    {
        Child = child;
        _stdin = stdin;
        StdoutPath = stdoutPath;
        StderrPath = stderrPath;
    }

    public ChildProcess Child { get; }

    public int Pid => Child.Pid;

    public string? StdoutPath { get; }

    public string? StderrPath { get; }

    /// <summary>
    /// Starts argv. stdin is a pipe when <paramref name="stdinPipe"/> (see <see cref="Release"/>), else /dev/null.
    /// stdout: <paramref name="stdoutHandle"/> if given (the caller keeps and closes its copy), else the file
    /// <paramref name="stdoutPath"/> (created), else /dev/null. stderr: the file <paramref name="stderrPath"/> or /dev/null.
    /// </summary>
    public static Tracee Start(IReadOnlyList<string> argv, bool stdinPipe = false, string? stdoutPath = null,
        string? stderrPath = null, SafeHandle? stdoutHandle = null)
    {
        var toClose = new List<IDisposable>();
        AnonymousPipeServerStream? stdin = null;
        try
        {
            int stdinFd;
            if (stdinPipe)
            {
                stdin = new AnonymousPipeServerStream(PipeDirection.Out);
                stdinFd = Fd(stdin.ClientSafePipeHandle);
            }
            else
            {
                stdinFd = Fd(Open("/dev/null", FileMode.Open, toClose));
            }

            var stdoutFd = stdoutHandle is not null ? Fd(stdoutHandle)
                : Fd(stdoutPath is not null ? Open(stdoutPath, FileMode.Create, toClose) : Open("/dev/null", FileMode.Open, toClose));
            var stderrFd = Fd(stderrPath is not null ? Open(stderrPath, FileMode.Create, toClose) : Open("/dev/null", FileMode.Open, toClose));
            var child = ChildProcess.Start(argv, stdinFd, stdoutFd, stderrFd);
            stdin?.DisposeLocalCopyOfClientHandle();
            return new Tracee(child, stdin, stdoutPath, stderrPath);
        }
        catch
        {
            stdin?.Dispose();
            throw;
        }
        finally
        {
            foreach (var d in toClose) d.Dispose();
        }
    }

    /// <summary>Starts the compiled fixture NAME with the given arguments.</summary>
    public static Tracee StartFixture(string name, IEnumerable<string> args, bool stdinPipe = false, string? stdoutPath = null,
        string? stderrPath = null, SafeHandle? stdoutHandle = null) =>
        Start([Fixtures.Get(name), .. args], stdinPipe, stdoutPath, stderrPath, stdoutHandle);

    private static int Fd(SafeHandle h) => checked((int)h.DangerousGetHandle());

    private static SafeFileHandle Open(string path, FileMode mode, List<IDisposable> toClose)
    {
        var h = File.OpenHandle(path, mode, mode == FileMode.Open ? FileAccess.ReadWrite : FileAccess.Write,
            FileShare.ReadWrite | FileShare.Delete);
        toClose.Add(h);
        return h;
    }

    /// <summary>Writes one byte to the fixture's stdin pipe (releases --wait, or any later read).</summary>
    public void Release()
    {
        if (_stdin is null) throw new InvalidOperationException("tracee was started without a stdin pipe");
        _stdin.WriteByte((byte)'x');
        _stdin.Flush();
    }

    public ProcStatus Status => ProcStatus.Get(Pid);

    public string StdoutFileText() => TempDir.ReadText(StdoutPath ?? throw new InvalidOperationException("stdout is not a file"));

    public string StderrFileText() => TempDir.ReadText(StderrPath ?? throw new InvalidOperationException("stderr is not a file"));

    /// <summary>Waits for the tracee to exit (and reaps it); kills it and fails the test on timeout.</summary>
    public ExitStatus WaitForExit(TimeSpan? timeout = null)
    {
        var t = timeout ?? ExitTimeout;
        var status = Child.WaitForExit(t);
        if (status is null)
        {
            var st = ProcStatus.Read(Pid);
            Child.Dispose();
            Assert.Fail($"tracee PID {Pid} did not exit within {t.TotalSeconds:0.#} s (status: {st})");
        }

        return status.Value;
    }

    public void Dispose()
    {
        try
        {
            Child.Dispose();
        }
        finally
        {
            _stdin?.Dispose();
        }
    }
}
