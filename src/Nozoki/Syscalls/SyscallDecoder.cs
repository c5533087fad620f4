using System.Buffers.Binary;
using Nozoki.Memory;
using Nozoki.Tracing;

namespace Nozoki.Syscalls;

/// <summary>An address space a decoder reads; like process_vm_readv, a read stops at the first unreadable byte.</summary>
internal interface ITraceeMemory
{
    MemoryReadResult Read(ulong address, Span<byte> dest);
}

/// <summary>How much a decoder shows (strace's -s, -v, -y/-yy, -x).</summary>
public sealed class DecodeOptions
{
    /// <summary>-s: the longest string shown before "..."; also the most array elements shown.</summary>
    public int StringLimit { get; init; } = 32;

    /// <summary>-v: full structures and environments instead of strace's abbreviations.</summary>
    public bool Verbose { get; init; }

    /// <summary>-y (1): paths of file descriptors; -yy (2): also socket protocols and addresses.</summary>
    public int DecorateFds { get; init; }
}

/// <summary>Where the pieces of one formatted call sit in its text (for JSON and colour).</summary>
public struct CallLayout
{
    /// <summary>End of the syscall name (the name starts at 0).</summary>
    public int NameEnd;

    /// <summary>Start and end of each argument's text; ArgCount of them are valid.</summary>
    public ArgRanges Args;

    public int ArgCount;

    /// <summary>Start of the text after " = " (the return value), and of the error name when the call failed (-1 if not).</summary>
    public int ReturnStart;

    public int ErrorStart;
}

[System.Runtime.CompilerServices.InlineArray(12)]
public struct ArgRanges
{
    private int _element;
}

/// <summary>
/// Formats syscalls as strace does: "openat(AT_FDCWD, \"/etc/passwd\", O_RDONLY|O_CLOEXEC) = 3". Entry writes the name
/// and the arguments known at entry; exit writes the rest and the return value. Memory is read from the stopped
/// thread into reused buffers; nothing is allocated per call (except for -y paths, read from /proc).
/// One decoder per family lives in its own file (Open.cs, Mmap.cs, Signal.cs, ...), as in strace.
/// </summary>
public sealed partial class SyscallDecoder(DecodeOptions options)
{
    /// <summary>Returned by an argument decoder that printed every remaining argument itself.</summary>
    private const int ConsumedAll = 99;

    private readonly DecodeOptions _o = options;
    private byte[] _scratch = new byte[64 << 10];
    private readonly byte[] _small = new byte[4096];
    private int _tid;
    private int _pid;
    private long _nr;
    private SyscallArgs _a;
    private bool _exiting;
    private long _ret;
    private bool _failed;

    public DecodeOptions Options => _o;

    /// <summary>
    /// Where arguments are read from: the stopped thread's memory (null), or a given address space (the decoder's
    /// test vectors feed it the bytes a real call left behind).
    /// </summary>
    internal ITraceeMemory? Memory { get; init; }

    /// <summary>Writes "name(" and the arguments decoded at entry; returns where exit continues (pass it to Exit).</summary>
    public int Enter(TextBuffer b, ref CallLayout layout, int pid, int tid, long nr, in SyscallArgs args)
    {
        _pid = pid;
        _tid = tid;
        _nr = nr;
        _a = args;
        _exiting = false;
        var start = b.Length;
        AppendName(b, nr);
        layout.NameEnd = b.Length - start;
        layout.ArgCount = 0;
        layout.ErrorStart = -1;
        b.Append('(');
        return Decode(b, ref layout, start, 0);
    }

    /// <summary>Writes the arguments decoded at exit, ")", and " = " with the return value.</summary>
    public void Exit(TextBuffer b, ref CallLayout layout, int lineStart, int pid, int tid, long nr, in SyscallArgs args, int next, long ret, bool isError)
    {
        _pid = pid;
        _tid = tid;
        _nr = nr;
        _a = args;
        _exiting = true;
        _ret = ret;
        _failed = isError;
        Decode(b, ref layout, lineStart, next);
        b.Append(')');
        AppendReturn(b, ref layout, lineStart);
    }

