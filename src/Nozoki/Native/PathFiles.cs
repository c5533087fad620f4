using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Nozoki.Native;

/// <summary>
/// Checks and opens of the paths the CLI is given, with the errno itself (strace's "Can't fopen 'x': Is a directory"):
/// .NET's File APIs turn EISDIR into "Access to the path is denied" and block forever opening a FIFO.
/// </summary>
internal static unsafe partial class PathFiles
{
    private const int AtFdcwd = -100;
    private const uint StatxType = 0x1;

    // struct statx is 256 bytes; stx_mode (u16) is at offset 28.
    private const int StatxSize = 256;
    private const int StatxModeOffset = 28;

    [LibraryImport("libc.so.6", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int statx(int dirfd, string path, int flags, uint mask, byte* buffer);

    // open(2) is variadic (the mode); on x86_64 a fixed third argument is passed the same way.
    [LibraryImport("libc.so.6", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open(string path, int flags, uint mode);

    /// <summary>The type of what <paramref name="path"/> names (symlinks followed); a failure is the errno of statx(2).</summary>
    internal static SysResult GetKind(string path, out FileKind kind)
    {
        kind = FileKind.Other;
        var buffer = stackalloc byte[StatxSize];
        if (statx(AtFdcwd, path, 0, StatxType, buffer) != 0) return SysResult.LastPInvokeError();
        kind = (*(ushort*)(buffer + StatxModeOffset) & 0xf000) switch
        {
            0x8000 => FileKind.Regular,
            0x4000 => FileKind.Directory,
            0x2000 => FileKind.CharacterDevice,
            0x6000 => FileKind.BlockDevice,
            0x1000 => FileKind.Fifo,
            0xc000 => FileKind.Socket,
            _ => FileKind.Other,
        };
        return SysResult.Ok;
    }

    /// <summary>
    /// open(path, O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0666), as strace opens -o FILE (fopen "w"); null with the errno
    /// when it fails.
    /// </summary>
    internal static SafeFileHandle? OpenForWriting(string path, out SysResult result)
    {
        int fd;
        do
        {
            fd = open(path, Libc.O_WRONLY | Libc.O_CREAT | Libc.O_TRUNC | Libc.O_CLOEXEC, 0x1b6);
            if (fd >= 0)
            {
                result = SysResult.Ok;
                return new SafeFileHandle(fd, ownsHandle: true);
            }

            result = SysResult.LastPInvokeError();
        }
        while (result.Errno == Errno.EINTR);

        return null;
    }
}
