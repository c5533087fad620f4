using Nozoki.Tracing;

namespace Nozoki.Inspection;

/// <summary>The parts of a process a snapshot reads.</summary>
[Flags]
public enum InspectSections
{
    None = 0,

    /// <summary>pid, parents, command line, user, state, times, memory, scheduling, capabilities (/proc/PID/stat, status, ...).</summary>
    Identity = 1,

    /// <summary>Every thread and the system call it is in (/proc/PID/task/TID/stat, syscall, wchan).</summary>
    Threads = 2,

    /// <summary>Every open descriptor, decoded by kind (/proc/PID/fd, fdinfo, sock_diag).</summary>
    Descriptors = 4,

    /// <summary>The namespaces (/proc/PID/ns) compared with PID 1's.</summary>
    Namespaces = 8,

    /// <summary>The cgroups (/proc/PID/cgroup) and their limits and use.</summary>
    Cgroup = 16,

    /// <summary>Resource limits (/proc/PID/limits) and which differ from PID 1's.</summary>
    Limits = 32,

    /// <summary>A summary of the memory mappings (/proc/PID/maps): the largest, the libraries loaded.</summary>
    Mappings = 64,

    /// <summary>The environment (/proc/PID/environ): only when asked, it may hold secrets.</summary>
    Environment = 128,

    /// <summary>Everything but the environment.</summary>
    All = Identity | Threads | Descriptors | Namespaces | Cgroup | Limits | Mappings,
}

/// <summary>What a snapshot reads.</summary>
public sealed class InspectOptions
{
    /// <summary>The sections to read (the identity's first lines are always read).</summary>
    public InspectSections Sections { get; init; } = InspectSections.All;

    /// <summary>How many of the largest mappings to keep in <see cref="MappingsSummary.Largest"/>.</summary>
    public int LargestMappings { get; init; } = 8;

    /// <summary>
    /// Look through every other process's descriptors for the other ends of pipes and FIFOs and the holders of unix
    /// socket peers (as lsof +E and ss -p do): one readlink per descriptor of the machine.
    /// </summary>
    public bool FindPeers { get; init; } = true;

    /// <summary>False: sockets from /proc/PID/net only, as when netlink is refused (tests: the fallback).</summary>
    internal bool UseSockDiag { get; init; } = true;

    /// <summary>Called before each section is read (tests: make the process exit between two sections).</summary>
    internal Action<InspectSections>? BeforeSection { get; init; }
}

/// <summary>Why part of a snapshot is missing.</summary>
public enum ProblemKind
{
    /// <summary>The kernel refused (another user's process; root or CAP_SYS_PTRACE would see it).</summary>
    PermissionDenied,

    /// <summary>The process exited while it was being read.</summary>
    ProcessExited,

    /// <summary>Anything else (the message says what).</summary>
    Other,
}

/// <summary>Part of a snapshot that could not be read, and why.</summary>
public sealed record InspectProblem(InspectSections Section, ProblemKind Kind, string What, string Message);

/// <summary>
/// One look at a live process, read from /proc and netlink only: the process is never stopped nor traced. What could
/// not be read is in <see cref="Problems"/>, never silently left out.
/// </summary>
public sealed class ProcessSnapshot
{
    public required int Pid { get; init; }

    /// <summary>When the snapshot was taken.</summary>
    public required DateTimeOffset Taken { get; init; }

    /// <summary>The sections that were asked for.</summary>
    public required InspectSections Sections { get; init; }

    /// <summary>The thread id that was asked for, when it was not the process's own id (then Pid is its process).</summary>
    public int? RequestedTid { get; init; }

    public required ProcessIdentity Identity { get; init; }

    public IReadOnlyList<ThreadSnapshot> Threads { get; init; } = [];

    public IReadOnlyList<DescriptorSnapshot> Descriptors { get; init; } = [];

    public IReadOnlyList<NamespaceSnapshot> Namespaces { get; init; } = [];

    /// <summary>The NSpid line: the pid in each nested pid namespace, outermost (nozoki's view) first.</summary>
    public IReadOnlyList<int> NamespacePids => Identity.NamespacePids;

