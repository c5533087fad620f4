namespace Nozoki.Inspection;

/// <summary>/proc/PID/ns: each namespace's inode, next to PID 1's.</summary>
internal static class NamespaceReader
{
    public static readonly string[] Types = ["cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"];

    public static List<NamespaceSnapshot> Read(int pid, ProcSource src, ProblemList problems)
    {
        var list = new List<NamespaceSnapshot>();
        var denied = false;
        foreach (var type in Types)
        {
            var link = src.Link($"/proc/{pid}/ns/{type}", out var r);
            var init = DescriptorReader.BracketInode(src.Link($"/proc/1/ns/{type}", out _) ?? "");
            var self = DescriptorReader.BracketInode(src.Link($"/proc/self/ns/{type}", out _) ?? "");
            if (link is null)
            {
                // A kernel without time namespaces has no ns/time: not a problem of this process.
                if (r.IsNotFound && problems.ProcessGone?.Invoke() != true) continue;
                if (r.IsPermissionDenied && !denied)
                {
                    denied = true;
                    problems.Add(InspectSections.Namespaces, "namespaces", r);
                }
                else if (!r.IsPermissionDenied)
                {
                    problems.Add(InspectSections.Namespaces, "namespace " + type, r);
                }

                list.Add(new NamespaceSnapshot(type, 0, init, self, r.IsPermissionDenied ? "permission denied" : r.Message));
                continue;
            }

            list.Add(new NamespaceSnapshot(type, DescriptorReader.BracketInode(link) ?? 0, init, self, null));
        }

        return list;
    }
}
