using System.Globalization;

namespace Nozoki.Procfs;

/// <summary>The fields of /proc/PID/status and /proc/PID/stat nozoki needs to decide whether and how it may attach.</summary>
public sealed record ProcessInfo(int Pid, string Name, char State, int Tgid, int PPid, int TracerPid, uint RealUid, uint EffectiveUid, bool IsKernelThread)
{
    private const uint PF_KTHREAD = 0x00200000;

    /// <summary>Reads /proc/PID; null when there is no such process (or it vanished while being read).</summary>
    public static ProcessInfo? TryRead(int pid)
    {
        string status, stat;
        try
        {
            status = File.ReadAllText($"/proc/{pid}/status");
            stat = File.ReadAllText($"/proc/{pid}/stat");
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException or IOException)
        {
            return null;
        }

        string name = "";
        char state = '?';
        int tgid = pid, ppid = 0, tracer = 0;
        uint ruid = 0, euid = 0;
        foreach (var line in status.AsSpan().EnumerateLines())
        {
            var colon = line.IndexOf(':');
            if (colon < 0) continue;
            var key = line[..colon];
            var value = line[(colon + 1)..].Trim();
            switch (key)
            {
                case "Name": name = value.ToString(); break;
                case "State": state = value.Length > 0 ? value[0] : '?'; break;
                case "Tgid": tgid = int.Parse(value, CultureInfo.InvariantCulture); break;
                case "PPid": ppid = int.Parse(value, CultureInfo.InvariantCulture); break;
                case "TracerPid": tracer = int.Parse(value, CultureInfo.InvariantCulture); break;
                case "Uid":
                    var parts = value.ToString().Split('\t', ' ', StringSplitOptions.RemoveEmptyEntries);
                    ruid = uint.Parse(parts[0], CultureInfo.InvariantCulture);
                    euid = uint.Parse(parts[1], CultureInfo.InvariantCulture);
                    break;
            }
        }

        // The comm field of /proc/PID/stat may contain spaces and parentheses: the fields start after the last ')'.
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        var flags = uint.Parse(fields[6], CultureInfo.InvariantCulture);
        return new ProcessInfo(pid, name, state, tgid, ppid, tracer, ruid, euid, (flags & PF_KTHREAD) != 0);
    }

    /// <summary>The thread ids in /proc/PID/task (empty if the process is gone).</summary>
    public static List<int> ReadThreadIds(int pid)
    {
        var list = new List<int>();
        try
        {
            foreach (var dir in Directory.EnumerateDirectories($"/proc/{pid}/task"))
            {
                if (int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out var tid)) list.Add(tid);
            }
        }
        catch (Exception e) when (e is DirectoryNotFoundException or IOException)
        {
        }

        return list;
    }

    /// <summary>The thread group (process) id of a thread, or 0 if it is gone.</summary>
    public static int ReadTgid(int tid)
    {
        try
        {
            foreach (var line in File.ReadLines($"/proc/{tid}/status"))
            {
                if (line.StartsWith("Tgid:", StringComparison.Ordinal)) return int.Parse(line.AsSpan(5).Trim(), CultureInfo.InvariantCulture);
            }
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException or IOException)
        {
        }

        return 0;
    }

    /// <summary>Whether signo is pending for the thread (its own SigPnd, or the process's ShdPnd).</summary>
    public static bool HasPendingSignal(int pid, int tid, int signo)
    {
        try
        {
            foreach (var line in File.ReadLines($"/proc/{pid}/task/{tid}/status"))
            {
                if (!line.StartsWith("SigPnd:", StringComparison.Ordinal) && !line.StartsWith("ShdPnd:", StringComparison.Ordinal)) continue;
                var mask = ulong.Parse(line.AsSpan(7).Trim(), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                if ((mask & (1UL << (signo - 1))) != 0) return true;
            }
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException or IOException)
        {
        }

        return false;
    }

    /// <summary>kernel.yama.ptrace_scope, or null when Yama is not in this kernel.</summary>
    public static int? ReadYamaPtraceScope()
    {
        try
        {
            return int.Parse(File.ReadAllText("/proc/sys/kernel/yama/ptrace_scope").Trim(), CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException or IOException or FormatException)
        {
            return null;
        }
    }

    /// <summary>Whether this process has CAP_SYS_PTRACE in its effective set.</summary>
    public static bool SelfHasCapSysPtrace()
    {
        const int CAP_SYS_PTRACE = 19;
        foreach (var line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith("CapEff:", StringComparison.Ordinal))
            {
                var caps = ulong.Parse(line.AsSpan(7).Trim(), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                return (caps & (1UL << CAP_SYS_PTRACE)) != 0;
            }
        }

        return false;
    }
}
