using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Nozoki.Unwinding;

namespace Nozoki.Native;

/// <summary>One frame as libdw unwound it: its pc, and whether it is an activation (the interrupted frame or the one
/// a signal interrupted), whose pc is exact rather than a return address.</summary>
internal readonly record struct DwflRawFrame(ulong Pc, bool IsActivation);

/// <summary>What libdw knows about an address: module, covering symbol and source line (any may be missing).</summary>
internal readonly record struct DwflAddressInfo(string? ModulePath, ulong ModuleStart, string? Symbol, ulong SymbolOffset, string? File, int Line);

/// <summary>
/// One Dwfl session for a process: the modules of /proc/PID/maps reported once, and nozoki's own thread callbacks
/// attached (libdw never touches the process: registers and memory come from the caller on each unwind). The same
/// session serves many unwinds; libdw keeps each module's CFI and symbol table between them. Not thread-safe: the
/// caller serializes (a Dwfl is not safe for concurrent use).
/// </summary>
internal sealed unsafe class DwflProcess : IDisposable
{
    // Dwarf callbacks return DWARF_CB_OK to go on, DWARF_CB_ABORT to stop (libdw.h).
    private const int DwarfCbOk = 0, DwarfCbAbort = 1;

    private readonly int _pid;
    private readonly DwflCallbacks* _callbacks;
    private readonly DwflThreadCallbacks* _threadCallbacks;
    private readonly ulong* _registers;
    private readonly Dictionary<nint, string> _strings = [];

    // dwfl_module_addrinfo searches a module's symbol table linearly (~0.1 ms in libc's full .symtab), and
    // dwfl_module_getsrc costs as much again: the pcs of a hot stack repeat, so each is looked up once.
    private const int MaxCachedAddresses = 1 << 16;
    private readonly Dictionary<ulong, DwflAddressInfo> _addresses = [];
    private GCHandle _self;
    private nint _dwfl;

    // The state of the unwind in progress (set by Unwind, read by the callbacks on the same thread).
    private int _tid;
    private IMemorySource? _memory;
    private List<DwflRawFrame>? _frames;
    private int _maxFrames;
    private bool _pcFailed;

