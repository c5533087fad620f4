using Nozoki.Tests.Helpers;

namespace Nozoki.Tests;

/// <summary>
/// A command nozoki launches (through its re-executed stage) gets nozoki's environment exactly: same variables,
/// same order, same bytes. Rebuilding it from .NET's dictionary would reorder it.
/// </summary>
[Collection(PtraceCollection.Name)]
public sealed class LaunchEnvironmentTests
{
    // The launched python compares its own initial environment with that of its parent (nozoki, whose process the
    // stage was spawned by) and prints both when they differ.
    private const string Compare =
        "import os,sys\n" +
        "mine = open('/proc/self/environ','rb').read()\n" +
        "theirs = open('/proc/%d/environ' % os.getppid(),'rb').read()\n" +
        "print('same' if mine == theirs and len(mine) > 0 else 'differ\\n%r\\n%r' % (theirs, mine))\n";

    [Theory]
    [InlineData("run")]
    [InlineData("trace")]
    [InlineData("trace-filtered")]
    [InlineData("usdt")]
    public void The_command_gets_nozokis_environment_in_order_byte_for_byte(string mode)
    {
        string[] prefix = mode switch
        {
            "run" => ["run", "--"],
            "trace" => ["trace", "-f", "-o", "/dev/null", "--"],
            "trace-filtered" => ["trace", "-e", "trace=openat", "-o", "/dev/null", "--"],
            _ => ["usdt", "-q", "nothing:here", "--"],
        };
        var (code, stdout, stderr) = NozokiCli.Run([.. prefix, "/usr/bin/python3", "-c", Compare]);
        // usdt: no site matches nothing:here, which it says with 3 once the command has run.
        Assert.True(code == (mode == "usdt" ? 3 : 0), stderr);
        Assert.Equal("same\n", stdout);
    }
}
