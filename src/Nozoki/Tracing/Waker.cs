using Nozoki.Native;

namespace Nozoki.Tracing;

/// <summary>
/// Ends the ptrace thread's wait from any thread. The ptrace thread sleeps in waitpid, which only a state change of
/// one of its children or tracees ends. A signal to that thread would not do: the runtime installs its handlers with
/// SA_RESTART, so waitpid would just restart, and a signal can come between a check and the wait. So the waker is a
/// child of the ptrace thread (a `cat` reading a pipe only nozoki holds) that the ptrace thread also traces: a wake
/// is a SIGUSR1 to it, which stops it in a signal-delivery-stop that waitpid reports; the ptrace thread resumes it
/// without the signal (<see cref="Resume"/>). A wake costs a signal and a ptrace call, and cannot be lost: a signal
/// sent while the waker is still stopped stays pending and stops it again as soon as it is resumed. Traced with
/// PTRACE_O_EXITKILL, the waker dies with nozoki. Where it cannot be traced (ptrace refused), a wake kills it
/// instead and a new one is started (a process start per wake: slow, but correct).
/// Start, Resume, Reaped and Stop run on the ptrace thread (the waker must be its child); Wake on any thread.
/// </summary>
internal sealed class Waker
{
    private int _pid;
    private int _pidfd = -1;
    private int _pipe = -1;
    private bool _traced;
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
                // posix_spawn returns once the child has exec'd: no exec SIGTRAP can follow the seize.
                _traced = PtraceCalls.Request(Ptrace.SEIZE, _pid, Ptrace.O_EXITKILL).IsOk;
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
        // Through a pidfd: the waker may have been reaped and its PID reused meanwhile.
        lock (_lock)
        {
            var signal = _traced ? Signals.SIGUSR1 : Signals.SIGKILL;
            if (_pidfd >= 0) Libc.pidfd_send_signal(_pidfd, signal);
            else if (_pid > 0) Libc.kill(_pid, signal);
        }
    }

    /// <summary>The waker stopped (a wake, or any signal sent to it): lets it go on, the signal suppressed.</summary>
    public void Resume()
    {
        lock (_lock)
        {
            if (_pid > 0) PtraceCalls.Request(Ptrace.CONT, _pid, 0);
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
            _traced = false;
        }
    }

    /// <summary>Stops and reaps the waker.</summary>
    public void Stop()
    {
        lock (_lock)
        {
            if (_pid <= 0) return;
            Libc.kill(_pid, Signals.SIGKILL);
            // A traced waker may report a stop before its death: wait until it is gone.
            while (PosixSpawn.WaitPid(_pid, Wait.WALL, out _, out var status).IsOk && Wait.IfStopped(status))
            {
            }

            Libc.close(_pipe);
            if (_pidfd >= 0) Libc.close(_pidfd);
            _pid = 0;
            _pidfd = -1;
            _pipe = -1;
            _traced = false;
        }
    }
}