    /// <summary>
    /// A thread gone mid-call: ") = ?". Its call, not necessarily the last one entered (another thread may have
    /// entered a call since), is what the rest of the arguments are decoded for.
    /// </summary>
    public void ExitUnknown(TextBuffer b, ref CallLayout layout, int lineStart, int pid, int tid, long nr, in SyscallArgs args, int next)
    {
        _pid = pid;
        _tid = tid;
        _nr = nr;
        _a = args;
        ExitUnknown(b, ref layout, lineStart, next);
    }

    /// <summary>The arguments of a call that has no result (yet): what the entry left to decode, decoded now.</summary>
    private void DecodeWithoutResult(TextBuffer b, ref CallLayout layout, int lineStart, int next)
    {
        _exiting = true;
        _failed = false;
        _ret = 0;
        Decode(b, ref layout, lineStart, next, exitingWithoutResult: true);
    }

    /// <summary>For a call that never returns (exit_group, or a thread gone mid-call): ") = ?".</summary>
    public void ExitUnknown(TextBuffer b, ref CallLayout layout, int lineStart, int next)
    {
        DecodeWithoutResult(b, ref layout, lineStart, next);
        b.Append(") = ");
        layout.ReturnStart = b.Length - lineStart;
        b.Append('?');
    }

    public static void AppendName(TextBuffer b, long nr)
    {
        if (SyscallTable.NameBytes(nr) is { } name)
        {
            b.Append(name);
            return;
        }

        b.Append("syscall_");
        b.AppendHex((ulong)nr);
    }

    private int Decode(TextBuffer b, ref CallLayout layout, int lineStart, int from, bool exitingWithoutResult = false)
    {
        var kinds = SyscallTable.Args(_nr);
        var count = kinds?.Length ?? 6;
        var i = from;
        while (i < count)
        {
            var kind = kinds?[i] ?? ArgKind.Hex;
            if (!_exiting && ArgKinds.IsOut(kind))
            {
                // strace writes the separator with the argument before: "read(3, " at entry, "\"...\", 832) = 832" at exit.
                if (i > 0) b.Append(", ");
                return i;
            }

            var sepAt = b.Length;
            if (i > 0 && !(_exiting && i == from)) b.Append(", ");
            var argStart = b.Length;
            int used;
            if (exitingWithoutResult && ArgKinds.IsOut(kind))
            {
                // An _IO ioctl (KVM_RUN) takes a number, not a pointer to a result.
                if (kind == ArgKind.IoctlArg && (uint)_a[1] >> 30 == 0) b.AppendUInt(_a[i]);
                else Ptr(b, _a[i]);
                used = 1;
            }
            else
            {
                try
                {
                    used = DecodeArg(b, kind, i);
                }
                catch (Exception e) when (e is ArgumentException or IndexOutOfRangeException or FormatException or IOException or UnauthorizedAccessException)
                {
                    // A decoder's bug must not end the session: show the raw value instead.
                    b.Truncate(argStart);
                    b.AppendHex(_a[i]);
                    used = 1;
                }
            }

            if (used == 0)
            {
                b.Truncate(sepAt); // an argument strace leaves out (open's mode without O_CREAT)
                i++;
                continue;
            }

            if (layout.ArgCount < 6)
            {
                layout.Args[layout.ArgCount * 2] = argStart - lineStart;
                layout.Args[layout.ArgCount * 2 + 1] = b.Length - lineStart;
                layout.ArgCount++;
            }

            if (used == ConsumedAll) return count;
            i += used;
        }

        return count;
    }

