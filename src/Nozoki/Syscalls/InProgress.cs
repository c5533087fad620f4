using Nozoki.Tracing;

namespace Nozoki.Syscalls;

// The call a thread is in right now, seen from outside (nozoki inspect): no stop, no tracer.
public sealed partial class SyscallDecoder
{
    /// <summary>
    /// Writes the call a running thread is in, as /proc/PID/task/TID/syscall gives it (number and six argument
    /// registers), e.g. "read(0&lt;/dev/pts/3&gt;, 0x7ffd5a1c0e10, 4096)": what is known at the call's entry is decoded as
    /// the tracer decodes it, output arguments (not written yet) as their addresses, and no return value. Memory is read
    /// with process_vm_readv while the thread runs on (what it points to may be changing); a value whose memory cannot
    /// be read (no permission, unmapped) is shown raw, as its number.
    /// </summary>
    public void InProgress(TextBuffer b, ref CallLayout layout, int pid, int tid, long nr, in SyscallArgs args)
    {
        ArgumentNullException.ThrowIfNull(b);
        var lineStart = b.Length;
        var next = Enter(b, ref layout, pid, tid, nr, args);
        DecodeWithoutResult(b, ref layout, lineStart, next);
        b.Append(')');
        layout.ReturnStart = b.Length - lineStart;
    }

    /// <summary>The same as a string.</summary>
    public string InProgress(int pid, int tid, long nr, in SyscallArgs args)
    {
        var b = new TextBuffer(256);
        var layout = default(CallLayout);
        InProgress(b, ref layout, pid, tid, nr, args);
        return System.Text.Encoding.UTF8.GetString(b.Span);
    }
}
