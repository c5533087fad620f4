using Nozoki.Tracing;

namespace Nozoki.Inspection;

/// <summary>
/// Takes snapshots of live processes from /proc and netlink only: nothing is attached, stopped or changed, so this
/// works on a process another tracer holds, and costs the process nothing. (What the kernel lets nozoki read depends
/// on who it runs as: another user's descriptors, environment and system calls need root or CAP_SYS_PTRACE; what is
/// refused is listed in <see cref="ProcessSnapshot.Problems"/>.)
/// </summary>
public static class ProcessInspector
{
    /// <summary>
    /// One look at PID. Throws <see cref="ProcessNotFoundException"/> when there is no such process (or it exited
    /// before anything could be read). A process that exits later while being read gives a partial snapshot with
    /// <see cref="ProcessSnapshot.ExitedWhileRead"/>. A thread id gives its process (see <see cref="ProcessSnapshot.RequestedTid"/>).
    /// </summary>
    public static ProcessSnapshot Take(int pid, InspectOptions? options = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(pid);
        options ??= new InspectOptions();
        var src = new ProcSource();
        var taken = DateTimeOffset.Now;
        int? requestedTid = null;
        var statText = src.Text($"/proc/{pid}/stat", out _);
        var statusText = src.Text($"/proc/{pid}/status", out _);
        if (StatFields.Parse(statText) is not { } stat || statusText is null) throw new ProcessNotFoundException(pid);
        var tgid = IdentityReader.Status.Parse(statusText).Tgid;
        if (tgid > 0 && tgid != pid)
        {
            // /proc/TID exists for every thread (not listed): show the process it belongs to.
            requestedTid = pid;
            pid = tgid;
            statText = src.Text($"/proc/{pid}/stat", out _);
            statusText = src.Text($"/proc/{pid}/status", out _);
            if (StatFields.Parse(statText) is not { } leader || statusText is null) throw new ProcessNotFoundException(requestedTid.Value);
            stat = leader;
        }

        // The process is the same one while its start time is: a reused PID has another.
        var startTime = stat[StatFields.StartTime];
        var gone = false;
        bool Gone()
        {
            if (gone) return true;
            var now = StatFields.Parse(src.Text($"/proc/{pid}/stat", out _));
            gone = now is null || now[StatFields.StartTime] != startTime || now.State == 'X';
            return gone;
        }

        var problems = new ProblemList { ProcessGone = Gone };

        var lastRead = InspectSections.Identity;
        var partialSaid = false;

        // Before each section: is the process still there? If it has gone, the section before may be incomplete.
        bool Next(InspectSections section)
        {
            if ((options.Sections & section) == 0) return false;
            options.BeforeSection?.Invoke(section);
            if (!Gone())
            {
                lastRead = section;
                return true;
            }

            SayPartial();
            problems.Add(section, ProblemKind.ProcessExited, Word(section), "the process exited before this was read");
            return false;
        }

        void SayPartial()
        {
            if (partialSaid) return;
            partialSaid = true;
            problems.Add(lastRead, ProblemKind.ProcessExited, Word(lastRead), "the process exited while this was being read: it may be incomplete");
        }

        options.BeforeSection?.Invoke(InspectSections.Identity);
        var identity = IdentityReader.Read(pid, stat, statusText, src, problems, (options.Sections & InspectSections.Identity) != 0);

        IReadOnlyList<ThreadSnapshot> threads = [];
        if (Next(InspectSections.Threads)) threads = ThreadReader.Read(pid, identity.IsKernelThread, src, problems);

        IReadOnlyList<DescriptorSnapshot> descriptors = [];
        var closed = 0;
        if (Next(InspectSections.Descriptors))
        {
            var list = DescriptorReader.Read(pid, src, problems, options, out closed);
            LinkVcpus(list, threads);
            descriptors = list;
        }

        IReadOnlyList<NamespaceSnapshot> namespaces = [];
        if (Next(InspectSections.Namespaces)) namespaces = NamespaceReader.Read(pid, src, problems);

        IReadOnlyList<CgroupSnapshot> cgroups = [];
        if (Next(InspectSections.Cgroup))
        {
            var text = src.Text($"/proc/{pid}/cgroup", out var r);
            if (text is null) problems.Add(InspectSections.Cgroup, "cgroup", r);
            else cgroups = CgroupReader.Read(text, src.Text("/proc/self/mountinfo", out _) ?? "", path => src.Text(path, out _));
        }

        IReadOnlyList<ResourceLimit> limits = [];
        if (Next(InspectSections.Limits)) limits = LimitsReader.Read(pid, src, problems);

        MappingsSummary? mappings = null;
        if (Next(InspectSections.Mappings) && !identity.IsKernelThread && !identity.IsZombie)
            mappings = MappingsReader.Read(pid, options.LargestMappings, problems);

        IReadOnlyList<string>? environment = null;
        if (Next(InspectSections.Environment))
        {
            if (src.Bytes($"/proc/{pid}/environ", out var r) is { } env) environment = ProcSource.SplitNul(env);
            else problems.Add(InspectSections.Environment, "environment", r);
        }

        if (Gone()) SayPartial();
        return new ProcessSnapshot
        {
            Pid = pid,
            Taken = taken,
            Sections = options.Sections,
            RequestedTid = requestedTid,
            Identity = identity,
            Threads = threads,
            Descriptors = descriptors,
            Namespaces = namespaces,
            Cgroups = cgroups,
            Limits = limits,
            Mappings = mappings,
            Environment = environment,
            Problems = problems.Items,
            ExitedWhileRead = gone,
            DescriptorsClosedMeanwhile = closed,
        };
    }

    /// <summary>A vCPU's descriptor and the thread running it: that thread is blocked in ioctl(fd, KVM_RUN).</summary>
    internal static void LinkVcpus(List<DescriptorSnapshot> descriptors, IReadOnlyList<ThreadSnapshot> threads)
    {
        foreach (var t in threads)
        {
            if (t.Activity != ThreadActivity.Syscall || t.SyscallNumber != ThreadReader.IoctlNr || (uint)t.Args.A1 != ThreadReader.KvmRun) continue;
            var i = descriptors.FindIndex(d => d.Kind == DescriptorKind.KvmVcpu && d.Fd == (int)t.Args.A0);
            if (i >= 0)
            {
                descriptors[i] = descriptors[i] with
                {
                    VcpuRunningThread = t.Tid,
                    Description = descriptors[i].Description + $", running in thread {t.Tid} ({t.Name}, KVM_RUN)",
                };
            }
        }
    }

    private static string Word(InspectSections section) => section switch
    {
        InspectSections.Identity => "identity",
        InspectSections.Threads => "threads",
        InspectSections.Descriptors => "descriptors",
        InspectSections.Namespaces => "namespaces",
        InspectSections.Cgroup => "cgroup",
        InspectSections.Limits => "limits",
        InspectSections.Mappings => "mappings",
        InspectSections.Environment => "environment",
        _ => section.ToString(),
    };
}
