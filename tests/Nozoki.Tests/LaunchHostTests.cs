using Nozoki.Tests.Helpers;
using Nozoki.Tracing;

namespace Nozoki.Tests;

/// <summary>
/// A launched command starts as nozoki re-executed through /proc/self/exe (the launch stage). That must work however
/// nozoki was started: the native binary (what every other CLI test runs), and the framework-dependent build as the
/// dotnet tool runs it — through the dotnet host (`dotnet Nozoki.Cli.dll`: /proc/self/exe is dotnet, which needs the
/// assembly again) and through an apphost (a global tool's shim: /proc/self/exe is the apphost itself).
/// </summary>
[Collection(PtraceCollection.Name)]
public sealed class LaunchHostTests
{
    private const string BoldRed = "\u001b[1;31m", Reset = "\u001b[0m";

    public static TheoryData<string> Hosts => new() { "native", "dotnet host", "apphost" };

    private static IReadOnlyList<string> Command(string host)
    {
        switch (host)
        {
            case "native":
                return NozokiCli.Command;
            case "dotnet host":
                return [NozokiCli.DotnetHost, NozokiCli.DllPath];
            default:
                var apphost = Path.ChangeExtension(NozokiCli.DllPath, null);
                Assert.True(File.Exists(apphost), $"no apphost beside {NozokiCli.DllPath}");
                return [apphost];
        }
    }

    [Theory]
    [MemberData(nameof(Hosts))]
    public void Run_starts_the_command_through_the_stage(string host)
    {
        using var dir = new TempDir();
        var file = dir.File("out");
        // run_say writes to fd 2 itself (a shell's `echo >&2` writes through fd 1 after a dup2: not painted).
        var say = Tmux.Quote(Fixtures.Get("run_say"));
        var status = RunOutput.ToFile(file, [.. Command(host), "run", "--color", "always", "--", "sh", "-c", $"echo out; {say} 2 err; exit 3"]);
        var text = TempDir.ReadText(file);
        Assert.True(status == new ExitStatus(3, 0), $"nozoki run ({host}) {status}; output: {text}");
        Assert.Equal($"out\n{BoldRed}err\n{Reset}", text);
    }

    [Theory]
    [MemberData(nameof(Hosts))]
    public void Trace_with_a_seccomp_filter_starts_the_command_through_the_stage(string host)
    {
        using var dir = new TempDir();
        var file = dir.File("out");
        var status = RunOutput.ToFile(file, [.. Command(host), "trace", "-e", "trace=exit_group", "--", "sh", "-c", "exit 4"]);
        var text = TempDir.ReadText(file);
        Assert.True(status == new ExitStatus(4, 0), $"nozoki trace ({host}) {status}; output: {text}");
        Assert.Contains("exit_group(4)", text, StringComparison.Ordinal);
    }
}
