using System.Text.RegularExpressions;
using Nozoki.Tests.Helpers;

namespace Nozoki.Tests;

/// <summary>
/// The README's first two commands must work on a fresh Debian machine with only the .NET 10 SDK: the second one runs
/// the whole suite, so it must be a script that installs what the tests need (sys/sdt.h, gcc, strace...), and CI
/// must run that same script.
/// </summary>
public sealed partial class ReadmeCommandTests
{
    [GeneratedRegex(@"^```sh\n(?<first>[^\n#]*?)\s*#[^\n]*\n(?<second>[^\n#]*?)\s*#[^\n]*\n```", RegexOptions.Multiline)]
    private static partial Regex FirstBlock();

    [Fact]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public void The_second_command_is_a_script_that_installs_the_test_packages_and_ci_runs_it()
    {
        var readme = File.ReadAllText(Path.Combine(Repository.Root, "README.md"));
        var m = FirstBlock().Match(readme);
        Assert.True(m.Success, "README.md does not start with a ```sh block of two commented commands");
        Assert.Equal("./nozoki demo", m.Groups["first"].Value);
        var command = m.Groups["second"].Value;
        Assert.NotEqual("dotnet test", command); // fails on a fresh machine: the USDT fixtures need sys/sdt.h

        var script = Path.Combine(Repository.Root, command);
        Assert.True(File.Exists(script), $"README's test command '{command}' is not a file of the repository");
        Assert.True((File.GetUnixFileMode(script) & UnixFileMode.UserExecute) != 0, $"{command} is not executable");
        var text = File.ReadAllText(script);
        Assert.StartsWith("#!/usr/bin/env bash\n", text, StringComparison.Ordinal);
        foreach (var package in new[] { "systemtap-sdt-dev", "gcc", "g++", "strace", "binutils", "tmux", "python3.11", "util-linux" })
            Assert.Matches(new Regex($@"packages=\([^)]*(?<=[ (]){Regex.Escape(package)}[ )]"), text);
        Assert.Contains("apt-get install", text, StringComparison.Ordinal);
        Assert.Contains("dotnet test", text, StringComparison.Ordinal);
        Assert.Contains("passed, ${failed} failed", text, StringComparison.Ordinal);

        var ci = File.ReadAllText(Path.Combine(Repository.Root, ".ci", "run"));
        Assert.Matches(new Regex($@"(?m)^exec {Regex.Escape(command)} ""\$@""$"), ci);
    }
}