    public IReadOnlyList<CgroupSnapshot> Cgroups { get; init; } = [];

    /// <summary>Every resource limit; <see cref="ResourceLimit.DiffersFromInit"/> marks those that differ from PID 1's.</summary>
    public IReadOnlyList<ResourceLimit> Limits { get; init; } = [];

    public MappingsSummary? Mappings { get; init; }

    /// <summary>NAME=VALUE strings, only when <see cref="InspectSections.Environment"/> was asked for and readable.</summary>
    public IReadOnlyList<string>? Environment { get; init; }

    public IReadOnlyList<InspectProblem> Problems { get; init; } = [];

    /// <summary>The process exited while it was being read: the sections read after that are empty or partial.</summary>
    public bool ExitedWhileRead { get; init; }

    /// <summary>Descriptors that were listed but had closed by the time they were read (not shown).</summary>
    public int DescriptorsClosedMeanwhile { get; init; }
}

/// <summary>A process by id and name (the ppid chain, the holders of a pipe's other end).</summary>
public sealed record ProcessName(int Pid, string Name);

/// <summary>A set of user or group ids (real, effective, saved, filesystem) and the real one's name.</summary>
public sealed record IdSet(uint Real, uint Effective, uint Saved, uint Filesystem, string? RealName, string? EffectiveName);

/// <summary>Who and what a process is.</summary>
public sealed record ProcessIdentity
{
    public required int Pid { get; init; }

    /// <summary>comm (/proc/PID/comm): at most 15 bytes.</summary>
    public required string Name { get; init; }

    /// <summary>R, S, D, T, t, Z, X, I (as ps shows it).</summary>
    public required char State { get; init; }

    public string StateName => ProcessStates.Describe(State);

    public int PPid { get; init; }

    /// <summary>The parent, its parent, ... up to PID 1 (or the last one nozoki can see).</summary>
    public IReadOnlyList<ProcessName> Ancestors { get; init; } = [];

    /// <summary>argv; null when it could not be read, empty for kernel threads and zombies.</summary>
    public IReadOnlyList<string>? CommandLine { get; init; }

    /// <summary>/proc/PID/exe without " (deleted)"; null when unreadable or none (kernel thread).</summary>
    public string? Executable { get; init; }

    public bool ExecutableDeleted { get; init; }

    public string? Cwd { get; init; }

    public string? Root { get; init; }

    public IdSet? Uids { get; init; }

    public IdSet? Gids { get; init; }

    public IReadOnlyList<uint> SupplementaryGroups { get; init; } = [];

    public DateTimeOffset? StartTime { get; init; }

    public TimeSpan CpuUser { get; init; }

    public TimeSpan CpuSystem { get; init; }

    /// <summary>Resident, proportional and swapped-out memory in bytes (smaps_rollup; RSS from status when that is refused).</summary>
    public long? Rss { get; init; }

    public long? Pss { get; init; }

    public long? Swap { get; init; }

    public long? VirtualSize { get; init; }

    public int ThreadCount { get; init; }

    public int Nice { get; init; }

    /// <summary>SCHED_OTHER, SCHED_FIFO, SCHED_RR, SCHED_BATCH, SCHED_IDLE, SCHED_DEADLINE, SCHED_EXT.</summary>
    public string Policy { get; init; } = "SCHED_OTHER";

    public int RealtimePriority { get; init; }

    /// <summary>Cpus_allowed_list ("0-3,8").</summary>
    public string? CpuAffinity { get; init; }

    /// <summary>0 disabled, 1 strict, 2 filter; null when unknown.</summary>
    public int? Seccomp { get; init; }

    public int? SeccompFilters { get; init; }

    public bool? NoNewPrivs { get; init; }

    public Capabilities? Capabilities { get; init; }

    /// <summary>The pid in each pid namespace, from nozoki's (outermost) to the process's own.</summary>
    public IReadOnlyList<int> NamespacePids { get; init; } = [];

    public int TracerPid { get; init; }

    public bool IsKernelThread { get; init; }

