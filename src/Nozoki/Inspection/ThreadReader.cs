using System.Globalization;
using Nozoki.Native;
using Nozoki.Syscalls;
using Nozoki.Tracing;

namespace Nozoki.Inspection;

/// <summary>
/// Every thread of a process and what it is doing this instant: /proc/PID/task/TID/stat (name, state, CPU, times),
/// syscall (the call it is blocked in, decoded with the tracer's own decoders) and wchan.
/// </summary>
internal static class ThreadReader
{
    /// <summary>ioctl(2) and KVM_RUN (_IO(KVMIO, 0x80)): a thread running a vCPU is blocked in this call on its descriptor.</summary>
    internal const long IoctlNr = 16;

    internal const ulong KvmRun = 0xae80;

    public static List<ThreadSnapshot> Read(int pid, bool kernelThread, ProcSource src, ProblemList problems)
    {
        var list = new List<ThreadSnapshot>();
        var opened = ProcFiles.OpenDirectory($"/proc/{pid}/task", out var dir);
        if (!opened.IsOk)
        {
            problems.Add(InspectSections.Threads, "threads", opened);
            return list;
        }

        var tids = new List<int>();
        try
        {
            var listed = ProcFiles.ListNumbers(dir, new byte[32 << 10], tids);
            if (!listed.IsOk) problems.Add(InspectSections.Threads, "threads", listed);
        }
        finally
        {
            ProcFiles.Close(dir);
        }

        tids.Sort();
        // Descriptors in the calls decoded as `trace -yy` shows them: paths, and sockets' addresses.
        var decoder = new SyscallDecoder(new DecodeOptions { DecorateFds = 2 });
        var denied = false;
        foreach (var tid in tids)
        {
            var stat = StatFields.Parse(src.Text($"/proc/{pid}/task/{tid}/stat", out _));
            if (stat is null) continue; // the thread has exited since the listing
            var thread = new ThreadSnapshot
            {
                Tid = tid,
                Name = stat.Name,
                State = stat.State,
                Cpu = (int)stat[StatFields.Processor],
                CpuUser = StatFields.Ticks(stat[StatFields.UTime]),
                CpuSystem = StatFields.Ticks(stat[StatFields.STime]),
                Activity = ThreadActivity.Unknown,
            };
            var wchan = src.Text($"/proc/{pid}/task/{tid}/wchan", out _) is { Length: > 0 } w && w != "0" ? w.Trim() : null;
            thread = thread with { Wchan = wchan };
            if (kernelThread)
            {
                // A kernel thread never entered from user space: its syscall file shows the zeros of registers it never had.
                list.Add(thread with { Activity = ThreadActivity.NotInSyscall });
                continue;
            }

            var syscall = src.Text($"/proc/{pid}/task/{tid}/syscall", out var r);
            if (syscall is null)
            {
                if (r.IsPermissionDenied && !denied)
                {
                    denied = true;
                    problems.Add(InspectSections.Threads, ProblemKind.PermissionDenied, "system calls of the threads", "permission denied");
                }

                list.Add(thread with { Problem = r.IsPermissionDenied ? "permission denied" : r.IsNotFound || r.IsGone ? "exited" : r.Message });
                continue;
            }

            list.Add(Decode(pid, thread, syscall, decoder));
        }

        return list;
    }

    /// <summary>
    /// The thread's activity from its syscall file: "running"; "-1 SP PC" (not in a system call); or
    /// "NR ARG0 ... ARG5 SP PC" in hexadecimal (proc(5)).
    /// </summary>
    internal static ThreadSnapshot Decode(int pid, ThreadSnapshot thread, string syscall, SyscallDecoder? decoder)
    {
        var text = syscall.Trim();
        if (text == "running") return thread with { Activity = ThreadActivity.Running };
        var f = text.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (f.Length >= 1 && f[0] == "-1") return thread with { Activity = ThreadActivity.NotInSyscall };
        if (f.Length < 7 || !long.TryParse(f[0], NumberStyles.None, CultureInfo.InvariantCulture, out var nr))
            return thread with { Problem = "unreadable: " + text };
        var a = new ulong[6];
        for (var i = 0; i < 6; i++) a[i] = Hex(f[i + 1]);
        var args = new SyscallArgs(a[0], a[1], a[2], a[3], a[4], a[5]);
        string? call = null;
        if (decoder is not null)
        {
            try
            {
                call = decoder.InProgress(pid, thread.Tid, nr, args);
            }
            catch (Exception e) when (e is ArgumentException or IndexOutOfRangeException or FormatException or IOException)
            {
                call = null;
            }
        }

        var name = SyscallTable.Name(nr);
        return thread with
        {
            Activity = ThreadActivity.Syscall,
            SyscallNumber = nr,
            Args = args,
            SyscallName = name ?? "syscall_0x" + nr.ToString("x", CultureInfo.InvariantCulture),
            Call = call,
        };
    }

    private static ulong Hex(string s) =>
        ulong.TryParse(s.StartsWith("0x", StringComparison.Ordinal) ? s.AsSpan(2) : s, NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var v) ? v : 0;
}
