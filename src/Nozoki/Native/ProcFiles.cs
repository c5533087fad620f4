using System.Buffers.Binary;
using System.Buffers.Text;
using System.Runtime.InteropServices;

namespace Nozoki.Native;

/// <summary>
/// Reads of the many small entries of a /proc directory (/proc/PID/fd, fdinfo, task) relative to an open directory
/// descriptor: no path walk from / per entry, no string per entry, errno kept. `nozoki inspect` reads every descriptor
/// of a process this way (10,000 descriptors: a few syscalls each).
/// </summary>
internal static unsafe partial class ProcFiles
{
    private const long SYS_getdents64 = 217;
    private const int O_DIRECTORY = 0x10000;

    /// <summary>fstatat's flag: do not follow a final symlink (the /proc/PID/fd/N link itself).</summary>
    internal const int AT_SYMLINK_NOFOLLOW = 0x100;

    [LibraryImport("libc.so.6", EntryPoint = "open", SetLastError = true)]
    private static partial int open(byte* path, int flags);

    [LibraryImport("libc.so.6", EntryPoint = "openat", SetLastError = true)]
    private static partial int openat(int dirfd, byte* name, int flags);

    [LibraryImport("libc.so.6", EntryPoint = "readlinkat", SetLastError = true)]
    private static partial nint readlinkat(int dirfd, byte* name, byte* buffer, nuint size);

    [LibraryImport("libc.so.6", EntryPoint = "read", SetLastError = true)]
    private static partial nint read(int fd, byte* buffer, nuint count);

    [LibraryImport("libc.so.6", EntryPoint = "fstatat", SetLastError = true)]
    private static partial int fstatat(int dirfd, byte* name, StatBuf* buffer, int flags);

    [LibraryImport("libc.so.6", EntryPoint = "getxattr", SetLastError = true)]
    private static partial nint getxattr(byte* path, byte* name, byte* value, nuint size);

    [LibraryImport("libc.so.6", EntryPoint = "syscall", SetLastError = true)]
    private static partial long syscall_getdents64(long number, int fd, byte* buffer, nuint count);

    /// <summary>Opens a directory (O_RDONLY|O_DIRECTORY|O_CLOEXEC); the caller closes it with <see cref="Close"/>.</summary>
    internal static SysResult OpenDirectory(string path, out int fd)
    {
        Span<byte> p = stackalloc byte[System.Text.Encoding.UTF8.GetMaxByteCount(path.Length) + 1];
        var n = System.Text.Encoding.UTF8.GetBytes(path, p);
        p[n] = 0;
        fixed (byte* pp = p) fd = open(pp, Libc.O_RDONLY | O_DIRECTORY | Libc.O_CLOEXEC);
        return fd >= 0 ? SysResult.Ok : SysResult.LastPInvokeError();
    }

    /// <summary>Opens an entry of an open directory by name (a subdirectory such as "fd" or "task/12/").</summary>
    internal static SysResult OpenDirectoryAt(int dirfd, string name, out int fd)
    {
        Span<byte> p = stackalloc byte[System.Text.Encoding.UTF8.GetMaxByteCount(name.Length) + 1];
        var n = System.Text.Encoding.UTF8.GetBytes(name, p);
        p[n] = 0;
        fixed (byte* pp = p) fd = openat(dirfd, pp, Libc.O_RDONLY | O_DIRECTORY | Libc.O_CLOEXEC);
        return fd >= 0 ? SysResult.Ok : SysResult.LastPInvokeError();
    }

    internal static void Close(int fd)
    {
        if (fd >= 0) Libc.close(fd);
    }

    /// <summary>The entries of an open directory whose names are decimal numbers (descriptors, thread ids), in directory order.</summary>
    internal static SysResult ListNumbers(int dirfd, byte[] dirents, List<int> numbers)
    {
        while (true)
        {
            long got;
            fixed (byte* d = dirents) got = syscall_getdents64(SYS_getdents64, dirfd, d, (nuint)dirents.Length);
            if (got < 0) return SysResult.LastPInvokeError();
            if (got == 0) return SysResult.Ok;
            // struct linux_dirent64: d_ino (8), d_off (8), d_reclen (2), d_type (1), d_name (NUL-terminated).
            for (var off = 0; off + 19 < got;)
            {
                var reclen = BinaryPrimitives.ReadUInt16LittleEndian(dirents.AsSpan(off + 16));
                if (reclen == 0) break;
                var name = dirents.AsSpan(off + 19, reclen - 19);
                name = name[..Math.Max(0, name.IndexOf((byte)0))];
                if (Utf8Parser.TryParse(name, out int number, out var used) && used == name.Length) numbers.Add(number);
                off += reclen;
            }
        }
    }

    /// <summary>The text of the symlink named by the number (e.g. fd 3 of /proc/PID/fd) into buffer.</summary>
    internal static SysResult ReadLinkAt(int dirfd, int number, Span<byte> buffer, out int length)
    {
        Span<byte> name = stackalloc byte[16];
        FormatNumber(name, number);
        nint got;
        fixed (byte* n = name)
        fixed (byte* b = buffer) got = readlinkat(dirfd, n, b, (nuint)buffer.Length);
        length = got < 0 ? 0 : (int)got;
        return got < 0 ? SysResult.LastPInvokeError() : SysResult.Ok;
    }

