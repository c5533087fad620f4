using System.Runtime.InteropServices;

namespace Nozoki.Cli;

/// <summary>
/// Ctrl-C, kill, a closed terminal (SIGINT, SIGTERM, SIGHUP, SIGQUIT) caught from before nozoki attaches: a signal that
/// arrives while the session is still starting must not end nozoki with the runtime's default action (leaving the
/// process just seized) nor be forgotten; it is handed to the handler as soon as <see cref="Then"/> gives one.
/// </summary>
internal sealed class StopSignals : IDisposable
{
    private readonly Lock _gate = new();
    private readonly List<PosixSignalRegistration> _registrations;
    private readonly List<PosixSignal> _early = [];
    private Action<PosixSignal>? _handler;

    private StopSignals()
    {
        _registrations = [.. new[] { PosixSignal.SIGINT, PosixSignal.SIGTERM, PosixSignal.SIGHUP, PosixSignal.SIGQUIT }
            .Select(s => PosixSignalRegistration.Create(s, OnSignal))];
    }

    public static StopSignals Install() => new();

    /// <summary>The signal's number, to pass it on to a launched command with kill(2).</summary>
    public static int Number(PosixSignal s) => s switch
    {
        PosixSignal.SIGINT => Signals.SIGINT,
        PosixSignal.SIGTERM => Signals.SIGTERM,
        PosixSignal.SIGHUP => Signals.SIGHUP,
        _ => Signals.SIGQUIT,
    };

    /// <summary>From now on each signal goes to handler; those that came before go to it now, in order.</summary>
    public void Then(Action<PosixSignal> handler)
    {
        List<PosixSignal> early;
        lock (_gate)
        {
            _handler = handler;
            early = [.. _early];
            _early.Clear();
        }

        foreach (var s in early) handler(s);
    }

    private void OnSignal(PosixSignalContext c)
    {
        c.Cancel = true;
        Action<PosixSignal>? handler;
        lock (_gate)
        {
            handler = _handler;
            if (handler is null) _early.Add(c.Signal);
        }

        handler?.Invoke(c.Signal);
    }

    public void Dispose()
    {
        foreach (var r in _registrations) r.Dispose();
    }
}
