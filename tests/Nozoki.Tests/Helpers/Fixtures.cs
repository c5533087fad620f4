using System.Collections.Concurrent;
using System.Diagnostics;

namespace Nozoki.Tests.Helpers;

/// <summary>
/// Compiles the C fixtures (copied to the output directory under fixtures/) on first use, once per test run,
/// into a private temporary directory.
/// </summary>
internal static class Fixtures
{
    private static readonly ConcurrentDictionary<string, Lazy<string>> Compiled = new(StringComparer.Ordinal);

    private static readonly Lazy<string> OutputDirectory = new(() =>
    {
        var dir = Directory.CreateTempSubdirectory("nozoki-fixtures-").FullName;
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            try
            {
                Directory.Delete(dir, recursive: true);
            }
            catch (IOException)
            {
            }
        };
        return dir;
    }, LazyThreadSafetyMode.ExecutionAndPublication);

    public static string SourceDirectory => Path.Combine(AppContext.BaseDirectory, "fixtures");

    /// <summary>Fixtures built with flags of their own (Build): the warm-up calls their getters.</summary>
    private static readonly Func<string>[] BuiltWithFlags =
        [() => ProbesFixtures.Exe, () => ProbesFixtures.Lib, () => ProbesFixtures.Throw, () => UsdtTests.Fork, () => RunTests.StaticFixture,
         () => BreakTests.Chain(true), () => BreakTests.Chain(false), () => BreakTests.Lib];

    /// <summary>Sources the warm-up does not compile through Get: those built with flags, and bench/'s own.</summary>
    private static readonly HashSet<string> NotThroughGet = new(StringComparer.Ordinal) { "usdt", "usdtlib", "usdt_fork", "run_static", "benchwriter", "stderr_lines", "brk_lib" };

    private static int _warming;

    /// <summary>
    /// Compiles every fixture, one compiler per CPU at a time, and returns when all are done. A compile error is not
    /// lost: it is thrown to the test that asks for the fixture. Not in the background while tests run: a session
    /// run inside this process waits for its tracees with waitpid(-1, __WALL), which would reap a compiler (a child
    /// of this process too) under the feet of its Process object.
    /// </summary>
    public static void CompileAll()
    {
        if (Interlocked.Exchange(ref _warming, 1) != 0) return;
        var jobs = new List<Func<string>>(BuiltWithFlags);
        foreach (var source in Directory.EnumerateFiles(SourceDirectory, "*.c"))
        {
            var name = Path.GetFileNameWithoutExtension(source);
            if (!NotThroughGet.Contains(name)) jobs.Add(() => Get(name));
        }

        // The slowest compiles (C++, -static) first.
        jobs.Reverse(0, BuiltWithFlags.Length);
        var queue = new ConcurrentQueue<Func<string>>(jobs);
        var compilers = new Thread[Environment.ProcessorCount];
        for (var i = 0; i < compilers.Length; i++)
        {
            compilers[i] = new Thread(() =>
            {
                while (queue.TryDequeue(out var job))
                {
                    try
                    {
                        job();
                    }
                    catch (Exception e) when (e is InvalidOperationException or TimeoutException or IOException or System.ComponentModel.Win32Exception)
                    {
                        // Kept in the fixture's Lazy: the test that asks for it gets this exception.
                    }
                }
            })
            { IsBackground = true, Name = "fixture compiler" };
            compilers[i].Start();
        }

        foreach (var t in compilers) t.Join();
    }

    /// <summary>The path of the compiled fixture NAME (from fixtures/NAME.c); compiles it on first use.</summary>
    public static string Get(string name) =>
        Compiled.GetOrAdd(name, n => new Lazy<string>(() => Compile(n), LazyThreadSafetyMode.ExecutionAndPublication)).Value;

    private static string Compile(string name)
    {
        var source = Path.Combine(SourceDirectory, name + ".c");
        if (!File.Exists(source))
            throw new FileNotFoundException($"fixture source {source} does not exist", source);
        var output = Path.Combine(OutputDirectory.Value, name);
        var psi = new ProcessStartInfo("gcc")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in new[] { "-O2", "-pthread", "-Wall", "-o", output, source })
            psi.ArgumentList.Add(arg);
        using var gcc = Process.Start(psi) ?? throw new InvalidOperationException("could not start gcc");
        var stdout = gcc.StandardOutput.ReadToEndAsync();
        var stderr = gcc.StandardError.ReadToEndAsync();
        if (!gcc.WaitForExit(60_000))
        {
            gcc.Kill(entireProcessTree: true);
            throw new TimeoutException($"gcc {source} did not finish within 60 s");
        }

        gcc.WaitForExit();
        if (gcc.ExitCode != 0)
            throw new InvalidOperationException(
                $"gcc failed to compile {source} (exit {gcc.ExitCode}):\n{stderr.GetAwaiter().GetResult()}{stdout.GetAwaiter().GetResult()}");
        return output;
    }

    /// <summary>
    /// The fixture NAME built from fixtures/SOURCE (C or C++) with COMPILER ("gcc" or "g++") and extra FLAGS
    /// (e.g. "-shared", "-fPIC", "-ldl"); built once per NAME and test run. The output is NAME in the fixture
    /// directory (a shared library fixture should be named lib*.so).
    /// </summary>
    public static string Build(string name, string source, string compiler, params string[] flags) =>
        Compiled.GetOrAdd("build:" + name, _ => new Lazy<string>(() => CompileWith(name, source, compiler, flags),
            LazyThreadSafetyMode.ExecutionAndPublication)).Value;

    private static string CompileWith(string name, string sourceName, string compiler, string[] flags)
    {
        var source = Path.Combine(SourceDirectory, sourceName);
        if (!File.Exists(source))
            throw new FileNotFoundException($"fixture source {source} does not exist", source);
        var output = Path.Combine(OutputDirectory.Value, name);
        var psi = new ProcessStartInfo(compiler)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in new[] { "-O2", "-pthread", "-Wall", "-o", output, source }.Concat(flags))
            psi.ArgumentList.Add(arg);
        using var cc = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {compiler}");
        var stdout = cc.StandardOutput.ReadToEndAsync();
        var stderr = cc.StandardError.ReadToEndAsync();
        if (!cc.WaitForExit(120_000))
        {
            cc.Kill(entireProcessTree: true);
            throw new TimeoutException($"{compiler} {source} did not finish within 120 s");
        }

        cc.WaitForExit();
        if (cc.ExitCode != 0)
            throw new InvalidOperationException(
                $"{compiler} failed to compile {source} (exit {cc.ExitCode}):\n{stderr.GetAwaiter().GetResult()}{stdout.GetAwaiter().GetResult()}");
        return output;
    }
}
