namespace Nozoki.Tests.Helpers;

/// <summary>A fresh temporary directory, deleted on Dispose.</summary>
internal sealed class TempDir : IDisposable
{
    public TempDir() => Path = Directory.CreateTempSubdirectory("nozoki-test-").FullName;

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    /// <summary>Reads a file that another process may still have open for writing.</summary>
    public static byte[] ReadBytes(string path)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        using var ms = new MemoryStream();
        fs.CopyTo(ms);
        return ms.ToArray();
    }

    public static string ReadText(string path) => System.Text.Encoding.UTF8.GetString(ReadBytes(path));

    public static long Length(string path) => new FileInfo(path).Length;

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}
