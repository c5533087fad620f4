using Nozoki.Tests.Helpers;
using Nozoki.Tracing;

namespace Nozoki.Tests;

/// <summary>
/// `nozoki run` paints stderr by lineage: a write is painted when it goes to a copy of the command's original fd 2
/// (dup, dup2, dup3, F_DUPFD, inherited by fork and clone, kept over exec unless close-on-exec), whatever its number,
/// and not once that copy is closed or replaced. Each case runs twice: with stdout and stderr on two pipes (two open
/// file descriptions, which kcmp tells apart), and both on one file (`&gt;FILE 2&gt;&amp;1`: one description, where only
/// the lineage tells stdout from stderr).
/// </summary>
[Collection(PtraceCollection.Name)]
public sealed class RunLineageTests
{
    private const string Start = "\u001b[1;31m", Reset = "\u001b[0m";

    /// <summary>One expected line: on stdout, painted on stderr, or on stderr unpainted.</summary>
    private readonly record struct Line(char Kind, string Text)
    {
        public static Line Parse(string spec) => spec[1] == ' ' && spec[0] is 'o' or 'e' or 'u'
            ? new Line(spec[0], spec[2..] + "\n")
            : throw new ArgumentException($"an expected line is 'o TEXT', 'e TEXT' or 'u TEXT': '{spec}'");

        public string Painted => Kind == 'e' ? Start + Text + Reset : Text;
    }

    private static string Escape(string s) => s.Replace("\u001b", "\\e", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal);

    /// <summary>
    /// Runs `nozoki run --color always -- ARGV` both ways and checks the output against EXPECTED ('o TEXT': stdout,
    /// 'e TEXT': stderr, painted; 'u TEXT': stderr, not painted), and that the exit status is 0.
    /// </summary>
    private static void AssertPainted(string[] argv, string[] expected, string what)
    {
        var lines = expected.Select(Line.Parse).ToList();

        using (var nozoki = NozokiCli.Start(["run", "--color", "always", "--", .. argv]))
        {
            var code = nozoki.WaitForExit(NozokiCli.ExitTimeout);
            var wantOut = string.Concat(lines.Where(l => l.Kind == 'o').Select(l => l.Text));
            var wantErr = string.Concat(lines.Where(l => l.Kind != 'o').Select(l => l.Painted));
            if (code != 0 || nozoki.StdoutText() != wantOut || nozoki.StderrText() != wantErr)
            {
                Assert.Fail($"{what}, stdout and stderr on two pipes: exit {code}\n" +
                            $"stdout expected {Escape(wantOut)}\n       actual   {Escape(nozoki.StdoutText())}\n" +
                            $"stderr expected {Escape(wantErr)}\n       actual   {Escape(nozoki.StderrText())}");
            }
        }

        using var dir = new TempDir();
        var file = dir.File("out");
        var status = RunOutput.NozokiToFile(file, ["run", "--color", "always", "--", .. argv]);
        var want = string.Concat(lines.Select(l => l.Painted));
        var text = TempDir.ReadText(file);
        if (status != new ExitStatus(0, 0) || text != want)
            Assert.Fail($"{what}, stdout and stderr on one file: {status}\nexpected {Escape(want)}\nactual   {Escape(text)}");
    }

    // ---- shells: the table ----------------------------------------------------------------------------------------

    /// <summary>A script ($1: a private directory, $2: the run_say fixture, `$2 FD TEXT` writes TEXT to FD) and what it shows.</summary>
    private sealed record ShellCase(string Name, string Script, string[] Expected, string[]? Shells = null);

