using System.Buffers;
using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Json;
using Nozoki.Inspection;

namespace Nozoki.Cli.Output;

/// <summary>
/// --json: one object per snapshot on one line (JSON Lines): everything the human view shows and more (every resource
/// limit, every wchan, raw flags and arguments). Unlimited limits and values that could not be read are null.
/// </summary>
internal static class InspectJson
{
    private static readonly JsonWriterOptions Options = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static byte[] Write(ProcessSnapshot s)
    {
        var buffer = new ArrayBufferWriter<byte>(16 << 10);
        using (var w = new Utf8JsonWriter(buffer, Options))
        {
            w.WriteStartObject();
            w.WriteNumber("time", Math.Round(s.Taken.ToUnixTimeMilliseconds() / 1000.0, 3));
            w.WriteNumber("pid", s.Pid);
            if (s.RequestedTid is { } tid) w.WriteNumber("requested_tid", tid);
            w.WriteBoolean("complete", s.Problems.Count == 0);
            w.WriteBoolean("exited_while_read", s.ExitedWhileRead);
            Identity(w, s);
            var asked = s.Sections;
            if ((asked & InspectSections.Threads) != 0) Threads(w, s);
            if ((asked & InspectSections.Descriptors) != 0)
            {
                Descriptors(w, s);
                w.WriteNumber("descriptors_closed_meanwhile", s.DescriptorsClosedMeanwhile);
            }

            if ((asked & InspectSections.Namespaces) != 0) Namespaces(w, s);
            if ((asked & InspectSections.Cgroup) != 0) Cgroups(w, s);
            if ((asked & InspectSections.Limits) != 0) Limits(w, s);
            if ((asked & InspectSections.Mappings) != 0) Mappings(w, s);
            if ((asked & InspectSections.Environment) != 0)
            {
                if (s.Environment is null) w.WriteNull("environment");
                else Strings(w, "environment", s.Environment);
            }

            w.WriteStartArray("problems");
            foreach (var p in s.Problems)
            {
                w.WriteStartObject();
                w.WriteString("section", p.Section.ToString().ToLowerInvariant());
                w.WriteString("kind", p.Kind switch { ProblemKind.PermissionDenied => "permission_denied", ProblemKind.ProcessExited => "process_exited", _ => "other" });
                w.WriteString("what", p.What);
                w.WriteString("message", p.Message);
                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteEndObject();
        }

        return [.. buffer.WrittenSpan, (byte)'\n'];
    }

    private static void Identity(Utf8JsonWriter w, ProcessSnapshot s)
    {
        var id = s.Identity;
        w.WriteStartObject("identity");
        w.WriteString("name", id.Name);
        w.WriteString("state", id.State.ToString());
        w.WriteString("state_name", id.StateName);
        w.WriteNumber("ppid", id.PPid);
        w.WriteNumber("threads", id.ThreadCount);
        w.WriteBoolean("kernel_thread", id.IsKernelThread);
        w.WriteBoolean("zombie", id.IsZombie);
        w.WriteStartArray("nspid");
        foreach (var p in id.NamespacePids) w.WriteNumberValue(p);
        w.WriteEndArray();
        w.WriteNumber("tracer_pid", id.TracerPid);
        if ((s.Sections & InspectSections.Identity) != 0)
        {
            w.WriteStartArray("ancestors");
            foreach (var a in id.Ancestors)
            {
                w.WriteStartObject();
                w.WriteNumber("pid", a.Pid);
                w.WriteString("name", a.Name);
                w.WriteEndObject();
            }

            w.WriteEndArray();
            if (id.CommandLine is null) w.WriteNull("cmdline");
            else Strings(w, "cmdline", id.CommandLine);
            w.WriteString("exe", id.Executable);
            w.WriteBoolean("exe_deleted", id.ExecutableDeleted);
            w.WriteString("cwd", id.Cwd);
            w.WriteString("root", id.Root);
            Ids(w, "uid", id.Uids);
            Ids(w, "gid", id.Gids);
            w.WriteStartArray("groups");
            foreach (var g in id.SupplementaryGroups) w.WriteNumberValue(g);
            w.WriteEndArray();
            if (id.StartTime is { } st)
            {
                w.WriteNumber("start_time", st.ToUnixTimeSeconds());
                w.WriteNumber("age_seconds", Math.Round((s.Taken - st).TotalSeconds, 2));
            }
            else
            {
                w.WriteNull("start_time");
                w.WriteNull("age_seconds");
            }

            w.WriteNumber("cpu_user", Math.Round(id.CpuUser.TotalSeconds, 2));
            w.WriteNumber("cpu_system", Math.Round(id.CpuSystem.TotalSeconds, 2));
            Number(w, "rss", id.Rss);
            Number(w, "pss", id.Pss);
            Number(w, "swap", id.Swap);
            Number(w, "vsize", id.VirtualSize);
            w.WriteNumber("nice", id.Nice);
            w.WriteString("policy", id.Policy);
            w.WriteNumber("rt_priority", id.RealtimePriority);
            w.WriteString("cpus", id.CpuAffinity);
            Number(w, "seccomp", id.Seccomp);
            Number(w, "seccomp_filters", id.SeccompFilters);
            if (id.NoNewPrivs is { } nnp) w.WriteBoolean("no_new_privs", nnp);
            else w.WriteNull("no_new_privs");
            w.WriteString("tty", id.Terminal);
            if (id.Capabilities is { } c)
            {
                w.WriteStartObject("capabilities");
                Strings(w, "effective", CapabilityNames.Of(c.Effective));
                Strings(w, "permitted", CapabilityNames.Of(c.Permitted));
                Strings(w, "inheritable", CapabilityNames.Of(c.Inheritable));
                Strings(w, "bounding", CapabilityNames.Of(c.Bounding));
                Strings(w, "ambient", CapabilityNames.Of(c.Ambient));
                Strings(w, "bounding_missing", CapabilityNames.Of(c.All & ~c.Bounding));
                w.WriteEndObject();
            }
            else
            {
                w.WriteNull("capabilities");
            }
        }

        w.WriteEndObject();
    }

    private static void Threads(Utf8JsonWriter w, ProcessSnapshot s)
    {
        w.WriteStartArray("threads");
        foreach (var t in s.Threads)
        {
            w.WriteStartObject();
            w.WriteNumber("tid", t.Tid);
            w.WriteString("name", t.Name);
            w.WriteString("state", t.State.ToString());
            w.WriteNumber("cpu", t.Cpu);
            w.WriteNumber("cpu_user", Math.Round(t.CpuUser.TotalSeconds, 2));
            w.WriteNumber("cpu_system", Math.Round(t.CpuSystem.TotalSeconds, 2));
            w.WriteString("activity", t.Activity switch
            {
                ThreadActivity.Syscall => "syscall",
                ThreadActivity.Running => "running",
                ThreadActivity.NotInSyscall => "not_in_syscall",
                _ => "unknown",
            });
            if (t.Activity == ThreadActivity.Syscall)
            {
                w.WriteString("syscall", t.SyscallName);
                w.WriteNumber("nr", t.SyscallNumber);
                w.WriteStartArray("args");
                for (var i = 0; i < 6; i++) w.WriteStringValue("0x" + t.Args[i].ToString("x", CultureInfo.InvariantCulture));
                w.WriteEndArray();
                w.WriteString("call", t.Call);
            }

            w.WriteString("wchan", t.Wchan);
            if (t.Problem is not null) w.WriteString("problem", t.Problem);
            w.WriteEndObject();
        }

        w.WriteEndArray();
    }

    private static void Descriptors(Utf8JsonWriter w, ProcessSnapshot s)
    {
        w.WriteStartArray("descriptors");
        foreach (var d in s.Descriptors)
        {
            w.WriteStartObject();
            w.WriteNumber("fd", d.Fd);
            w.WriteString("target", d.Target);
            w.WriteString("kind", Snake(d.Kind.ToString()));
            w.WriteString("type", d.TypeName);
            w.WriteString("access", d.Access);
            Number(w, "flags", d.Flags);
            w.WriteString("flag_names", d.FlagNames);
            Number(w, "pos", d.Position);
            Number(w, "mnt_id", d.MountId);
            w.WriteNumber("inode", d.Inode);
            if (d.Path is not null) w.WriteString("path", d.Path);
            if (d.Deleted) w.WriteBoolean("deleted", true);
            if (d.Size is { } size) w.WriteNumber("size", size);
            if (d.Device is not null) w.WriteString("device", d.Device);
            w.WriteString("description", d.Description);
            if (d.Kind is DescriptorKind.Pipe or DescriptorKind.Fifo) Holders(w, "holders", d.Holders);
            if (d.Socket is { } so)
            {
                w.WriteStartObject("socket");
                w.WriteString("protocol", so.Protocol);
                w.WriteString("type", so.Type);
                w.WriteString("state", so.State);
                w.WriteString("local", so.Local);
                w.WriteString("remote", so.Remote);
                Number(w, "recv_q", so.ReceiveQueue);
                Number(w, "send_q", so.SendQueue);
                if (so.PeerInode != 0)
                {
                    w.WriteNumber("peer_inode", so.PeerInode);
                    Holders(w, "peers", so.Peers);
                }

                if (so.NetlinkProtocol is not null) w.WriteString("netlink_protocol", so.NetlinkProtocol);
                if (so.PortId is { } port) w.WriteNumber("port_id", port);
                w.WriteString("source", so.Source);
                w.WriteEndObject();
            }

            if (d.EventFdCount is { } count) w.WriteNumber("eventfd_count", count);
            if (d.Kind == DescriptorKind.EventPoll)
            {
                w.WriteStartArray("epoll");
                foreach (var e in d.EpollWatches)
                {
                    w.WriteStartObject();
                    w.WriteNumber("fd", e.Fd);
                    w.WriteNumber("events", e.Events);
                    w.WriteString("event_names", e.EventNames);
                    w.WriteString("data", "0x" + e.Data.ToString("x", CultureInfo.InvariantCulture));
                    w.WriteNumber("inode", e.Inode);
                    w.WriteString("target", e.Target);
                    w.WriteEndObject();
                }

                w.WriteEndArray();
            }

            if (d.Timer is { } t)
            {
                w.WriteStartObject("timer");
                w.WriteString("clock", t.Clock);
                w.WriteNumber("ticks", t.Ticks);
                w.WriteNumber("value", t.Value.TotalSeconds);
                w.WriteNumber("interval", t.Interval.TotalSeconds);
                w.WriteBoolean("absolute", (t.SettimeFlags & 1) != 0);
                w.WriteEndObject();
            }

            if (d.SignalMask is { } mask)
            {
                w.WriteString("signal_mask", "0x" + mask.ToString("x", CultureInfo.InvariantCulture));
                var names = new List<string>();
                for (var sig = 1; sig <= 64; sig++)
                {
                    if ((mask & (1UL << (sig - 1))) != 0) names.Add(Signals.Name(sig));
                }

                Strings(w, "signals", names);
            }

            if (d.Kind == DescriptorKind.Inotify)
            {
                w.WriteStartArray("inotify");
                foreach (var i in d.InotifyWatches)
                {
                    w.WriteStartObject();
                    w.WriteNumber("wd", i.Wd);
                    w.WriteNumber("inode", i.Inode);
                    w.WriteString("device", $"{i.Device >> 20}:{i.Device & 0xfffff}");
                    w.WriteNumber("mask", i.Mask);
                    w.WriteString("mask_names", i.MaskNames);
                    w.WriteString("path", i.Path);
                    w.WriteEndObject();
                }

                w.WriteEndArray();
            }

            if (d.PidFdPid is { } pid) w.WriteNumber("pidfd_pid", pid);
            if (d.VcpuId is { } vcpu) w.WriteNumber("vcpu", vcpu);
            if (d.Kind == DescriptorKind.KvmVcpu)
            {
                if (d.VcpuRunningThread is { } rt) w.WriteNumber("vcpu_thread", rt);
                else w.WriteNull("vcpu_thread");
            }

            if (d.Info.Count > 0)
            {
                w.WriteStartObject("info");
                foreach (var kv in d.Info) w.WriteString(kv.Key, kv.Value);
                w.WriteEndObject();
            }

            w.WriteEndObject();
        }

        w.WriteEndArray();
    }

    private static void Namespaces(Utf8JsonWriter w, ProcessSnapshot s)
    {
        w.WriteStartArray("namespaces");
        foreach (var n in s.Namespaces)
        {
            w.WriteStartObject();
            w.WriteString("type", n.Type);
            if (n.Problem is null) w.WriteNumber("inode", n.Inode);
            else w.WriteNull("inode");
            Number(w, "init_inode", (long?)n.InitInode);
            if (n.SameAsInit is { } same) w.WriteBoolean("same_as_init", same);
            else w.WriteNull("same_as_init");
            Number(w, "nozoki_inode", (long?)n.NozokiInode);
            if (n.SameAsNozoki is { } mine) w.WriteBoolean("same_as_nozoki", mine);
            else w.WriteNull("same_as_nozoki");
            if (n.Problem is not null) w.WriteString("problem", n.Problem);
            w.WriteEndObject();
        }

        w.WriteEndArray();
    }

    private static void Cgroups(Utf8JsonWriter w, ProcessSnapshot s)
    {
        w.WriteStartArray("cgroups");
        foreach (var c in s.Cgroups)
        {
            w.WriteStartObject();
            w.WriteNumber("version", c.Version);
            w.WriteString("controllers", c.Controllers);
            w.WriteString("path", c.Path);
            w.WriteString("directory", c.Directory);
            w.WriteStartArray("values");
            foreach (var v in c.Values)
            {
                w.WriteStartObject();
                w.WriteString("file", v.File);
                w.WriteString("key", v.Key);
                w.WriteString("value", v.Value);
                w.WriteEndObject();
            }

            w.WriteEndArray();
            if (c.Problem is not null) w.WriteString("problem", c.Problem);
            w.WriteEndObject();
        }

        w.WriteEndArray();
    }

    private static void Limits(Utf8JsonWriter w, ProcessSnapshot s)
    {
        w.WriteStartArray("limits");
        foreach (var l in s.Limits)
        {
            w.WriteStartObject();
            w.WriteString("resource", l.Resource);
            w.WriteString("name", l.Name);
            Unsigned(w, "soft", l.Soft);
            Unsigned(w, "hard", l.Hard);
            w.WriteString("units", l.Units);
            Unsigned(w, "init_soft", l.InitSoft);
            Unsigned(w, "init_hard", l.InitHard);
            w.WriteBoolean("differs_from_init", l.DiffersFromInit);
            w.WriteEndObject();
        }

        w.WriteEndArray();
    }

    private static void Mappings(Utf8JsonWriter w, ProcessSnapshot s)
    {
        if (s.Mappings is not { } m)
        {
            w.WriteNull("mappings");
            return;
        }

        w.WriteStartObject("mappings");
        w.WriteNumber("count", m.Count);
        w.WriteNumber("file", m.FileMappings);
        w.WriteNumber("anonymous", m.AnonymousMappings);
        w.WriteNumber("virtual_size", m.VirtualSize);
        w.WriteStartArray("largest");
        foreach (var e in m.Largest)
        {
            w.WriteStartObject();
            w.WriteString("start", "0x" + e.Start.ToString("x", CultureInfo.InvariantCulture));
            w.WriteString("end", "0x" + e.End.ToString("x", CultureInfo.InvariantCulture));
            w.WriteNumber("size", e.Size);
            w.WriteString("perms", e.Permissions);
            w.WriteString("path", e.Path);
            w.WriteEndObject();
        }

        w.WriteEndArray();
        Strings(w, "libraries", m.Libraries);
        w.WriteEndObject();
    }

    private static void Holders(Utf8JsonWriter w, string name, IReadOnlyList<DescriptorHolder> holders)
    {
        w.WriteStartArray(name);
        foreach (var h in holders)
        {
            w.WriteStartObject();
            w.WriteNumber("pid", h.Pid);
            w.WriteString("name", h.Name);
            w.WriteNumber("fd", h.Fd);
            w.WriteString("access", h.Access);
            w.WriteEndObject();
        }

        w.WriteEndArray();
    }

    private static void Ids(Utf8JsonWriter w, string name, IdSet? ids)
    {
        if (ids is null)
        {
            w.WriteNull(name);
            return;
        }

        w.WriteStartObject(name);
        w.WriteNumber("real", ids.Real);
        w.WriteNumber("effective", ids.Effective);
        w.WriteNumber("saved", ids.Saved);
        w.WriteNumber("fs", ids.Filesystem);
        w.WriteString("name", ids.RealName);
        w.WriteEndObject();
    }

    private static void Strings(Utf8JsonWriter w, string name, IEnumerable<string> values)
    {
        w.WriteStartArray(name);
        foreach (var v in values) w.WriteStringValue(v);
        w.WriteEndArray();
    }

    private static void Number(Utf8JsonWriter w, string name, long? value)
    {
        if (value is { } v) w.WriteNumber(name, v);
        else w.WriteNull(name);
    }

    private static void Unsigned(Utf8JsonWriter w, string name, ulong? value)
    {
        if (value is { } v) w.WriteNumber(name, v);
        else w.WriteNull(name);
    }

    /// <summary>KvmVcpu -> kvm_vcpu, EventFd -> event_fd ... as JSON keys elsewhere are.</summary>
    private static string Snake(string name)
    {
        var b = new System.Text.StringBuilder();
        for (var i = 0; i < name.Length; i++)
        {
            if (char.IsUpper(name[i]) && i > 0) b.Append('_');
            b.Append(char.ToLowerInvariant(name[i]));
        }

        return b.ToString();
    }
}
