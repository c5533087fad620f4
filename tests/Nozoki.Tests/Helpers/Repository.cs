namespace Nozoki.Tests.Helpers;

/// <summary>The checkout the tests were built from (the directory with Nozoki.slnx above the test output).</summary>
internal static class Repository
{
    public static string Root { get; } = Find();

    private static string Find()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Nozoki.slnx"))) return dir.FullName;
        }

        throw new DirectoryNotFoundException($"no Nozoki.slnx above {AppContext.BaseDirectory}");
    }
}
