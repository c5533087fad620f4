using System.Text;
using Nozoki.Native;

namespace Nozoki.Inspection;

/// <summary>
/// Reads /proc files and links for one snapshot into one reused buffer, with the errno of a failure (ENOENT: the file
/// or the process is gone; EACCES: another user's; ESRCH: the process exited while being read).
/// </summary>
internal sealed class ProcSource
{
    private byte[] _buffer = new byte[16 << 10];
    private readonly byte[] _link = new byte[4096 + 16];

    /// <summary>The file's text (UTF-8), or null with the errno.</summary>
    public string? Text(string path, out SysResult result)
    {
        result = ProcFiles.ReadFile(path, ref _buffer, out var length);
        return result.IsOk ? Encoding.UTF8.GetString(_buffer, 0, length) : null;
    }

    /// <summary>The file's bytes (for NUL-separated files: cmdline, environ), or null with the errno.</summary>
    public byte[]? Bytes(string path, out SysResult result)
    {
        result = ProcFiles.ReadFile(path, ref _buffer, out var length);
        return result.IsOk ? _buffer.AsSpan(0, length).ToArray() : null;
    }

    /// <summary>The symlink's text, or null with the errno.</summary>
    public string? Link(string path, out SysResult result)
    {
        result = ProcFiles.ReadLink(path, _link, out var length);
        return result.IsOk ? Encoding.UTF8.GetString(_link, 0, length) : null;
    }

    /// <summary>Reads an entry of an open directory by number (fdinfo/N) into the shared buffer.</summary>
    public SysResult ReadAt(int dirfd, int number, out ReadOnlySpan<byte> text, bool singleShow = false)
    {
        var r = ProcFiles.ReadAt(dirfd, number, ref _buffer, out var length, singleShow);
        text = r.IsOk ? _buffer.AsSpan(0, length) : default;
        return r;
    }

    /// <summary>The symlink entry of an open directory by number (fd/N) as a string.</summary>
    public string? LinkAt(int dirfd, int number, out SysResult result)
    {
        result = ProcFiles.ReadLinkAt(dirfd, number, _link, out var length);
        return result.IsOk ? Encoding.UTF8.GetString(_link, 0, length) : null;
    }

    /// <summary>NUL-separated strings (cmdline, environ); a trailing NUL ends the last one.</summary>
    public static List<string> SplitNul(ReadOnlySpan<byte> bytes)
    {
        var list = new List<string>();
        while (!bytes.IsEmpty)
        {
            var nul = bytes.IndexOf((byte)0);
            var part = nul < 0 ? bytes : bytes[..nul];
            list.Add(Encoding.UTF8.GetString(part));
            if (nul < 0) break;
            bytes = bytes[(nul + 1)..];
        }

        return list;
    }
}

/// <summary>What went missing from a snapshot: each failure once, with its section and why.</summary>
internal sealed class ProblemList
{
    private readonly List<InspectProblem> _list = [];

    public IReadOnlyList<InspectProblem> Items => _list;

    /// <summary>Set when a read failed because the process has gone (ENOENT/ESRCH under /proc/PID).</summary>
    public Func<bool>? ProcessGone { get; set; }

    public bool Any(ProblemKind kind) => _list.Exists(p => p.Kind == kind);

    public void Add(InspectSections section, ProblemKind kind, string what, string message) =>
        _list.Add(new InspectProblem(section, kind, what, message));

    /// <summary>Records a failed read of <paramref name="what"/> (e.g. "descriptors") by its errno.</summary>
    public void Add(InspectSections section, string what, SysResult error)
    {
        if (error.IsPermissionDenied) Add(section, ProblemKind.PermissionDenied, what, "permission denied");
        else if ((error.IsNotFound || error.IsGone) && ProcessGone?.Invoke() == true) Add(section, ProblemKind.ProcessExited, what, "the process exited");
        else Add(section, ProblemKind.Other, what, error.Message);
    }
}
