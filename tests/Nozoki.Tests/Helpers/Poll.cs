using System.Diagnostics;

namespace Nozoki.Tests.Helpers;

internal static class Poll
{
    /// <summary>Polls <paramref name="condition"/> until it holds; fails the test with a clear message on timeout.</summary>
    public static void Until(Func<bool> condition, TimeSpan timeout, Func<string> describe, int intervalMs = 10)
    {
        var sw = Stopwatch.StartNew();
        while (!condition())
        {
            if (sw.Elapsed > timeout)
                Assert.Fail($"Timed out after {timeout.TotalSeconds:0.#} s waiting for {describe()}");
            Thread.Sleep(intervalMs);
        }
    }

    public static void Until(Func<bool> condition, TimeSpan timeout, string what, int intervalMs = 10) =>
        Until(condition, timeout, () => what, intervalMs);
}
