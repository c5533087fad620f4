using System.Runtime.InteropServices;

namespace Nozoki.Native;

/// <summary>
/// perf_event_open(2) for uprobes: a kernel breakpoint at a file offset that records the thread's registers (and
/// optionally the top of its stack) into a ring buffer we map, without stopping the thread.
/// </summary>
internal static unsafe partial class Perf
{
    private const long SYS_perf_event_open = 298;

    // sample_type bits (linux/perf_event.h)
    public const ulong SAMPLE_TID = 1 << 1, SAMPLE_TIME = 1 << 2, SAMPLE_REGS_USER = 1 << 12, SAMPLE_STACK_USER = 1 << 13,
        SAMPLE_IDENTIFIER = 1 << 16;

    // attr flag bits
    public const ulong FLAG_WATERMARK = 1UL << 14, FLAG_USE_CLOCKID = 1UL << 25;

    // record types
    public const uint RECORD_LOST = 2, RECORD_SAMPLE = 9;

    /// <summary>read_format: the count is followed by the number of samples the kernel could not store (Linux 6.0+).</summary>
    public const ulong FORMAT_LOST = 1 << 4;

    public const uint IOC_SET_OUTPUT = 0x2405;
    public const uint IOC_ID = 0x80082407; // _IOR('$', 7, u64)
    public const uint FLAG_FD_CLOEXEC = 8;

    /// <summary>PERF_SAMPLE_REGS_ABI_64: the sampled thread was in 64-bit mode.</summary>
    public const ulong REGS_ABI_64 = 2;

    /// <summary>The uprobe PMU's config bits 32..63: the file offset of the probe's semaphore (ref_ctr_offset).</summary>
    public const int UPROBE_REF_CTR_OFFSET_SHIFT = 32;

    private const int CLOCK_MONOTONIC = 1;

    [LibraryImport("libc.so.6", EntryPoint = "syscall", SetLastError = true)]
    private static partial long syscall(long number, PerfEventAttr* attr, int pid, int cpu, int groupFd, ulong flags);

    [LibraryImport("libc.so.6", EntryPoint = "ioctl", SetLastError = true)]
    private static partial int ioctl(int fd, ulong request, ulong arg);

    [LibraryImport("libc.so.6", EntryPoint = "mmap", SetLastError = true)]
    private static partial nint mmap(nint addr, nuint length, int prot, int flags, int fd, long offset);

    [LibraryImport("libc.so.6", EntryPoint = "munmap", SetLastError = true)]
    private static partial int munmap(nint addr, nuint length);

