using System.Globalization;
using System.Net;
using System.Text.RegularExpressions;
using Nozoki.Tests.Helpers;
using Xunit.Abstractions;

namespace Nozoki.Tests;

/// <summary>
/// The story of issue #12, on Debian's unicorn and ruby-bcrypt: a unicorn master and one worker serve a Rack app
/// (fixtures/unicorn/config.ru) whose every request hashes a password with BCrypt. `nozoki break -p WORKER crypt_ra
/// --count 3 --call rb_backtrace` prints three Ruby backtraces, the same gdb's `call (void)rb_backtrace()` prints at
/// crypt_ra, while requests sent meanwhile all succeed; afterwards the worker is untraced, its code its files', and
/// the same worker serves on. crypt_ra is defined in bcrypt_ext.so and in libcrypt.so.1, and bcrypt_ext's call
/// resolves to libcrypt's (interposition): both are armed, as gdb does ("2 locations").
/// </summary>
[Collection(PtraceCollection.Name)]
public sealed partial class UnicornStoryTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    private static string AppDirectory => Path.Combine(Fixtures.SourceDirectory, "unicorn");

    private static string App => Path.Combine(AppDirectory, "config.ru");

    [GeneratedRegex(@"worker ready pid=(\d+) port=(\d+)")]
    private static partial Regex WorkerReady();

    /// <summary>A unicorn master (and its worker) on 127.0.0.1, a free port; its stderr, which the worker shares, a file.</summary>
    private sealed class Unicorn : IDisposable
    {
        private readonly TempDir _dir = new();

        public Unicorn()
        {
            Master = Tracee.Start(["/usr/bin/unicorn", "-l", "127.0.0.1:0", "-c", Path.Combine(AppDirectory, "unicorn.conf.rb"), App],
                stdoutPath: _dir.File("out"), stderrPath: _dir.File("err"));
            Poll.Until(() => Log.Contains("worker=0 ready", StringComparison.Ordinal), Timeout, () => $"unicorn's worker to be ready:\n{Log}");
            var m = WorkerReady().Match(Log);
            Worker = int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
            Port = int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture);
        }

        public Tracee Master { get; }

        public int Worker { get; }

        public int Port { get; }

        /// <summary>What master and worker wrote to stderr: unicorn's log, Rack's access log, rb_backtrace's lines.</summary>
        public string Log => Master.StderrFileText();

        public void Dispose()
        {
            // TERM: the master stops its worker, reaps it, and exits; the worker must not outlive the test either way.
            try
            {
                if (!Master.Child.HasExited)
                {
                    Posix.Kill(Master.Pid, Signals.SIGTERM);
                    Master.Child.WaitForExit(Timeout);
                }
            }
            finally
            {
                if (Worker > 0 && WorkerCommandLine(Worker).StartsWith("unicorn worker", StringComparison.Ordinal)) Posix.TryKill(Worker, Signals.SIGKILL);
                Master.Dispose();
                _dir.Dispose();
            }
        }
    }

    private static string WorkerCommandLine(int pid)
    {
        try
        {
            return File.ReadAllText($"/proc/{pid}/cmdline");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return "";
        }
    }

    /// <summary>GET /?pwN, one after the other, on a thread of its own until stopped; each answer checked.</summary>
    private sealed class Requests : IDisposable
    {
        private readonly HttpClient _client = new() { Timeout = TimeSpan.FromSeconds(60) };
        private readonly Thread _thread;
        private readonly List<string> _failures = [];
        private readonly int _port;
        private readonly int _worker;
        private volatile bool _stop;
        private int _ok;

        public Requests(int port, int worker)
        {
            _port = port;
            _worker = worker;
            _thread = new Thread(Loop) { IsBackground = true, Name = "requests" };
            _thread.Start();
        }

        public int Ok => Volatile.Read(ref _ok);

        private void Loop()
        {
            for (var i = 0; !_stop; i++)
            {
                var password = $"pw{i}";
                try
                {
                    using var response = _client.Send(new HttpRequestMessage(HttpMethod.Get, $"http://127.0.0.1:{_port}/?{password}"));
                    using var reader = new StreamReader(response.Content.ReadAsStream());
                    var body = reader.ReadToEnd();
                    // The same worker answers every request: it was never killed (and respawned) by its master.
                    if (response.StatusCode == HttpStatusCode.OK && body == $"{password} ok {_worker}\n") Interlocked.Increment(ref _ok);
                    else lock (_failures) _failures.Add($"{password}: {(int)response.StatusCode} '{body}'");
                }
                catch (Exception e) when (e is HttpRequestException or IOException or TaskCanceledException)
                {
                    lock (_failures) _failures.Add($"{password}: {e.Message}");
                }
            }
        }

        /// <summary>Waits for N more good answers, stops, and says whether every answer was right.</summary>
        public void StopAfter(int more)
        {
            var target = Ok + more;
            Poll.Until(() => Ok >= target || _failures.Count > 0, Timeout, "more answers");
            _stop = true;
            Assert.True(_thread.Join(Timeout), "the request loop did not stop");
            Assert.Empty(_failures);
        }

        public void Dispose()
        {
            _stop = true;
            _thread.Join(Timeout);
            _client.Dispose();
        }
    }

    [GeneratedRegex(@"^\tfrom [^:]+:\d+:in .<main>'$")]
    private static partial Regex OutermostFrame();

    /// <summary>
    /// rb_backtrace's outputs in LINES, one list of `\tfrom FILE:LINE:in ...` lines per backtrace: each starts at the
    /// outermost frame (`in `&lt;main&gt;'`); two in a row (the hits of one request) have nothing between them.
    /// </summary>
    private static List<List<string>> Backtraces(IEnumerable<string> lines)
    {
        var result = new List<List<string>>();
        List<string>? current = null;
        foreach (var line in lines)
        {
            if (line.StartsWith("\tfrom ", StringComparison.Ordinal))
            {
                if (current is null || OutermostFrame().IsMatch(line)) result.Add(current = []);
                current.Add(line);
            }
            else
            {
                current = null;
            }
        }

        return result;
    }

    /// <summary>
    /// The line of config.ru with TEXT, as Ruby numbers it under unicorn: unicorn evaluates the file after a line of its
    /// own (`Rack::Builder.new {(`, unicorn.rb), so Ruby's numbers are one more than the file's (gdb's call shows the same).
    /// </summary>
    private static int LineOf(string text) =>
        Array.FindIndex(File.ReadAllLines(App), l => l.Contains(text, StringComparison.Ordinal)) + 2;

    [Fact]
    public void Ruby_backtraces_at_crypt_ra_in_a_unicorn_worker_as_gdb_gives_them_while_every_request_succeeds()
    {
        using var unicorn = new Unicorn();
        var w = unicorn.Worker;

        List<List<string>> ours;
        using (var requests = new Requests(unicorn.Port, w))
        {
            using var nozoki = NozokiCli.Start(["break", "-p", $"{w}", "crypt_ra", "--count", "3", "--call", "rb_backtrace"]);
            Assert.Equal(0, nozoki.WaitForExit(NozokiCli.ExitTimeout));
            nozoki.AssertNoStackTrace();
            var stdout = nozoki.StdoutText();
            var stderr = nozoki.StderrText();
            output.WriteLine(stdout + stderr);

            // Both definitions armed; the hits are libcrypt's (bcrypt_ext's call resolves there).
            Assert.Contains($"nozoki: crypt_ra: armed 2 sites in PID {w} (ptrace breakpoints)", stderr, StringComparison.Ordinal);
            Assert.Matches(@"(?m)^nozoki: 3 hits; hit threads held per hit \(ptrace stop to resume\): median [\d.]+ us, p99 [\d.]+ us, max [\d.]+ us \(rb_backtrace\(\) calls included\)$", stderr);
            var lines = ExternalProcess.SplitLines(stdout);
            var hits = lines.Select((l, i) => (l, i)).Where(x => !x.l.StartsWith(' ')).ToList();
            Assert.Equal(3, hits.Count);
            foreach (var (line, i) in hits)
            {
                Assert.Matches($@"^\d\d:\d\d:\d\d\.\d{{6}} \S+ {w} {w} libcrypt\.so\.1[.\d]*!crypt_ra$", line);
                Assert.Matches(@"^    call rb_backtrace\(\) = 0x[0-9a-f]+ \([\d.]+ us\)$", lines[i + 1]);
            }

            ours = Backtraces(lines.Where(l => l.StartsWith("    ", StringComparison.Ordinal)).Select(l => l[4..]));
            Assert.Equal(3, ours.Count);
            requests.StopAfter(2);
        }

        // Each names the app's file and line (the request block; hash_password for create, the == check), and ends in
        // bcrypt's engine, where the C extension is called.
        var (create, hash, check) = (LineOf("BCrypt::Password.create"), LineOf("digest = hash_password"), LineOf("BCrypt::Password.new(digest) =="));
        foreach (var bt in ours)
        {
            Assert.Matches(@"^\tfrom /.*/bcrypt/engine\.rb:\d+:in .(BCrypt::Engine\.)?__bc_crypt'$", bt[^1]);
            var app = bt.Where(l => l.StartsWith($"\tfrom {App}:", StringComparison.Ordinal)).ToList();
            Assert.True(
                app.SequenceEqual([$"\tfrom {App}:{check}:in `block (2 levels) in <main>'"])
                || app.SequenceEqual([$"\tfrom {App}:{hash}:in `block (2 levels) in <main>'", $"\tfrom {App}:{create}:in `hash_password'"]),
                $"expected {App}:{check}, or :{hash} and :{create}, in\n" + string.Join('\n', bt));
        }

        // The worker's own log got every line too, and two kinds of backtrace came (create and ==: two hits a request).
        var log = unicorn.Log;
        Assert.All(ours, bt => Assert.Contains(string.Join('\n', bt) + "\n", log, StringComparison.Ordinal));
        var kinds = ours.Select(bt => string.Join('\n', bt)).ToHashSet(StringComparer.Ordinal);
        Assert.Equal(2, kinds.Count);

        // Left as it was: untraced, crypt_ra's bytes (both) its files', and it serves on.
        Assert.Equal(0, ProcStatus.Get(w).TracerPid);
        BreakTests.AssertLeftAsItWas(w, "crypt_ra");

        // gdb at the same place: `break crypt_ra`, `continue`, `call (void)rb_backtrace()`, twice; its lines go to the
        // worker's stderr. Two consecutive hits are one of each kind.
        var before = log.Length;
        using (var requests = new Requests(unicorn.Port, w))
        {
            output.WriteLine(Gdb.Run(w, "break crypt_ra", "continue", "call (void)rb_backtrace()", "continue", "call (void)rb_backtrace()"));
            requests.StopAfter(2);
        }

        var gdbs = Backtraces(ExternalProcess.SplitLines(unicorn.Log[before..])).Select(bt => string.Join('\n', bt)).ToList();
        Assert.Equal(2, gdbs.Count);
        Assert.Equal(kinds.Order(StringComparer.Ordinal), gdbs.Distinct().Order(StringComparer.Ordinal));
        Assert.Equal(0, ProcStatus.Get(w).TracerPid);
    }
}
