using System.Globalization;
using Nozoki.Native;

namespace Nozoki.Tracing;

/// <summary>
/// Keeps the ptrace thread on the CPU where the tracee last ran. Each stop is a tracee-to-tracer wake-up and each
/// resume the reverse; when the two sit on different CPUs every one of them is a cross-CPU wake-up (an IPI and a
/// cold cache), which costs several times more than the ptrace work itself. The tracee is never moved: only
/// nozoki's own thread follows it, re-checked every few thousand stops from /proc/TID/stat.
/// </summary>
internal sealed class CpuFollower
{
    private const int SampleEvery = 2048;
    private readonly ulong[] _allowed;
    private readonly byte[] _statBuffer = new byte[1024];
    private int _stops = SampleEvery - 1; // sample at the first stop
    private int _cpu = -1;

    private CpuFollower(ulong[] allowed) => _allowed = allowed;

    public static CpuFollower? TryCreate()
    {
        var allowed = Affinity.Get();
        if (allowed is null || Environment.ProcessorCount < 2) return null;
        return new CpuFollower(allowed);
    }

    public void OnStop(int tid)
    {
        if (++_stops < SampleEvery) return;
        _stops = 0;
        var cpu = ReadLastCpu(tid);
        if (cpu < 0 || cpu == _cpu || (_allowed[cpu / 64] & (1UL << (cpu % 64))) == 0) return;
        if (Affinity.SetSingle(cpu)) _cpu = cpu;
    }

    /// <summary>Gives the thread back its original CPUs (for example before it blocks for long).</summary>
    public void Release()
    {
        if (_cpu < 0) return;
        Affinity.Set(_allowed);
        _cpu = -1;
    }

    private int ReadLastCpu(int tid)
    {
        int n;
        try
        {
            using var f = new FileStream($"/proc/{tid}/stat", FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 0);
            n = f.Read(_statBuffer);
        }
        catch (IOException)
        {
            return -1;
        }
        catch (UnauthorizedAccessException)
        {
            return -1;
        }

        var text = _statBuffer.AsSpan(0, n);
        var close = text.LastIndexOf((byte)')');
        if (close < 0) return -1;
        // Fields after "comm)": state is field 3, processor is field 39.
        var field = 3;
        var i = close + 2;
        while (i < text.Length && field < 39)
        {
            if (text[i] == (byte)' ') field++;
            i++;
        }

        var end = i;
        while (end < text.Length && text[end] != (byte)' ') end++;
        return int.TryParse(text[i..end], NumberStyles.None, CultureInfo.InvariantCulture, out var cpu) ? cpu : -1;
    }
}