    public bool IsZombie => State is 'Z' or 'X';

    /// <summary>The controlling terminal (/dev/pts/3), if any.</summary>
    public string? Terminal { get; init; }
}

/// <summary>The capability sets of /proc/PID/status.</summary>
public sealed record Capabilities(ulong Effective, ulong Permitted, ulong Inheritable, ulong Bounding, ulong Ambient, int LastCap)
{
    /// <summary>Every capability this kernel knows (0 .. cap_last_cap).</summary>
    public ulong All => LastCap >= 63 ? ulong.MaxValue : (1UL << (LastCap + 1)) - 1;

    public static IReadOnlyList<string> Names(ulong set) => CapabilityNames.Of(set);
}

public enum ThreadActivity
{
    /// <summary>Blocked (or about to block) in the system call <see cref="ThreadSnapshot.Call"/>.</summary>
    Syscall,

    /// <summary>On a CPU, in user space or the kernel: /proc says "running".</summary>
    Running,

    /// <summary>Off the CPU but not in a system call (a page fault, a stop by a signal); <see cref="ThreadSnapshot.Wchan"/> says where.</summary>
    NotInSyscall,

    /// <summary>Could not be read (permission, the thread exited).</summary>
    Unknown,
}

/// <summary>One thread and what it is doing at the instant it was read.</summary>
public sealed record ThreadSnapshot
{
    public required int Tid { get; init; }

    public required string Name { get; init; }

    public char State { get; init; }

    /// <summary>The CPU it last ran on.</summary>
    public int Cpu { get; init; }

    public TimeSpan CpuUser { get; init; }

    public TimeSpan CpuSystem { get; init; }

    public ThreadActivity Activity { get; init; }

    /// <summary>The system call number (with <see cref="ThreadActivity.Syscall"/>).</summary>
    public long SyscallNumber { get; init; } = -1;

    public SyscallArgs Args { get; init; }

    public string? SyscallName { get; init; }

    /// <summary>The call decoded as the tracer decodes it: "read(0&lt;/dev/pts/3&gt;, 0x7ffc..., 4096)".</summary>
    public string? Call { get; init; }

    /// <summary>The kernel function the thread waits in (/proc/PID/task/TID/wchan); null when none or unreadable.</summary>
    public string? Wchan { get; init; }

    /// <summary>Why <see cref="Activity"/> is unknown.</summary>
    public string? Problem { get; init; }
}

public enum DescriptorKind
{
    File, Directory, CharacterDevice, BlockDevice, Pipe, Fifo, Socket, EventFd, EventPoll, TimerFd, SignalFd, Inotify,
    Fanotify, PidFd, KvmVm, KvmVcpu, IoUring, Bpf, Memfd, Namespace, AnonInode, Other,
}

/// <summary>A process holding a descriptor (the other end of a pipe, a unix socket's peer).</summary>
public sealed record DescriptorHolder(int Pid, string Name, int Fd, string Access);

/// <summary>A socket, from sock_diag (or /proc/PID/net when netlink is refused).</summary>
public sealed record SocketDetails
{
    /// <summary>The kernel's protocol name: TCP, TCPv6, UDP, UDPv6, UNIX, NETLINK, PACKET, RAW ...</summary>
    public required string Protocol { get; init; }

    /// <summary>STREAM, DGRAM, SEQPACKET, RAW (unix and netlink sockets).</summary>
    public string? Type { get; init; }

    /// <summary>LISTEN, ESTABLISHED, UNCONN, CONNECTED ... (ss's names).</summary>
    public string? State { get; init; }

    /// <summary>addr:port ([v6]:port); a unix socket's path, or @name for an abstract one.</summary>
    public string? Local { get; init; }

    public string? Remote { get; init; }

    public uint? ReceiveQueue { get; init; }

    public uint? SendQueue { get; init; }

    /// <summary>A unix socket's peer (UNIX_DIAG_PEER), by inode; 0 for none.</summary>
    public ulong PeerInode { get; init; }