    private static readonly ShellCase[] ShellCases =
    [
        new("echo >&2 between two stdout lines", "echo out; echo err >&2; echo out2", ["o out", "e err", "o out2"]),
        new("a function's >&2", "f() { echo ferr >&2; }; f; echo out", ["e ferr", "o out"]),
        new("printf >&2", "printf '%s\\n' perr >&2", ["e perr"]),
        new("a kept copy: exec 3>&2", "exec 3>&2; echo three >&3; echo out; exec 3>&-; echo after", ["e three", "o out", "o after"]),
        new("a copy of a copy", "exec 3>&2 4>&3 3>&-; echo four >&4; exec 4>&-", ["e four"]),
        new("a stale number: exec 3>&2; exec 3>&-; exec 3>FILE",
            "exec 3>&2; exec 3>&-; exec 3>\"$1/log\"; echo logged >&3; exec 3>&-; cat \"$1/log\"", ["o logged"]),
        new("fd 2 closed, then opened on a file",
            "exec 2>&-; exec 2>\"$1/log\"; echo logged >&2; exec 2>&-; cat \"$1/log\"", ["o logged"]),
        new("2>/dev/null", "{ echo hidden >&2; } 2>/dev/null; \"$2\" 2 hidden-too 2>/dev/null; echo out", ["o out"]),
        new("2>&1 for a block", "{ echo e2o >&2; \"$2\" 2 child-e2o; } 2>&1; echo out", ["o e2o", "o child-e2o", "o out"]),
        new("exec 2>&1", "exec 2>&1; echo via2 >&2; \"$2\" 2 child-via2", ["o via2", "o child-via2"]),
        new("stdout sent to stderr for a while", "exec 4>&1 1>&2; echo block; \"$2\" 1 child-block; exec 1>&4 4>&-; echo back",
            ["e block", "e child-block", "o back"]),
        new("stdout and stderr swapped", "{ echo x >&2; echo y; } 3>&1 1>&2 2>&3 3>&-; echo z", ["o x", "e y", "o z"]),
        // (Not `echo err >&2 | cat`: zsh's MULTIOS would send err down the pipe too.)
        new("a pipeline", "{ echo err >&2; } | cat; echo out | cat", ["e err", "o out"]),
        new("a subshell, a child shell, a grandchild",
            "( echo sub >&2 ); sh -c 'echo child >&2'; ( \"$2\" 2 grandchild; true ) | cat", ["e sub", "e child", "e grandchild"]),
        new("fork then exec keeps the copy", "exec 5>&2; \"$2\" 5 five; sh -c 'echo sh5 >&5'; exec 5>&-; \"$2\" 1 out", ["e five", "e sh5", "o out"]),
        new("a child's stdout redirected to stderr", "\"$2\" 1 tostderr >&2; \"$2\" 1 tostdout", ["e tostderr", "o tostdout"]),
        new("a background job", "{ echo bg >&2; } & wait; echo out", ["e bg", "o out"]),
        new("a descriptor the shell chose: exec {fd}>&2", "exec {fd}>&2; echo named >&$fd; exec {fd}>&-; echo out", ["e named", "o out"],
            ["bash", "zsh"]),
        new("print -u2", "print -u2 perr; print out", ["e perr", "o out"], ["zsh"]),
    ];

    public static TheoryData<string, string> ShellRows()
    {
        var data = new TheoryData<string, string>();
        foreach (var shell in new[] { "dash", "bash", "zsh" })
        {
            foreach (var c in ShellCases.Where(c => c.Shells is null || c.Shells.Contains(shell))) data.Add(shell, c.Name);
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(ShellRows))]
    public void A_shell_write_is_painted_exactly_when_it_goes_to_a_copy_of_stderr(string shell, string name)
    {
        var c = ShellCases.Single(x => x.Name == name);
        using var dir = new TempDir();
        AssertPainted([shell, "-c", c.Script, shell, dir.Path, Fixtures.Get("run_say")], c.Expected, $"{shell}: {name}: {c.Script}");
    }

    // ---- what shells cannot do: threads, clone flags, unshare, close-on-exec --------------------------------------

    [Theory]
    [InlineData("thread-dup", new[] { "e thread-dup err" })]
    [InlineData("running-thread", new[] { "e running-thread err" })]
    [InlineData("clone-files", new[] { "e clone-files err" })]
    [InlineData("fork-copy", new[] { "e fork-copy child err", "o fork-copy parent out" })]
    [InlineData("unshare-thread", new[] { "e unshare thread err", "o unshare main out" })]
    [InlineData("fork-exec", new[] { "e fork-exec err", "o cloexec out" })]
    [InlineData("own-filter", new[] { "e own-filter err", "e own-filter copy err" })]
    public void Copies_made_by_threads_clone_unshare_and_exec_are_painted_by_their_table(string mode, string[] expected) =>
        // thread-dup: a thread's copy is its process's (one table). running-thread: a thread that ran free while
        // another made the copy writes to it. clone-files: a child that shares the table (clone CLONE_FILES) makes a
        // copy the parent writes to. fork-copy: fork copies the table: the child's dup2(2, 7) leaves the parent's 7
        // (stdout) alone. unshare-thread: the same for a thread that unshared its table. fork-exec: a copy is kept
        // over exec; a close-on-exec one is not, and the number that comes back (pidfd_getfd of stdout: no dup-family
        // call) is stdout, which on one file kcmp cannot tell from stderr. own-filter: a program with a seccomp filter
        // of its own (here one that kills it at writev) has its writes bracketed, not turned into a writev.
        AssertPainted([Fixtures.Get("lineage"), mode], expected, $"lineage {mode}");

