using System.Runtime.InteropServices;

namespace Nozoki.Native;

/// <summary>A terminal's line discipline settings (termios(3)), read with the TCGETS ioctl.</summary>
internal static unsafe partial class Termios
{
    private const ulong TCGETS = 0x5401;
    private const uint ICANON = 0x2;

    // The kernel's struct termios (asm-generic/termbits.h): c_iflag, c_oflag, c_cflag, c_lflag, c_line, c_cc[19].
    [StructLayout(LayoutKind.Sequential, Size = 36)]
    private struct KernelTermios
    {
        public uint InputFlags;
        public uint OutputFlags;
        public uint ControlFlags;
        public uint LocalFlags;
    }

    [LibraryImport("libc.so.6", EntryPoint = "ioctl", SetLastError = true)]
    private static partial int ioctl(int fd, ulong request, KernelTermios* arg);

    /// <summary>
    /// Whether the terminal fd is open on reads in canonical mode (ICANON: line by line, as a program that reads a
    /// line with read(2) has it). A line editor (readline, zle, libedit) turns ICANON off while it reads and redraws
    /// the line, and puts it back before the line is run. The errno when fd is not a terminal (ENOTTY).
    /// </summary>
    internal static SysResult IsCanonical(int fd, out bool canonical)
    {
        KernelTermios t;
        if (ioctl(fd, TCGETS, &t) != 0)
        {
            canonical = false;
            return SysResult.LastPInvokeError();
        }

        canonical = (t.LocalFlags & ICANON) != 0;
        return SysResult.Ok;
    }
}
