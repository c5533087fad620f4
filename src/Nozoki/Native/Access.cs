using System.Runtime.InteropServices;
using System.Text;

namespace Nozoki.Native;

/// <summary>access(2) questions about files, asked with the effective ids, as execve will judge them.</summary>
internal static unsafe class Access
{
    /// <summary>Ok when the effective user may execute path (search permission for a directory), else the errno.</summary>
    internal static SysResult Executable(string path)
    {
        var bytes = Encoding.UTF8.GetBytes(path + "\0");
        fixed (byte* p = bytes)
        {
            return SysResult.Of(Libc.faccessat(Libc.AT_FDCWD, p, Libc.X_OK, Libc.AT_EACCESS) == 0);
        }
    }
}
