using Nozoki.Inspection;
using Nozoki.Syscalls;
using Nozoki.Tests.Helpers;

namespace Nozoki.Tests;

/// <summary>
/// The parsers of `nozoki inspect` fed with the kernel's own text (fdinfo lines, syscall files, cgroup files) for what
/// this machine cannot make: KVM descriptors (no /dev/kvm here), a cgroup v2 tree with controllers (this machine
/// mounts the memory controller on v1). The samples are copied from a kernel 6.x /proc; the real kinds are checked
/// against lsof, ss, lsns and ps in InspectTests.
/// </summary>
public sealed class InspectSampleTests
{
    [Fact]
    public void A_vcpu_descriptor_is_linked_to_the_thread_in_KVM_RUN_on_it()
    {
        // ls -l /proc/PID/fd of a QEMU: 15 -> anon_inode:kvm-vcpu:3, 12 -> anon_inode:kvm-vm; its vCPU thread's
        // /proc/PID/task/TID/syscall while it runs the guest: ioctl (16) on fd 15 (0xf), KVM_RUN (0xae80).
        Assert.Equal(DescriptorKind.KvmVcpu, DescriptorReader.Classify("anon_inode:kvm-vcpu:3"));
        Assert.Equal(DescriptorKind.KvmVm, DescriptorReader.Classify("anon_inode:kvm-vm"));
        Assert.Equal(3, FdInfo.VcpuId("anon_inode:kvm-vcpu:3"));
        Assert.Null(FdInfo.VcpuId("anon_inode:kvm-vm"));

        var vcpuThread = ThreadReader.Decode(4242, new ThreadSnapshot { Tid = 4250, Name = "CPU 3/KVM" },
            "16 0xf 0xae80 0x0 0x0 0x0 0x0 0x7f3a1b7fd5c8 0x7f3a2c8e4b1b", new SyscallDecoder(new DecodeOptions()));
        var other = ThreadReader.Decode(4242, new ThreadSnapshot { Tid = 4251, Name = "CPU 4/KVM" },
            "16 0x10 0xae80 0x0 0x0 0x0 0x0 0x7f3a1b7fd5c8 0x7f3a2c8e4b1b", new SyscallDecoder(new DecodeOptions()));
        Assert.Equal(ThreadActivity.Syscall, vcpuThread.Activity);
        Assert.Equal("ioctl", vcpuThread.SyscallName);
        Assert.Equal("ioctl(15, KVM_RUN, 0)", vcpuThread.Call);

        var descriptors = new List<DescriptorSnapshot>
        {
            new() { Fd = 12, Target = "anon_inode:kvm-vm", Kind = DescriptorKind.KvmVm, Description = "KVM virtual machine" },
            new() { Fd = 15, Target = "anon_inode:kvm-vcpu:3", Kind = DescriptorKind.KvmVcpu, VcpuId = 3, Description = "KVM vCPU 3" },
            new() { Fd = 17, Target = "anon_inode:kvm-vcpu:5", Kind = DescriptorKind.KvmVcpu, VcpuId = 5, Description = "KVM vCPU 5" },
        };
        ProcessInspector.LinkVcpus(descriptors, [vcpuThread, other]);
        Assert.Equal(4250, descriptors[1].VcpuRunningThread);
        Assert.Equal("KVM vCPU 3, running in thread 4250 (CPU 3/KVM, KVM_RUN)", descriptors[1].Description);
        Assert.Null(descriptors[2].VcpuRunningThread); // fd 16 is not a vCPU descriptor: nothing to link to
        Assert.Equal("kvm-vcpu", descriptors[1].TypeName);
    }

    [Fact]
    public void Syscall_files_say_running_not_in_a_call_or_the_call()
    {
        var t = new ThreadSnapshot { Tid = 1, Name = "x" };
        Assert.Equal(ThreadActivity.Running, ThreadReader.Decode(1, t, "running\n", null).Activity);
        Assert.Equal(ThreadActivity.NotInSyscall, ThreadReader.Decode(1, t, "-1 0x7ffc5a1b8c38 0x55d0c2a3b1e4\n", null).Activity);
        var sleep = ThreadReader.Decode(1, t, "230 0x0 0x0 0x7f7746d66ec0 0x0 0x0 0x64 0x7f7746d66e80 0x7f774763b545\n", null);
        Assert.Equal("clock_nanosleep", sleep.SyscallName);
        Assert.Equal(0x7f7746d66ec0UL, sleep.Args.A2);
        var unknown = ThreadReader.Decode(1, t, "999 0x1 0x2 0x3 0x4 0x5 0x6 0x7 0x8\n", null);
        Assert.Equal("syscall_0x3e7", unknown.SyscallName);
    }