    private int DecodeArg(TextBuffer b, ArgKind kind, int i)
    {
        var v = _a[i];
        // nanosleep's remaining time is written only when a signal interrupts it: the other way round.
        if (kind == ArgKind.OutTimespec && _nr is Nr.Nanosleep or Nr.ClockNanosleep)
        {
            if (_failed) Timespec(b, v);
            else Ptr(b, v);
            return 1;
        }

        // An output argument of a failed call holds nothing the kernel wrote: show its address, as strace does.
        if (_exiting && _failed && ArgKinds.IsOut(kind))
        {
            Ptr(b, v);
            return 1;
        }

        switch (kind)
        {
            case ArgKind.Int: b.AppendInt((int)v); return 1;
            case ArgKind.UInt: b.AppendUInt((uint)v); return 1;
            case ArgKind.Long: b.AppendInt((long)v); return 1;
            case ArgKind.ULong: b.AppendUInt(v); return 1;
            case ArgKind.Hex: b.AppendHex(v); return 1;
            case ArgKind.Ptr: Ptr(b, v); return 1;
            case ArgKind.Fd: Fd(b, (int)v); return 1;
            case ArgKind.DirFd: DirFd(b, (int)v); return 1;
            case ArgKind.Path: PathArg(b, v); return 1;
            case ArgKind.Str: StrArg(b, v, -1); return 1;
            case ArgKind.OutPath: StrArg(b, v, _ret); return 1;
            case ArgKind.InBuf: Buffer(b, v, (long)Math.Min(_a[i + 1], int.MaxValue)); return 1;
            case ArgKind.OutBuf: Buffer(b, v, _ret, hex: _nr == Nr.Getrandom); return 1;
            case ArgKind.OutLinkBuf: Buffer(b, v, _ret); return 1;
            case ArgKind.OpenFlags: OpenFlags(b, v); return 1;
            case ArgKind.OpenMode: return OpenMode(b, i);
            case ArgKind.Mode: Mode(b, v); return 1;
            case ArgKind.AccessMode: AccessMode(b, v); return 1;
            case ArgKind.AtFlags: AtFlags(b, v); return 1;
            case ArgKind.Whence: Whence(b, v); return 1;
            case ArgKind.Fcntl: return Fcntl(b, i);
            case ArgKind.Prot: Prot(b, v); return 1;
            case ArgKind.MapFlags: MapFlags(b, v); return 1;
            case ArgKind.MremapFlags:
                Flags(b, v, MremapFlagNames, "0");
                if ((v & 6) == 0) return ConsumedAll; // new_address only with MREMAP_FIXED or MREMAP_DONTUNMAP
                b.Append(", ");
                Ptr(b, _a[i + 1]);
                return ConsumedAll;
            case ArgKind.MsyncFlags: Flags(b, v, MsyncFlagNames, "0"); return 1;
            case ArgKind.Madvice: Enum(b, v, MadviceNames, "MADV_???"); return 1;
            case ArgKind.Clone: return Clone(b);
            case ArgKind.Clone3: Clone3(b, v, _a[i + 1]); return 1;
            case ArgKind.CloneFlags: CloneFlags(b, v, withSignal: false); return 1;
            case ArgKind.WaitOptions: Flags(b, v, WaitOptionNames, "0"); return 1;
            case ArgKind.OutWaitStatus: WaitStatus(b, v); return 1;
            case ArgKind.Prctl: return Prctl(b, i);
            case ArgKind.ArchPrctl: Enum(b, v, ArchPrctlNames, "ARCH_???"); return 1;
            case ArgKind.FutexOp: return Futex(b, i);
            case ArgKind.Argv: StringArray(b, v, env: false); return 1;
            case ArgKind.Envp: StringArray(b, v, env: true); return 1;
            case ArgKind.Signal: SignalName(b, (int)v); return 1;
            case ArgKind.SigHow: Enum(b, v, SigHowNames, "SIG_???"); return 1;
            case ArgKind.SigSet or ArgKind.OutSigSet: SigSetArg(b, v); return 1;
            case ArgKind.SigAction or ArgKind.OutSigAction: SigAction(b, v); return 1;
            case ArgKind.SockDomain: Enum(b, v, DomainNames, "AF_???"); return 1;
            case ArgKind.SockType: SockType(b, v); return 1;
            case ArgKind.SockProto: SockProto(b, _a[0], v); return 1;
            case ArgKind.SockFlags: Flags(b, v, SockTypeFlagNames, "0"); return 1;
            case ArgKind.MsgFlags: Flags(b, v, MsgFlagNames, "0"); return 1;
            case ArgKind.ShutHow: Enum(b, v, ShutdownNames, "SHUT_???"); return 1;
            case ArgKind.SockAddr: SockAddr(b, v, (long)_a[i + 1]); return 1;
            case ArgKind.OutSockAddr: return OutSockAddr(b, v, _a[i + 1]);
            case ArgKind.PollFds: return Poll(b, i);
            case ArgKind.EpollOp: Enum(b, v, EpollOpNames, "EPOLL_CTL_???"); return 1;
            case ArgKind.EpollEvent: EpollEvents(b, v, 1); return 1;
            case ArgKind.OutEpollEvents: EpollEvents(b, v, _ret); return 1;
            case ArgKind.OutStat: Stat(b, v); return 1;
            case ArgKind.OutStatx: Statx(b, v); return 1;
            case ArgKind.StatxMask: Flags(b, v, StatxMaskNames, "0"); return 1;
            case ArgKind.Timespec or ArgKind.OutTimespec: Timespec(b, v); return 1;
            case ArgKind.OutTimeval: Timeval(b, v); return 1;
            case ArgKind.ClockId: Enum(b, v, ClockNames, "CLOCK_???"); return 1;
            case ArgKind.Iovec: Iovecs(b, v, (long)_a[i + 1], -1); return 1;
            case ArgKind.OutIovec: Iovecs(b, v, (long)_a[i + 1], _ret); return 1;
            case ArgKind.OutPipe: Pipe(b, v); return 1;
            case ArgKind.OutDirents: Dirents(b, v); return 1;
            case ArgKind.IoctlRequest: IoctlRequest(b, (uint)v); return 1;
            case ArgKind.IoctlArg: IoctlArg(b, (uint)_a[1], v); return 1;
            case ArgKind.GetrandomFlags: Flags(b, v, GetrandomFlagNames, "0"); return 1;
            case ArgKind.RlimitResource: Enum(b, v, RlimitNames, "RLIMIT_???"); return 1;
            case ArgKind.Rlimit or ArgKind.OutRlimit: Rlimit(b, v); return 1;
            case ArgKind.FdFlags: Flags(b, v, OpenFlagNames, "0"); return 1;
            case ArgKind.EpollFlags: Flags(b, v, EpollFlagNames, "0"); return 1;
            case ArgKind.SigFrame: SigFrame(b); return 1;
            case ArgKind.OutUtsname: Utsname(b, v); return 1;
            case ArgKind.OutSysinfo: Sysinfo(b, v); return 1;
            case ArgKind.OutStatfs: Statfs(b, v); return 1;
            case ArgKind.OutGids: IntArray(b, v, Math.Min((long)(int)_a[i - 1], _ret)); return 1;
            case ArgKind.Gids: IntArray(b, v, (int)_a[i - 1]); return 1;
            case ArgKind.OutCpuSet: CpuSet(b, v, _ret); return 1;
            case ArgKind.CpuSet: CpuSet(b, v, (long)Math.Min(_a[i - 1], 4096)); return 1;
            case ArgKind.Fadvice: Enum(b, v, FadviceNames, "POSIX_FADV_???"); return 1;
            default: b.AppendHex(v); return 1;
        }
    }

