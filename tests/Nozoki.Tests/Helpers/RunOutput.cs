using Microsoft.Win32.SafeHandles;
using Nozoki.Tracing;

namespace Nozoki.Tests.Helpers;

/// <summary>
/// Runs a command (nozoki, or a fixture directly) with stdin /dev/null and stdout AND stderr both on one open file
/// description of a fresh file (like `CMD > FILE 2>&1`): their writes share one file offset, so the file shows their
/// exact interleaving.
/// </summary>
internal static class RunOutput
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(120);

    /// <summary>Runs argv to completion with stdout+stderr to <paramref name="path"/>; returns its exit status.</summary>
    public static ExitStatus ToFile(string path, IReadOnlyList<string> argv, TimeSpan? timeout = null)
    {
        ChildProcess child;
        using (var devNull = File.OpenHandle("/dev/null", FileMode.Open, FileAccess.Read))
        using (var file = File.OpenHandle(path, FileMode.Create, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete))
        {
            var fd = Fd(file);
            child = ChildProcess.Start(argv, Fd(devNull), fd, fd);
        }

        using (child)
        {
            var t = timeout ?? Timeout;
            var status = child.WaitForExit(t);
            if (status is null)
            {
                var tree = ProcessTree.Describe(child.Pid);
                child.Dispose();
                Assert.Fail($"'{string.Join(' ', argv)}' did not exit within {t.TotalSeconds:0.#} s (descendants: {tree})");
            }

            return status.Value;
        }
    }

    /// <summary>Runs `nozoki ARGS` with stdout+stderr to <paramref name="path"/>; returns its exit status.</summary>
    public static ExitStatus NozokiToFile(string path, params string[] args) =>
        ToFile(path, [.. NozokiCli.Command, .. args]);

    private static int Fd(SafeFileHandle h) => checked((int)h.DangerousGetHandle());
}
