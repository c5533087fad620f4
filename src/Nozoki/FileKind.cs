using Nozoki.Native;

namespace Nozoki;

/// <summary>What a path names (statx's file type).</summary>
public enum FileKind
{
    /// <summary>A regular file.</summary>
    Regular,

    /// <summary>A directory.</summary>
    Directory,

    /// <summary>A character device (a terminal, /dev/null, /dev/zero).</summary>
    CharacterDevice,

    /// <summary>A block device.</summary>
    BlockDevice,

    /// <summary>A named pipe: opening it for reading waits for a writer.</summary>
    Fifo,

    /// <summary>A Unix socket.</summary>
    Socket,

    /// <summary>Anything else.</summary>
    Other,
}

/// <summary>Asking what a path names before opening it (opening a FIFO would wait for a writer for ever).</summary>
public static class FileKinds
{
    /// <summary>The type of what path names (symlinks followed), or the errno of statx(2) (ENOENT, EACCES, ENOTDIR ...).</summary>
    public static SysResult Get(string path, out FileKind kind)
    {
        ArgumentNullException.ThrowIfNull(path);
        return PathFiles.GetKind(path, out kind);
    }

    /// <summary>"a directory", "a FIFO", ... for messages.</summary>
    public static string Describe(this FileKind kind) => kind switch
    {
        FileKind.Regular => "a regular file",
        FileKind.Directory => "a directory",
        FileKind.CharacterDevice => "a character device",
        FileKind.BlockDevice => "a block device",
        FileKind.Fifo => "a FIFO",
        FileKind.Socket => "a socket",
        _ => "not a regular file",
    };
}
