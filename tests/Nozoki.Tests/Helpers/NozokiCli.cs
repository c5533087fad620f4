using System.Text.Json;
using System.Text.RegularExpressions;

namespace Nozoki.Tests.Helpers;

/// <summary>Runs the nozoki CLI (nozoki.dll in the test output directory) and interprets its output.</summary>
internal static partial class NozokiCli
{
    public static readonly TimeSpan AttachTimeout = TimeSpan.FromSeconds(30);
    public static readonly TimeSpan ExitTimeout = TimeSpan.FromSeconds(60);

    /// <summary>The CLI assembly in the test output directory (nozoki.dll, or Nozoki.Cli.dll when not renamed).</summary>
    public static string DllPath
    {
        get
        {
            foreach (var name in new[] { "nozoki.dll", "Nozoki.Cli.dll" })
            {
                var path = Path.Combine(AppContext.BaseDirectory, name);
                if (File.Exists(path)) return path;
            }

            throw new FileNotFoundException($"neither nozoki.dll nor Nozoki.Cli.dll is in {AppContext.BaseDirectory}");
        }
    }

    /// <summary>The dotnet host that runs this test (so nozoki.dll runs on the same runtime).</summary>
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
        ExternalProcess.Start("nozoki", DotnetHost, [DllPath, .. args], stdoutSink);

    /// <summary>Runs nozoki as user nobody (uid/gid 65534, no supplementary groups) via setpriv.</summary>
    public static ExternalProcess StartAsNobody(IEnumerable<string> args) =>
        ExternalProcess.Start("nozoki (as nobody)", "setpriv",
            ["--reuid=65534", "--regid=65534", "--clear-groups", DotnetHost, DllPath, .. args]);

    /// <summary>Runs nozoki to completion; returns its exit code (the process is disposed, its output kept).</summary>
    public static (int Code, string Stdout, string Stderr) Run(params string[] args)
    {
        using var p = Start(args);
        var code = p.WaitForExit(ExitTimeout);
        return (code, p.StdoutText(), p.StderrText());
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