    /// <summary>
    /// The whole of the file named by the number (or name) in an open directory (/proc/PID/fdinfo/N, task/TID/stat),
    /// read until end of file into buffer, which grows when it is too small (the caller keeps it).
    /// </summary>
    /// <remarks>
    /// <paramref name="singleShow"/>: the file is a seq_file made by one show() call (fdinfo), which read(2) hands over
    /// whole when the buffer holds it, so a short read is its end: one read(2) less per descriptor.
    /// </remarks>
    internal static SysResult ReadAt(int dirfd, int number, ref byte[] buffer, out int length, bool singleShow = false)
    {
        Span<byte> name = stackalloc byte[16];
        FormatNumber(name, number);
        return ReadAt(dirfd, name, ref buffer, out length, singleShow);
    }

    /// <summary>The same for a NUL-terminated name (e.g. "12/stat\0").</summary>
    internal static SysResult ReadAt(int dirfd, ReadOnlySpan<byte> nulTerminatedName, ref byte[] buffer, out int length, bool singleShow = false)
    {
        length = 0;
        int fd;
        fixed (byte* n = nulTerminatedName) fd = openat(dirfd, n, Libc.O_RDONLY | Libc.O_CLOEXEC);
        if (fd < 0) return SysResult.LastPInvokeError();
        try
        {
            while (true)
            {
                if (length == buffer.Length) Array.Resize(ref buffer, buffer.Length * 2);
                nint got;
                fixed (byte* b = buffer) got = read(fd, b + length, (nuint)(buffer.Length - length));
                if (got < 0)
                {
                    var error = SysResult.LastPInvokeError();
                    if (error.Errno == Errno.EINTR) continue;
                    return error;
                }

                if (got == 0) return SysResult.Ok;
                length += (int)got;
                if (singleShow && length < buffer.Length) return SysResult.Ok;
            }
        }
        finally
        {
            Libc.close(fd);
        }
    }

    private const int AT_FDCWD = -100;

    /// <summary>The whole of the file at path (a /proc file), read until end of file into buffer (grown when too small).</summary>
    internal static SysResult ReadFile(string path, ref byte[] buffer, out int length)
    {
        Span<byte> p = stackalloc byte[System.Text.Encoding.UTF8.GetMaxByteCount(path.Length) + 1];
        var n = System.Text.Encoding.UTF8.GetBytes(path, p);
        p[n] = 0;
        return ReadAt(AT_FDCWD, p[..(n + 1)], ref buffer, out length);
    }

    /// <summary>The text of the symlink at path (/proc/PID/exe, cwd, ns/net ...).</summary>
    internal static SysResult ReadLink(string path, Span<byte> buffer, out int length)
    {
        Span<byte> p = stackalloc byte[System.Text.Encoding.UTF8.GetMaxByteCount(path.Length) + 1];
        var n = System.Text.Encoding.UTF8.GetBytes(path, p);
        p[n] = 0;
        nint got;
        fixed (byte* pp = p)
        fixed (byte* b = buffer) got = readlinkat(AT_FDCWD, pp, b, (nuint)buffer.Length);
        length = got < 0 ? 0 : (int)got;
        return got < 0 ? SysResult.LastPInvokeError() : SysResult.Ok;
    }

    /// <summary>stat(2) of what the entry named by the number refers to (a /proc/PID/fd/N link: the open file itself).</summary>
    internal static SysResult StatAt(int dirfd, int number, int flags, out StatBuf stat)
    {
        Span<byte> name = stackalloc byte[16];
        FormatNumber(name, number);
        StatBuf st;
        int r;
        fixed (byte* n = name) r = fstatat(dirfd, n, &st, flags);
        stat = st;
        return r == 0 ? SysResult.Ok : SysResult.LastPInvokeError();
    }

    /// <summary>
    /// The protocol name the kernel gives a socket ("TCP", "UDPv6", "UNIX", "NETLINK", "PACKET", ...): the extended
    /// attribute system.sockprotoname of /proc/PID/fd/N, as lsof and strace -yy read it.
    /// </summary>
    internal static SysResult SocketProtocol(int pid, int fd, Span<byte> value, out int length)
    {
        Span<byte> path = stackalloc byte[48];
        "/proc/"u8.CopyTo(path);
        var n = 6;
        Utf8Formatter.TryFormat(pid, path[n..], out var w);
        n += w;
        "/fd/"u8.CopyTo(path[n..]);
        n += 4;
        Utf8Formatter.TryFormat(fd, path[n..], out w);
        n += w;
        path[n] = 0;
        var attr = "system.sockprotoname\0"u8;
        nint got;
        fixed (byte* p = path)
        fixed (byte* a = attr)
        fixed (byte* v = value) got = getxattr(p, a, v, (nuint)value.Length);
        length = got < 0 ? 0 : (int)got;
        if (length > 0 && value[length - 1] == 0) length--;
        return got < 0 ? SysResult.LastPInvokeError() : SysResult.Ok;
    }

    private static void FormatNumber(Span<byte> name, int number)
    {
        Utf8Formatter.TryFormat(number, name, out var w);
        name[w] = 0;
    }
}
