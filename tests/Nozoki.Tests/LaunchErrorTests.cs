using Nozoki.Tests.Helpers;

namespace Nozoki.Tests;

/// <summary>
/// A command that cannot be started, for every command that launches one (`run` traced or not, `trace -- CMD`,
/// `usdt ... -- CMD`): one `nozoki: error: CMD: why` line, 126 when the file is there but cannot be executed, 127
/// when it is not found (as a shell), and nothing of nozoki's launch stage shown as if the command had done it.
/// </summary>
[Collection(PtraceCollection.Name)]
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class LaunchErrorTests
{
    public static TheoryData<string> Launchers => new() { "run", "run-always", "trace", "trace-filtered", "usdt" };

    private static string[] Launcher(string name) => name switch
    {
        "run" => ["run", "--"], // stderr is a pipe here: --color auto runs the command untraced
        "run-always" => ["run", "--color", "always", "--"],
        "trace" => ["trace", "--"],
        "trace-filtered" => ["trace", "-e", "trace=execve,write", "--"],
        "usdt" => ["usdt", "nozoki_test:nothing", "--"],
        _ => throw new ArgumentException(name),
    };

    /// <summary>The test files: each is (what to run, the reason the error line must give, the exit code).</summary>
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    private sealed class Files : IDisposable
    {
        private readonly TempDir _dir = new();

        public Files()
        {
            NotExecutable = _dir.File("not-executable");
            File.WriteAllText(NotExecutable, "#!/bin/sh\necho hi\n");
            File.SetUnixFileMode(NotExecutable, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
            NoShebang = _dir.File("no-shebang");
            File.WriteAllText(NoShebang, "echo hi\n");
            File.SetUnixFileMode(NoShebang, Executable);
            Garbage = _dir.File("garbage");
            var bytes = new byte[512];
            for (var i = 0; i < bytes.Length; i++) bytes[i] = (byte)(i * 37 % 256);
            File.WriteAllBytes(Garbage, bytes);
            File.SetUnixFileMode(Garbage, Executable);
            Directory = _dir.File("a-directory");
            System.IO.Directory.CreateDirectory(Directory);
        }

        private const UnixFileMode Executable = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute
            | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute;

        public string NotExecutable { get; }

        public string NoShebang { get; }

        public string Garbage { get; }

        public string Directory { get; }

        public string Path(string which) => which switch
        {
            "not-executable" => NotExecutable,
            "no-shebang" => NoShebang,
            "garbage" => Garbage,
            "directory" => Directory,
            "missing" => _dir.File("no-such-program"),
            "missing-in-path" => "nozoki-no-such-command-xyz",
            _ => throw new ArgumentException(which),
        };

        public void Dispose() => _dir.Dispose();
    }

    public static TheoryData<string, string> Cases()
    {
        var data = new TheoryData<string, string>();
        foreach (var launcher in Launchers)
        {
            foreach (var file in new[] { "not-executable", "no-shebang", "garbage", "directory", "missing", "missing-in-path" })
                data.Add(launcher, file);
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void A_command_that_cannot_be_started_is_one_error_line_and_126_or_127(string launcher, string file)
    {
        using var files = new Files();
        var command = files.Path(file);
        var (reason, expected) = file switch
        {
            "not-executable" => ("Permission denied", 126),
            "no-shebang" => ($"Exec format error (no #! line: run it with `sh {command}`)", 126),
            "garbage" => ("Exec format error", 126),
            "directory" => ("Is a directory", 126),
            "missing" => ("No such file or directory", 127),
            _ => ("command not found", 127),
        };

        using var nozoki = NozokiCli.Start([.. Launcher(launcher), command, "arg"]);
        var code = nozoki.WaitForExit(NozokiCli.ExitTimeout);
        nozoki.AssertNoStackTrace();
        var lines = nozoki.StderrLines();
        var errors = lines.Where(l => l.StartsWith("nozoki: error:", StringComparison.Ordinal)).ToList();
        Assert.True(errors.Count == 1 && errors[0] == $"nozoki: error: {command}: {reason}",
            $"expected one line 'nozoki: error: {command}: {reason}'.\n{nozoki.Describe()}");
        Assert.True(code == expected, $"expected exit {expected}, got {code}.\n{nozoki.Describe()}");
        Assert.Equal("", nozoki.StdoutText());
        // Besides the error, a trace may show the failed execve itself (as strace does), and nothing else: in
        // particular nothing the launch stage did after it.
        foreach (var other in lines.Where(l => !l.StartsWith("nozoki: error:", StringComparison.Ordinal)))
        {
            Assert.True(launcher.StartsWith("trace", StringComparison.Ordinal) && other.StartsWith("execve(", StringComparison.Ordinal)
                && other.EndsWith($"= -1 ENOEXEC (Exec format error)", StringComparison.Ordinal),
                $"unexpected line '{other}'.\n{nozoki.Describe()}");
        }
    }

    [Theory]
    [InlineData("trace")]
    [InlineData("trace-filtered")]
    public void A_trace_of_a_failed_exec_shows_that_execve_and_then_nozokis_error(string launcher)
    {
        using var files = new Files();
        using var nozoki = NozokiCli.Start([.. Launcher(launcher), files.NoShebang, "arg"]);
        Assert.Equal(126, nozoki.WaitForExit(NozokiCli.ExitTimeout));
        var lines = nozoki.StderrLines();
        Assert.True(lines.Length == 2, $"expected the execve line and the error line.\n{nozoki.Describe()}");
        var path = System.Text.RegularExpressions.Regex.Escape(files.NoShebang);
        Assert.True(System.Text.RegularExpressions.Regex.IsMatch(lines[0], $@"^execve\(""{path}"", \[""[^""]+""(\.\.\.)?, ""arg""\], 0x[0-9a-f]+ /\* \d+ vars \*/\) += -1 ENOEXEC \(Exec format error\)$"),
            $"not the failed execve: {lines[0]}");
        Assert.StartsWith($"nozoki: error: {files.NoShebang}: Exec format error", lines[1], StringComparison.Ordinal);
    }
}