    private void AppendReturn(TextBuffer b, ref CallLayout layout, int lineStart)
    {
        b.Append(" = ");
        layout.ReturnStart = b.Length - lineStart;
        var kind = SyscallTable.Return(_nr);
        if (kind == ReturnKind.None)
        {
            b.Append('?');
            return;
        }

        if (_failed)
        {
            var errno = (int)-_ret;
            // The restart codes never reach the program: strace shows "?" and the code.
            b.Append(errno is >= 512 and <= 530 ? "?" : "-1");
            b.Append(' ');
            layout.ErrorStart = b.Length - lineStart;
            if (Errnos.Name(errno) is { } name)
            {
                b.Append(name);
                b.Append(" (");
                b.Append(Errnos.Message(errno) ?? "");
                b.Append(')');
            }
            else
            {
                b.Append("errno ");
                b.AppendInt(errno);
                b.Append(" (Unknown error ");
                b.AppendInt(errno);
                b.Append(')');
            }

            return;
        }

        switch (kind)
        {
            case ReturnKind.Hex:
                b.AppendHex((ulong)_ret);
                break;
            case ReturnKind.Octal:
                b.AppendOctal((ulong)_ret);
                break;
            case ReturnKind.Fd:
                Fd(b, (int)_ret);
                break;
            default:
                if (_nr == Nr.Fcntl) FcntlReturn(b);
                else b.AppendInt(_ret);
                if (_nr == Nr.Prctl && _a[0] == 3 && _ret is >= 0 and <= 2)
                {
                    b.Append(_ret switch { 0 => " (SUID_DUMP_DISABLE)", 1 => " (SUID_DUMP_USER)", _ => " (SUID_DUMP_ROOT)" });
                }
                break;
        }

        if (_nr is Nr.Poll or Nr.Ppoll) PollReturn(b);
    }

