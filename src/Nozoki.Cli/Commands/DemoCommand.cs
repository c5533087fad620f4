using System.CommandLine;
using Nozoki.Procfs;
using Nozoki.Tracing;

namespace Nozoki.Cli.Commands;

/// <summary>
/// `nozoki demo`: starts a ticker whose output goes to files nobody watches, attaches to it by PID exactly as
/// `nozoki out PID` does, mirrors it for a few seconds, detaches, and proves it is still running and printing.
/// </summary>
internal static class DemoCommand
{
    public static Command Create()
    {
        // Task.Wait takes at most int.MaxValue milliseconds.
        var seconds = Arguments.Seconds(new Option<double>("--seconds") { Description = "how long to mirror", DefaultValueFactory = _ => 3 }, int.MaxValue / 1000);
        var color = OutCommand.ColorOption();
        var cmd = new Command("demo", "Show `nozoki out` on a built-in ticker: attach, mirror for 3 s, detach, check it runs on") { seconds, color };
        cmd.SetAction(r => Run(TimeSpan.FromSeconds(r.GetValue(seconds)), OutCommand.ShouldPaint(r.GetValue(color)!)));
        return cmd;
    }

    private static int Run(TimeSpan duration, bool paint)
    {
        var dir = Directory.CreateTempSubdirectory("nozoki-demo-");
        var outPath = Path.Combine(dir.FullName, "stdout.log");
        var errPath = Path.Combine(dir.FullName, "stderr.log");
        using var ticker = StartTicker(outPath, errPath);
        try
        {
            Console.WriteLine($"nozoki demo: started a ticker, PID {ticker.Pid}: a .NET program in which {TickerMode.Writers} threads write numbered lines,");
            Console.WriteLine($"  every third to stderr, into files nobody is watching ({outPath}, {errPath}).");
            if (!WaitFor(() => new FileInfo(outPath).Length > 0, TimeSpan.FromSeconds(10)))
            {
                Console.Error.WriteLine("nozoki: error: the demo ticker did not start");
                return (int)ReturnCode.Error;
            }

            Console.WriteLine($"nozoki demo: now running the equivalent of `nozoki out {ticker.Pid}` for {duration.TotalSeconds:0.#} s. It attaches to every thread");
            Console.WriteLine($"  of the ticker, all counted below: its {TickerMode.Writers} writers, its main thread and the .NET runtime's own threads.");
            Console.WriteLine("  What the ticker writes appears below as if this were its terminal (its stderr in red on a terminal):");
            Console.Out.Flush();
            var code = OutCommand.Mirror(new OutCommand.MirrorOptions(ticker.Pid, [1, 2], false, paint, Json: false, Quiet: false), duration);
            if (code != 0) return code;

            var info = ProcessInfo.TryRead(ticker.Pid);
            var before = CountLines(outPath) + CountLines(errPath);
            Thread.Sleep(1000);
            var after = CountLines(outPath) + CountLines(errPath);
            var alive = info is not null && info.State is not ('t' or 'Z' or 'X') && !ticker.HasExited;
            Console.WriteLine($"nozoki demo: detached. The ticker is {(alive ? "still running" : "NOT running")}: " +
                              $"State {info?.State}, TracerPid {info?.TracerPid}, and it wrote {after - before} more lines in the second after nozoki left.");
            var ok = alive && info!.TracerPid == 0 && after > before;
            ticker.Signal(Signals.SIGTERM);
            var exit = ticker.WaitForExit(TimeSpan.FromSeconds(5));
            Console.WriteLine($"nozoki demo: stopped the ticker ({exit?.ToString() ?? "still running"}). {(ok ? "All good." : "Something went wrong.")}");
            Console.WriteLine($"  Try it on your own processes: nozoki out PID   (Ctrl-C detaches; the process keeps running)");
            return ok ? (int)ReturnCode.Success : (int)ReturnCode.Error;
        }
        finally
        {
            try
            {
                dir.Delete(recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    private static ChildProcess StartTicker(string outPath, string errPath)
    {
        using var stdout = File.OpenHandle(outPath, FileMode.Create, FileAccess.Write);
        using var stderr = File.OpenHandle(errPath, FileMode.Create, FileAccess.Write);
        using var stdin = File.OpenHandle("/dev/null", FileMode.Open, FileAccess.Read);
        var self = Environment.ProcessPath ?? "dotnet";
        string[] argv = Path.GetFileNameWithoutExtension(self) == "dotnet"
            ? [self, Path.Combine(AppContext.BaseDirectory, "Nozoki.Cli.dll"), "__ticker"]
            : [self, "__ticker"];
        return ChildProcess.Start(argv, (int)stdin.DangerousGetHandle(), (int)stdout.DangerousGetHandle(), (int)stderr.DangerousGetHandle());
    }

    private static bool WaitFor(Func<bool> condition, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) return false;
            Thread.Sleep(20);
        }

        return true;
    }

    private static int CountLines(string path) => File.ReadAllLines(path).Length;
}
