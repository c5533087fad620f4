using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using Nozoki.Tests.Helpers;

namespace Nozoki.Tests;

/// <summary>
/// `nozoki inspect` against real processes and the tools people trust: lsof (every descriptor and its type),
/// ss (socket addresses, states, the peer of a unix pair), ps -L (threads, names, wchan), lsns and /proc/PID/cgroup
/// (a process in its own namespaces and cgroup). The process is never stopped: it answers afterwards.
/// </summary>
[Collection(PtraceCollection.Name)]
public sealed partial class InspectTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    internal static (int Code, string Stdout, string Stderr) Run(params string[] args)
    {
        var r = NozokiCli.Run(args);
        NozokiCli.AssertNoStackTrace(r.Stdout, r.Stderr);
        return r;
    }

    /// <summary>`nozoki inspect --json PID [args]`: exit 0, one object.</summary>
    internal static JsonElement Json(int pid, params string[] args)
    {
        var (code, stdout, stderr) = Run(["inspect", "--json", .. args, pid.ToString(CultureInfo.InvariantCulture)]);
        Assert.True(code == 0, $"exit {code}: {stderr}");
        var lines = ExternalProcess.SplitLines(stdout);
        Assert.Single(lines);
        return NozokiCli.ParseJson(lines[0]);
    }

    internal static JsonElement Fd(JsonElement snapshot, int fd) =>
        snapshot.GetProperty("descriptors").EnumerateArray().Single(d => d.GetProperty("fd").GetInt32() == fd);

    private static string Str(JsonElement e, string name) => e.GetProperty(name).GetString() ?? "";

    /// <summary>Runs a trusted tool to completion; fails the test when it fails.</summary>
    internal static string Tool(string file, params string[] args)
    {
        using var p = ExternalProcess.Start(file, file, args);
        var code = p.WaitForExit(Timeout);
        Assert.True(code == 0, $"{file} {string.Join(' ', args)} failed ({code}): {p.StderrText()}");
        return p.StdoutText();
    }

    [Fact]
    public void Every_descriptor_lsof_lists_is_shown_with_its_type_and_inode()
    {
        using var k = KindsFixture.Start("all");
        var snapshot = Json(k.Pid);
        var lsof = Lsof(k.Pid);
        var ours = snapshot.GetProperty("descriptors").EnumerateArray().ToDictionary(d => d.GetProperty("fd").GetInt32());
        Assert.Equal(lsof.Keys.Order(), ours.Keys.Order());
        foreach (var (fd, (type, inode, name)) in lsof)
        {
            var d = ours[fd];
            var kind = Str(d, "kind");
            var expected = type switch
            {
                "a_inode" => kind is "event_fd" or "event_poll" or "timer_fd" or "signal_fd" or "inotify" or "pid_fd" or "io_uring" or "fanotify" or "anon_inode",
                "REG" => Str(d, "type") is "REG" or "memfd",
                _ => Str(d, "type") == type,
            };
            Assert.True(expected, $"fd {fd}: lsof says {type} ({name}), nozoki {Str(d, "type")} ({kind}): {d}");
            if (inode is { } i && type != "a_inode") Assert.True(i == d.GetProperty("inode").GetUInt64(), $"fd {fd}: lsof inode {i}, nozoki {d.GetProperty("inode")}");
            if (type is "IPv4" or "IPv6")
            {
                var s = d.GetProperty("socket");
                var text = s.GetProperty("remote").ValueKind == JsonValueKind.Null ? Str(s, "local") : $"{Str(s, "local")}->{Str(s, "remote")}";
                Assert.Equal(name, text);
            }
        }

        // What the fixture made, kind by kind.
        var file = Fd(snapshot, k.Fds["file"]);
        Assert.Equal(("file", Path.Combine(k.Dir, "plain.txt"), 12, 5), (Str(file, "kind"), Str(file, "path"), file.GetProperty("size").GetInt32(), file.GetProperty("pos").GetInt32()));
        Assert.Equal("rw", Str(file, "access"));
        var deleted = Fd(snapshot, k.Fds["deleted"]);
        Assert.True(deleted.GetProperty("deleted").GetBoolean());
        Assert.Equal((Path.Combine(k.Dir, "gone.txt"), 3), (Str(deleted, "path"), deleted.GetProperty("size").GetInt32()));
        Assert.Equal(("fifo", Path.Combine(k.Dir, "fifo")), (Str(Fd(snapshot, k.Fds["fifo"]), "kind"), Str(Fd(snapshot, k.Fds["fifo"]), "path")));
        var memfd = Fd(snapshot, k.Fds["memfd"]);
        Assert.Equal(("memfd", "/memfd:nozoki-memfd", 4096), (Str(memfd, "kind"), Str(memfd, "path"), memfd.GetProperty("size").GetInt32()));
        Assert.Equal(7, Fd(snapshot, k.Fds["eventfd"]).GetProperty("eventfd_count").GetInt32());

        var epoll = Fd(snapshot, k.Fds["epoll"]).GetProperty("epoll").EnumerateArray().ToDictionary(w => w.GetProperty("fd").GetInt32());
        Assert.Equal(new[] { k.Fds["pipe_read"], k.Fds["udp4"], k.Fds["timerfd"] }.Order(), epoll.Keys.Order());
        Assert.Equal("EPOLLIN|EPOLLERR|EPOLLHUP|EPOLLRDHUP", Str(epoll[k.Fds["udp4"]], "event_names"));
        Assert.Equal("0x33", Str(epoll[k.Fds["timerfd"]], "data"));
        Assert.Equal($"UDP:[127.0.0.1:{k.Ports["udp4"]}]", Str(epoll[k.Fds["udp4"]], "target"));

        var timer = Fd(snapshot, k.Fds["timerfd"]).GetProperty("timer");
        Assert.Equal("CLOCK_MONOTONIC", Str(timer, "clock"));
        Assert.Equal(100, timer.GetProperty("interval").GetDouble());
        Assert.InRange(timer.GetProperty("value").GetDouble(), 1, 100);
        Assert.Equal(["SIGUSR1", "SIGUSR2"], Fd(snapshot, k.Fds["signalfd"]).GetProperty("signals").EnumerateArray().Select(s => s.GetString()));
        var watch = Assert.Single(Fd(snapshot, k.Fds["inotify"]).GetProperty("inotify").EnumerateArray());
        Assert.Equal(k.Dir, Str(watch, "path"));
        Assert.Equal("IN_CREATE|IN_DELETE", Str(watch, "mask_names"));
        Assert.Equal(k.Child, Fd(snapshot, k.Fds["pidfd"]).GetProperty("pidfd_pid").GetInt32());
        var netlink = Fd(snapshot, k.Fds["netlink"]).GetProperty("socket");
        Assert.Equal(("NETLINK", "ROUTE", (uint)k.Pid), (Str(netlink, "protocol"), Str(netlink, "netlink_protocol"), netlink.GetProperty("port_id").GetUInt32()));
        if (k.Fds["io_uring"] >= 0) Assert.Equal("io_uring", Str(Fd(snapshot, k.Fds["io_uring"]), "kind"));
    }

    /// <summary>lsof -F: numeric fds only, with TYPE, inode (when lsof gives one) and NAME.</summary>
    private static Dictionary<int, (string Type, ulong? Inode, string Name)> Lsof(int pid) => Lsof(pid, out _);

    /// <summary>The same, and the descriptors lsof shows as *NNN (from 10000 on) apart.</summary>
    private static Dictionary<int, (string Type, ulong? Inode, string Name)> Lsof(int pid, out List<(string Type, ulong? Inode)> starred)
    {
        var result = new Dictionary<int, (string, ulong?, string)>();
        var big = new List<(string, ulong?)>();
        starred = big;
        var isStarred = false;
        int? fd = null;
        string type = "", name = "";
        ulong? inode = null;
        void Flush()
        {
            if (fd is { } f) result[f] = (type, inode, name);
            else if (isStarred) big.Add((type, inode));
            isStarred = false;
            fd = null;
            type = name = "";
            inode = null;
        }

        foreach (var line in ExternalProcess.SplitLines(Tool("lsof", "-n", "-P", "-w", "-p", pid.ToString(CultureInfo.InvariantCulture), "-F", "ftin")))
        {
            if (line.Length == 0) continue;
            var v = line[1..];
            switch (line[0])
            {
                case 'f':
                    Flush();
                    fd = int.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : null;
                    isStarred = v.StartsWith('*');
                    break;
                case 't': type = v; break;
                case 'i': inode = ulong.Parse(v, CultureInfo.InvariantCulture); break;
                case 'n': name = v; break;
            }
        }

        Flush();
        return result;
    }

    [GeneratedRegex(@"pid=(\d+),fd=(\d+)")]
    private static partial Regex SsUser();

    [Fact]
    public void Sockets_match_ss_addresses_states_and_the_peer_of_the_unix_pair()
    {
        using var k = KindsFixture.Start("all");
        var snapshot = Json(k.Pid);
        var checkedFds = new HashSet<int>();
        foreach (var line in ExternalProcess.SplitLines(Tool("ss", "-tuxanpH")))
        {
            var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (f.Length < 7) continue;
            foreach (Match m in SsUser().Matches(line))
            {
                if (int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) != k.Pid) continue;
                var fd = int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture);
                var s = Fd(snapshot, fd).GetProperty("socket");
                Assert.True(Str(s, "state") == f[1], $"fd {fd}: ss says {f[1]}, nozoki {s}");
                Assert.Equal(f[2], s.GetProperty("recv_q").GetUInt32().ToString(CultureInfo.InvariantCulture));
                Assert.Equal(f[3], s.GetProperty("send_q").GetUInt32().ToString(CultureInfo.InvariantCulture));
                if (f[0].StartsWith("u_", StringComparison.Ordinal))
                {
                    // u_str ESTAB 0 0 LOCAL INODE PEER PEER_INODE users:(...)
                    Assert.Equal(f[0] switch { "u_str" => "STREAM", "u_dgr" => "DGRAM", _ => "SEQPACKET" }, Str(s, "type"));
                    Assert.Equal(f[4] == "*" ? null : f[4], s.GetProperty("local").GetString());
                    Assert.Equal(ulong.Parse(f[5], CultureInfo.InvariantCulture), Fd(snapshot, fd).GetProperty("inode").GetUInt64());
                    var peerInode = ulong.Parse(f[7], CultureInfo.InvariantCulture);
                    Assert.Equal(peerInode, s.TryGetProperty("peer_inode", out var p) ? p.GetUInt64() : 0);
                }
                else
                {
                    // tcp LISTEN 0 8 127.0.0.1:58007 0.0.0.0:* users:(...)
                    Assert.Equal(f[4], Str(s, "local"));
                    var remote = s.GetProperty("remote").GetString();
                    Assert.Equal(f[5].EndsWith(":*", StringComparison.Ordinal) ? null : f[5], remote);
                }

                checkedFds.Add(fd);
            }
        }

        string[] kinds = ["unix_a", "unix_b", "unix_listen", "unix_abstract", "tcp4_listen", "tcp4_client", "tcp4_server", "tcp6_listen", "tcp6_client", "tcp6_server", "udp4"];
        foreach (var kind in kinds) Assert.True(checkedFds.Contains(k.Fds[kind]), $"ss did not list {kind} (fd {k.Fds[kind]}) of PID {k.Pid}");

        // The unix pair: each end's peer is the other, held by this very process.
        var a = Fd(snapshot, k.Fds["unix_a"]).GetProperty("socket");
        var peer = Assert.Single(a.GetProperty("peers").EnumerateArray());
        Assert.Equal((k.Pid, k.Fds["unix_b"]), (peer.GetProperty("pid").GetInt32(), peer.GetProperty("fd").GetInt32()));
        Assert.Equal("sock_diag", Str(a, "source"));
        Assert.Equal($"@nozoki-inspect-{k.Pid}", Str(Fd(snapshot, k.Fds["unix_abstract"]).GetProperty("socket"), "local"));
        Assert.Equal(Path.Combine(k.Dir, "listen.sock"), Str(Fd(snapshot, k.Fds["unix_listen"]).GetProperty("socket"), "local"));
    }

    [Fact]
    public void Without_netlink_sockets_are_read_from_proc_net_with_the_same_addresses_and_states()
    {
        using var k = KindsFixture.Start("all");
        var diag = Nozoki.Inspection.ProcessInspector.Take(k.Pid, new() { Sections = Nozoki.Inspection.InspectSections.Descriptors });
        var text = Nozoki.Inspection.ProcessInspector.Take(k.Pid, new() { Sections = Nozoki.Inspection.InspectSections.Descriptors, UseSockDiag = false });
        var sockets = diag.Descriptors.Where(d => d.Socket is not null).ToList();
        Assert.Equal(12, sockets.Count); // 4 unix, 3 TCP on 127.0.0.1, 3 on ::1, UDP, netlink
        foreach (var d in sockets)
        {
            var a = d.Socket!;
            var b = text.Descriptors.Single(x => x.Fd == d.Fd).Socket!;
            Assert.Equal(("sock_diag", "/proc/net"), (a.Source, b.Source));
            // /proc/net/netlink has no socket type; /proc/net/unix no peer.
            Assert.Equal((a.Protocol, a.Protocol == "NETLINK" ? null : a.Type, a.State, a.Local, a.Remote, a.NetlinkProtocol, a.PortId), (b.Protocol, b.Type, b.State, b.Local, b.Remote, b.NetlinkProtocol, b.PortId));
            if (a.Protocol != "UNIX") Assert.Equal((a.ReceiveQueue, a.State == "LISTEN" ? null : a.SendQueue), (b.ReceiveQueue, b.SendQueue));
        }

        Assert.Equal(k.Fds["unix_b"], Assert.Single(sockets.Single(d => d.Fd == k.Fds["unix_a"]).Socket!.Peers).Fd);
    }

    [Fact]
    public void The_other_end_of_a_pipe_is_the_child_that_holds_it()
    {
        using var k = KindsFixture.Start("all");
        var snapshot = Json(k.Pid);
        var pipe = Fd(snapshot, k.Fds["pipe_read"]);
        Assert.Equal(("pipe", "r"), (Str(pipe, "kind"), Str(pipe, "access")));
        var holder = Assert.Single(pipe.GetProperty("holders").EnumerateArray());
        Assert.Equal((k.Child, "holder", k.ChildFd, "w"), (holder.GetProperty("pid").GetInt32(), Str(holder, "name"), holder.GetProperty("fd").GetInt32(), Str(holder, "access")));

        // Both ends in this process: each names the other.
        var readEnd = Fd(snapshot, k.Fds["reader_pipe"]);
        var other = Assert.Single(readEnd.GetProperty("holders").EnumerateArray(), h => h.GetProperty("pid").GetInt32() == k.Pid);
        Assert.Equal("w", Str(other, "access"));

        // --no-peers: no look through other processes; this process's own other end is still named.
        var alone = Json(k.Pid, "--fds", "--no-peers");
        Assert.Empty(Fd(alone, k.Fds["pipe_read"]).GetProperty("holders").EnumerateArray());
        Assert.Single(Fd(alone, k.Fds["reader_pipe"]).GetProperty("holders").EnumerateArray());

        // The text view says it on the descriptor's own line, which starts with its number.
        var (code, stdout, _) = Run("inspect", "--fds", $"{k.Pid}");
        Assert.Equal(0, code);
        var line = ExternalProcess.SplitLines(stdout).Single(l => l.StartsWith($"{k.Fds["pipe_read"]} ", StringComparison.Ordinal));
        Assert.Contains($"read end; also held by {k.Child} (holder) fd {k.ChildFd} w", line, StringComparison.Ordinal);
    }

    [Fact]
    public void Threads_match_ps_and_each_shows_the_call_it_is_blocked_in()
    {
        using var k = KindsFixture.Start("all");
        var snapshot = Json(k.Pid);
        var threads = snapshot.GetProperty("threads").EnumerateArray().ToDictionary(t => t.GetProperty("tid").GetInt32());
        var ps = ExternalProcess.SplitLines(Tool("ps", "-L", "-o", "tid=,comm=,wchan:40=", "-p", k.Pid.ToString(CultureInfo.InvariantCulture)))
            .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)).ToList();
        Assert.Equal(ps.Select(f => int.Parse(f[0], CultureInfo.InvariantCulture)).Order(), threads.Keys.Order());
        foreach (var f in ps)
        {
            var t = threads[int.Parse(f[0], CultureInfo.InvariantCulture)];
            Assert.Equal(f[1], Str(t, "name"));
            Assert.Equal(f[2] == "-" ? null : f[2], t.GetProperty("wchan").GetString());
        }

        foreach (var (role, tid) in k.Tids)
        {
            var t = threads[tid];
            Assert.Equal("syscall", Str(t, "activity"));
            Assert.Equal(KindsFixture.BlockedIn[role], t.GetProperty("nr").GetInt32());
        }

        var pipe = Str(Fd(snapshot, k.Fds["reader_pipe"]), "target");
        Assert.StartsWith($"read({k.Fds["reader_pipe"]}<{pipe}>, 0x", Str(threads[k.Tids["reader"]], "call"), StringComparison.Ordinal);
        Assert.EndsWith(", 1)", Str(threads[k.Tids["reader"]], "call"), StringComparison.Ordinal);
        // The request is read from the thread's memory while it sleeps (process_vm_readv, no stop).
        Assert.Equal("clock_nanosleep(CLOCK_REALTIME, 0, {tv_sec=100000, tv_nsec=0}, NULL)", Str(threads[k.Tids["sleeper"]], "call"));
        Assert.Matches($@"^epoll_wait\({k.Fds["epoll"]}<anon_inode:\[eventpoll\]>, 0x[0-9a-f]+, 4, -1\)$", Str(threads[k.Tids["poller"]], "call"));
        Assert.Matches(@"^futex\(0x[0-9a-f]+, FUTEX_WAIT_PRIVATE, 0, NULL\)$", Str(threads[k.Tids["waiter"]], "call"));

        // Text: one line per thread starting with its id, its name and the call.
        var (code, stdout, _) = Run("inspect", "--threads", $"{k.Pid}");
        Assert.Equal(0, code);
        var line = ExternalProcess.SplitLines(stdout).Single(l => l.StartsWith($"{k.Tids["sleeper"]} ", StringComparison.Ordinal));
        Assert.Matches(@"^\d+ +sleeper +S +\d+ +\d+\.\d\ds +\d+\.\d\ds +clock_nanosleep\(CLOCK_REALTIME, 0, \{tv_sec=100000, tv_nsec=0\}, NULL\)$", line);
    }

    [Fact]
    public void The_process_is_never_stopped_and_answers_afterwards()
    {
        using var k = KindsFixture.Start("all");
        var before = k.Tids.ToDictionary(t => t.Key, t => KindsFixture.SyscallOf(k.Pid, t.Value));
        Assert.Equal(0, Run("inspect", $"{k.Pid}").Code);
        Assert.Equal(0, Run("inspect", "--json", "--env", $"{k.Pid}").Code);
        Assert.Equal(0, ProcStatus.Get(k.Pid).TracerPid);
        Assert.Equal('S', ProcStatus.Get(k.Pid).State);
        // Every thread still waits in the same call (an attach would have interrupted them), and the process answers.
        Assert.Equal(before, k.Tids.ToDictionary(t => t.Key, t => KindsFixture.SyscallOf(k.Pid, t.Value)));
        var extra = k.OpenOneMore();
        Assert.Equal("/dev/null", Str(Fd(Json(k.Pid, "--fds"), extra), "path"));

        // nozoki's own failure (its output cannot be written) is its own business.
        using (var full = ExternalProcess.Start("nozoki > /dev/full", "sh", ["-c", "exec \"$0\" inspect \"$1\" > /dev/full", NozokiCli.ExePath, $"{k.Pid}"]))
        {
            Assert.Equal(1, full.WaitForExit(Timeout));
            Assert.Equal("nozoki: error: cannot write to stdout (/dev/full): No space left on device\n", full.StderrText());
        }

        Assert.Equal(before, k.Tids.ToDictionary(t => t.Key, t => KindsFixture.SyscallOf(k.Pid, t.Value)));
        k.OpenOneMore();

        // A stopped process stays stopped.
        Posix.Kill(k.Pid, Nozoki.Signals.SIGSTOP);
        ProcStatus.WaitForState(k.Pid, 'T', Timeout);
        var stopped = Json(k.Pid);
        Assert.Equal("T", Str(stopped.GetProperty("identity"), "state"));
        Assert.Equal('T', ProcStatus.Get(k.Pid).State);
        Posix.Kill(k.Pid, Nozoki.Signals.SIGCONT);
        k.OpenOneMore();
    }

    [Fact]
    public void Sections_show_only_what_is_asked_and_the_environment_only_with_env()
    {
        using var k = KindsFixture.Start("simple", prefix: ["env", "NOZOKI_INSPECT_SECRET=hush"]);
        var (code, stdout, _) = Run("inspect", "--fds", $"{k.Pid}");
        Assert.Equal(0, code);
        var lines = ExternalProcess.SplitLines(stdout);
        Assert.StartsWith($"PID {k.Pid} (inspect_kinds) S sleeping", lines[0], StringComparison.Ordinal);
        Assert.Contains(lines, l => l.StartsWith("DESCRIPTORS ", StringComparison.Ordinal));
        Assert.DoesNotContain(lines, l => l.StartsWith("THREADS", StringComparison.Ordinal) || l.StartsWith("NAMESPACES", StringComparison.Ordinal) || l.StartsWith("  command", StringComparison.Ordinal));

        (code, stdout, _) = Run("inspect", "--threads", "--ns", $"{k.Pid}");
        lines = ExternalProcess.SplitLines(stdout);
        Assert.Contains(lines, l => l.StartsWith("THREADS 1", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("NAMESPACES", StringComparison.Ordinal));
        Assert.DoesNotContain(lines, l => l.StartsWith("DESCRIPTORS", StringComparison.Ordinal));

        var all = Run("inspect", $"{k.Pid}").Stdout;
        Assert.DoesNotContain("hush", all, StringComparison.Ordinal);
        Assert.DoesNotContain("hush", Run("inspect", "--json", $"{k.Pid}").Stdout, StringComparison.Ordinal);
        Assert.Contains("NOZOKI_INSPECT_SECRET=hush", ExternalProcess.SplitLines(Run("inspect", "--env", $"{k.Pid}").Stdout));
        var env = Json(k.Pid, "--env").GetProperty("environment").EnumerateArray().Select(e => e.GetString()).ToList();
        Assert.Contains("NOZOKI_INSPECT_SECRET=hush", env);
        var fdsOnly = Json(k.Pid, "--fds");
        Assert.False(fdsOnly.TryGetProperty("threads", out _));
        Assert.True(fdsOnly.TryGetProperty("descriptors", out _));
    }

    [Fact]
    public void Several_processes_in_one_call_in_the_order_given_and_a_missing_one_is_said()
    {
        using var a = KindsFixture.Start("simple");
        using var b = KindsFixture.Start("simple");
        var (code, stdout, stderr) = Run("inspect", "--json", "-p", $"{b.Pid},{a.Pid}");
        Assert.True(code == 0, stderr);
        Assert.Equal([b.Pid, a.Pid], ExternalProcess.SplitLines(stdout).Select(l => NozokiCli.ParseJson(l).GetProperty("pid").GetInt32()));

        (code, stdout, stderr) = Run("inspect", "--fds", $"{a.Pid}", "2147483647", $"{b.Pid}");
        Assert.Equal(3, code);
        Assert.Equal("nozoki: error: no process with PID 2147483647\n", stderr);
        var heads = ExternalProcess.SplitLines(stdout).Where(l => l.StartsWith("PID ", StringComparison.Ordinal)).ToList();
        Assert.Equal(2, heads.Count);
        Assert.StartsWith($"PID {a.Pid} ", heads[0], StringComparison.Ordinal);
        Assert.StartsWith($"PID {b.Pid} ", heads[1], StringComparison.Ordinal);
    }

    [Fact]
    public void A_thread_id_shows_its_process()
    {
        using var k = KindsFixture.Start("all");
        var (code, stdout, stderr) = Run("inspect", "--json", $"{k.Tids["sleeper"]}");
        Assert.Equal(0, code);
        Assert.Equal($"nozoki: {k.Tids["sleeper"]} is a thread of PID {k.Pid} (inspect_kinds): showing PID {k.Pid}\n", stderr);
        var o = NozokiCli.ParseJson(ExternalProcess.SplitLines(stdout).Single());
        Assert.Equal((k.Pid, k.Tids["sleeper"]), (o.GetProperty("pid").GetInt32(), o.GetProperty("requested_tid").GetInt32()));
    }

    [Fact]
    public void A_zombie_is_said_and_what_is_left_of_it_shown()
    {
        using var k = KindsFixture.Start("zombie");
        ProcStatus.WaitForState(k.Zombie, 'Z', Timeout);
        var (code, stdout, stderr) = Run("inspect", $"{k.Zombie}");
        Assert.Equal(0, code);
        Assert.Equal($"nozoki: PID {k.Zombie} is a zombie: it has exited and its parent PID {k.Pid} (inspect_kinds) has not collected its exit status; what the kernel keeps of it is shown\n", stderr);
        Assert.StartsWith($"PID {k.Zombie} (inspect_kinds) Z zombie", stdout, StringComparison.Ordinal);
        var o = Json(k.Zombie);
        Assert.True(o.GetProperty("identity").GetProperty("zombie").GetBoolean());
        Assert.Empty(o.GetProperty("descriptors").EnumerateArray());
        Assert.Equal(k.Pid, o.GetProperty("identity").GetProperty("ppid").GetInt32());
    }

    [Fact]
    public void A_kernel_thread_is_said_and_shown_without_descriptors()
    {
        var kthread = Directory.EnumerateDirectories("/proc").Select(d => int.TryParse(Path.GetFileName(d), out var p) ? p : 0)
            .Where(p => p > 0).Order().FirstOrDefault(p => (ulong.Parse(File.ReadAllText($"/proc/{p}/stat").Split(") ")[1].Split(' ')[6], CultureInfo.InvariantCulture) & 0x00200000) != 0);
        Assert.True(kthread > 0, "no kernel thread found in /proc");
        var name = File.ReadAllText($"/proc/{kthread}/comm").TrimEnd('\n');
        var (code, stdout, stderr) = Run("inspect", $"{kthread}");
        Assert.Equal(0, code);
        Assert.Equal($"nozoki: PID {kthread} ({name}) is a kernel thread: it has no command line, descriptors, memory mappings or environment\n", stderr);
        Assert.Contains("DESCRIPTORS 0", stdout, StringComparison.Ordinal);
        var o = Json(kthread);
        Assert.True(o.GetProperty("identity").GetProperty("kernel_thread").GetBoolean());
        Assert.All(o.GetProperty("threads").EnumerateArray(), t => Assert.NotEqual("syscall", Str(t, "activity")));
    }

    [Fact]
    public void Another_user_s_process_shows_what_is_readable_and_marks_the_rest()
    {
        using var k = KindsFixture.Start("all");
        using var p = NozokiCli.StartAsNobody(["inspect", $"{k.Pid}"]);
        var code = p.WaitForExit(Timeout);
        NozokiCli.AssertNoStackTrace(p.StdoutText(), p.StderrText());
        Assert.Equal(4, code);
        var err = ExternalProcess.SplitLines(p.StderrText());
        var line = Assert.Single(err);
        Assert.StartsWith($"nozoki: error: PID {k.Pid} (user root): permission denied reading ", line, StringComparison.Ordinal);
        Assert.Contains("descriptors", line, StringComparison.Ordinal);
        var stdout = ExternalProcess.SplitLines(p.StdoutText());
        Assert.StartsWith($"PID {k.Pid} (inspect_kinds) S sleeping, 5 threads, user root (0)", stdout[0], StringComparison.Ordinal);
        Assert.Contains($"  command   {Fixtures.Get("inspect_kinds")} all {k.Dir}", stdout); // cmdline is world-readable
        Assert.Contains("  descriptors: permission denied", stdout);
        Assert.Contains(stdout, l => l.StartsWith($"{k.Tids["sleeper"]} ", StringComparison.Ordinal) && l.EndsWith("? (permission denied)", StringComparison.Ordinal));

        using var j = NozokiCli.StartAsNobody(["inspect", "--json", $"{k.Pid}"]);
        Assert.Equal(4, j.WaitForExit(Timeout));
        var o = NozokiCli.ParseJson(ExternalProcess.SplitLines(j.StdoutText()).Single());
        Assert.False(o.GetProperty("complete").GetBoolean());
        Assert.Contains(o.GetProperty("problems").EnumerateArray(), pr => Str(pr, "what") == "descriptors" && Str(pr, "kind") == "permission_denied");
        k.OpenOneMore();
    }

    [Fact]
    public void A_user_sees_all_of_their_own_process_and_is_told_which_other_processes_were_not_searched()
    {
        using var k = KindsFixture.Start("sockets", prefix: ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]);
        using var p = NozokiCli.StartAsNobody(["inspect", "--json", $"{k.Pid}"]);
        Assert.Equal(0, p.WaitForExit(Timeout));
        NozokiCli.AssertNoStackTrace(p.StdoutText(), p.StderrText());
        Assert.Equal("", p.StderrText());
        var o = NozokiCli.ParseJson(ExternalProcess.SplitLines(p.StdoutText()).Single());
        Assert.Equal(65534u, o.GetProperty("identity").GetProperty("uid").GetProperty("real").GetUInt32());
        var a = Fd(o, k.Fds["unix_a"]).GetProperty("socket");
        Assert.Equal(("sock_diag", k.Fds["unix_b"]), (Str(a, "source"), Assert.Single(a.GetProperty("peers").EnumerateArray()).GetProperty("fd").GetInt32()));
        Assert.Equal($"127.0.0.1:{k.Ports["udp4"]}", Str(Fd(o, k.Fds["udp4"]).GetProperty("socket"), "local"));
        Assert.All(o.GetProperty("threads").EnumerateArray(), t => Assert.Equal("syscall", Str(t, "activity")));
        // Its stdin is a pipe whose other end the test (root) holds: root's descriptors are not nobody's to read.
        var note = Assert.Single(o.GetProperty("problems").EnumerateArray());
        Assert.Equal(("other ends", "other"), (Str(note, "what"), Str(note, "kind")));
    }

    [Fact]
    public void Namespaces_and_cgroup_of_a_contained_process_match_lsns_and_proc()
    {
        using var cgroup = TestCgroup.Create();
        // sh puts itself in the cgroup, then becomes unshare, whose child (PID 1 of the new pid namespace) runs the fixture.
        using var k = KindsFixture.Start("sockets", prefix: ["sh", "-c", $"echo $$ > {cgroup.Procs} && exec \"$@\"", "sh",
            "unshare", "--user", "--map-root-user", "--pid", "--net", "--uts", "--fork", "--kill-child"]);
        var children = File.ReadAllText($"/proc/{k.Pid}/task/{k.Pid}/children").Split(' ', StringSplitOptions.RemoveEmptyEntries);
        var pid = int.Parse(Assert.Single(children), CultureInfo.InvariantCulture);
        var o = Json(pid);

        var ours = o.GetProperty("namespaces").EnumerateArray().ToDictionary(n => Str(n, "type"));
        var lsns = ExternalProcess.SplitLines(Tool("lsns", "-p", pid.ToString(CultureInfo.InvariantCulture), "-n", "-r", "-o", "NS,TYPE"))
            .Select(l => l.Split(' ')).ToDictionary(f => f[1], f => ulong.Parse(f[0], CultureInfo.InvariantCulture));
        Assert.NotEmpty(lsns);
        foreach (var (type, inode) in lsns) Assert.Equal(inode, ours[type].GetProperty("inode").GetUInt64());
        foreach (var type in new[] { "user", "pid", "net", "uts" }) Assert.False(ours[type].GetProperty("same_as_nozoki").GetBoolean(), type);
        foreach (var type in new[] { "mnt", "ipc" }) Assert.True(ours[type].GetProperty("same_as_nozoki").GetBoolean(), type);
        Assert.Equal([pid, 1], o.GetProperty("identity").GetProperty("nspid").EnumerateArray().Select(e => e.GetInt32()));

        // The cgroup: the path /proc/PID/cgroup gives, its directory, and the limit the test set.
        var line = File.ReadAllLines($"/proc/{pid}/cgroup").Single(l => l.Split(':')[1] == cgroup.Controllers);
        var cg = o.GetProperty("cgroups").EnumerateArray().Single(c => Str(c, "controllers") == cgroup.Controllers);
        Assert.Equal(line.Split(':', 3)[2], Str(cg, "path"));
        Assert.Equal(cgroup.Directory, Str(cg, "directory"));
        Assert.Contains(cg.GetProperty("values").EnumerateArray(), v => Str(v, "file") == cgroup.LimitFile && Str(v, "value") == cgroup.Limit);

        // Its sockets live in its own network namespace: ss run there (nsenter) and nozoki (a sock_diag socket made
        // there) agree; nozoki's own namespace has no such UDP socket.
        var inside = ExternalProcess.SplitLines(Tool("nsenter", $"--net=/proc/{pid}/ns/net", "ss", "-uxanpH"));
        var udp = Fd(o, k.Fds["udp4"]).GetProperty("socket");
        Assert.Equal(($"127.0.0.1:{k.Ports["udp4"]}", "UNCONN", "sock_diag"), (Str(udp, "local"), Str(udp, "state"), Str(udp, "source")));
        Assert.Contains(inside, l => l.Contains($" 127.0.0.1:{k.Ports["udp4"]} ", StringComparison.Ordinal) && l.Contains($"pid={pid},fd={k.Fds["udp4"]})", StringComparison.Ordinal));
        var unix = Fd(o, k.Fds["unix_a"]).GetProperty("socket");
        Assert.Equal(k.Fds["unix_b"], Assert.Single(unix.GetProperty("peers").EnumerateArray()).GetProperty("fd").GetInt32());
        Assert.Contains(inside, l => l.StartsWith("u_str", StringComparison.Ordinal) && l.Contains($" {unix.GetProperty("peer_inode")} ", StringComparison.Ordinal)
            && l.Contains($"pid={pid},fd={k.Fds["unix_a"]})", StringComparison.Ordinal));

        var text = ExternalProcess.SplitLines(Run("inspect", "--ns", "--cgroup", $"{pid}").Stdout);
        Assert.Contains(text, l => l.StartsWith("net ", StringComparison.Ordinal) && l.Contains($" {lsns["net"]} ", StringComparison.Ordinal) && l.EndsWith($"different ({ours["net"].GetProperty("nozoki_inode")})", StringComparison.Ordinal));
        Assert.Contains($"  pid {pid} 1: PID 1 inside its pid namespace", text);
        Assert.Contains($"  {cgroup.LimitFile} {cgroup.Limit} (64.0 MiB)", text);
    }

    [Fact]
    public void Ten_thousand_descriptors_are_all_listed_as_lsof_lists_them()
    {
        using var k = KindsFixture.Start("many", ["10000"]);
        var snapshot = Json(k.Pid, "--fds");
        var lsof = Lsof(k.Pid, out var starred);
        var ours = snapshot.GetProperty("descriptors").EnumerateArray().ToDictionary(d => d.GetProperty("fd").GetInt32(),
            d => (Type: Str(d, "type"), Inode: d.GetProperty("inode").GetUInt64()));
        Assert.True(ours.Count >= 10000, $"{ours.Count} descriptors");
        Assert.Equal(lsof.Count + starred.Count, ours.Count);
        static string Ours(string lsofType) => lsofType == "a_inode" ? "eventfd" : lsofType;
        foreach (var (fd, (type, inode, _)) in lsof) Assert.True(Ours(type) == ours[fd].Type && inode == ours[fd].Inode, $"fd {fd}: lsof {type} {inode}, nozoki {ours[fd]}");
        // lsof shows descriptors from 10000 on as *NNN (its column is 4 wide): compare those by type and inode.
        var big = ours.Where(o => o.Key >= 10000).Select(o => $"{o.Value.Type} {o.Value.Inode}").Order().ToList();
        Assert.Equal(starred.Select(e => $"{Ours(e.Type)} {e.Inode}").Order().ToList(), big);
    }
}

