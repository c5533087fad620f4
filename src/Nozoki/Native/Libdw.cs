using System.Runtime.InteropServices;

namespace Nozoki.Native;

/// <summary>
/// The libdwfl part of elfutils' libdw (libdwfl.h, elfutils 0.158+) that nozoki drives to unwind native stacks:
/// modules reported from /proc/PID/maps, CFI (.eh_frame/.debug_frame) evaluated by libdw, and registers and memory
/// supplied by nozoki through <see cref="DwflThreadCallbacks"/>. Every pointer here is owned by libdw unless said.
/// </summary>
internal static unsafe partial class Libdw
{
    // The soname, as Debian's libdw1 installs it (no libdw.so without libdw-dev).
    private const string Lib = "libdw.so.1";

    /// <summary>Number of x86_64 DWARF registers set as the initial frame: rax, rdx, rcx, rbx, rsi, rdi, rbp, rsp,
    /// r8-r15 (0..15) and the return address column rip (16), as the psABI numbers them.</summary>
    internal const int X86_64DwarfRegisterCount = Tracing.X86Registers.DwarfRegisterCount;

    [LibraryImport(Lib, EntryPoint = "dwfl_begin")]
    internal static partial nint dwfl_begin(DwflCallbacks* callbacks);

    [LibraryImport(Lib, EntryPoint = "dwfl_end")]
    internal static partial void dwfl_end(nint dwfl);

    [LibraryImport(Lib, EntryPoint = "dwfl_report_begin")]
    internal static partial void dwfl_report_begin(nint dwfl);

    /// <summary>int dwfl_report_end (Dwfl *, int (*removed)(...), void *arg): 0 on success.</summary>
    [LibraryImport(Lib, EntryPoint = "dwfl_report_end")]
    internal static partial int dwfl_report_end(nint dwfl, nint removed, nint arg);

    /// <summary>Reports every file mapping of /proc/PID/maps as a module: 0, or an errno value.</summary>
    [LibraryImport(Lib, EntryPoint = "dwfl_linux_proc_report")]
    internal static partial int dwfl_linux_proc_report(nint dwfl, int pid);

    [LibraryImport(Lib, EntryPoint = "dwfl_errno")]
    internal static partial int dwfl_errno();

    /// <summary>const char *dwfl_errmsg (int): -1 (or 0) means the last error.</summary>
    [LibraryImport(Lib, EntryPoint = "dwfl_errmsg")]
    internal static partial byte* dwfl_errmsg(int error);

    /// <summary>bool dwfl_attach_state (Dwfl *, Elf *, pid_t, const Dwfl_Thread_Callbacks *, void *dwfl_arg). With a
    /// null Elf the architecture is taken from the reported modules. The callbacks must outlive the Dwfl.</summary>
    [LibraryImport(Lib, EntryPoint = "dwfl_attach_state")]
    [return: MarshalAs(UnmanagedType.U1)]
    internal static partial bool dwfl_attach_state(nint dwfl, nint elf, int pid, DwflThreadCallbacks* callbacks, nint dwflArg);

    /// <summary>bool dwfl_thread_state_registers (Dwfl_Thread *, int firstreg, unsigned nregs, const Dwarf_Word *).</summary>
    [LibraryImport(Lib, EntryPoint = "dwfl_thread_state_registers")]
    [return: MarshalAs(UnmanagedType.U1)]
    internal static partial bool dwfl_thread_state_registers(nint thread, int firstRegister, uint count, ulong* registers);

    /// <summary>int dwfl_getthread_frames (Dwfl *, pid_t, int (*callback)(Dwfl_Frame *, void *), void *arg): 0 when
    /// the outermost frame was reached, -1 on an error (dwfl_errno), or what the callback returned to stop.</summary>
    [LibraryImport(Lib, EntryPoint = "dwfl_getthread_frames")]
    internal static partial int dwfl_getthread_frames(nint dwfl, int tid, delegate* unmanaged[Cdecl]<nint, nint, int> callback, nint arg);

    /// <summary>bool dwfl_frame_pc (Dwfl_Frame *, Dwarf_Addr *pc, bool *isactivation).</summary>
    [LibraryImport(Lib, EntryPoint = "dwfl_frame_pc")]
    [return: MarshalAs(UnmanagedType.U1)]
    internal static partial bool dwfl_frame_pc(nint frame, ulong* pc, byte* isActivation);

    [LibraryImport(Lib, EntryPoint = "dwfl_addrmodule")]
    internal static partial nint dwfl_addrmodule(nint dwfl, ulong address);

