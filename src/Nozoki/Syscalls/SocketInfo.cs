using System.Globalization;

namespace Nozoki.Syscalls;

/// <summary>
/// -yy: a socket's protocol and addresses (TCP:[127.0.0.1:80->127.0.0.1:4242], UNIX:[1234,"/run/x"]) from
/// /proc/PID/net, which shows the network namespace of the traced process: a process in a container has sockets
/// nozoki's own /proc/net does not list. Read on demand (allocates; -yy is not the fast path).
/// </summary>
internal static class SocketInfo
{
    private static readonly (string File, string Proto, bool V6)[] InetTables =
        [("tcp", "TCP", false), ("tcp6", "TCPv6", true), ("udp", "UDP", false), ("udp6", "UDPv6", true)];

    public static string? Describe(int pid, ulong inode)
    {
        foreach (var (file, proto, v6) in InetTables)
        {
            if (FindInet($"/proc/{pid}/net/{file}", inode, v6) is { } addr) return $"{proto}:[{addr}]";
        }

        try
        {
            foreach (var line in File.ReadLines($"/proc/{pid}/net/unix").Skip(1))
            {
                var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (f.Length >= 7 && f[6] == inode.ToString(CultureInfo.InvariantCulture))
                    return f.Length >= 8 ? $"UNIX:[{inode},\"{f[7]}\"]" : $"UNIX:[{inode}]";
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }

        return null;
    }

    private static string? FindInet(string path, ulong inode, bool v6)
    {
        try
        {
            foreach (var line in File.ReadLines(path).Skip(1))
            {
                var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (f.Length < 10 || f[9] != inode.ToString(CultureInfo.InvariantCulture)) continue;
                var local = Endpoint(f[1], v6);
                var remote = Endpoint(f[2], v6);
                return remote.EndsWith(":0", StringComparison.Ordinal) && (remote.StartsWith("0.0.0.0", StringComparison.Ordinal) || remote.StartsWith("[::]", StringComparison.Ordinal))
                    ? local : $"{local}->{remote}";
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }

        return null;
    }

    internal static string Endpoint(string hex, bool v6)
    {
        var colon = hex.IndexOf(':', StringComparison.Ordinal);
        var port = int.Parse(hex.AsSpan(colon + 1), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        var a = Convert.FromHexString(hex.AsSpan(0, colon));
        // /proc/net prints each 32-bit word of the address in host (little-endian) order.
        for (var i = 0; i < a.Length; i += 4) Array.Reverse(a, i, 4);
        var ip = new System.Net.IPAddress(a);
        return v6 ? $"[{ip}]:{port}" : $"{ip}:{port}";
    }
}
