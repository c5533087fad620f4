using System.Globalization;

namespace Nozoki.Tests.Helpers;

/// <summary>One frame of gdb's `bt`: its pc (absent for `&lt;signal handler called&gt;`) and function ("??" unknown).</summary>
internal sealed record GdbFrame(int Index, ulong? Pc, string Function)
{
    public bool IsSignalHandlerCalled => Function == "<signal handler called>";
}

/// <summary>gdb as the reference: `gdb -batch -p PID` attaches, runs commands, detaches; the process runs on.</summary>
internal static class Gdb
{
    private static readonly string[] Quiet =
    [
        "-nx", "-batch", "-iex", "set debuginfod enabled off",
        "-ex", "set print frame-info location-and-address", "-ex", "set print frame-arguments none",
        "-ex", "set width 0", "-ex", "set pagination off",
    ];

    /// <summary>Runs gdb attached to PID with COMMANDS (-ex each); returns its stdout.</summary>
    public static string Run(int pid, params string[] commands)
    {
        var args = new List<string>(Quiet) { "-p", pid.ToString(CultureInfo.InvariantCulture) };
        foreach (var c in commands) args.AddRange(["-ex", c]);
        using var gdb = ExternalProcess.Start("gdb", "gdb", args);
        var code = gdb.WaitForExit(TimeSpan.FromSeconds(120));
        Assert.True(code == 0, $"gdb failed.\n{gdb.Describe()}");
        return gdb.StdoutText();
    }

    /// <summary>
    /// gdb's backtrace of thread TID of process PID: the frames `bt` shows, walked with gdb's Python API so that each
    /// comes with its pc and its kind. gdb shows a function inlined at the pc as a frame of its own, with the same pc
    /// as the real frame around it; a machine-level unwinder has only the real one, so inline frames are left out.
    /// </summary>
    public static List<GdbFrame> Backtrace(int pid, int tid)
    {
        using var dir = new TempDir();
        var script = dir.File("bt.py");
        File.WriteAllText(script, $$"""
            import gdb
            for t in gdb.selected_inferior().threads():
                if t.ptid[1] == {{tid}}:
                    t.switch()
            f = gdb.newest_frame()
            while f is not None:
                if f.type() != gdb.INLINE_FRAME:
                    name = "<signal handler called>" if f.type() == gdb.SIGTRAMP_FRAME else (f.name() or "??")
                    print("frame 0x%x %s" % (f.pc(), name))
                f = f.older()
            """);
        var text = Run(pid, "source " + script);
        var frames = new List<GdbFrame>();
        foreach (var line in text.Split('\n'))
        {
            if (!line.StartsWith("frame 0x", StringComparison.Ordinal)) continue;
            var parts = line.Split(' ', 3);
            var pc = ulong.Parse(parts[1][2..], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            var name = parts[2];
            frames.Add(new GdbFrame(frames.Count, name == "<signal handler called>" ? null : pc, name));
        }

        Assert.True(frames.Count > 0, $"no frames for LWP {tid} in gdb's output:\n{text}");
        return frames;
    }

    /// <summary>
    /// gdb's backtrace at the next hit of LOCATION (a gdb breakpoint spec, e.g. `*brk_target` for the function's first
    /// instruction) in PID: `break`, `continue`, then the frames of the thread that hit, as <see cref="Backtrace"/>.
    /// gdb removes its breakpoint when it detaches at the end of the batch.
    /// </summary>
    public static List<GdbFrame> BacktraceAtBreak(int pid, string location)
    {
        using var dir = new TempDir();
        var script = dir.File("bt.py");
        File.WriteAllText(script, """
            import gdb
            f = gdb.newest_frame()
            while f is not None:
                if f.type() != gdb.INLINE_FRAME:
                    name = "<signal handler called>" if f.type() == gdb.SIGTRAMP_FRAME else (f.name() or "??")
                    print("frame 0x%x %s" % (f.pc(), name))
                f = f.older()
            """);
        var text = Run(pid, "set breakpoint pending on", "break " + location, "continue", "source " + script);
        var frames = new List<GdbFrame>();
        foreach (var line in text.Split('\n'))
        {
            if (!line.StartsWith("frame 0x", StringComparison.Ordinal)) continue;
            var parts = line.Split(' ', 3);
            var pc = ulong.Parse(parts[1][2..], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            frames.Add(new GdbFrame(frames.Count, parts[2] == "<signal handler called>" ? null : pc, parts[2]));
        }

        Assert.True(frames.Count > 0, $"no frames at {location} in gdb's output:\n{text}");
        return frames;
    }
}
