namespace Nozoki;

/// <summary>
/// Base of every error the library reports to its caller on purpose; the message is one line, fit for a user.
/// The families below it say what went wrong: <see cref="Tracing.TraceException"/> (a process or command that cannot
/// be traced or started), <see cref="Output.OutputException"/> (output that cannot be written),
/// <see cref="Elf.ElfFormatException"/> (a file that is not a readable ELF object). Anything else is a bug, or the
/// runtime's own exception (IOException, UnauthorizedAccessException) from a file read.
/// </summary>
public class NozokiException(string message, Exception? inner = null) : Exception(message, inner);