    // ---- primitives -------------------------------------------------------------------------------------------

    private static void Ptr(TextBuffer b, ulong v)
    {
        if (v == 0) b.Append("NULL");
        else b.AppendHex(v);
    }

    private void DirFd(TextBuffer b, int fd)
    {
        if (fd == -100) b.Append("AT_FDCWD");
        else Fd(b, fd);
    }

    /// <summary>
    /// Element <paramref name="k"/> of an array being printed could not be read. When it is the first, the array is
    /// printed as its address instead, as strace does (the opening bracket, if written, is taken back): true, the
    /// caller is done. Otherwise false: the caller ends the list.
    /// </summary>
    private static bool UnreadableArray(TextBuffer b, ulong address, long k, bool bracketWritten = true)
    {
        if (k != 0) return false;
        if (bracketWritten) b.Truncate(b.Length - 1);
        b.AppendHex(address);
        return true;
    }

    /// <summary>Reads exactly dest.Length bytes; false if any is unreadable.</summary>
    private bool Read(ulong address, Span<byte> dest) =>
        address != 0 && ReadMemory(address, dest).BytesRead == dest.Length;

    private MemoryReadResult ReadMemory(ulong address, Span<byte> dest) =>
        Memory is { } m ? m.Read(address, dest) : ProcessMemory.Read(_tid, address, dest);

    private bool ReadU64(ulong address, out ulong value)
    {
        Span<byte> w = stackalloc byte[8];
        if (!Read(address, w))
        {
            value = 0;
            return false;
        }

        value = BinaryPrimitives.ReadUInt64LittleEndian(w);
        return true;
    }

    private bool ReadI32(ulong address, out int value)
    {
        Span<byte> w = stackalloc byte[4];
        if (!Read(address, w))
        {
            value = 0;
            return false;
        }

        value = BinaryPrimitives.ReadInt32LittleEndian(w);
        return true;
    }

    /// <summary>
    /// The scratch buffer with room for at least size bytes. -s may ask for more than it holds: it grows (doubling)
    /// the first time a call needs more and is kept, so a trace allocates it a few times at most, never per stop.
    /// </summary>
    private byte[] Scratch(int size)
    {
        if (_scratch.Length < size) _scratch = new byte[(int)Math.Min(Math.Max(size, 2L * _scratch.Length), Array.MaxLength)];
        return _scratch;
    }

    /// <summary>
    /// Reads a NUL-terminated string of at most max bytes into the scratch buffer, page by page (process_vm_readv
    /// stops at the first unreadable page); the buffer grows with the string, not with max. Returns its length
    /// (-1 if unreadable); terminated says whether the NUL was within max.
    /// </summary>
    private int ReadCString(ulong address, long max, out bool terminated)
    {
        terminated = false;
        if (address == 0) return -1;
        var done = 0;
        max = Math.Min(max, Array.MaxLength);
        while (done < max)
        {
            var page = 4096 - (int)((address + (ulong)done) & 4095);
            var want = (int)Math.Min(page, max - done);
            var dest = Scratch(done + want);
            var r = ReadMemory(address + (ulong)done, dest.AsSpan(done, want));
            var nul = dest.AsSpan(done, r.BytesRead).IndexOf((byte)0);
            if (nul >= 0)
            {
                terminated = true;
                return done + nul;
            }

            done += r.BytesRead;
            if (r.BytesRead < want) return done == 0 ? -1 : done;
        }

        return done;
    }

    /// <summary>A path: the whole NUL-terminated string (strace does not cut paths at -s).</summary>
    private void PathArg(TextBuffer b, ulong address)
    {
        if (address == 0)
        {
            b.Append("NULL");
            return;
        }

        var n = ReadCString(address, 4096, out var terminated);
        if (n < 0)
        {
            b.AppendHex(address);
            return;
        }

        Quote(b, _scratch.AsSpan(0, n), cut: !terminated);
    }