    /// <summary>The processes holding the peer socket (or, for netlink, the peer port).</summary>
    public IReadOnlyList<DescriptorHolder> Peers { get; init; } = [];

    /// <summary>A netlink socket's protocol (NETLINK_ROUTE ...), its port id.</summary>
    public string? NetlinkProtocol { get; init; }

    public uint? PortId { get; init; }

    /// <summary>"sock_diag" or "/proc/net" (the fallback); null when the socket was found in neither.</summary>
    public string? Source { get; init; }
}

/// <summary>An epoll instance's watched descriptor (a "tfd:" line of fdinfo).</summary>
public sealed record EpollWatch(int Fd, uint Events, ulong Data, ulong Inode, string? Target)
{
    public string EventNames => FdInfo.EpollEventNames(Events);
}

/// <summary>An inotify watch.</summary>
public sealed record InotifyWatch(int Wd, ulong Inode, uint Device, uint Mask, string? Path)
{
    public string MaskNames => FdInfo.InotifyMaskNames(Mask);
}

/// <summary>A timerfd's settings (fdinfo): the clock, the next expiry and the interval.</summary>
public sealed record TimerDetails(string Clock, ulong Ticks, int SettimeFlags, TimeSpan Value, TimeSpan Interval);

/// <summary>One open descriptor, decoded by what it refers to.</summary>
public sealed record DescriptorSnapshot
{
    public required int Fd { get; init; }

    /// <summary>The /proc/PID/fd/N link as ls -l shows it: a path, pipe:[ino], socket:[ino], anon_inode:[eventfd] ...</summary>
    public required string Target { get; init; }

    public required DescriptorKind Kind { get; init; }

    /// <summary>The open flags (fdinfo "flags:", octal there); O_CLOEXEC stands for the descriptor's close-on-exec flag.</summary>
    public int? Flags { get; init; }

    /// <summary>The file position (fdinfo "pos:").</summary>
    public long? Position { get; init; }

    public int? MountId { get; init; }

    /// <summary>The inode of the open file (fdinfo "ino:", or the inode in pipe:[N] / socket:[N]).</summary>
    public ulong Inode { get; init; }

    /// <summary>"r", "w" or "rw" (O_ACCMODE), as lsof's mode letters r, w, u; "" when the flags are unknown.</summary>
    public string Access => Flags is { } f ? (f & 3) switch { 0 => "r", 1 => "w", _ => "rw" } : "";

    /// <summary>The flags as strace names them (O_RDWR|O_NONBLOCK|O_CLOEXEC); "" when unknown.</summary>
    public string FlagNames => Flags is { } f ? FlagNameCache.GetOrAdd(f, static v => Syscalls.SyscallDecoder.OpenFlagsText((ulong)v)) : "";

    // A process has a handful of distinct flag words among thousands of descriptors.
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<int, string> FlagNameCache = new();

    /// <summary>
    /// The kind in one word, in lsof's TYPE words where lsof has one (REG, DIR, CHR, BLK, FIFO, unix, IPv4, IPv6,
    /// netlink, sock), and the anonymous object's own name otherwise (eventfd, eventpoll, timerfd, memfd, pidfd ...).
    /// </summary>
    public string TypeName => Kind switch
    {
        DescriptorKind.File => "REG",
        DescriptorKind.Directory => "DIR",
        DescriptorKind.CharacterDevice => "CHR",
        DescriptorKind.BlockDevice => "BLK",
        DescriptorKind.Pipe or DescriptorKind.Fifo => "FIFO",
        DescriptorKind.Socket => Socket?.Protocol switch
        {
            "UNIX" => "unix",
            "TCP" or "UDP" or "UDPLITE" or "RAW" or "PING" or "SCTP" or "MPTCP" => "IPv4",
            "TCPv6" or "UDPv6" or "UDPLITEv6" or "RAWv6" or "PINGv6" or "SCTPv6" => "IPv6",
            "NETLINK" => "netlink",
            _ => "sock",
        },
        DescriptorKind.EventFd => "eventfd",
        DescriptorKind.EventPoll => "eventpoll",
        DescriptorKind.TimerFd => "timerfd",
        DescriptorKind.SignalFd => "signalfd",
        DescriptorKind.Inotify => "inotify",
        DescriptorKind.Fanotify => "fanotify",
        DescriptorKind.PidFd => "pidfd",
        DescriptorKind.KvmVm => "kvm-vm",
        DescriptorKind.KvmVcpu => "kvm-vcpu",
        DescriptorKind.IoUring => "io_uring",
        DescriptorKind.Bpf => "bpf",
        DescriptorKind.Memfd => "memfd",
        DescriptorKind.Namespace => "ns",
        DescriptorKind.AnonInode => "a_inode",
        _ => "?",
    };