    [Fact]
    public void A_label_whose_close_nozoki_did_not_stop_for_never_paints_the_file_that_takes_its_number()
    {
        // close(2) with no other copy of stderr left: the filter does not stop for close, so the label of 2 stays; the
        // next open takes number 2, and a write to it is stopped (2 is trapped) and found, by kcmp, not to be stderr.
        using var dir = new TempDir();
        AssertPainted([Fixtures.Get("lineage"), "reopen-2", dir.File("log")], ["o reopened out"], "lineage reopen-2");
    }

    // ---- every write path -----------------------------------------------------------------------------------------

    private static string PathLines(params string[] paths) =>
        string.Concat(paths.SelectMany(p => new[] { 2, 9 }.Select(fd => $"{Start}{p}@{fd} err\n{Reset}")));

    [Fact]
    public void Every_write_path_to_a_pipe_is_painted_through_fd_2_and_through_a_copy()
    {
        string[] paths = ["write", "writev", "pwritev2", "sendfile", "splice", "tee", "vmsplice"];
        using var nozoki = NozokiCli.Start(["run", "--color", "always", "--", Fixtures.Get("lineage"), "paths", .. paths]);
        var code = nozoki.WaitForExit(NozokiCli.ExitTimeout);
        Assert.True(code == 0, $"exit {code}\n{nozoki.Describe()}");
        Assert.Equal("", nozoki.StdoutText());
        Assert.Equal(Escape(PathLines(paths)), Escape(nozoki.StderrText()));
    }

    [Theory]
    [InlineData(">>", new[] { "write", "pwrite64", "pwritev", "pwritev2" })] // O_APPEND: pwrite appends
    [InlineData(">", new[] { "copy_file_range", "sendfile", "splice", "writev" })]
    public void Every_write_path_to_a_file_is_painted_through_fd_2_and_through_a_copy(string redirect, string[] paths)
    {
        using var dir = new TempDir();
        var err = dir.File("err");
        // The redirection is the shell's (which then becomes nozoki): 2>> opens stderr O_APPEND, where pwrite64 appends.
        var script = $"exec {Tmux.Quote(NozokiCli.ExePath)} run --color always -- {Tmux.Quote(Fixtures.Get("lineage"))} paths {string.Join(' ', paths)} 2{redirect}{Tmux.Quote(err)}";
        using var sh = ExternalProcess.Start("sh", "/bin/sh", ["-c", script]);
        var code = sh.WaitForExit(NozokiCli.ExitTimeout);
        Assert.True(code == 0, $"exit {code}\n{sh.Describe()}");
        Assert.Equal("", sh.StdoutText());
        Assert.Equal(Escape(PathLines(paths)), Escape(TempDir.ReadText(err)));
    }

    [Fact]
    public void Every_write_path_to_a_socket_is_painted_through_fd_2_and_through_a_copy()
    {
        // A stream socket as nozoki's stderr (a service's journal stream): python3 makes the pair and reads its end.
        const string Harness = """
            import socket, subprocess, sys
            a, b = socket.socketpair()
            p = subprocess.Popen(sys.argv[1:], stderr=a.fileno())
            a.close()
            data = b""
            while True:
                chunk = b.recv(65536)
                if not chunk:
                    break
                data += chunk
            sys.stdout.buffer.write(data)
            sys.exit(p.wait())
            """;
        string[] paths = ["sendto", "sendmsg", "sendmmsg", "write", "writev"];
        using var python = ExternalProcess.Start("python3", "/usr/bin/python3",
            ["-c", Harness, NozokiCli.ExePath, "run", "--color", "always", "--", Fixtures.Get("lineage"), "paths", .. paths]);
        var code = python.WaitForExit(NozokiCli.ExitTimeout);
        Assert.True(code == 0, $"exit {code}\n{python.Describe()}");
        Assert.Equal(Escape(PathLines(paths)), Escape(python.StdoutText()));
    }

    [Fact]
    public void A_stdout_write_that_is_never_a_copy_of_stderr_is_never_painted_among_many_stderr_copies()
    {
        // Many rounds of the dance a shell makes for every `>&2` (fcntl F_DUPFD, dup2, write, dup2 back, close): the
        // mode switches (stops at every syscall while fd 1 is a copy of stderr, free again after) must never leave fd 1
        // painted, nor a copy unpainted.
        const int rounds = 300;
        var expected = new List<string>();
        for (var i = 0; i < rounds; i++)
        {
            expected.Add($"e e{i}");
            expected.Add($"o o{i}");
        }

        AssertPainted(["bash", "-c", $"for ((i=0; i<{rounds}; i++)); do echo e$i >&2; echo o$i; done"], [.. expected], "bash loop");
    }
}
