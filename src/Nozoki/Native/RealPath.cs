using System.Runtime.InteropServices;

namespace Nozoki.Native;

/// <summary>realpath(3): the canonical path, every symlink (of directories too) resolved.</summary>
internal static unsafe partial class RealPath
{
    [LibraryImport("libc.so.6", EntryPoint = "realpath", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial byte* realpath(string path, byte* resolved);

    [LibraryImport("libc.so.6", EntryPoint = "free")]
    private static partial void free(void* p);

    /// <summary>The resolved path, or null when it does not exist (or cannot be resolved).</summary>
    internal static string? Resolve(string path)
    {
        var p = realpath(path, null);
        if (p == null) return null;
        try
        {
            return Marshal.PtrToStringUTF8((nint)p);
        }
        finally
        {
            free(p);
        }
    }
}
