using System.Globalization;

namespace Nozoki.Tests.Helpers;

/// <summary>
/// tests/fixtures/inspect_kinds.c in one of its modes, with what it says it made: "fd KIND N", "port KIND N",
/// "child PID FD", "tid ROLE TID", "zombie PID". Start returns once it has said "ready" and (mode all) each of its
/// threads is in the system call it blocks in, as /proc/PID/task/TID/syscall shows. Dispose kills it (its child dies
/// with it: PR_SET_PDEATHSIG) and removes its directory.
/// </summary>
internal sealed class KindsFixture : IDisposable
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    /// <summary>The blocking call of each thread role: read (0), clock_nanosleep (230, glibc's nanosleep), epoll_wait (232), futex (202).</summary>
    public static readonly Dictionary<string, int> BlockedIn = new(StringComparer.Ordinal)
    {
        ["main"] = 0, ["reader"] = 0, ["sleeper"] = 230, ["poller"] = 232, ["waiter"] = 202,
    };

    private readonly TempDir _dir;
    private int _extras;

    private KindsFixture(TempDir dir, Tracee tracee)
    {
        _dir = dir;
        Tracee = tracee;
    }

    public Tracee Tracee { get; }

    public int Pid => Tracee.Pid;

    public string Dir => _dir.Path;

    public Dictionary<string, int> Fds { get; } = new(StringComparer.Ordinal);

    public Dictionary<string, int> Ports { get; } = new(StringComparer.Ordinal);

    /// <summary>Thread role (main, reader, sleeper, poller, waiter) to thread id.</summary>
    public Dictionary<string, int> Tids { get; } = new(StringComparer.Ordinal);

    public int Child { get; private set; }

    public int ChildFd { get; private set; }

    public int Zombie { get; private set; }

    /// <summary>Starts `inspect_kinds MODE ARGS` (for mode all, ARGS is its directory); <paramref name="prefix"/> runs it through another command (env, unshare).</summary>
    public static KindsFixture Start(string mode, string[]? args = null, string[]? prefix = null)
    {
        var dir = new TempDir();
        var fixture = Fixtures.Get("inspect_kinds");
        IReadOnlyList<string> argv = [.. prefix ?? [], fixture, mode, .. mode == "all" ? [dir.Path] : args ?? []];
        Tracee tracee;
        try
        {
            tracee = Tracee.Start(argv, stdinPipe: true, stdoutPath: dir.File("said.txt"), stderrPath: dir.File("err.txt"));
        }
        catch
        {
            dir.Dispose();
            throw;
        }

        var k = new KindsFixture(dir, tracee);
        try
        {
            Poll.Until(() => k.Lines().Any(l => l.StartsWith("ready", StringComparison.Ordinal)) && (mode != "all" || k.Lines().Count(l => l.StartsWith("tid ", StringComparison.Ordinal)) == 4),
                Timeout, () => $"inspect_kinds {mode} to say ready (said: {string.Join(" | ", k.Lines())}; stderr: {TempDir.ReadText(dir.File("err.txt"))})");
            foreach (var line in k.Lines())
            {
                var f = line.Split(' ');
                switch (f[0])
                {
                    case "fd": k.Fds[f[1]] = Int(f[2]); break;
                    case "port": k.Ports[f[1]] = Int(f[2]); break;
                    case "tid": k.Tids[f[1]] = Int(f[2]); break;
                    case "child":
                        k.Child = Int(f[1]);
                        k.ChildFd = Int(f[2]);
                        break;
                    case "zombie": k.Zombie = Int(f[1]); break;
                }
            }

            if (mode == "all")
            {
                k.Tids["main"] = tracee.Pid;
                foreach (var (role, tid) in k.Tids)
                {
                    Poll.Until(() => SyscallOf(tracee.Pid, tid) == BlockedIn[role], Timeout,
                        () => $"thread {role} ({tid}) to block in syscall {BlockedIn[role]} (now: {SyscallOf(tracee.Pid, tid)})");
                }
            }

            return k;
        }
        catch
        {
            k.Dispose();
            throw;
        }
    }

    /// <summary>The number of the system call the thread is in (first field of its syscall file), -1 when not in one.</summary>
    public static int SyscallOf(int pid, int tid)
    {
        try
        {
            var text = File.ReadAllText($"/proc/{pid}/task/{tid}/syscall").Trim();
            return int.TryParse(text.Split(' ')[0], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var nr) ? nr : -1;
        }
        catch (IOException)
        {
            return -2;
        }
    }

    public string[] Lines() => ExternalProcess.SplitLines(TempDir.ReadText(_dir.File("said.txt")));

    /// <summary>Has the fixture open one more descriptor (/dev/null) and returns its number: proof that it still runs and answers.</summary>
    public int OpenOneMore()
    {
        var before = ++_extras;
        Tracee.Release();
        string? line = null;
        Poll.Until(() => (line = Lines().Where(l => l.StartsWith("extra ", StringComparison.Ordinal)).Skip(before - 1).FirstOrDefault()) is not null,
            Timeout, () => $"inspect_kinds (PID {Pid}) to answer a byte with an 'extra' line (said: {string.Join(" | ", Lines().TakeLast(5))})");
        return Int(line!.Split(' ')[1]);
    }

    private static int Int(string s) => int.Parse(s, CultureInfo.InvariantCulture);

    public void Dispose()
    {
        try
        {
            Tracee.Dispose();
        }
        finally
        {
            _dir.Dispose();
        }
    }
}
