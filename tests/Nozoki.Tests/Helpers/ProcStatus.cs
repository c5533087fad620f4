using System.Globalization;

namespace Nozoki.Tests.Helpers;

/// <summary>The interesting fields of /proc/PID/status.</summary>
internal sealed record ProcStatus(string Name, char State, int TracerPid, int PPid, int Uid, ulong SigCgt, ulong SigPending)
{
    /// <summary>Whether signal SIGNO is pending for the process or any of its threads (ShdPnd, SigPnd of the leader).</summary>
    public bool HasPending(int signo) => (SigPending & (1UL << (signo - 1))) != 0;

    /// <summary>Whether the process has a handler installed for signal SIGNO (SigCgt).</summary>
    public bool Catches(int signo) => (SigCgt & (1UL << (signo - 1))) != 0;

    /// <summary>Reads /proc/PID/status; null when the process does not exist (any more).</summary>
    public static ProcStatus? Read(int pid)
    {
        string[] lines;
        try
        {
            lines = File.ReadAllLines($"/proc/{pid}/status");
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException or IOException)
        {
            return null;
        }

        string name = "";
        char state = '?';
        int tracer = -1, ppid = -1, uid = -1;
        ulong caught = 0, pending = 0;
        foreach (var line in lines)
        {
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon < 0) continue;
            var value = line[(colon + 1)..].Trim();
            switch (line[..colon])
            {
                case "Name": name = value; break;
                case "State": state = value.Length > 0 ? value[0] : '?'; break;
                case "TracerPid": tracer = int.Parse(value, CultureInfo.InvariantCulture); break;
                case "PPid": ppid = int.Parse(value, CultureInfo.InvariantCulture); break;
                case "SigPnd" or "ShdPnd": pending |= ulong.Parse(value, NumberStyles.HexNumber, CultureInfo.InvariantCulture); break;
                case "SigCgt": caught = ulong.Parse(value, NumberStyles.HexNumber, CultureInfo.InvariantCulture); break;
                case "Uid": uid = int.Parse(value.Split('\t', ' ')[0], CultureInfo.InvariantCulture); break;
            }
        }

        return new ProcStatus(name, state, tracer, ppid, uid, caught, pending);
    }

    /// <summary>Reads /proc/PID/status; fails the test if the process is gone.</summary>
    public static ProcStatus Get(int pid) =>
        Read(pid) ?? throw new Xunit.Sdk.XunitException($"/proc/{pid}/status does not exist (process gone)");

    public static void WaitForState(int pid, char state, TimeSpan timeout) =>
        Poll.Until(() => Read(pid)?.State == state, timeout,
            () => $"PID {pid} to reach State '{state}' (now: {Read(pid)?.ToString() ?? "gone"})");
}
