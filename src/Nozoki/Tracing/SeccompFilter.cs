using System.Globalization;
using System.Text;
using Nozoki.Native;

namespace Nozoki.Tracing;

/// <summary>
/// One syscall that must stop the tracee; optionally only when an argument (the first unless <see cref="Argument"/>
/// says which, from 0) is one of some values (fds, an fcntl command); the kernel's 32-bit view of it, its low word,
/// decides. With <see cref="Through"/>, every number from Syscall to Through (inclusive; <see cref="long.MaxValue"/>:
/// no end), e.g. the numbers newer than nozoki's table.
/// </summary>
public sealed record SeccompRule(long Syscall, IReadOnlyList<int>? ArgumentIn = null, long? Through = null, int Argument = 0);

/// <summary>
/// A seccomp-bpf program that returns SECCOMP_RET_TRACE for the chosen syscalls (so that only they stop the tracee,
/// as PTRACE_EVENT_SECCOMP) and SECCOMP_RET_ALLOW for everything else. Only for launched commands: the filter
/// outlives its tracer, and without one the filtered syscalls fail with ENOSYS.
/// </summary>
public sealed class SeccompFilter
{
    public SeccompFilter(IEnumerable<SeccompRule> rules)
    {
        ArgumentNullException.ThrowIfNull(rules);
        Rules = [.. rules];
    }

    public IReadOnlyList<SeccompRule> Rules { get; }

    /// <summary>The classic BPF program, x86_64 only (syscalls of other ABIs are allowed untouched).</summary>
    internal SockFilter[] Compile()
    {
        var p = new List<SockFilter>
        {
            new(Seccomp.BPF_LD_W_ABS, 0, 0, Seccomp.OffsetArch),
            new(Seccomp.BPF_JEQ_K, 1, 0, Seccomp.AUDIT_ARCH_X86_64),
            new(Seccomp.BPF_RET_K, 0, 0, Seccomp.RET_ALLOW),
            new(Seccomp.BPF_LD_W_ABS, 0, 0, Seccomp.OffsetNr),
        };
        foreach (var rule in Rules)
        {
            if (rule.Through is { } last)
            {
                if (rule.ArgumentIn is not null) throw new ArgumentException("a range rule cannot test arguments");
                // jge first ? next : skip; [jgt last ? skip the return : next]; ret trace. A still holds nr after.
                var open = last >= uint.MaxValue;
                p.Add(new(Seccomp.BPF_JGE_K, 0, (byte)(open ? 1 : 2), (uint)rule.Syscall));
                if (!open) p.Add(new(Seccomp.BPF_JGT_K, 1, 0, (uint)last));
                p.Add(new(Seccomp.BPF_RET_K, 0, 0, Seccomp.RET_TRACE));
                continue;
            }

            if (rule.ArgumentIn is not { } values)
            {
                // jeq nr ? next : skip the return; A still holds nr on the skip path.
                p.Add(new(Seccomp.BPF_JEQ_K, 0, 1, (uint)rule.Syscall));
                p.Add(new(Seccomp.BPF_RET_K, 0, 0, Seccomp.RET_TRACE));
                continue;
            }

            if (values.Count > 120) throw new ArgumentException("too many argument values for one seccomp rule");
            if (rule.Argument is < 0 or > 5) throw new ArgumentException("a syscall has 6 arguments (0 to 5)");
            // jeq nr ? block : skip block (ld, 2 per value, ret allow)
            p.Add(new(Seccomp.BPF_JEQ_K, 0, (byte)(2 + 2 * values.Count), (uint)rule.Syscall));
            // The kernel truncates fd arguments (and fcntl's command) to 32 bits, so the low word decides.
            p.Add(new(Seccomp.BPF_LD_W_ABS, 0, 0, Seccomp.OffsetArgLow(rule.Argument)));
            foreach (var v in values)
            {
                p.Add(new(Seccomp.BPF_JEQ_K, 0, 1, unchecked((uint)v)));
                p.Add(new(Seccomp.BPF_RET_K, 0, 0, Seccomp.RET_TRACE));
            }

            p.Add(new(Seccomp.BPF_RET_K, 0, 0, Seccomp.RET_ALLOW));
        }

        p.Add(new(Seccomp.BPF_RET_K, 0, 0, Seccomp.RET_ALLOW));
        return [.. p];
    }

    /// <summary>Text form passed to the launch stage: "1:2,5;20:2;59;335-423;72@1:0,1030" (@N: argument N, not the first).</summary>
    internal string Serialize()
    {
        var sb = new StringBuilder();
        foreach (var r in Rules)
        {
            if (sb.Length > 0) sb.Append(';');
            sb.Append(r.Syscall.ToString(CultureInfo.InvariantCulture));
            if (r.Through is { } last) sb.Append('-').Append(last.ToString(CultureInfo.InvariantCulture));
            if (r.ArgumentIn is not null && r.Argument != 0) sb.Append('@').Append(r.Argument.ToString(CultureInfo.InvariantCulture));
            if (r.ArgumentIn is { } v) sb.Append(':').Append(string.Join(',', v.Select(x => x.ToString(CultureInfo.InvariantCulture))));
        }

        return sb.ToString();
    }

    internal static SeccompFilter Parse(string text)
    {
        var rules = new List<SeccompRule>();
        foreach (var part in text.Split(';', StringSplitOptions.RemoveEmptyEntries))
        {
            var colon = part.IndexOf(':');
            var dash = part.IndexOf('-');
            if (dash > 0)
            {
                rules.Add(new SeccompRule(long.Parse(part[..dash], CultureInfo.InvariantCulture), null, long.Parse(part[(dash + 1)..], CultureInfo.InvariantCulture)));
                continue;
            }

            if (colon < 0)
            {
                rules.Add(new SeccompRule(long.Parse(part, CultureInfo.InvariantCulture)));
                continue;
            }

            var values = part[(colon + 1)..].Split(',').Select(x => int.Parse(x, CultureInfo.InvariantCulture)).ToArray();
            var head = part[..colon];
            var at = head.IndexOf('@');
            var argument = at < 0 ? 0 : int.Parse(head[(at + 1)..], CultureInfo.InvariantCulture);
            rules.Add(new SeccompRule(long.Parse(at < 0 ? head : head[..at], CultureInfo.InvariantCulture), values, Argument: argument));
        }

        return new SeccompFilter(rules);
    }

    /// <summary>Whether this kernel has seccomp filters (the Seccomp line of /proc/self/status exists).</summary>
    public static bool IsAvailable()
    {
        try
        {
            return File.ReadLines("/proc/self/status").Any(l => l.StartsWith("Seccomp:", StringComparison.Ordinal));
        }
        catch (IOException)
        {
            return false;
        }
    }
}
