using System.Runtime.InteropServices;
using System.Text;

namespace Nozoki.Native;

/// <summary>
/// open_by_handle_at(2): from a file handle (as inotify's fdinfo shows one per watch) back to the file, and so to its
/// path. Needs CAP_DAC_READ_SEARCH; EPERM otherwise.
/// </summary>
internal static unsafe partial class FileHandles
{
    private const int O_PATH = 0x200000, O_DIRECTORY = 0x10000;

    [LibraryImport("libc.so.6", EntryPoint = "open_by_handle_at", SetLastError = true)]
    private static partial int open_by_handle_at(int mountFd, byte* handle, int flags);

    [LibraryImport("libc.so.6", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open(string path, int flags);

    /// <summary>
    /// The path (in nozoki's view) of the file the handle names on the filesystem mounted at
    /// <paramref name="onMount"/> (a directory on that filesystem).
    /// </summary>
    internal static SysResult PathOf(string onMount, int handleType, ReadOnlySpan<byte> handle, out string? path)
    {
        path = null;
        // The mount's descriptor must be a real open: an O_PATH one gives EBADF.
        var mount = open(onMount, Libc.O_RDONLY | O_DIRECTORY | Libc.O_CLOEXEC);
        if (mount < 0) return SysResult.LastPInvokeError();
        try
        {
            // struct file_handle: unsigned int handle_bytes; int handle_type; unsigned char f_handle[].
            Span<byte> fh = stackalloc byte[8 + handle.Length];
            MemoryMarshal.Write(fh, (uint)handle.Length);
            MemoryMarshal.Write(fh[4..], handleType);
            handle.CopyTo(fh[8..]);
            int fd;
            fixed (byte* p = fh) fd = open_by_handle_at(mount, p, O_PATH | Libc.O_CLOEXEC);
            if (fd < 0) return SysResult.LastPInvokeError();
            try
            {
                Span<byte> buffer = stackalloc byte[4096];
                var r = ProcFiles.ReadLink($"/proc/self/fd/{fd}", buffer, out var length);
                if (r.IsOk) path = Encoding.UTF8.GetString(buffer[..length]);
                return r;
            }
            finally
            {
                Libc.close(fd);
            }
        }
        finally
        {
            Libc.close(mount);
        }
    }
}