    /// <summary>const char *dwfl_module_addrinfo (Dwfl_Module *, GElf_Addr, GElf_Off *offset, GElf_Sym *,
    /// GElf_Word *shndx, Elf **, Dwarf_Addr *bias): the name of the symbol covering the address, or null.</summary>
    [LibraryImport(Lib, EntryPoint = "dwfl_module_addrinfo")]
    internal static partial byte* dwfl_module_addrinfo(nint module, ulong address, ulong* offset, GElfSym* symbol, uint* sectionIndex, nint* elf, ulong* bias);

    /// <summary>const char *dwfl_module_info (Dwfl_Module *, void ***userdata, Dwarf_Addr *start, Dwarf_Addr *end,
    /// Dwarf_Addr *dwbias, Dwarf_Addr *symbias, const char **mainfile, const char **debugfile): the module's name.</summary>
    [LibraryImport(Lib, EntryPoint = "dwfl_module_info")]
    internal static partial byte* dwfl_module_info(nint module, nint userdata, ulong* start, ulong* end, ulong* dwbias, ulong* symbias, byte** mainFile, byte** debugFile);

    [LibraryImport(Lib, EntryPoint = "dwfl_module_getsrc")]
    internal static partial nint dwfl_module_getsrc(nint module, ulong address);

    /// <summary>const char *dwfl_lineinfo (Dwfl_Line *, Dwarf_Addr *addr, int *linep, int *colp, Dwarf_Word *mtime,
    /// Dwarf_Word *length): the source file name.</summary>
    [LibraryImport(Lib, EntryPoint = "dwfl_lineinfo")]
    internal static partial byte* dwfl_lineinfo(nint line, ulong* address, int* lineNumber, int* column, ulong* mtime, ulong* length);

    /// <summary>The standard callbacks (their addresses go into <see cref="DwflCallbacks"/>).</summary>
    internal static nint LinuxProcFindElf => Export("dwfl_linux_proc_find_elf");

    internal static nint StandardFindDebuginfo => Export("dwfl_standard_find_debuginfo");

    /// <summary>Whether libdw.so.1 can be loaded (it is an optional dependency: only unwinding needs it).</summary>
    internal static bool IsAvailable => NativeLibrary.TryLoad(Lib, typeof(Libdw).Assembly, null, out _);

    private static nint Export(string name) =>
        NativeLibrary.GetExport(NativeLibrary.Load(Lib, typeof(Libdw).Assembly, null), name);

    /// <summary>dwfl_errmsg(-1): the text of the last libdwfl error.</summary>
    internal static string LastError() => Marshal.PtrToStringUTF8((nint)dwfl_errmsg(-1)) ?? "unknown libdwfl error";
}

/// <summary>Dwfl_Callbacks (libdwfl.h).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct DwflCallbacks
{
    public nint FindElf;
    public nint FindDebuginfo;
    public nint SectionAddress;

    /// <summary>char **: the debuginfo search path; null means libdw's default ":.debug:/usr/lib/debug".</summary>
    public nint DebuginfoPath;
}

/// <summary>Dwfl_Thread_Callbacks (libdwfl.h): how libdw asks nozoki for threads, memory and registers.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct DwflThreadCallbacks
{
    /// <summary>pid_t (*next_thread) (Dwfl *, void *dwfl_arg, void **thread_argp): a tid, 0 at the end, -1 on error.</summary>
    public delegate* unmanaged[Cdecl]<nint, nint, nint*, int> NextThread;

    /// <summary>bool (*get_thread) (Dwfl *, pid_t tid, void *dwfl_arg, void **thread_argp).</summary>
    public delegate* unmanaged[Cdecl]<nint, int, nint, nint*, byte> GetThread;

    /// <summary>bool (*memory_read) (Dwfl *, Dwarf_Addr, Dwarf_Word *result, void *dwfl_arg).</summary>
    public delegate* unmanaged[Cdecl]<nint, ulong, ulong*, nint, byte> MemoryRead;

    /// <summary>bool (*set_initial_registers) (Dwfl_Thread *, void *thread_arg).</summary>
    public delegate* unmanaged[Cdecl]<nint, nint, byte> SetInitialRegisters;

    /// <summary>void (*detach) (Dwfl *, void *dwfl_arg).</summary>
    public delegate* unmanaged[Cdecl]<nint, nint, void> Detach;

    /// <summary>void (*thread_detach) (Dwfl_Thread *, void *thread_arg).</summary>
    public delegate* unmanaged[Cdecl]<nint, nint, void> ThreadDetach;
}

/// <summary>GElf_Sym = Elf64_Sym (24 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct GElfSym
{
    public uint Name;
    public byte Info;
    public byte Other;
    public ushort SectionIndex;
    public ulong Value;
    public ulong Size;
}
