"""What the node agent's memory is made of while every eBPF collector is on.

Run as root from the repository root (it starts faultsvc and the agent and
stops both)::

    /usr/bin/python3 tests/ebpf_support/agent_memory.py [CODE_DIR] [VAR=VALUE ...] \
        [--defaults | --only a,b] [--toggle]

``CODE_DIR`` holds the ``bpf/`` to measure (default: this checkout); the
``VAR=VALUE`` pairs go into the agent's environment (e.g. MALLOC_ARENA_MAX=1).
Every eBPF collector is on unless ``--defaults`` (the agent's defaults) or
``--only`` (exactly these) is given. Prints /proc/PID/smaps_rollup, the peak
RSS (VmHWM: bcc's compile) and RSS/PSS/USS/anonymous kB per mapping, 5 s after
the last collector came on. ``--toggle`` then switches every eBPF collector
off and on again (a fresh compile) and prints the totals once more.
"""

from __future__ import annotations

import collections
import json
import os
import queue
import re
import subprocess
import sys
import threading
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


def totals(pid: int) -> str:
    """RSS, PSS, USS, anonymous and peak RSS in MB, one line."""
    r: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            k, _, v = line.partition(":")
            if v.strip().endswith("kB"):
                r[k] = int(v.split()[0])
    with open(f"/proc/{pid}/status") as f:
        hwm = next(int(x.split()[1]) for x in f if x.startswith("VmHWM:"))
    uss = r["Private_Clean"] + r["Private_Dirty"]
    return (f"RSS {r['Rss'] / 1024:.1f} MB  PSS {r['Pss'] / 1024:.1f} MB  USS {uss / 1024:.1f} MB"
            f"  anon {r['Anonymous'] / 1024:.1f} MB  peak (VmHWM) {hwm / 1024:.1f} MB")


def _send(a: subprocess.Popen, **cmd: object) -> None:
    from bpf.schema import SCHEMA_VERSION

    assert a.stdin is not None
    a.stdin.write((json.dumps({"v": SCHEMA_VERSION, **cmd}) + "\n").encode())
    a.stdin.flush()


def _read(a: subprocess.Popen, q: queue.Queue) -> None:
    """Every frame into ``q`` (a full pipe would stall the agent), then None."""
    assert a.stdout is not None
    for line in a.stdout:
        q.put(json.loads(line))
    q.put(None)


def _wait_on(q: queue.Queue, names: set[str]) -> None:
    on: set[str] = set()
    while True:
        f = q.get(timeout=300)
        if f is None:
            break
        if f["kind"] == "collector" and f["state"] in ("on", "failed"):
            on.add(f["name"])
            if f["state"] == "failed":
                print("failed:", f)
        if names <= on:
            return
    raise SystemExit("the agent exited before its collectors came on")


def main() -> int:
    flags = sys.argv[1:]
    skip = flags.index("--only") + 1 if "--only" in flags else -1
    args = [a for i, a in enumerate(flags) if not a.startswith("--") and i != skip]
    code = args[0] if args and "=" not in args[0] else ROOT
    env = dict(os.environ, **dict(a.split("=", 1) for a in args if "=" in a))
    enable = ["--enable", ",".join(BCC)]
    wanted = set(BCC)
    if "--defaults" in flags:
        enable, wanted = [], {"cpu_stacks"}
    elif "--only" in flags:
        only = flags[flags.index("--only") + 1]
        off = [c for c in ("cpu_stacks", "throttle", "goroutines") if c not in only.split(",")]
        enable = ["--enable", only] + (["--disable", ",".join(off)] if off else [])
        wanted = set(only.split(","))
    sys.path.insert(0, ROOT)
    port = 19000 + os.getpid() % 900
    svc = subprocess.Popen([os.path.join(ROOT, "build/bin/faultsvc"), "-mode", "mutex",
                            "-addr", f"127.0.0.1:{port}", "-pprof-addr", f"127.0.0.1:{port + 1}"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    a = subprocess.Popen([sys.executable, "-m", "bpf.agent", "--pid", str(svc.pid),
                          "--pprof-port", str(port + 1), *enable],
                         cwd=code, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    t0 = time.time()
    try:
        assert a.stdout is not None and a.stdin is not None
        q: queue.Queue = queue.Queue()
        threading.Thread(target=_read, args=(a, q), daemon=True).start()
        _wait_on(q, wanted)
        print(f"{', '.join(sorted(wanted))} on after {time.time() - t0:.0f} s")
        time.sleep(5)
        print(breakdown(a.pid))
        print(totals(a.pid))
        if os.environ.get("AGENT_MEMORY_HOOK"):
            subprocess.run([*os.environ["AGENT_MEMORY_HOOK"].split(), str(a.pid)])
        if "--toggle" in flags:
            bcc_on = sorted(wanted & set(BCC))
            for name in bcc_on:
                _send(a, cmd="disable", collector=name)
            time.sleep(2)
            print("all eBPF collectors off:", totals(a.pid))
            t1 = time.time()
            for name in bcc_on:
                _send(a, cmd="enable", collector=name)
            _wait_on(q, set(bcc_on))
            print(f"on again after {time.time() - t1:.0f} s")
            time.sleep(5)
            print("after the toggle:", totals(a.pid))
        _send(a, cmd="stop")
        a.stdin.close()
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