    /// <summary>A NUL-terminated string cut at -s (or a returned length when known >= 0).</summary>
    private void StrArg(TextBuffer b, ulong address, long length)
    {
        if (address == 0)
        {
            b.Append("NULL");
            return;
        }

        var limit = _o.StringLimit;
        var n = ReadCString(address, limit + 1L, out var terminated);
        if (n < 0)
        {
            b.AppendHex(address);
            return;
        }

        var cut = n > limit || (!terminated && n >= limit);
        Quote(b, _scratch.AsSpan(0, Math.Min(n, limit)), cut);
    }

    /// <summary>A buffer of known length (write's data, read's data cut to the returned size), cut at -s.</summary>
    private void Buffer(TextBuffer b, ulong address, long length, bool hex = false)
    {
        if (length < 0) length = 0;
        var show = (int)Math.Min(length, _o.StringLimit);
        if (address == 0 && length > 0)
        {
            b.Append("NULL");
            return;
        }

        var data = Scratch(show).AsSpan(0, show);
        if (!Read(address, data))
        {
            b.AppendHex(address);
            return;
        }

        Quote(b, data, cut: length > show, hex);
    }

    /// <summary>strace's quoting: C escapes, octal for other bytes (three digits when a digit follows), "..." when cut.</summary>
    internal static void Quote(TextBuffer b, ReadOnlySpan<byte> s, bool cut, bool hex = false)
    {
        b.Append('"');
        if (hex)
        {
            // Random bytes (getrandom): every byte as \xNN, as strace prints them.
            foreach (var c in s)
            {
                b.Append("\\x");
                b.Append((byte)"0123456789abcdef"[c >> 4]);
                b.Append((byte)"0123456789abcdef"[c & 15]);
            }

            b.Append('"');
            if (cut) b.Append("...");
            return;
        }

        for (var i = 0; i < s.Length; i++)
        {
            var c = s[i];
            switch (c)
            {
                case (byte)'"': b.Append("\\\""); break;
                case (byte)'\\': b.Append("\\\\"); break;
                case (byte)'\t': b.Append("\\t"); break;
                case (byte)'\n': b.Append("\\n"); break;
                case (byte)'\v': b.Append("\\v"); break;
                case (byte)'\f': b.Append("\\f"); break;
                case (byte)'\r': b.Append("\\r"); break;
                default:
                    if (c >= 0x20 && c < 0x7f)
                    {
                        b.Append(c);
                    }
                    else
                    {
                        b.Append('\\');
                        var nextIsDigit = i + 1 < s.Length && s[i + 1] >= '0' && s[i + 1] <= '7';
                        if (nextIsDigit || c >= 0x40) b.Append((byte)('0' + (c >> 6)));
                        if (nextIsDigit || c >= 8) b.Append((byte)('0' + ((c >> 3) & 7)));
                        b.Append((byte)('0' + (c & 7)));
                    }

                    break;
            }
        }

        b.Append('"');
        if (cut) b.Append("...");
    }

    /// <summary>A flag set: names joined by |, unknown bits as hex, zero as <paramref name="zero"/>.</summary>
    private static void Flags(TextBuffer b, ulong v, (ulong Value, string Name)[] table, string zero)
    {
        if (v == 0)
        {
            b.Append(zero);
            return;
        }

        var first = true;
        foreach (var (value, name) in table)
        {
            if (value != 0 && (v & value) == value)
            {
                if (!first) b.Append('|');
                b.Append(name);
                first = false;
                v &= ~value;
            }
        }

        if (v != 0)
        {
            if (!first) b.Append('|');
            b.AppendHex(v);
        }
    }

    /// <summary>A named constant; unknown values as strace prints them: 0x3001 /* ARCH_??? */.</summary>
    private static void Enum(TextBuffer b, ulong v, (ulong Value, string Name)[] table, string unknown)
    {
        foreach (var (value, name) in table)
        {
            if (value == v)
            {
                b.Append(name);
                return;
            }
        }

        b.AppendHex(v);
        b.Append(" /* ");
        b.Append(unknown);
        b.Append(" */");
    }

    private static string? Lookup(ulong v, (ulong Value, string Name)[] table)
    {
        foreach (var (value, name) in table)
        {
            if (value == v) return name;
        }

        return null;
    }
}