    /// <summary>The uprobe PMU's type number (/sys/bus/event_source/devices/uprobe/type), or null without one.</summary>
    public static int? UprobePmuType()
    {
        try
        {
            return int.Parse(File.ReadAllText("/sys/bus/event_source/devices/uprobe/type").Trim(), System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
            return null;
        }
    }

    /// <summary>
    /// Opens a uprobe on <paramref name="path"/> at <paramref name="offset"/> for one thread; its samples carry the
    /// event id, pid/tid, time (CLOCK_MONOTONIC), the registers in <paramref name="regsMask"/> and
    /// <paramref name="stackBytes"/> bytes from the stack pointer, as <paramref name="fd"/>.
    /// </summary>
    public static SysResult OpenUprobe(int pmuType, string path, ulong offset, ulong refCtrOffset, int tid, ulong regsMask, uint stackBytes, uint wakeupBytes,
        bool countLost, out int fd)
    {
        var pathBytes = System.Text.Encoding.UTF8.GetBytes(path + "\0");
        fixed (byte* p = pathBytes)
        {
            var attr = new PerfEventAttr
            {
                Type = (uint)pmuType,
                Size = (uint)sizeof(PerfEventAttr),
                Config = refCtrOffset << UPROBE_REF_CTR_OFFSET_SHIFT,
                SamplePeriod = 1,
                SampleType = SAMPLE_IDENTIFIER | SAMPLE_TID | SAMPLE_TIME | SAMPLE_REGS_USER | (stackBytes > 0 ? SAMPLE_STACK_USER : 0),
                ReadFormat = countLost ? FORMAT_LOST : 0,
                Flags = FLAG_WATERMARK | FLAG_USE_CLOCKID,
                WakeupWatermark = wakeupBytes,
                Config1 = (ulong)p,
                Config2 = offset,
                SampleRegsUser = regsMask,
                SampleStackUser = stackBytes,
                ClockId = CLOCK_MONOTONIC,
            };
            fd = (int)syscall(SYS_perf_event_open, &attr, tid, -1, -1, FLAG_FD_CLOEXEC);
            return SysResult.Of(fd >= 0);
        }
    }

    /// <summary>An event's count (hits) and, when opened with countLost, how many of its samples were dropped.</summary>
    public static bool TryReadCounts(int fd, out ulong count, out ulong lost)
    {
        var buf = stackalloc ulong[2];
        var n = read(fd, buf, 16);
        count = n >= 8 ? buf[0] : 0;
        lost = n >= 16 ? buf[1] : 0;
        return n >= 8;
    }

    [LibraryImport("libc.so.6", EntryPoint = "read", SetLastError = true)]
    private static partial nint read(int fd, void* buffer, nuint count);

    /// <summary>The kernel's id of an event (what PERF_SAMPLE_IDENTIFIER puts first in each of its samples).</summary>
    public static SysResult GetId(int fd, out ulong id)
    {
        ulong v = 0;
        var r = SysResult.Of(ioctl(fd, IOC_ID, (ulong)&v) == 0);
        id = v;
        return r;
    }

    /// <summary>Sends the samples of <paramref name="fd"/> to the ring buffer of <paramref name="outputFd"/> (same thread).</summary>
    public static SysResult SetOutput(int fd, int outputFd) => SysResult.Of(ioctl(fd, IOC_SET_OUTPUT, (ulong)outputFd) == 0);

    /// <summary>Maps the ring buffer: one metadata page, then <paramref name="dataPages"/> (a power of two) pages.</summary>
    public static SysResult MapRing(int fd, int dataPages, out nint address, out nuint length)
    {
        length = (nuint)((1 + dataPages) * Environment.SystemPageSize);
        const int PROT_READ = 1, PROT_WRITE = 2, MAP_SHARED = 1;
        var a = mmap(0, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        address = a == -1 ? 0 : a;
        return SysResult.Of(a != -1);
    }

    public static void Unmap(nint address, nuint length) => munmap(address, length);
}

/// <summary>struct perf_event_attr (PERF_ATTR_SIZE_VER8, 136 bytes).</summary>
[StructLayout(LayoutKind.Explicit, Size = 136)]
internal struct PerfEventAttr
{
    [FieldOffset(0)] public uint Type;
    [FieldOffset(4)] public uint Size;
    [FieldOffset(8)] public ulong Config;
    [FieldOffset(16)] public ulong SamplePeriod;
    [FieldOffset(24)] public ulong SampleType;
    [FieldOffset(32)] public ulong ReadFormat;
    [FieldOffset(40)] public ulong Flags;
    [FieldOffset(48)] public uint WakeupWatermark;
    [FieldOffset(52)] public uint BpType;
    [FieldOffset(56)] public ulong Config1;
    [FieldOffset(64)] public ulong Config2;
    [FieldOffset(72)] public ulong BranchSampleType;
    [FieldOffset(80)] public ulong SampleRegsUser;
    [FieldOffset(88)] public uint SampleStackUser;
    [FieldOffset(92)] public int ClockId;
    [FieldOffset(96)] public ulong SampleRegsIntr;
    [FieldOffset(104)] public uint AuxWatermark;
    [FieldOffset(108)] public ushort SampleMaxStack;
    [FieldOffset(112)] public uint AuxSampleSize;
    [FieldOffset(120)] public ulong SigData;
    [FieldOffset(128)] public ulong Config3;
}

/// <summary>Offsets in struct perf_event_mmap_page (the ring buffer's first page).</summary>
internal static class PerfMmapPage
{
    public const int DataHead = 1024, DataTail = 1032, DataOffset = 1040, DataSize = 1048;
}
