namespace Nozoki.Syscalls;

/// <summary>errno names and messages as strace prints them ("ENOENT (No such file or directory)").</summary>
static partial class Errnos
{
    /// <summary>The symbolic name of errno ("ENOENT"), or null for an unknown number.</summary>
    public static string? Name(int errno)
    {
        if (errno > 0 && errno <= MaxUser) return NameTable[errno];
        foreach (var e in Internal)
        {
            if (e.Errno == errno) return e.Name;
        }

        return null;
    }

    /// <summary>The message strace and glibc give errno ("No such file or directory"), or null for an unknown number.</summary>
    public static string? Message(int errno)
    {
        if (errno > 0 && errno <= MaxUser) return MessageTable[errno];
        foreach (var e in Internal)
        {
            if (e.Errno == errno) return e.Message;
        }

        return null;
    }
}
