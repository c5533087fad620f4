namespace Nozoki.Cli;

/// <summary>nozoki's exit codes; the README lists them.</summary>
internal enum ReturnCode
{
    Success = 0,
    Error = 1,
    Usage = 2,
    NotFound = 3,
    PermissionDenied = 4,
    NotTraceable = 5,

    /// <summary>A command to launch was found but cannot be executed (as a shell says it).</summary>
    CannotExecute = 126,

    /// <summary>A command to launch was not found (as a shell says it).</summary>
    CommandNotFound = 127,
}
