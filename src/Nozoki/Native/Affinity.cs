namespace Nozoki.Native;

/// <summary>CPU affinity of the calling thread (sched_setaffinity with pid 0 acts on the caller only).</summary>
internal static unsafe class Affinity
{
    private const int Words = 16; // 1024 CPUs, glibc's cpu_set_t

    /// <summary>The CPUs the calling thread may run on, or null if unknown.</summary>
    internal static ulong[]? Get()
    {
        var mask = new ulong[Words];
        fixed (ulong* m = mask)
        {
            return Libc.sched_getaffinity(0, Words * 8, m) == 0 ? mask : null;
        }
    }

    internal static bool Set(ReadOnlySpan<ulong> mask)
    {
        fixed (ulong* m = mask) return Libc.sched_setaffinity(0, (nuint)(mask.Length * 8), m) == 0;
    }

    internal static bool SetSingle(int cpu)
    {
        if (cpu is < 0 or >= Words * 64) return false;
        var mask = stackalloc ulong[Words];
        new Span<ulong>(mask, Words).Clear();
        mask[cpu / 64] = 1UL << (cpu % 64);
        return Libc.sched_setaffinity(0, Words * 8, mask) == 0;
    }

    internal static int CurrentCpu() => Libc.sched_getcpu();
}
