using System.Text.Json;
using System.Text.RegularExpressions;

namespace Nozoki.Tests.Helpers;

/// <summary>
/// Runs the nozoki CLI and interprets its output. The CLI tests run the NativeAOT binary, as users get it
/// (<see cref="ExePath"/>, the one place that says which nozoki is tested); the framework-dependent build in the test
/// output directory (<see cref="DllPath"/>) is there for the tests of nozoki run as a .NET program.
/// </summary>
internal static partial class NozokiCli
{
    public static readonly TimeSpan AttachTimeout = TimeSpan.FromSeconds(30);
    public static readonly TimeSpan ExitTimeout = TimeSpan.FromSeconds(60);

    /// <summary>Longest a build of the native binary by the launcher may take (NativeAOT on 2 busy cores: minutes).</summary>
    private static readonly TimeSpan BuildTimeout = TimeSpan.FromMinutes(20);

    private static readonly Lazy<string> Native = new(FindOrBuildNative, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>
    /// The native nozoki the CLI tests run: $NOZOKI_EXE when set (CI builds it once; or a release binary to check),
    /// else the repo launcher's build, artifacts/cli/nozoki, which the launcher (./nozoki) builds first when it is
    /// missing or older than a source file (once per test run; so `dotnet test` alone works).
    /// </summary>
    public static string ExePath => Native.Value;

    /// <summary>The command line that starts nozoki (the native binary), e.g. as a library test's launch stage.</summary>
    public static IReadOnlyList<string> Command => [ExePath];

    private static string FindOrBuildNative()
    {
        var given = Environment.GetEnvironmentVariable("NOZOKI_EXE");
        if (!string.IsNullOrEmpty(given))
        {
            if (!File.Exists(given)) throw new FileNotFoundException($"NOZOKI_EXE={given}: no such file", given);
            return Path.GetFullPath(given);
        }

        var root = RepoRoot() ?? throw new InvalidOperationException(
            $"no Nozoki.slnx above {AppContext.BaseDirectory}, so no launcher to build nozoki with: set NOZOKI_EXE to a nozoki binary");
        var launcher = Path.Combine(root, "nozoki");
        // The launcher rebuilds only when a source is newer than its binary, then execs it: --version also checks it runs.
        using (var build = ExternalProcess.Start("./nozoki --version (builds nozoki if needed)", launcher, ["--version"]))
        {
            var code = build.WaitForExit(BuildTimeout);
            if (code != 0)
            {
                throw new InvalidOperationException(
                    $"'{launcher} --version' failed with exit code {code}; it builds the native nozoki the CLI tests run:\n{build.StderrText()}");
            }
        }

        var exe = Path.Combine(root, "artifacts", "cli", "nozoki");
        return File.Exists(exe) ? exe : throw new FileNotFoundException($"the launcher ran, but {exe} is not there", exe);
    }

    /// <summary>The repository root (the directory with Nozoki.slnx) above the test output directory, if any.</summary>
    private static string? RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Nozoki.slnx"))) return dir.FullName;
        }

