using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using Nozoki.Arch;
using Nozoki.Memory;
using Nozoki.Native;
using Nozoki.Symbols;
using Nozoki.Tracing;

namespace Nozoki.Breakpoints;

/// <summary>A function to call in a process: the name asked for, and where it is.</summary>
public sealed record CallTarget(string Name, ulong Address, CodeLocation Location);

/// <summary>How a call into the process ended.</summary>
public enum CallOutcome
{
    /// <summary>It returned; <see cref="InferiorCallResult.ReturnValue"/> is its rax. The thread was restored.</summary>
    Returned,

    /// <summary>It faulted (SIGSEGV, SIGBUS, SIGILL, SIGFPE, a trap): the fault was not delivered, the thread was restored.</summary>
    Faulted,

    /// <summary>It did not return in time: it was interrupted and abandoned, the thread restored (see <see cref="InferiorCall"/>).</summary>
    TimedOut,

    /// <summary>The thread died (or its process executed a new program) during the call: nothing to restore.</summary>
    Lost,

    /// <summary>Nothing was done: the thread is not in a stop of the caller's, is at a syscall-entry stop, or the session is detaching.</summary>
    Refused,
}

/// <summary>Bytes the called function wrote to the process's stdout (1) or stderr (2), in the order written.</summary>
public sealed record CallOutput(int Fd, byte[] Bytes);

/// <summary>What a call did, and how long the thread was held for it (from the call's start to its restore).</summary>
public sealed record InferiorCallResult(
    string Function, CallOutcome Outcome, ulong ReturnValue, int FaultSignal, ulong FaultAddress, ulong FaultPc,
    IReadOnlyList<CallOutput> Output, int HeldSignals, TimeSpan Held, TimeSpan Timeout)
{
    /// <summary>Everything written to fds 1 and 2, in order.</summary>
    public byte[] OutputBytes() => [.. Output.SelectMany(o => o.Bytes)];

    /// <summary>
    /// One line for a call that did not return (`rb_backtrace faulted: SIGSEGV at 0x8 (pc 0x...)`), null when it returned.
    /// </summary>
    public string? Problem => Outcome switch
    {
        CallOutcome.Returned => null,
        CallOutcome.Faulted => string.Create(CultureInfo.InvariantCulture,
            $"{Function} faulted: {Signals.Name(FaultSignal)} at 0x{FaultAddress:x} (pc 0x{FaultPc:x}); not delivered, thread restored"),
        CallOutcome.TimedOut => string.Create(CultureInfo.InvariantCulture,
            $"{Function} did not return within {Timeout.TotalSeconds:0.###} s: abandoned, thread restored (what it held, it still holds)"),
        CallOutcome.Lost => $"{Function}: the thread died (or executed a new program) during the call",
        _ => $"{Function}: not called (the thread is not in a stop of this observer, or is entering a syscall)",
    };
}

/// <summary>
/// Calls a function of the traced process, `FUNC()` with no arguments, in a thread stopped at a ptrace stop (a
/// breakpoint hit), as gdb's `call` does, then puts the thread back as it was. Runs on the ptrace thread, inside the
/// observer call that reported the stop (<see cref="ITraceControl.RunAlone"/> runs the thread; the other threads of
/// the process stay stopped meanwhile, as with gdb's `set scheduler-locking on`).
/// <list type="bullet">
/// <item>Registers: every general register and the whole XSAVE area (x87, SSE, AVX...) are saved and restored. During
/// the call orig_rax is -1, so that the kernel restarts no syscall into the function; the saved one comes back after,
/// so an interrupted syscall of the thread restarts as it would have.</item>
/// <item>Stack: the call's frame starts below the red zone (rsp - 128), 16-byte aligned, so that at the function's
/// entry, after the return address, rsp % 16 == 8 (System V ABI 3.2.2). Nothing above is written.</item>
/// <item>Return: the return address is the program's entry point (AT_ENTRY in /proc/PID/auxv, `_start`), where an
/// int3 is written for the call and the original byte put back after, as gdb does (its `AT_ENTRY_POINT`): it is
/// executable code of every program, static or not, and no thread runs `_start` after the program has started, so no
/// other thread can trap on it (and the others are stopped anyway). The call returned when that int3 traps with rsp
/// one word above the frame.</item>
/// <item>Signals: during the call the thread blocks every signal (PTRACE_SETSIGMASK) but those a fault raises (SIGSEGV,
/// SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGSYS: a fault on a blocked one would make the kernel reset the process's handler
/// to SIG_DFL). A signal sent meanwhile is left pending, and the kernel delivers it once the thread runs again with
/// its own mask back: after the call, with its original siginfo. A signal that reaches the function anyway (it
/// unblocked it, or a kill of a fault signal) is not delivered into it: it is sent again to the thread (tgkill) once
/// the registers are restored, and its siginfo then names nozoki as the sender.</item>
/// <item>Faults: a fault in the function is reported (signal, address, pc) and not delivered; the thread is restored.</item>
/// <item>Timeout: a call that has not returned in time is interrupted (PTRACE_INTERRUPT) and abandoned: the thread's
/// registers, mask and stack pointer are restored, and it goes on from where it was stopped. The function never
/// finishes: a lock it took stays taken (a later call or the program itself may then block on it), memory it
/// allocated leaks, output it buffered is not flushed.</item>
/// <item>Output: the thread is stopped at its syscalls during the call (PTRACE_SYSCALL), and what write/writev put on
/// fds 1 and 2 is read (process_vm_readv) at each syscall's exit, as much as it wrote; it still goes to the process's
/// own stdout and stderr.</item>
/// </list>
/// One instance can serve many calls (it keeps its buffers); not thread-safe (the ptrace thread only).
/// </summary>
public sealed class InferiorCall
{
    /// <summary>The default time a call may take (5 s).</summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(5);