    [Fact]
    public void Fdinfo_lines_of_each_anonymous_kind_are_decoded()
    {
        const string eventfd = "pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t1038\neventfd-count:                7\neventfd-id: 5\neventfd-semaphore: 0\n";
        Assert.Equal(7UL, FdInfo.EventFdCount(eventfd));
        Assert.Equal((0L, 0x80002, 17, 1038UL), ((long, int, int, ulong))Unwrap(FdInfo.Common(eventfd)));
        Assert.Equal(0x2aUL, FdInfo.EventFdCount("eventfd-count:               2a\n"));

        const string epoll = "pos:\t0\nflags:\t02\nmnt_id:\t17\nino:\t1038\n"
            + "tfd:       18 events:     2019 data:               22  pos:0 ino:29b5c sdev:9\n"
            + "tfd:        3 events:       19 data:               11  pos:0 ino:29b51 sdev:f\n"
            + "tfd:       21 events: 80000019 data:               33  pos:0 ino:40e sdev:10\n";
        var watches = FdInfo.Epoll(epoll);
        Assert.Equal([18, 3, 21], watches.Select(w => w.Fd));
        Assert.Equal(0x2019u, watches[0].Events);
        Assert.Equal("EPOLLIN|EPOLLERR|EPOLLHUP|EPOLLRDHUP", watches[0].EventNames);
        Assert.Equal(0x22UL, watches[0].Data);
        Assert.Equal(0x29b5cUL, watches[0].Inode);
        Assert.Equal("EPOLLIN|EPOLLERR|EPOLLHUP|EPOLLET", watches[2].EventNames);

        var timer = FdInfo.Timer("pos:\t0\nflags:\t04002\nmnt_id:\t17\nino:\t1038\nclockid: 1\nticks: 3\nsettime flags: 01\nit_value: (99, 64267)\nit_interval: (100, 0)\n");
        Assert.NotNull(timer);
        Assert.Equal("CLOCK_MONOTONIC", timer.Clock);
        Assert.Equal(3UL, timer.Ticks);
        Assert.Equal(1, timer.SettimeFlags);
        Assert.Equal(TimeSpan.FromSeconds(100), timer.Interval);
        Assert.Equal(TimeSpan.FromSeconds(99) + TimeSpan.FromTicks(642), timer.Value);

        var mask = FdInfo.SignalMask("pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t1038\nsigmask:\t0000000000000a00\n");
        Assert.Equal(0xa00UL, mask);
        Assert.Equal("[USR1 USR2]", SyscallDecoder.SignalSetText(mask!.Value));

        var inotify = FdInfo.Inotify("pos:\t0\nflags:\t02000000\nmnt_id:\t17\nino:\t1038\n"
            + "inotify wd:1 ino:b1e276 sdev:fe00000 mask:300 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:76e2b100f0a5eb49\n"
            + "inotify wd:2 ino:2 sdev:800001 mask:8000fff ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:0200000000000000\n");
        Assert.Equal(2, inotify.Count);
        Assert.Equal((1, 0xb1e276UL, 0xfe00000u, 0x300u, 1), (inotify[0].Wd, inotify[0].Inode, inotify[0].Device, inotify[0].Mask, inotify[0].HandleType));
        Assert.Equal(Convert.FromHexString("76e2b100f0a5eb49"), inotify[0].Handle);
        Assert.Equal("IN_CREATE|IN_DELETE", FdInfo.InotifyMaskNames(inotify[0].Mask));
        Assert.Equal("IN_ACCESS|IN_MODIFY|IN_ATTRIB|IN_CLOSE_WRITE|IN_CLOSE_NOWRITE|IN_OPEN|IN_MOVED_FROM|IN_MOVED_TO|IN_CREATE|IN_DELETE|IN_DELETE_SELF|IN_MOVE_SELF|0x8000000",
            FdInfo.InotifyMaskNames(inotify[1].Mask));

        Assert.Equal(587, FdInfo.PidFdPid("pos:\t0\nflags:\t02000002\nmnt_id:\t4\nino:\t130192\nPid:\t587\nNSpid:\t587\n"));
        Assert.Equal(-1, FdInfo.PidFdPid("Pid:\t-1\n"));

        var ring = FdInfo.Rest("pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t170846\nSqMask:\t0x3\nSqHead:\t0\nCqMask:\t0x7\nPollList:\n");
        Assert.Equal([new("SqMask", "0x3"), new("SqHead", "0"), new("CqMask", "0x7"), new KeyValuePair<string, string>("PollList", "")], ring);
    }

