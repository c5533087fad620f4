using Nozoki.Native;

namespace Nozoki.Tracing;

/// <summary>
/// Ends the ptrace thread's wait from any thread. The ptrace thread sleeps in waitpid, which only a state change of
/// one of its children or tracees ends. A signal would not do: the runtime installs its handlers with SA_RESTART, so
/// waitpid would just restart. So the waker is a child of the ptrace thread that does nothing until killed: its death
/// ends the wait reliably, and unlike a signal it cannot be lost between a check and the wait. It reads a pipe only
/// nozoki holds, so it also ends if nozoki dies. Start, Restart and Stop run on the ptrace thread (the waker must be
/// its child); Wake on any thread.
/// </summary>
internal sealed class Waker
{
    private int _pid;
    private int _pidfd = -1;
    private int _pipe = -1;
    private readonly Lock _lock = new();

    /// <summary>The waker's PID (0 when there is none): its death is no tracee's.</summary>
    public int Pid => _pid;

    public void Start()
    {
        var path = ChildProcess.ResolvePath("cat");
        if (path is null) return;
        var (read, write) = Pipes.Create();
        using var devnull = File.OpenHandle("/dev/null", FileMode.Open, FileAccess.Write);
        var fd = (int)devnull.DangerousGetHandle();
        try
        {
            lock (_lock)
            {
                _pid = PosixSpawn.Spawn(path, [path], [], read, fd, fd, "/");
                _pidfd = Libc.pidfd_open(_pid);
                _pipe = write;
            }
        }
        catch (IOException)
        {
            // Without a waker a detach request is seen at the tracee's next stop.
            Libc.close(write);
        }
        finally
        {
            Libc.close(read);
        }
    }

    public void Wake()
    {
        // Through a pidfd: the waker may have been reaped (it dies on every wake) and its PID reused meanwhile.
        lock (_lock)
        {
            if (_pidfd >= 0) Libc.pidfd_send_signal(_pidfd, Signals.SIGKILL);
            else if (_pid > 0) Libc.kill(_pid, Signals.SIGKILL);
        }
    }

    /// <summary>The waker died (it was woken, and waitpid reaped it): forgets it, so that a new one can be started.</summary>
    public void Reaped()
    {
        lock (_lock)
        {
            if (_pidfd >= 0) Libc.close(_pidfd);
            if (_pipe >= 0) Libc.close(_pipe);
            _pid = 0;
            _pidfd = -1;
            _pipe = -1;
        }
    }

    /// <summary>Stops and reaps the waker.</summary>
    public void Stop()
    {
        lock (_lock)
        {
            if (_pid <= 0) return;
            Libc.kill(_pid, Signals.SIGKILL);
            PosixSpawn.WaitPid(_pid, Wait.WALL, out _, out _);
            Libc.close(_pipe);
            if (_pidfd >= 0) Libc.close(_pidfd);
            _pid = 0;
            _pidfd = -1;
            _pipe = -1;
        }
    }
}
