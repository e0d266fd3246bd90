"""What the node agent's memory is made of while every eBPF collector is on.

Run as root from the repository root (it starts faultsvc and the agent and
stops both)::

    /usr/bin/python3 tests/ebpf_support/agent_memory.py [CODE_DIR] [VAR=VALUE ...]

``CODE_DIR`` holds the ``bpf/`` to measure (default: this checkout); the
``VAR=VALUE`` pairs go into the agent's environment (e.g. MALLOC_ARENA_MAX=1).
Prints /proc/PID/smaps_rollup and RSS/PSS/USS/anonymous kB per mapping,
5 s after the last collector came on.
"""

from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BCC = ("cpu_stacks", "futex", "gc", "goroutines_uprobe")


def breakdown(pid: int) -> str:
    """smaps_rollup, then the 15 largest mappings (kB)."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        out = [f.read()]
    agg: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0, 0, 0])
    cur = agg["[anon]"]
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                parts = line.split()
                cur = agg[parts[5] if len(parts) > 5 else "[anon]"]
            elif line.startswith("Rss:"):
                cur[0] += int(line.split()[1])
            elif line.startswith("Pss:"):
                cur[1] += int(line.split()[1])
            elif line.startswith(("Private_Clean:", "Private_Dirty:")):
                cur[2] += int(line.split()[1])
            elif line.startswith("Anonymous:"):
                cur[3] += int(line.split()[1])
    out.append(f"{'mapping':<60} {'RSS':>8} {'PSS':>8} {'USS':>8} {'Anon':>8}")
    for k, v in sorted(agg.items(), key=lambda kv: -kv[1][0])[:15]:
        out.append(f"{k[-60:]:<60} " + " ".join(f"{x:>8}" for x in v))
    return "\n".join(out)


def main() -> int:
    code = sys.argv[1] if len(sys.argv) > 1 and "=" not in sys.argv[1] else ROOT
    env = dict(os.environ, **dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a))
    sys.path.insert(0, ROOT)
    from bpf.schema import SCHEMA_VERSION

    port = 19000 + os.getpid() % 900
    svc = subprocess.Popen([os.path.join(ROOT, "build/bin/faultsvc"), "-mode", "mutex",
                            "-addr", f"127.0.0.1:{port}", "-pprof-addr", f"127.0.0.1:{port + 1}"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    a = subprocess.Popen([sys.executable, "-m", "bpf.agent", "--pid", str(svc.pid),
                          "--pprof-port", str(port + 1), "--enable", ",".join(BCC)],
                         cwd=code, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    on: set[str] = set()
    t0 = time.time()
    try:
        assert a.stdout is not None and a.stdin is not None
        for line in a.stdout:
            f = json.loads(line)
            if f["kind"] == "collector" and f["state"] in ("on", "failed"):
                on.add(f["name"])
            if set(BCC) <= on:
                break
        print(f"all on after {time.time() - t0:.0f} s")
        time.sleep(5)
        print(breakdown(a.pid))
        a.stdin.write((json.dumps({"v": SCHEMA_VERSION, "cmd": "stop"}) + "\n").encode())
        a.stdin.close()
        for _ in a.stdout:
            pass
        print("agent exit code", a.wait(120))
    finally:
        if a.poll() is None:
            a.kill()
            a.wait()
        svc.kill()
        svc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
