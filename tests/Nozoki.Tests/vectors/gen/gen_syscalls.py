#!/usr/bin/env python3
"""Writes ../syscalls.txt: runs syscall_vectors.c under strace 6.1 (default options, then -s 8) and pairs each call
the program logged (arguments, raw return value, memory after the call) with the line strace printed for it.
Run it as root from anywhere: python3 tests/Nozoki.Tests/vectors/gen/gen_syscalls.py"""
import os, re, shutil, subprocess, sys, tempfile

here = os.path.dirname(os.path.abspath(__file__))
out_path = os.path.join(here, "..", "syscalls.txt")


def run(options):
    with tempfile.TemporaryDirectory() as tmp:
        exe = os.path.join(tmp, "syscall_vectors")
        subprocess.run(["gcc", "-O0", "-Wall", "-o", exe, os.path.join(here, "syscall_vectors.c")], check=True)
        # A fixed directory, so that the paths in the texts do not change from one generation to the next.
        work = "/tmp/nozoki-vectors"
        shutil.rmtree(work, ignore_errors=True)
        os.mkdir(work)
        trace, log = os.path.join(tmp, "strace"), os.path.join(tmp, "log")
        # The program writes its log to fd 3 at the end.
        subprocess.run(["sh", "-c", 'exec strace "$@" 3>"$0"', log, *options, "-o", trace, exe, work], check=True,
                       stdin=subprocess.DEVNULL)
        logged = open(log).read().splitlines()[1:-1]  # without the getppid markers
        traced = [l.rstrip("\n") for l in open(trace)]
        first = next(i for i, l in enumerate(traced) if l.startswith("getppid("))
        last = max(i for i, l in enumerate(traced) if l.startswith("getppid("))
        lines = [l for l in traced[first + 1:last] if not l.startswith(("---", "+++"))]
        result, k = [], 0
        for entry in logged:
            line = lines[k]
            k += 1
            if entry == "#skip":
                continue
            name, args, ret, memory = entry.split("|")
            name_in_trace = line.split("(", 1)[0]
            if name_in_trace != name:
                sys.exit(f"log and trace disagree: {entry!r} vs {line!r}")
            # strace pads " = " to column 40; the decoder writes one space.
            m = re.match(r"^(.*\))\s+= (.*)$", line)
            text = m.group(1) + " = " + m.group(2)
            result.append((name, args, memory or "-", ret, text))
        if k != len(lines):
            sys.exit(f"{len(lines) - k} strace lines left over")
        return result


default = run([])
short = run(["-s", "8"])
with open(out_path, "w") as f:
    f.write("""# Syscall decoder test vectors (read by SyscallVectorTests), one call a line:
#   options | syscall | six arguments (hex) | memory after the call | raw return value | strace 6.1's text
# memory: ADDR:HEX chunks (HEX may end in +N: N zero bytes more); ADDR<HEX is what a buffer held at entry and
# ADDR>HEX what it held at exit, when the kernel wrote to it. The decoder reads only these bytes; every other
# address is unreadable (EFAULT). "-" for none. The texts are strace's own (gen/gen_syscalls.py runs
# gen/syscall_vectors.c under strace 6.1), with strace's column padding before " = " removed.
# Do not edit by hand: change syscall_vectors.c and regenerate.
""")
    for opts, rows in (("-", default), ("-s 8", [r for r in short if r[0] in ("read", "write", "pread64", "pwrite64", "readv", "writev", "sendto", "recvfrom")])):
        for name, args, memory, ret, text in rows:
            f.write(f"{opts} | {name} | {args} | {memory} | {ret} | {text}\n")
print(f"wrote {out_path}")