/// <summary>
/// A cgroup made for a test under the hierarchy that has the memory controller (cgroup v2's memory.max when
/// /sys/fs/cgroup is cgroup2 with memory enabled, else v1's memory.limit_in_bytes), as a child of the test process's
/// own cgroup there, with a 64 MiB limit. Dispose moves nothing (its processes are gone by then) and removes it.
/// </summary>
internal sealed class TestCgroup : IDisposable
{
    private TestCgroup(string directory, string controllers, string limitFile)
    {
        Directory = directory;
        Controllers = controllers;
        LimitFile = limitFile;
    }

    public string Directory { get; }

    /// <summary>The controllers field of its /proc/PID/cgroup line ("" for v2, "memory" for v1).</summary>
    public string Controllers { get; }

    public string LimitFile { get; }

    public string Limit => "67108864";

    public string Procs => Path.Combine(Directory, "cgroup.procs");

    public static TestCgroup Create()
    {
        var lines = File.ReadAllLines("/proc/self/cgroup");
        var mounts = File.ReadAllLines("/proc/self/mountinfo").Select(l => l.Split(" - ")).Where(p => p.Length == 2)
            .Select(p => (Fields: p[0].Split(' '), Tail: p[1].Split(' '))).ToList();
        var v2 = mounts.FirstOrDefault(m => m.Tail[0] == "cgroup2");
        var name = "nozoki-inspect-" + Environment.ProcessId.ToString(CultureInfo.InvariantCulture) + "-" + Guid.NewGuid().ToString("N")[..6];
        if (v2.Fields is not null && File.Exists(Path.Combine(v2.Fields[4], "cgroup.controllers"))
            && File.ReadAllText(Path.Combine(v2.Fields[4], "cgroup.controllers")).Split(' ', '\n').Contains("memory"))
        {
            var own = lines.Single(l => l.StartsWith("0::", StringComparison.Ordinal))[3..];
            var parent = v2.Fields[4] + (own == "/" ? "" : own);
            var dir = Path.Combine(parent, name);
            System.IO.Directory.CreateDirectory(dir);
            File.WriteAllText(Path.Combine(dir, "memory.max"), "67108864");
            return new TestCgroup(dir, "", "memory.max");
        }

        var v1 = mounts.First(m => m.Tail[0] == "cgroup" && m.Tail[2].Split(',').Contains("memory"));
        var mine = lines.Single(l => l.Split(':')[1].Split(',').Contains("memory"));
        var path = mine.Split(':', 3)[2];
        var root = v1.Fields[3] == "/" ? "" : v1.Fields[3];
        var at = v1.Fields[4] + (path == "/" ? "" : path[root.Length..]);
        var d1 = Path.Combine(at, name);
        System.IO.Directory.CreateDirectory(d1);
        File.WriteAllText(Path.Combine(d1, "memory.limit_in_bytes"), "67108864");
        return new TestCgroup(d1, mine.Split(':')[1], "memory.limit_in_bytes");
    }

    public void Dispose()
    {
        // rmdir of a cgroup whose last process has just exited may see it busy for a moment.
        var sw = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                System.IO.Directory.Delete(Directory);
                return;
            }
            catch (IOException) when (sw.Elapsed < TimeSpan.FromSeconds(10))
            {
                Thread.Sleep(20);
            }
            catch (IOException)
            {
                return;
            }
        }
    }
}