        return null;
    }

    /// <summary>The framework-dependent CLI assembly in the test output directory (Nozoki.Cli.dll, or nozoki.dll if renamed).</summary>
    public static string DllPath
    {
        get
        {
            foreach (var name in new[] { "Nozoki.Cli.dll", "nozoki.dll" })
            {
                var path = Path.Combine(AppContext.BaseDirectory, name);
                if (File.Exists(path)) return path;
            }

            throw new FileNotFoundException($"neither Nozoki.Cli.dll nor nozoki.dll is in {AppContext.BaseDirectory}");
        }
    }

    /// <summary>The dotnet host that runs this test (so the CLI assembly runs on the same runtime).</summary>
    public static string DotnetHost
    {
        get
        {
            var fromSdk = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
            if (!string.IsNullOrEmpty(fromSdk) && File.Exists(fromSdk)) return fromSdk;
            var self = Environment.ProcessPath;
            if (self is not null && Path.GetFileNameWithoutExtension(self) == "dotnet") return self;
            return "dotnet";
        }
    }

    public static ExternalProcess Start(IEnumerable<string> args, OutputSink? stdoutSink = null) =>
        ExternalProcess.Start("nozoki", ExePath, args, stdoutSink);

    /// <summary>Runs nozoki as user nobody (uid/gid 65534, no supplementary groups) via setpriv.</summary>
    public static ExternalProcess StartAsNobody(IEnumerable<string> args) =>
        ExternalProcess.Start("nozoki (as nobody)", "setpriv",
            ["--reuid=65534", "--regid=65534", "--clear-groups", ExePath, .. args]);

    /// <summary>Runs nozoki to completion; returns its exit code (the process is disposed, its output kept).</summary>
    public static (int Code, string Stdout, string Stderr) Run(params string[] args)
    {
        using var p = Start(args);
        var code = p.WaitForExit(ExitTimeout);
        return (code, p.StdoutText(), p.StderrText());
    }

    /// <summary>
    /// `nozoki out PID [extra]` over a tracee started with --wait: attaches, releases it, and waits until both have
    /// ended (the tracee with status 0, nozoki with 0 and no stack trace). The caller disposes the returned nozoki.
    /// </summary>
    public static ExternalProcess OutToTheEnd(Tracee tracee, params string[] extra)
    {
        var nozoki = Start(["out", .. extra, $"{tracee.Pid}"]);
        nozoki.WaitForAttached(tracee.Pid);
        tracee.Release();
        Assert.Equal(new Nozoki.Tracing.ExitStatus(0, 0), tracee.WaitForExit());
        Assert.Equal(0, nozoki.WaitForExit(ExitTimeout));
        nozoki.AssertNoStackTrace();
        return nozoki;
    }

    [GeneratedRegex(@"^nozoki: attached to PID (\d+) \((\d+) threads?\)$")]
    public static partial Regex AttachedLine();

    /// <summary>Waits for the text-mode "nozoki: attached to PID n (k threads)" line and checks its PID.</summary>
    public static void WaitForAttached(this ExternalProcess nozoki, int pid, TimeSpan? timeout = null)
    {
        nozoki.WaitUntil(() => nozoki.StderrLines().Any(l => l.StartsWith("nozoki: attached", StringComparison.Ordinal)),
            timeout ?? AttachTimeout, $"nozoki to report 'attached to PID {pid}'");
        var line = nozoki.StderrLines().First(l => l.StartsWith("nozoki: attached", StringComparison.Ordinal));
        var m = AttachedLine().Match(line);
        Assert.True(m.Success, $"attached line has an unexpected format: '{line}'");
        Assert.Equal(pid.ToString(System.Globalization.CultureInfo.InvariantCulture), m.Groups[1].Value);
    }

    /// <summary>Waits for the --json {"event":"attached"} line and checks its PID.</summary>
    public static void WaitForJsonAttached(this ExternalProcess nozoki, int pid, TimeSpan? timeout = null)
    {
        JsonElement? attached = null;
        nozoki.WaitUntil(() =>
        {
            foreach (var line in nozoki.StdoutLines())
            {
                var o = ParseJson(line);
                if (o.TryGetProperty("event", out var ev) && ev.GetString() == "attached")
                {
                    attached = o;
                    return true;
                }
            }

            return false;
        }, timeout ?? AttachTimeout, $"nozoki --json to report an attached event for PID {pid}");
        Assert.Equal(pid, attached!.Value.GetProperty("pid").GetInt32());
    }

    /// <summary>Parses one JSON line (fails the test with the line when it is not a JSON object).</summary>
    public static JsonElement ParseJson(string line)
    {
        try
        {
            using var doc = JsonDocument.Parse(line);
            Assert.True(doc.RootElement.ValueKind == JsonValueKind.Object, $"not a JSON object: {line}");
            return doc.RootElement.Clone();
        }
        catch (JsonException e)
        {
            Assert.Fail($"nozoki --json printed a line that is not valid JSON ({e.Message}): {line}");
            throw;
        }
    }

    public static List<JsonElement> JsonLines(this ExternalProcess nozoki) => nozoki.StdoutLines().Select(ParseJson).ToList();

    /// <summary>nozoki's own stderr lines ("nozoki: ..."), wherever they appear.</summary>
    public static List<string> OwnLines(string stderr) =>
        OwnLineRegex().Matches(stderr).Select(m => m.Value.TrimEnd('\n')).ToList();

    /// <summary>nozoki's stderr without its own "nozoki: ..." lines, i.e. the mirrored fd-2 bytes.</summary>
    public static string MirroredStderr(string stderr) => OwnLineRegex().Replace(stderr, "");

    [GeneratedRegex("nozoki: [^\n]*\n")]
    private static partial Regex OwnLineRegex();

    /// <summary>Fails when nozoki's output shows a .NET crash instead of a one-line error.</summary>
    public static void AssertNoStackTrace(string stdout, string stderr)
    {
        foreach (var text in new[] { stdout, stderr })
        {
            Assert.DoesNotContain("Unhandled exception", text, StringComparison.Ordinal);
            Assert.DoesNotContain("\n   at ", "\n" + text, StringComparison.Ordinal);
        }
    }

    public static void AssertNoStackTrace(this ExternalProcess nozoki) =>
        AssertNoStackTrace(nozoki.StdoutText(), nozoki.StderrText());
}