    private static (long, int, int, ulong) Unwrap((long? P, int? F, int? M, ulong? I) c) => (c.P!.Value, c.F!.Value, c.M!.Value, c.I!.Value);

    [Theory]
    [InlineData("pipe:[170833]", DescriptorKind.Pipe)]
    [InlineData("socket:[170834]", DescriptorKind.Socket)]
    [InlineData("anon_inode:[eventfd]", DescriptorKind.EventFd)]
    [InlineData("anon_inode:[eventpoll]", DescriptorKind.EventPoll)]
    [InlineData("anon_inode:[timerfd]", DescriptorKind.TimerFd)]
    [InlineData("anon_inode:[signalfd]", DescriptorKind.SignalFd)]
    [InlineData("anon_inode:inotify", DescriptorKind.Inotify)]
    [InlineData("anon_inode:[fanotify]", DescriptorKind.Fanotify)]
    [InlineData("anon_inode:[pidfd]", DescriptorKind.PidFd)]
    [InlineData("anon_inode:[io_uring]", DescriptorKind.IoUring)]
    [InlineData("anon_inode:bpf-map", DescriptorKind.Bpf)]
    [InlineData("anon_inode:bpf-prog", DescriptorKind.Bpf)]
    [InlineData("anon_inode:bpf_link", DescriptorKind.Bpf)]
    [InlineData("anon_inode:[userfaultfd]", DescriptorKind.AnonInode)]
    [InlineData("/memfd:nozoki (deleted)", DescriptorKind.Memfd)]
    [InlineData("/etc/passwd", DescriptorKind.File)]
    [InlineData("net:[4026531840]", DescriptorKind.Namespace)]
    [InlineData("mnt:[4026531841]", DescriptorKind.Namespace)]
    [InlineData("whatever:[1]", DescriptorKind.Other)]
    public void Links_are_classified_by_the_kernel_s_names(string link, DescriptorKind kind) =>
        Assert.Equal(kind, DescriptorReader.Classify(link));

    [Fact]
    public void A_cgroup_v2_tree_gives_its_limits_use_and_pressure()
    {
        using var dir = new TempDir();
        var cg = Path.Combine(dir.Path, "app.slice", "web.service");
        Directory.CreateDirectory(cg);
        void Put(string name, string text) => File.WriteAllText(Path.Combine(cg, name), text);
        Put("memory.max", "536870912\n");
        Put("memory.current", "123456789\n");
        Put("memory.peak", "234567890\n");
        Put("memory.events", "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n");
        Put("cpu.max", "50000 100000\n");
        Put("cpu.stat", "usage_usec 9000000\nuser_usec 6000000\nsystem_usec 3000000\nnr_periods 100\nnr_throttled 7\nthrottled_usec 350000\n");
        Put("pids.max", "max\n");
        Put("pids.current", "17\n");
        Put("io.max", "8:0 rbps=1048576 wbps=max riops=max wiops=max\n");
        Put("memory.pressure", "some avg10=1.50 avg60=0.40 avg300=0.10 total=123456\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=42\n");
        var mountinfo = $"26 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n35 26 0:30 / {dir.Path} rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate\n";

        var cgroups = CgroupReader.Read("0::/app.slice/web.service\n", mountinfo, ReadOrNull);
        var v2 = Assert.Single(cgroups);
        Assert.Equal(2, v2.Version);
        Assert.Equal("/app.slice/web.service", v2.Path);
        Assert.Equal(cg, v2.Directory);
        Assert.Null(v2.Problem);
        string Value(string file, string? key = null) => v2.Values.Single(v => v.File == file && v.Key == key).Value;
        Assert.Equal("536870912", Value("memory.max"));
        Assert.Equal("123456789", Value("memory.current"));
        Assert.Equal("234567890", Value("memory.peak"));
        Assert.Equal("1", Value("memory.events", "oom_kill"));
        Assert.Equal("50000 100000", Value("cpu.max"));
        Assert.Equal("7", Value("cpu.stat", "nr_throttled"));
        Assert.Equal("350000", Value("cpu.stat", "throttled_usec"));
        Assert.Equal("max", Value("pids.max"));
        Assert.Equal("17", Value("pids.current"));
        Assert.Equal("rbps=1048576 wbps=max riops=max wiops=max", Value("io.max", "8:0"));
        Assert.Equal("avg10=1.50 avg60=0.40 avg300=0.10 total=123456", Value("memory.pressure", "some"));
        Assert.DoesNotContain(v2.Values, v => v.File == "memory.high"); // absent files are not made up
    }

