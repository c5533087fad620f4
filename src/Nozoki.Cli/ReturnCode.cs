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
}
