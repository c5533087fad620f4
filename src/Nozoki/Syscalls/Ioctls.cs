namespace Nozoki.Syscalls;

/// <summary>ioctl request names (generated: the terminal ioctls and linux/kvm.h's KVM_*).</summary>
internal static partial class Ioctls
{
    public static string? Name(uint request)
    {
        int lo = 0, hi = Table.Length - 1;
        while (lo <= hi)
        {
            var mid = (lo + hi) >>> 1;
            var v = Table[mid].Request;
            if (v == request) return Table[mid].Name;
            if (v < request) lo = mid + 1;
            else hi = mid - 1;
        }

        return null;
    }

    public static string? KvmCap(uint value)
    {
        foreach (var (v, n) in KvmCaps)
        {
            if (v == value) return n;
        }

        return null;
    }

    /// <summary>An unknown request as strace shows it: _IOC(_IOC_READ|_IOC_WRITE, 0xae, 0x1, 0x10).</summary>
    public static void FormatUnknown(TextBuffer b, uint request)
    {
        var dir = request >> 30;
        var type = (request >> 8) & 0xff;
        var nr = request & 0xff;
        var size = (request >> 16) & 0x3fff;
        b.Append("_IOC(");
        b.Append(dir switch { 0 => "_IOC_NONE", 1 => "_IOC_WRITE", 2 => "_IOC_READ", _ => "_IOC_READ|_IOC_WRITE" });
        b.Append(", ");
        b.AppendHex(type);
        b.Append(", ");
        b.AppendHex(nr);
        b.Append(", ");
        b.AppendHex(size);
        b.Append(')');
    }
}