    /// <summary>At most this many bytes of output are kept per call (the process gets them all).</summary>
    public const int MaxOutput = 1 << 20;

    private const ulong EflagsTrap = 0x100, EflagsDirection = 0x400;
    private const ulong AT_ENTRY = 9;
    private const int RedZone = 128;

    private readonly X86_64.RegisterState _saved = new();
    private readonly List<CallOutput> _output = [];
    private readonly List<int> _held = [];
    private readonly byte[] _iovecs = new byte[16 * 64];
    private int _outputBytes;

    // The write/writev of the syscall in progress, captured at its exit.
    private long _writeNr = -1;
    private int _writeFd;
    private ulong _writeBuf, _writeCount;

    private readonly ITraceControl _control;

    // AT_ENTRY of each process called into (read once: a call is often made many times in the same process).
    private readonly Dictionary<int, ulong> _entries = [];

    /// <summary>A caller for the session whose observer was given CONTROL (ITraceObserver.OnStarted).</summary>
    public InferiorCall(ITraceControl control)
    {
        ArgumentNullException.ThrowIfNull(control);
        _control = control;
    }

    /// <summary>
    /// FUNCTION (any spec of <see cref="ProcessSymbols.Resolve"/>: `rb_backtrace`, `libruby.so.3.1:rb_backtrace`) in the
    /// process: throws <see cref="SymbolLookupException"/> (with the nearest names) before anything is touched. A name
    /// defined in several modules gives the first in address order, the main program's before its libraries'.
    /// </summary>
    public static CallTarget Resolve(ProcessSymbols symbols, string function)
    {
        ArgumentNullException.ThrowIfNull(symbols);
        var found = symbols.Resolve(function);
        var location = found.Count == 1 ? found[0] : found.OrderBy(l => l.Module.Path == symbols.Modules[0].Path ? 0 : 1).First();
        return new CallTarget(function, location.Address, location);
    }

    /// <summary>Calls TARGET in the thread of a breakpoint hit; when this returns the thread is as it was at the hit.</summary>
    public InferiorCallResult Call(in BreakpointStop stop, CallTarget target, TimeSpan? timeout = null) =>
        Call(stop.Pid, stop.Tid, target, timeout ?? DefaultTimeout);

