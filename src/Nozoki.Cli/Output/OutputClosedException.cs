namespace Nozoki.Cli.Output;

/// <summary>nozoki's own stdout or stderr was closed by its reader (EPIPE, e.g. `| head -1`): time to detach.</summary>
internal sealed class OutputClosedException(Exception inner) : IOException("output closed", inner);
