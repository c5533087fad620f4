using System.Text;

namespace Nozoki.Cli.Commands;

/// <summary>
/// The demo's built-in target (`nozoki __ticker`, hidden): three threads writing numbered lines, every third one
/// to stderr, each line in a single write(2), until SIGTERM.
/// </summary>
internal static class TickerMode
{
    public static int Run(string[] args)
    {
        var interval = args.Length > 0 && int.TryParse(args[0], out var ms) ? ms : 300;
        var stdout = Console.OpenStandardOutput();
        var stderr = Console.OpenStandardError();
        var lineNumber = 0;
        var threads = new Thread[3];
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
