using System.Buffers.Binary;
using System.Buffers.Text;
using System.Runtime.InteropServices;

namespace Nozoki.Native;

/// <summary>
/// Another process's descriptor table through /proc, without allocating: the paths are formatted on the stack and
/// the directory is read with getdents64 into the caller's buffer (the output mirror asks while a thread is stopped).
/// </summary>
internal static unsafe partial class FdTable
{
    private const long SYS_getdents64 = 217;
    private const int O_DIRECTORY = 0x10000;

    /// <summary>O_CLOEXEC as /proc/PID/fdinfo shows it (octal 02000000): the descriptor's close-on-exec flag.</summary>
    internal const int FdinfoCloexec = 0x80000;

    [LibraryImport("libc.so.6", EntryPoint = "open", SetLastError = true)]
    private static partial int open(byte* path, int flags);

    [LibraryImport("libc.so.6", EntryPoint = "read", SetLastError = true)]
    private static partial nint read(int fd, byte* buffer, nuint count);

    [LibraryImport("libc.so.6", EntryPoint = "syscall", SetLastError = true)]
    private static partial long syscall_getdents64(long number, int fd, byte* buffer, nuint count);

    /// <summary>
    /// The numbers of pid's open descriptors (/proc/PID/fd) into fds, grown when too small (the one allocation,
    /// kept by the caller); dirents is the getdents64 buffer; count says how many were listed.
    /// </summary>
    internal static SysResult List(int pid, byte[] dirents, ref int[] fds, out int count)
    {
        count = 0;
        Span<byte> path = stackalloc byte[32];
        Format(path, pid, "/fd"u8, -1);
        int dir;
        fixed (byte* p = path) dir = open(p, Libc.O_RDONLY | O_DIRECTORY | Libc.O_CLOEXEC);
        if (dir < 0) return SysResult.LastPInvokeError();
        try
        {
            while (true)
            {
                long got;
                fixed (byte* d = dirents) got = syscall_getdents64(SYS_getdents64, dir, d, (nuint)dirents.Length);
                if (got < 0) return SysResult.LastPInvokeError();
                if (got == 0) return SysResult.Ok;
                // struct linux_dirent64: d_ino (8), d_off (8), d_reclen (2), d_type (1), d_name (NUL-terminated).
                for (var off = 0; off + 19 < got;)
                {
                    var reclen = BinaryPrimitives.ReadUInt16LittleEndian(dirents.AsSpan(off + 16));
                    var name = dirents.AsSpan(off + 19, reclen - 19);
                    name = name[..Math.Max(0, name.IndexOf((byte)0))];
                    if (Utf8Parser.TryParse(name, out int fd, out var used) && used == name.Length)
                    {
                        if (count == fds.Length) Array.Resize(ref fds, fds.Length * 2);
                        fds[count++] = fd;
                    }

                    if (reclen == 0) break;
                    off += reclen;
                }
            }
        }
        finally
        {
            Libc.close(dir);
        }
    }

    /// <summary>The flags of pid's fd (the "flags:" line of /proc/PID/fdinfo/FD: open flags, and O_CLOEXEC for the
    /// descriptor's own close-on-exec flag); -1 on failure.</summary>
    internal static SysResult Flags(int pid, int fd, out int flags)
    {
        flags = -1;
        Span<byte> path = stackalloc byte[48];
        Format(path, pid, "/fdinfo/"u8, fd);
        int file;
        fixed (byte* p = path) file = open(p, Libc.O_RDONLY | Libc.O_CLOEXEC);
        if (file < 0) return SysResult.LastPInvokeError();
        Span<byte> text = stackalloc byte[256];
        nint got;
        fixed (byte* t = text) got = read(file, t, (nuint)text.Length);
        var error = got < 0 ? SysResult.LastPInvokeError() : SysResult.Ok;
        Libc.close(file);
        if (!error.IsOk) return error;
        // "pos:\t0\nflags:\t02100002\nmnt_id:\t..." : the flags in octal.
        var s = text[..(int)got];
        var at = s.IndexOf("flags:\t"u8);
        if (at < 0) return new SysResult(Errno.EINVAL);
        var value = 0;
        for (var i = at + 7; i < s.Length && s[i] is >= (byte)'0' and <= (byte)'7'; i++) value = value * 8 + (s[i] - '0');
        flags = value;
        return SysResult.Ok;
    }

    /// <summary>"/proc/PID" + middle (+ fd when >= 0) + NUL into path; returns the length without the NUL.</summary>
    private static int Format(Span<byte> path, int pid, ReadOnlySpan<byte> middle, int fd)
    {
        "/proc/"u8.CopyTo(path);
        var n = 6;
        Utf8Formatter.TryFormat(pid, path[n..], out var w);
        n += w;
        middle.CopyTo(path[n..]);
        n += middle.Length;
        if (fd >= 0)
        {
            Utf8Formatter.TryFormat(fd, path[n..], out w);
            n += w;
        }

        path[n] = 0;
        return n;
    }
}
