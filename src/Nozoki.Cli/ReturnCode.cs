namespace Nozoki.Cli;

/// <summary>
/// nozoki's exit codes: the same code for the same situation in every command. Errors.Code is the one place that
/// turns an error into one of these; README.md ("Exit codes") has the same table.
/// <list type="table">
/// <item><term>0</term><description>success: the traced process exited, or nozoki detached (Ctrl-C, SIGTERM, SIGHUP, closed stdout)</description></item>
/// <item><term>N</term><description>run, trace -- CMD, usdt -- CMD, break -- CMD: the command's own exit status (128+N when killed by signal N)</description></item>
/// <item><term>1</term><description>any other error (output that cannot be written, trace -o FILE that cannot be opened)</description></item>
/// <item><term>2</term><description>bad arguments, found before anything is attached or started (break: a LOCATION that is not code); a malformed or non-regular probes FILE</description></item>
/// <item><term>3</term><description>no such process or file; usdt: no probe site matches; break: unknown symbol or module</description></item>
/// <item><term>4</term><description>permission denied (the message says why)</description></item>
/// <item><term>5</term><description>not traceable: a zombie, a kernel thread, nozoki itself, a thread id; a probes FILE that is not an ELF file nozoki reads</description></item>
/// <item><term>6</term><description>break -p: the process exited while its sites were armed (before --count, --duration or a signal)</description></item>
/// <item><term>126</term><description>a command to launch was found but cannot be executed (as a shell)</description></item>
/// <item><term>127</term><description>a command to launch (or its #! interpreter) was not found (as a shell)</description></item>
/// </list>
/// </summary>
internal enum ReturnCode
{
    Success = 0,
    Error = 1,
    Usage = 2,
    NotFound = 3,
    PermissionDenied = 4,
    NotTraceable = 5,

    /// <summary>break -p: the process exited while armed.</summary>
    TargetExited = 6,

    /// <summary>A command to launch was found but cannot be executed (as a shell says it).</summary>
    CannotExecute = 126,

    /// <summary>A command to launch was not found (as a shell says it).</summary>
    CommandNotFound = 127,
}
