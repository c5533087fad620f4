using System.Runtime.InteropServices;
using Nozoki.Arch;
using Nozoki.Memory;
using Nozoki.Native;
using Nozoki.Syscalls;
using Nozoki.Tracing;

namespace Nozoki.Painting;

/// <summary>What <see cref="SequencesInWrite.Begin"/> did with a painted write.</summary>
internal enum InWrite : byte
{
    /// <summary>The write now carries the sequences itself; <see cref="SequencesInWrite.End"/> must be called at its exit.</summary>
    Carried,

    /// <summary>It writes no bytes (a length of 0): nothing to paint.</summary>
    Empty,

    /// <summary>It cannot carry them (another kind of write, too many buffers, no room below the stack pointer): bracket it from outside.</summary>
    NotPossible,
}

/// <summary>
/// The registers a carried write had at its entry, before <see cref="SequencesInWrite.Begin"/> changed them, and the
/// length of the program's own bytes: what turns its exit back into the program's. A write changes no register but
/// rax (rcx and r11 were set by the syscall instruction before the entry), so they are also its registers at the exit.
/// </summary>
internal readonly record struct CarriedWrite(long Number, UserRegs Registers, long Length);

/// <summary>
/// Puts the start and reset sequences into the painted write itself, so that nothing can come between them and its
/// bytes: at the write's entry stop, write(fd, buf, len) becomes writev(fd, [start, buf/len, reset], 3) (writev and
/// pwritev2 at the current offset get the two buffers around theirs), the sequences and the new buffer list written
/// into the thread's own stack below its red zone (memory it does not use while it is in the syscall, and that
/// process_vm_writev refuses when it is a guard page). One syscall writes all of it: a terminal takes it in one piece
/// (its write lock), and a write to stdout by another thread or process lands before or after it, never inside, as it
/// could between two writes of nozoki's and the command's.
/// At the exit stop the registers are put back (the number and the buffer arguments: a program may rely on the ones
/// the kernel preserves) and the result is the program's own: the bytes of its buffer that were written. A call the
/// kernel restarts (a signal) is put back as it was and painted again when it runs again.
/// </summary>
internal sealed class SequencesInWrite(byte[] start, byte[] reset)
{
    // Few enough buffers that the new list stays small (the scratch space is below a thread's stack pointer, where a
    // runtime with small stacks, Go's, keeps some hundreds of bytes free at a syscall).
    private const int MaxBuffers = 14;

    private readonly byte[] _scratch = new byte[(MaxBuffers + 2) * 16 + 64];

    public bool Enabled => start.Length > 0;

    /// <summary>At the entry (or seccomp) stop of a painted write: makes it carry the sequences, if it can.</summary>
    public InWrite Begin(int tid, long number, in SyscallArgs args, out CarriedWrite carried)
    {
        carried = default;
        int buffers;
        ulong list;
        switch (number)
        {
            case SyscallNumbers.Write:
                if (args.A2 == 0) return InWrite.Empty;
                buffers = 1;
                list = 0;
                break;
            case SyscallNumbers.Writev:
            case SyscallNumbers.Pwritev2 when args.A3 == ulong.MaxValue: // offset -1: at the file's own offset, as writev
                if (args.A2 > MaxBuffers) return InWrite.NotPossible;
                buffers = (int)args.A2;
                list = args.A1;
                break;
            default:
                return InWrite.NotPossible;
        }

        if (!Enabled || !PtraceCalls.GetRegs(tid, out var regs).IsOk) return InWrite.NotPossible;
        var iovBytes = (buffers + 2) * 16;
        var size = iovBytes + start.Length + reset.Length;
        if (size > _scratch.Length) return InWrite.NotPossible;
        var iovs = MemoryMarshal.Cast<byte, Iovec>(_scratch.AsSpan(0, iovBytes));
        long length = 0;
        if (number == SyscallNumbers.Write)
        {
            iovs[1] = new Iovec { Base = args.A1, Length = args.A2 };
            length = (long)args.A2;
        }
        else
        {
            var given = _scratch.AsSpan(16, buffers * 16);
            if (!ProcessMemory.Read(tid, list, given).Complete(given.Length)) return InWrite.NotPossible;
            foreach (var v in iovs.Slice(1, buffers))
            {
                if (v.Length > long.MaxValue - (ulong)length) return InWrite.NotPossible;
                length += (long)v.Length;
            }
        }

        if (length == 0) return InWrite.Empty;
        var at = (regs.Rsp - X86_64.Syscalls.RedZone - (ulong)size) & ~15UL;
        iovs[0] = new Iovec { Base = at + (ulong)iovBytes, Length = (ulong)start.Length };
        iovs[buffers + 1] = new Iovec { Base = at + (ulong)(iovBytes + start.Length), Length = (ulong)reset.Length };
        start.CopyTo(_scratch.AsSpan(iovBytes));
        reset.CopyTo(_scratch.AsSpan(iovBytes + start.Length));
        if (!ProcessMemory.WriteWritable(tid, at, _scratch.AsSpan(0, size)).IsOk) return InWrite.NotPossible;

        carried = new CarriedWrite(number, regs, length);
        regs.OrigRax = (ulong)(number == SyscallNumbers.Write ? SyscallNumbers.Writev : number);
        regs.Rsi = at;
        regs.Rdx = (ulong)(buffers + 2);
        return PtraceCalls.SetRegs(tid, regs).IsOk ? InWrite.Carried : InWrite.NotPossible;
    }

    /// <summary>
    /// At the exit stop of a carried write (RESULT: what the kernel returned for the whole of it): the registers back
    /// and the program's result in rax. Returns whether the reset sequence did not make it (the write stopped short):
    /// then the caller writes it.
    /// </summary>
    public bool End(int tid, in CarriedWrite carried, long result)
    {
        var regs = carried.Registers;
        regs.Rax = unchecked((ulong)result);
        var resetMissing = false;
        if (result >= 0)
        {
            var written = result - start.Length;
            if (written < 0)
            {
                // Stopped inside the start sequence (a signal; or a non-blocking descriptor that took a few bytes):
                // none of the program's bytes went out. Run its call again, as the kernel restarts one.
                regs.Rax = (ulong)carried.Number;
                regs.Rip -= X86_64.Syscalls.InstructionLength;
            }
            else
            {
                regs.Rax = (ulong)Math.Min(written, carried.Length);
                resetMissing = written < carried.Length + reset.Length;
            }
        }

        // An error (nothing written) stays as it is; so does a restart (ERESTARTSYS...): with the number and
        // arguments back, the kernel restarts the program's own call.
        return !PtraceCalls.SetRegs(tid, regs).IsOk || resetMissing;
    }
}