    internal DwflProcess(int pid)
    {
        _pid = pid;
        _callbacks = (DwflCallbacks*)NativeMemory.AllocZeroed((nuint)sizeof(DwflCallbacks));
        _threadCallbacks = (DwflThreadCallbacks*)NativeMemory.AllocZeroed((nuint)sizeof(DwflThreadCallbacks));
        _registers = (ulong*)NativeMemory.AllocZeroed(Libdw.X86_64DwarfRegisterCount * sizeof(ulong));
        _callbacks->FindElf = Libdw.LinuxProcFindElf;
        _callbacks->FindDebuginfo = Libdw.StandardFindDebuginfo;
        _threadCallbacks->NextThread = &NextThread;
        _threadCallbacks->GetThread = &GetThread;
        _threadCallbacks->MemoryRead = &MemoryRead;
        _threadCallbacks->SetInitialRegisters = &SetInitialRegisters;
        _threadCallbacks->Detach = &Detach;
        _threadCallbacks->ThreadDetach = &ThreadDetach;
        _self = GCHandle.Alloc(this);
        try
        {
            Report();
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>Drops the reported modules and reports /proc/PID/maps again (after dlopen/dlclose or exec).</summary>
    internal void Report()
    {
        if (_dwfl != 0)
        {
            Libdw.dwfl_end(_dwfl);
            _dwfl = 0;
            _strings.Clear();
            _addresses.Clear();
        }

        var dwfl = Libdw.dwfl_begin(_callbacks);
        if (dwfl == 0) throw new UnwindException($"dwfl_begin: {Libdw.LastError()}");
        Libdw.dwfl_report_begin(dwfl);
        var err = Libdw.dwfl_linux_proc_report(dwfl, _pid);
        if (err != 0)
        {
            Libdw.dwfl_end(dwfl);
            var message = err > 0 ? Marshal.GetPInvokeErrorMessage(err) : Libdw.LastError();
            throw new UnwindException($"cannot read the modules of process {_pid} (/proc/{_pid}/maps): {message}", err > 0 ? err : 0);
        }

        if (Libdw.dwfl_report_end(dwfl, 0, 0) != 0)
        {
            var message = Libdw.LastError();
            Libdw.dwfl_end(dwfl);
            throw new UnwindException($"dwfl_report_end: {message}");
        }

        if (!Libdw.dwfl_attach_state(dwfl, 0, _pid, _threadCallbacks, GCHandle.ToIntPtr(_self)))
        {
            var message = Libdw.LastError();
            Libdw.dwfl_end(dwfl);
            throw new UnwindException($"dwfl_attach_state for process {_pid}: {message}");
        }

        _dwfl = dwfl;
    }

    /// <summary>
    /// Unwinds thread TID from the 17 DWARF registers given, reading memory through MEMORY, appending at most
    /// MAXFRAMES frames to FRAMES. Returns null when libdw reached the outermost frame, else libdw's reason to stop.
    /// </summary>
    internal string? Unwind(int tid, ReadOnlySpan<ulong> dwarfRegisters, IMemorySource memory, List<DwflRawFrame> frames, int maxFrames)
    {
        ObjectDisposedException.ThrowIf(_dwfl == 0, this);
        dwarfRegisters[..Libdw.X86_64DwarfRegisterCount].CopyTo(new Span<ulong>(_registers, Libdw.X86_64DwarfRegisterCount));
        _tid = tid;
        _memory = memory;
        _frames = frames;
        _maxFrames = maxFrames;
        _pcFailed = false;
        try
        {
            var rc = Libdw.dwfl_getthread_frames(_dwfl, tid, &OnFrame, GCHandle.ToIntPtr(_self));
            if (rc == 0) return null;
            if (rc == DwarfCbAbort) return _pcFailed ? "a frame without a pc" : $"stopped after {maxFrames} frames";
            return Libdw.LastError();
        }
        finally
        {
            _memory = null;
            _frames = null;
        }
    }

    /// <summary>Module, symbol and line of ADDRESS (a pc already moved into its call instruction for return
    /// addresses), remembered per address until the modules are reported again.</summary>
    internal DwflAddressInfo Describe(ulong address)
    {
        ObjectDisposedException.ThrowIf(_dwfl == 0, this);
        if (_addresses.TryGetValue(address, out var info)) return info;
        info = Lookup(address, withLine: true);
        if (_addresses.Count >= MaxCachedAddresses) _addresses.Clear();
        _addresses[address] = info;
        return info;
    }

    private DwflAddressInfo Lookup(ulong address, bool withLine)
    {
        var module = Libdw.dwfl_addrmodule(_dwfl, address);
        if (module == 0) return default;
        ulong start, end;
        byte* mainFile = null;
        var name = Libdw.dwfl_module_info(module, 0, &start, &end, null, null, &mainFile, null);
        var path = Intern(name);
        ulong offset = 0, bias = 0;
        GElfSym sym;
        uint shndx;
        nint elf;
        var symbol = Intern(Libdw.dwfl_module_addrinfo(module, address, &offset, &sym, &shndx, &elf, &bias));
        string? file = null;
        var line = 0;
        if (withLine)
        {
            var src = Libdw.dwfl_module_getsrc(module, address);
            if (src != 0)
            {
                int l, col;
                file = Intern(Libdw.dwfl_lineinfo(src, null, &l, &col, null, null));
                if (file is not null) line = l;
            }
        }

        return new DwflAddressInfo(path, start, symbol, offset, file, line);
    }

    // libdw's strings (module names, symbol names in a mapped string table) live as long as the Dwfl: convert each
    // once, so that a warm unwind allocates nothing for names.
    private string? Intern(byte* s)
    {
        if (s == null) return null;
        if (!_strings.TryGetValue((nint)s, out var str))
        {
            str = Marshal.PtrToStringUTF8((nint)s) ?? "";
            _strings[(nint)s] = str;
        }

        return str;
    }

    public void Dispose()
    {
        if (_dwfl != 0)
        {
            Libdw.dwfl_end(_dwfl);
            _dwfl = 0;
        }

        if (_self.IsAllocated) _self.Free();
        NativeMemory.Free(_callbacks);
        NativeMemory.Free(_threadCallbacks);
        NativeMemory.Free(_registers);
    }

    private static DwflProcess? From(nint arg) => arg == 0 ? null : GCHandle.FromIntPtr(arg).Target as DwflProcess;

    // libdw asks for "the next thread" only when the caller iterates every thread; nozoki unwinds one, the one set by
    // Unwind, through get_thread. next_thread still names it once so that iteration is consistent.
    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int NextThread(nint dwfl, nint dwflArg, nint* threadArg)
    {
        var self = From(dwflArg);
        if (self is null || *threadArg != 0) return 0;
        *threadArg = dwflArg;
        return self._tid;
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static byte GetThread(nint dwfl, int tid, nint dwflArg, nint* threadArg)
    {
        var self = From(dwflArg);
        if (self is null || tid != self._tid) return 0;
        *threadArg = dwflArg;
        return 1;
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static byte MemoryRead(nint dwfl, ulong address, ulong* result, nint dwflArg)
    {
        try
        {
            var memory = From(dwflArg)?._memory;
            if (memory is null || !memory.TryReadWord(address, out var word)) return 0;
            *result = word;
            return 1;
        }
        catch (Exception)
        {
            // Nothing may unwind through libdw's frames; a failed read ends the unwind.
            return 0;
        }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static byte SetInitialRegisters(nint thread, nint threadArg)
    {
        try
        {
            var self = From(threadArg);
            if (self is null) return 0;
            return Libdw.dwfl_thread_state_registers(thread, 0, Libdw.X86_64DwarfRegisterCount, self._registers) ? (byte)1 : (byte)0;
        }
        catch (Exception)
        {
            return 0;
        }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void Detach(nint dwfl, nint dwflArg)
    {
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void ThreadDetach(nint thread, nint threadArg)
    {
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int OnFrame(nint frame, nint arg)
    {
        try
        {
            return AddFrame(frame, arg);
        }
        catch (Exception)
        {
            // An exception must not cross libdw's frames (it would end the process); the unwind stops here.
            return DwarfCbAbort;
        }
    }

    private static int AddFrame(nint frame, nint arg)
    {
        var self = From(arg);
        var frames = self?._frames;
        if (frames is null) return DwarfCbAbort;
        ulong pc;
        byte isActivation;
        if (!Libdw.dwfl_frame_pc(frame, &pc, &isActivation))
        {
            self!._pcFailed = true;
            return DwarfCbAbort;
        }

        frames.Add(new DwflRawFrame(pc, isActivation != 0));
        return frames.Count >= self!._maxFrames ? DwarfCbAbort : DwarfCbOk;
    }
}