    /// <summary>A path (files, FIFOs, devices, memfd names); null for anonymous objects.</summary>
    public string? Path { get; init; }

    public bool Deleted { get; init; }

    public long? Size { get; init; }

    /// <summary>A device's major:minor.</summary>
    public string? Device { get; init; }

    /// <summary>Pipes and FIFOs: the other processes holding it, with the end each has.</summary>
    public IReadOnlyList<DescriptorHolder> Holders { get; init; } = [];

    public SocketDetails? Socket { get; init; }

    public ulong? EventFdCount { get; init; }

    public IReadOnlyList<EpollWatch> EpollWatches { get; init; } = [];

    public TimerDetails? Timer { get; init; }

    /// <summary>A signalfd's mask.</summary>
    public ulong? SignalMask { get; init; }

    public IReadOnlyList<InotifyWatch> InotifyWatches { get; init; } = [];

    /// <summary>A pidfd's process (-1: it has exited).</summary>
    public int? PidFdPid { get; init; }

    /// <summary>A KVM vCPU's id.</summary>
    public int? VcpuId { get; init; }

    /// <summary>The thread in KVM_RUN on this vCPU descriptor when the threads were read.</summary>
    public int? VcpuRunningThread { get; init; }

    /// <summary>Other fdinfo lines of anonymous objects nozoki shows as they are (io_uring, bpf, fanotify), key and value.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> Info { get; init; } = [];

    /// <summary>One line saying what it is, for people: "pipe:[1234] read end; written by 4321 (cat) fd 1".</summary>
    public string Description { get; init; } = "";
}

/// <summary>One namespace of the process, and whether PID 1 and nozoki share it.</summary>
public sealed record NamespaceSnapshot(string Type, ulong Inode, ulong? InitInode, ulong? NozokiInode, string? Problem)
{
    /// <summary>True when PID 1 is in the same namespace; null when either could not be read.</summary>
    public bool? SameAsInit => Problem is null && InitInode is { } i ? i == Inode : null;

    /// <summary>True when nozoki itself is in the same namespace (PID 1's may be unreadable, in a container).</summary>
    public bool? SameAsNozoki => Problem is null && NozokiInode is { } i ? i == Inode : null;
}

/// <summary>One value read from a cgroup's files (memory.max, memory.events's oom_kill, cpu.stat's nr_throttled ...).</summary>
public sealed record CgroupValue(string File, string? Key, string Value);

/// <summary>One cgroup of the process: v2 ("0::/path") or one v1 hierarchy, its directory, its limits and use.</summary>
public sealed record CgroupSnapshot(int Version, string Controllers, string Path, string? Directory, IReadOnlyList<CgroupValue> Values, string? Problem);

/// <summary>A resource limit (/proc/PID/limits); null soft/hard means unlimited.</summary>
public sealed record ResourceLimit(string Name, string Resource, ulong? Soft, ulong? Hard, string Units, ulong? InitSoft, ulong? InitHard, bool DiffersFromInit);

/// <summary>One mapping among the largest.</summary>
public sealed record MappingEntry(ulong Start, ulong End, string Permissions, string Path)
{
    public ulong Size => End - Start;
}

/// <summary>A summary of /proc/PID/maps.</summary>
public sealed record MappingsSummary(int Count, ulong VirtualSize, IReadOnlyList<MappingEntry> Largest, IReadOnlyList<string> Libraries, int FileMappings, int AnonymousMappings);
