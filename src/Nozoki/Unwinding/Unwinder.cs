using System.Globalization;
using Nozoki.Native;
using Nozoki.Tracing;

namespace Nozoki.Unwinding;

/// <summary>
/// Native backtraces of one process through elfutils' libdw: libdw reads the modules of /proc/PID/maps and evaluates
/// their CFI (.eh_frame, .debug_frame, found with separate debug files through the build-id or .gnu_debuglink);
/// nozoki supplies the registers and the memory, live or from a stack copy, so libdw never stops or reads the
/// process itself. One Unwinder keeps libdw's per-module state (CFI, symbol tables) between unwinds: create it once
/// per process and reuse it. Thread-safe (unwinds are serialized).
/// </summary>
public sealed class Unwinder : IDisposable
{
    private readonly object _gate = new();
    private readonly DwflProcess _dwfl;
    private readonly List<DwflRawFrame> _raw = [];
    private readonly ulong[] _dwarfRegisters = new ulong[X86Registers.DwarfRegisterCount];
    private readonly FailureTracking _tracking = new();
    private readonly Dictionary<string, string> _moduleNames = new(StringComparer.Ordinal);
    private string? _reportedMaps;
    private bool _disposed;

    private Unwinder(int pid, DwflProcess dwfl)
    {
        Pid = pid;
        _dwfl = dwfl;
    }

    /// <summary>The process.</summary>
    private readonly Dictionary<ulong, DwflAddressInfo> _described = [];

    public int Pid { get; }

    /// <summary>The most frames one unwind returns (a corrupt stack may loop); 1024 unless set.</summary>
    public int MaxFrames { get; init; } = 1024;

    /// <summary>
    /// An unwinder for process PID, its modules read from /proc/PID/maps now. Throws <see cref="UnwindException"/>
    /// when libdw.so.1 cannot be loaded (Debian package libdw1) or the maps cannot be read.
    /// </summary>
    public static Unwinder ForProcess(int pid)
    {
        if (!Libdw.IsAvailable)
            throw new UnwindException("native backtraces need elfutils' libdw.so.1, which is not installed (Debian/Ubuntu: apt-get install libdw1; Fedora: elfutils-libs)");
        var maps = ReadMaps(pid);
        return new Unwinder(pid, new DwflProcess(pid)) { _reportedMaps = maps };
    }

    /// <summary>Reports the process's modules again (call after it mapped or unmapped code: dlopen, dlclose, exec).
    /// An unwind also does it by itself when a frame's pc lies in no module and the maps have changed.</summary>
    public void Refresh()
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _reportedMaps = ReadMaps(Pid);
            _dwfl.Report();
            _described.Clear();
        }
    }

    /// <summary>
    /// The backtrace of thread TID (of this process) whose general registers are REGISTERS, reading the stack through
    /// MEMORY (a <see cref="LiveMemory"/> of the stopped thread, or a <see cref="StackCopy"/>). Frame 0 is the
    /// registers' rip. When the unwind cannot reach the outermost frame, the last element is a marker frame
    /// (<see cref="Frame.EndMarker"/>): "stack copy ends here" when a StackCopy was too short, else libdw's reason.
    /// </summary>
    public IReadOnlyList<Frame> Unwind(int tid, in X86Registers registers, IMemorySource memory)
    {
        ArgumentNullException.ThrowIfNull(memory);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            registers.WriteDwarfRegisters(_dwarfRegisters);
            var frames = UnwindOnce(tid, memory, out var needsRefresh);
            if (needsRefresh && MapsChanged())
            {
                _dwfl.Report();
                _described.Clear();
                frames = UnwindOnce(tid, memory, out _);
            }

            return frames;
        }
    }

    private List<Frame> UnwindOnce(int tid, IMemorySource memory, out bool unknownPc)
    {
        (memory as LiveMemory)?.Invalidate();
        var copy = memory as StackCopy;
        copy?.Reset();
        _raw.Clear();
        _tracking.Start(memory);
        string? error;
        try
        {
            error = _dwfl.Unwind(tid, _dwarfRegisters, _tracking, _raw, MaxFrames);
        }
        finally
        {
            _tracking.Inner = null;
        }

        var frames = new List<Frame>(_raw.Count + 1);
        unknownPc = false;
        foreach (var raw in _raw)
        {
            var lookup = raw.IsActivation || raw.Pc == 0 ? raw.Pc : raw.Pc - 1;
            // A hot location is unwound thousands of times: its pcs are looked up once (symbol, file:line).
            if (!_described.TryGetValue(lookup, out var info)) _described[lookup] = info = _dwfl.Describe(lookup);
            if (info.ModulePath is null)
            {
                unknownPc = true;
                frames.Add(new Frame(frames.Count, raw.Pc, raw.IsActivation, null, null, null, 0, null, null));
                continue;
            }

            var module = ModuleName(info.ModulePath);
            var offset = info.Symbol is not null ? info.SymbolOffset + (raw.Pc - lookup) : raw.Pc - info.ModuleStart;
            frames.Add(new Frame(frames.Count, raw.Pc, raw.IsActivation, module, info.ModulePath, WithoutVersion(info.Symbol), offset,
                info.File, info.File is null ? null : info.Line));
        }

        // libdw takes a register it could not read from memory as undefined, so a return address beyond a stack
        // copy looks like the outermost frame: only the failed read tells the two apart.
        string? marker = null;
        if (copy is { ReadPastEnd: true }) marker = "stack copy ends here";
        else if (error is not null) marker = "unwinding stopped: " + error;
        else if (_tracking.FirstFailure is { } failed)
            marker = string.Create(CultureInfo.InvariantCulture, $"unwinding stopped: memory at 0x{failed:x} could not be read");
        if (marker is not null) frames.Add(new Frame(frames.Count, 0, false, null, null, null, 0, null, null, marker));

        return frames;
    }

    private bool MapsChanged()
    {
        string maps;
        try
        {
            maps = ReadMaps(Pid);
        }
        catch (UnwindException)
        {
            return false;
        }

        if (maps == _reportedMaps) return false;
        _reportedMaps = maps;
        return true;
    }

    private static string ReadMaps(int pid)
    {
        try
        {
            return File.ReadAllText($"/proc/{pid}/maps");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UnwindException($"cannot read /proc/{pid}/maps: {e.Message}");
        }
    }

    private string ModuleName(string path)
    {
        if (!_moduleNames.TryGetValue(path, out var name))
        {
            var slash = path.LastIndexOf('/');
            name = slash >= 0 ? path[(slash + 1)..] : path;
            _moduleNames[path] = name;
        }

        return name;
    }

    // Symbol tables of debug files hold versioned names (__libc_start_main@@GLIBC_2.34): show the name alone.
    private static string? WithoutVersion(string? symbol)
    {
        var at = symbol?.IndexOf('@') ?? -1;
        return at > 0 ? symbol![..at] : symbol;
    }

    /// <summary>Passes reads on, remembering the first that failed.</summary>
    private sealed class FailureTracking : IMemorySource
    {
        public IMemorySource? Inner;
        public ulong? FirstFailure;

        public void Start(IMemorySource inner)
        {
            Inner = inner;
            FirstFailure = null;
        }

        public bool TryReadWord(ulong address, out ulong value)
        {
            if (Inner is not null && Inner.TryReadWord(address, out value)) return true;
            value = 0;
            FirstFailure ??= address;
            return false;
        }
    }

    /// <summary>Ends the libdw session.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            _dwfl.Dispose();
        }
    }
}
