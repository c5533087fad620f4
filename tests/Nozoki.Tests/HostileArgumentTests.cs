using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;
using Nozoki.Tests.Helpers;

namespace Nozoki.Tests;

/// <summary>
/// The README's table of bad arguments (section "Exit codes"), run row by row: each row is a command line, the exit code
/// and the one line nozoki must print. The README is the data file, so the table users read is the one that is tested.
/// </summary>
[Collection(PtraceCollection.Name)]
public sealed partial class HostileArgumentTests
{
    private const string Header = "| command | exit | stderr (one line) |";

    [GeneratedRegex(@"^\| `(?<command>nozoki[^`]*)` \| (?<code>\d+) \| `(?<message>nozoki: error: [^`]*)` \|$")]
    private static partial Regex Row();

    /// <summary>The rows of the README's table: command line (as a shell would take it), exit code, stderr line.</summary>
    public static TheoryData<string, int, string> Rows()
    {
        var data = new TheoryData<string, int, string>();
        foreach (var (command, code, message) in ReadTable()) data.Add(command, code, message);
        return data;
    }

    private static List<(string Command, int Code, string Message)> ReadTable()
    {
        var lines = File.ReadAllLines(Path.Combine(Repository.Root, "README.md"));
        var start = Array.IndexOf(lines, Header);
        Assert.True(start >= 0, $"README.md has no table with the header '{Header}'");
        var rows = new List<(string, int, string)>();
        foreach (var line in lines.Skip(start + 2).TakeWhile(l => l.StartsWith('|')))
        {
            var m = Row().Match(line);
            Assert.True(m.Success, $"README.md: a row of the bad-arguments table is not | `nozoki ...` | code | `nozoki: error: ...` |: {line}");
            rows.Add((m.Groups["command"].Value, int.Parse(m.Groups["code"].Value, System.Globalization.CultureInfo.InvariantCulture), m.Groups["message"].Value));
        }

        return rows;
    }

    [Theory]
    [MemberData(nameof(Rows))]
    public void Each_row_exits_with_its_code_and_prints_its_one_line(string command, int code, string message)
    {
        using var dir = new TempDir();
        var fifo = dir.File("probes.fifo");
        var socketPath = dir.File("probes.sock");
        using var socket = command.Contains("<socket>", StringComparison.Ordinal) ? BoundSocket(socketPath) : null;
        if (command.Contains("<fifo>", StringComparison.Ordinal)) MakeFifo(fifo);
        string Fill(string s) => s.Replace("<fifo>", fifo, StringComparison.Ordinal).Replace("<socket>", socketPath, StringComparison.Ordinal);

        var args = ShellWords(Fill(command)).Skip(1).ToArray();
        var (exit, stdout, stderr) = NozokiCli.Run(args);
        NozokiCli.AssertNoStackTrace(stdout, stderr);
        Assert.True(stderr == Fill(message) + "\n",
            $"`{command}`: expected exactly one line on stderr:\n  {Fill(message)}\ngot:\n{stderr}");
        Assert.True(exit == code, $"`{command}`: expected exit code {code}, got {exit}");
        Assert.True(stdout.Length == 0, $"`{command}`: expected nothing on stdout, got:\n{stdout}");
    }

    [Fact]
    public void The_table_has_rows_for_every_command()
    {
        var commands = ReadTable().Select(r => ShellWords(r.Command).ElementAtOrDefault(1) ?? "").ToHashSet();
        foreach (var c in new[] { "out", "run", "trace", "probes", "usdt", "inspect", "demo" })
            Assert.True(commands.Contains(c), $"README.md's bad-arguments table has no row for `nozoki {c}`");
    }

    /// <summary>Splits like a shell for the table's needs: blanks separate words, '...' quotes (also '' for an empty word).</summary>
    internal static List<string> ShellWords(string line)
    {
        var words = new List<string>();
        var word = new StringBuilder();
        var inWord = false;
        for (var i = 0; i < line.Length; i++)
        {
            var c = line[i];
            if (c == '\'')
            {
                var end = line.IndexOf('\'', i + 1);
                Assert.True(end > i, $"unbalanced quote in `{line}`");
                word.Append(line, i + 1, end - i - 1);
                inWord = true;
                i = end;
            }
            else if (c == ' ')
            {
                if (inWord) words.Add(word.ToString());
                word.Clear();
                inWord = false;
            }
            else
            {
                word.Append(c);
                inWord = true;
            }
        }

        if (inWord) words.Add(word.ToString());
        return words;
    }

    private static void MakeFifo(string path)
    {
        using var mkfifo = ExternalProcess.Start("mkfifo", "mkfifo", [path]);
        Assert.Equal(0, mkfifo.WaitForExit(TimeSpan.FromSeconds(30)));
    }

    private static Socket BoundSocket(string path)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Bind(new UnixDomainSocketEndPoint(path));
        return socket;
    }
}