    /// <summary>Calls TARGET in thread TID of PID, which must be in the ptrace stop the current observer call reports.</summary>
    public InferiorCallResult Call(int pid, int tid, CallTarget target, TimeSpan timeout)
    {
        ArgumentNullException.ThrowIfNull(target);
        var start = Stopwatch.GetTimestamp();
        _output.Clear();
        _held.Clear();
        _outputBytes = 0;
        _writeNr = -1;
        if (!_saved.Save(tid) || !PtraceCalls.GetRegs(tid, out var regs).IsOk || !PtraceCalls.GetSigMask(tid, out var mask).IsOk
            || AtSyscallEntry(tid))
            return Result(target, CallOutcome.Refused, 0, default, 0, start, timeout);
        if (!_entries.TryGetValue(pid, out var entry)) _entries[pid] = entry = EntryPoint(pid);
        Span<byte> original = stackalloc byte[1];
        if (entry == 0 || ProcessMemory.Read(tid, entry, original).BytesRead != 1)
            return Result(target, CallOutcome.Refused, 0, default, 0, start, timeout);

        // The frame: below the red zone, 16-byte aligned, then the return address pushed as `call` would.
        var frame = ((regs.Rsp - RedZone) & ~15UL) - 8;
        Span<byte> word = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(word, entry);
        if (!ProcessMemoryWriter.Write(tid, pid, frame, word).IsOk || !ProcessMemoryWriter.Write(tid, pid, entry, [X86_64.Int3]).IsOk)
            return Result(target, CallOutcome.Refused, 0, default, 0, start, timeout);

        var call = regs;
        call.Rip = target.Address;
        call.Rsp = frame;
        call.Rax = 0; // a variadic callee reads al as the number of vector registers used
        call.OrigRax = ulong.MaxValue;
        call.Eflags &= ~(EflagsTrap | EflagsDirection);
        var outcome = CallOutcome.Lost;
        ulong value = 0, faultAddress = 0, faultPc = 0;
        var faultSignal = 0;
        if (PtraceCalls.SetRegs(tid, call).IsOk && PtraceCalls.SetSigMask(tid, CallMask).IsOk)
        {
            var deadline = start + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
            outcome = Run(tid, entry, frame, deadline, ref value, ref faultSignal, ref faultAddress, ref faultPc);
        }

        // Through the thread while it is ours; after a timeout's interrupt it still is (Lost: then through the file).
        ProcessMemoryWriter.Write(tid, pid, entry, original);
        if (outcome is CallOutcome.Lost or CallOutcome.Refused) return Result(target, outcome, 0, default, 0, start, timeout);
        _saved.Restore(tid);
        PtraceCalls.SetSigMask(tid, mask);
        // Pending again, delivered when the thread runs (its stop goes to the observer as any signal).
        foreach (var sig in _held) Libc.tgkill(pid, tid, sig);
        return Result(target, outcome, value, (faultSignal, faultAddress, faultPc), _held.Count, start, timeout);
    }

    /// <summary>
    /// PID executed a new program, or is gone: what is known of it (its entry point, read at its first call) is read
    /// again at its next call. A caller that calls into a process again after an exec must say so (ITraceObserver.OnExec);
    /// otherwise the call returns to the old program's entry point (most likely a fault, reported; every byte restored).
    /// </summary>
    public void Forget(int pid) => _entries.Remove(pid);

    /// <summary>
    /// A syscall-entry (or seccomp) stop: the kernel would skip that syscall once orig_rax is -1, and the restore after
    /// the call could not bring it back. (At an exit stop the restored orig_rax and rax restart it if it was to be.)
    /// </summary>
    private static bool AtSyscallEntry(int tid) =>
        PtraceCalls.GetSyscallInfo(tid, out var info).IsOk && info.Op is Ptrace.SYSCALL_INFO_ENTRY or Ptrace.SYSCALL_INFO_SECCOMP;

    private static readonly ulong CallMask = ~(Bit(Signals.SIGSEGV) | Bit(Signals.SIGBUS) | Bit(Signals.SIGILL) | Bit(Signals.SIGFPE)
        | Bit(Signals.SIGTRAP) | Bit(Signals.SIGSYS));

    private static ulong Bit(int sig) => 1UL << (sig - 1);

    private static bool IsFault(int sig) => sig is Signals.SIGSEGV or Signals.SIGBUS or Signals.SIGILL or Signals.SIGFPE or Signals.SIGTRAP or Signals.SIGSYS;

