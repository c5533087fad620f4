namespace Nozoki.Procfs;

/// <summary>What a process's descriptor refers to: the /proc/PID/fd/N link (a path, pipe:[ino], socket:[ino], ...).</summary>
internal static class FdPaths
{
    /// <summary>The link's text, or null if the descriptor (or the process) is gone or may not be read.</summary>
    public static string? Read(int pid, int fd) => ReadLink($"/proc/{pid}/fd/{fd}");

    /// <summary>The same for nozoki's own descriptor.</summary>
    public static string? ReadOwn(int fd) => ReadLink($"/proc/self/fd/{fd}");

    private static string? ReadLink(string path)
    {
        try
        {
            return new FileInfo(path).LinkTarget;
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }
}