    [Fact]
    public void A_v1_hierarchy_mounted_from_a_subtree_maps_paths_under_its_root()
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(Path.Combine(dir.Path, "job"));
        File.WriteAllText(Path.Combine(dir.Path, "job", "memory.limit_in_bytes"), "268435456\n");
        File.WriteAllText(Path.Combine(dir.Path, "job", "memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n");
        // A container's view: the host's /kubepods/pod1 is mounted at the container's memory hierarchy.
        var mountinfo = $"40 30 0:31 /kubepods/pod1 {dir.Path} rw,relatime - cgroup cgroup rw,memory\n"
            + "41 30 0:32 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n";
        var cgroups = CgroupReader.Read("4:memory:/kubepods/pod1/job\n3:cpu,cpuacct:/other\n2:devices:/x\n", mountinfo, ReadOrNull);
        Assert.Equal(3, cgroups.Count);
        Assert.Equal(Path.Combine(dir.Path, "job"), cgroups[0].Directory);
        Assert.Equal("268435456", cgroups[0].Values.Single(v => v.File == "memory.limit_in_bytes").Value);
        Assert.Equal("3", cgroups[0].Values.Single(v => v.Key == "oom_kill").Value);
        Assert.Equal("/sys/fs/cgroup/cpu,cpuacct/other", cgroups[1].Directory);
        Assert.Null(cgroups[2].Directory);
        Assert.Equal("not mounted in nozoki's mount namespace", cgroups[2].Problem);
    }

    private static string? ReadOrNull(string path)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    [Fact]
    public void Limits_are_read_from_their_fixed_columns()
    {
        const string text = "Limit                     Soft Limit           Hard Limit           Units     \n"
            + "Max cpu time              unlimited            unlimited            seconds   \n"
            + "Max open files            1024                 4096                 files     \n"
            + "Max nice priority         0                    0                    \n";
        var limits = LimitsReader.Parse(text);
        Assert.Equal(3, limits.Count);
        Assert.Equal(("RLIMIT_CPU", (ulong?)null, (ulong?)null, "seconds"), (limits[0].Resource, limits[0].Soft, limits[0].Hard, limits[0].Units));
        Assert.Equal(("RLIMIT_NOFILE", (ulong?)1024, (ulong?)4096), (limits[1].Resource, limits[1].Soft, limits[1].Hard));
        Assert.Equal(("RLIMIT_NICE", ""), (limits[2].Resource, limits[2].Units));
    }

    [Fact]
    public void A_command_name_with_blanks_and_parentheses_is_read_whole()
    {
        var stat = StatFields.Parse("4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 12 34 0 0 20 0 3 0 5000 10000 200\n");
        Assert.NotNull(stat);
        Assert.Equal("a) b (c)", stat.Name);
        Assert.Equal('S', stat.State);
        Assert.Equal(1, stat[StatFields.PPid]);
        Assert.Equal(12, stat[StatFields.UTime]);
        Assert.Equal(3, stat[StatFields.NumThreads]);
        Assert.Equal(5000, stat[StatFields.StartTime]);
    }
}