    private CallOutcome Run(int tid, ulong entry, ulong frame, long deadline, ref ulong value, ref int faultSignal, ref ulong faultAddress, ref ulong faultPc)
    {
        while (true)
        {
            var left = TimeSpan.FromSeconds(Math.Max(0, deadline - Stopwatch.GetTimestamp()) / (double)Stopwatch.Frequency);
            var s = _control.RunAlone(tid, syscallStops: true, left);
            switch (s.Kind)
            {
                case AloneStopKind.Syscall:
                    OnSyscall(tid);
                    continue;
                case AloneStopKind.Event:
                    continue;
                case AloneStopKind.TimedOut:
                    return CallOutcome.TimedOut;
                case AloneStopKind.Refused:
                    return CallOutcome.Refused;
                case AloneStopKind.Gone:
                    return CallOutcome.Lost;
            }

            // A signal-delivery stop.
            PtraceCalls.GetSigInfo(tid, out var info);
            PtraceCalls.GetRegs(tid, out var regs);
            if (s.Signal == Signals.SIGTRAP && info.Code == SigInfo.SI_KERNEL && regs.Rip == entry + X86_64.BreakpointLength && regs.Rsp == frame + 8)
            {
                value = regs.Rax;
                return CallOutcome.Returned;
            }

            // A fault (si_code > 0: raised by the CPU, not sent); a trap elsewhere (an int3 in the function) is one too.
            if (IsFault(s.Signal) && (info.Code > 0 || s.Signal == Signals.SIGTRAP))
            {
                faultSignal = s.Signal;
                faultAddress = s.Signal == Signals.SIGTRAP ? X86_64.BreakpointSite(regs.Rip) : info.Address;
                faultPc = s.Signal == Signals.SIGTRAP ? X86_64.BreakpointSite(regs.Rip) : regs.Rip;
                return CallOutcome.Faulted;
            }

            // Not for the function: held, sent again after the restore (the next RunAlone resumes without it).
            if (!_held.Contains(s.Signal)) _held.Add(s.Signal);
        }
    }

    /// <summary>write(2)/writev(2) on fds 1 and 2: noted at entry, read at exit (as much as was written).</summary>
    private void OnSyscall(int tid)
    {
        if (!PtraceCalls.GetSyscallInfo(tid, out var info).IsOk) return;
        if (info.Op == Ptrace.SYSCALL_INFO_ENTRY)
        {
            _writeNr = -1;
            var nr = (long)info.Nr;
            if (nr is not (X86_64.Syscalls.Write or X86_64.Syscalls.Writev)) return;
            var fd = info.Arg(0);
            if (fd is not (1 or 2)) return;
            _writeNr = nr;
            _writeFd = (int)fd;
            _writeBuf = info.Arg(1);
            _writeCount = info.Arg(2);
            return;
        }

        if (info.Op != Ptrace.SYSCALL_INFO_EXIT || _writeNr < 0) return;
        var written = info.IsError != 0 || info.ReturnValue <= 0 ? 0 : (ulong)info.ReturnValue;
        var nrDone = _writeNr;
        _writeNr = -1;
        if (written == 0) return;
        if (nrDone == X86_64.Syscalls.Write)
        {
            Capture(tid, _writeBuf, written);
            return;
        }

        var count = (int)Math.Min(_writeCount, (ulong)(_iovecs.Length / 16));
        var iov = _iovecs.AsSpan(0, count * 16);
        if (!ProcessMemory.Read(tid, _writeBuf, iov).Complete(iov.Length)) return;
        for (var i = 0; i < count && written > 0; i++)
        {
            var b = BinaryPrimitives.ReadUInt64LittleEndian(iov[(i * 16)..]);
            var n = Math.Min(BinaryPrimitives.ReadUInt64LittleEndian(iov[(i * 16 + 8)..]), written);
            Capture(tid, b, n);
            written -= n;
        }
    }

    private void Capture(int tid, ulong address, ulong count)
    {
        var n = (int)Math.Min(count, (ulong)(MaxOutput - _outputBytes));
        if (n <= 0) return;
        var bytes = new byte[n];
        var r = ProcessMemory.Read(tid, address, bytes);
        if (r.BytesRead <= 0) return;
        if (r.BytesRead < n) Array.Resize(ref bytes, r.BytesRead);
        _output.Add(new CallOutput(_writeFd, bytes));
        _outputBytes += bytes.Length;
    }

    private InferiorCallResult Result(CallTarget target, CallOutcome outcome, ulong value, (int Signal, ulong Address, ulong Pc) fault,
        int held, long start, TimeSpan timeout) =>
        new(target.Name, outcome, value, fault.Signal, fault.Address, fault.Pc, [.. _output], held,
            Stopwatch.GetElapsedTime(start), timeout);

    /// <summary>AT_ENTRY from /proc/PID/auxv (pairs of 64-bit words: type, value), or 0.</summary>
    private static ulong EntryPoint(int pid)
    {
        byte[] auxv;
        try
        {
            auxv = File.ReadAllBytes($"/proc/{pid}/auxv");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return 0;
        }

        for (var i = 0; i + 16 <= auxv.Length; i += 16)
        {
            if (BinaryPrimitives.ReadUInt64LittleEndian(auxv.AsSpan(i)) == AT_ENTRY) return BinaryPrimitives.ReadUInt64LittleEndian(auxv.AsSpan(i + 8));
        }

        return 0;
    }
}
