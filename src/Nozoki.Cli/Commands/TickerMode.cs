using System.Text;

namespace Nozoki.Cli.Commands;

/// <summary>
/// The demo's built-in target (`nozoki __ticker`, hidden): <see cref="Writers"/> threads writing numbered lines, every
/// third one to stderr, each line in a single write(2), until SIGTERM; the main thread only waits. Being a .NET program,
/// the process also has the runtime's threads (GC, finalizer, signal handling, tiered compilation, ...).
/// </summary>
internal static class TickerMode
{
    /// <summary>How many threads write lines.</summary>
    public const int Writers = 3;

    public static int Run(string[] args)
    {
        var interval = args.Length > 0 && int.TryParse(args[0], out var ms) ? ms : 300;
        var stdout = Console.OpenStandardOutput();
        var stderr = Console.OpenStandardError();
        var lineNumber = 0;
        var threads = new Thread[Writers];
        for (var t = 0; t < threads.Length; t++)
        {
            var id = t + 1;
            threads[t] = new Thread(() =>
            {
                while (true)
                {
                    var n = Interlocked.Increment(ref lineNumber);
                    var toStderr = n % 3 == 0;
                    var line = Encoding.UTF8.GetBytes($"{(toStderr ? "warning" : "tick")} {n} from thread {id} at {DateTime.Now:HH:mm:ss.fff}\n");
                    (toStderr ? stderr : stdout).Write(line);
                    Thread.Sleep(interval);
                }
            }) { IsBackground = true, Name = $"ticker {id}" };
            threads[t].Start();
            Thread.Sleep(interval / threads.Length);
        }

        Thread.Sleep(Timeout.Infinite);
        return 0;
    }
}
