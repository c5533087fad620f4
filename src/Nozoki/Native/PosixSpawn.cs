using System.Runtime.InteropServices;
using System.Text;

namespace Nozoki.Native;

/// <summary>posix_spawn with default signal dispositions and an empty signal mask, and a waitpid wrapper.</summary>
internal static unsafe class PosixSpawn
{
    /// <summary>
    /// Starts path with argv/env (null env: this process's own environment, exactly as it came, see
    /// <see cref="Libc.Environ"/>); the given fds become 0, 1 and 2. Returns the pid or throws IOException.
    /// </summary>
    internal static int Spawn(string path, IReadOnlyList<string> argv, IReadOnlyList<string>? env, int stdinFd, int stdoutFd, int stderrFd, string? workingDirectory)
    {
        var rc = TrySpawn(path, argv, env, stdinFd, stdoutFd, stderrFd, workingDirectory, out var pid);
        if (rc != 0) throw new IOException($"cannot start {path}: {Libc.StrError(rc)}");
        return pid;
    }

    /// <summary>
    /// <see cref="Spawn"/>, returning 0 or the errno of what failed; glibc's posix_spawn reports the child's execve
    /// error (EACCES, ENOEXEC, ...) this way, and then there is no child.
    /// </summary>
    internal static int TrySpawn(string path, IReadOnlyList<string> argv, IReadOnlyList<string>? env, int stdinFd, int stdoutFd, int stderrFd, string? workingDirectory, out int pid)
    {
        using var argvBlock = new CStringArray(argv);
        using var envBlock = env is null ? null : new CStringArray(env);
        var pathBytes = Encoding.UTF8.GetBytes(path + "\0");
        var cwdBytes = workingDirectory is null ? null : Encoding.UTF8.GetBytes(workingDirectory + "\0");

        SpawnStorage attr = default, actions = default;
        SigSet all = default, none = default;
        all.FillAll();
        Libc.posix_spawnattr_init(&attr);
        Libc.posix_spawn_file_actions_init(&actions);
        try
        {
            // The .NET runtime ignores SIGPIPE and blocks signals on some threads; a child must not inherit that.
            Libc.posix_spawnattr_setflags(&attr, Libc.POSIX_SPAWN_SETSIGDEF | Libc.POSIX_SPAWN_SETSIGMASK);
            Libc.posix_spawnattr_setsigdefault(&attr, &all);
            Libc.posix_spawnattr_setsigmask(&attr, &none);
            // dup2 onto the same fd clears close-on-exec, which is what an inherited stdio fd needs.
            Libc.posix_spawn_file_actions_adddup2(&actions, stdinFd, 0);
            Libc.posix_spawn_file_actions_adddup2(&actions, stdoutFd, 1);
            Libc.posix_spawn_file_actions_adddup2(&actions, stderrFd, 2);
            if (cwdBytes is not null)
            {
                fixed (byte* cwd = cwdBytes) Libc.posix_spawn_file_actions_addchdir_np(&actions, cwd);
            }

            int child;
            int rc;
            fixed (byte* p = pathBytes) rc = Libc.posix_spawn(&child, p, &actions, &attr, argvBlock.Pointer, envBlock is null ? Libc.Environ : envBlock.Pointer);
            pid = rc == 0 ? child : 0;
            return rc;
        }
        finally
        {
            Libc.posix_spawn_file_actions_destroy(&actions);
            Libc.posix_spawnattr_destroy(&attr);
        }
    }

    /// <summary>
    /// waitpid retried on EINTR: waited is the pid whose status it is, or 0 (WNOHANG and nothing to report); the
    /// errno on failure (ECHILD: nothing left to wait for).
    /// </summary>
    internal static SysResult WaitPid(int pid, int options, out int waited, out int status)
    {
        int s;
        while (true)
        {
            var r = Libc.waitpid(pid, &s, options);
            if (r >= 0)
            {
                waited = r;
                status = s;
                return SysResult.Ok;
            }

            var error = SysResult.LastPInvokeError();
            if (error.Errno == Errno.EINTR) continue;
            waited = 0;
            status = 0;
            return error;
        }
    }

    /// <summary>
    /// Replaces the calling process with path. Before that, the signal mask is emptied and SIGPIPE given back its
    /// default action: the .NET runtime ignores SIGPIPE and blocks signals, and execve would pass both on.
    /// With this process's own environment, exactly as it came (<see cref="Libc.Environ"/>). Returns only when execve
    /// failed, with its errno.
    /// </summary>
    internal static SysResult Execve(string path, IReadOnlyList<string> argv)
    {
        using var argvBlock = new CStringArray(argv);
        var pathBytes = Encoding.UTF8.GetBytes(path + "\0");
        SigSet none = default;
        Libc.sigprocmask(Libc.SIG_SETMASK, &none, null);
        Libc.signal(13 /* SIGPIPE */, Libc.SIG_DFL);
        fixed (byte* p = pathBytes) Libc.execve(p, argvBlock.Pointer, Libc.Environ);
        return SysResult.LastPInvokeError();
    }

    /// <summary>A NULL-terminated char*[] in unmanaged memory.</summary>
    private sealed class CStringArray : IDisposable
    {
        private readonly nint[] _strings;

        public CStringArray(IReadOnlyList<string> items)
        {
            _strings = new nint[items.Count];
            Pointer = (byte**)NativeMemory.Alloc((nuint)(items.Count + 1), (nuint)sizeof(nint));
            for (var i = 0; i < items.Count; i++)
            {
                _strings[i] = Marshal.StringToCoTaskMemUTF8(items[i]);
                Pointer[i] = (byte*)_strings[i];
            }

            Pointer[items.Count] = null;
        }

        public byte** Pointer { get; }

        public void Dispose()
        {
            foreach (var s in _strings) Marshal.FreeCoTaskMem(s);
            NativeMemory.Free(Pointer);
        }
    }
}
