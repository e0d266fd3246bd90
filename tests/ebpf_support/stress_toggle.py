"""Stress the agent's libbcc locking: every eBPF collector switched off and on
at random (plus ``set hz``) for minutes, on a service under load.

Run as root from the repository root, in the venv::

    .venv/bin/python -m tests.ebpf_support.stress_toggle [--seconds 300] [--seed N]

Prints one JSON summary: commands sent, collector restarts seen, error frames,
the agent's exit code (a crash in libbcc shows as -11, SIGSEGV), and whether
any program the agent loaded is still loaded afterwards. Exit status 0 only
when the agent survived, said ``bye`` and left nothing loaded.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import subprocess
import sys
import threading
import time

from bpf import bcc_env, schema
from tests.bench import procs

BCC = ("cpu_stacks", "futex", "gc", "goroutines_uprobe")


def _reader(proc: subprocess.Popen, q: queue.Queue) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        try:
            q.put(json.loads(line))
        except ValueError:
            q.put({"kind": "unparsed", "line": line[:200]})
    q.put(None)


def _send(proc: subprocess.Popen, cmd: str, **fields: object) -> None:
    assert proc.stdin is not None
    proc.stdin.write(schema.encode(schema.make_command(cmd, **fields)))
    proc.stdin.flush()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=300)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    rnd = random.Random(a.seed)
    stderr_path = f"/tmp/stress_toggle_agent_{os.getpid()}.stderr"
    summary: dict[str, object] = {"seconds": a.seconds, "seed": a.seed, "stderr": stderr_path}
    with procs.faultsvc("healthy", load=True) as svc:
        stop_load = threading.Event()

        def load() -> None:
            while not stop_load.is_set():  # wrk windows under a minute (it prints "1.5m")
                procs.run_load(svc, 50)

        threading.Thread(target=load, daemon=True).start()
        with open(stderr_path, "w") as err:
            agent = subprocess.Popen(
                [procs.SYSTEM_PYTHON, "-m", "bpf.agent", "--pid", str(svc.pid), "--pprof-port",
                 str(svc.pprof_port), "--interval", "0.5", "--enable", ",".join(BCC)],
                cwd=procs.ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                text=True)
        q: queue.Queue = queue.Queue()
        threading.Thread(target=_reader, args=(agent, q), daemon=True).start()
        frames: list[dict] = []
        held: set[int] = set()
        sent = 0
        on = set(BCC)
        t_end = time.monotonic() + a.seconds
        try:
            while time.monotonic() < t_end and agent.poll() is None:
                time.sleep(rnd.uniform(0.05, 1.5))
                if rnd.random() < 0.15:
                    _send(agent, "set", hz=rnd.choice((19, 49, 99)))
                else:
                    name = rnd.choice(BCC)
                    _send(agent, "disable" if name in on else "enable", collector=name)
                    on ^= {name}
                sent += 1
                held.update(bcc_env.process_bpf_fds(agent.pid)["prog_ids"])
                while not q.empty():
                    f = q.get()
                    if f is not None:
                        frames.append(f)
            if agent.poll() is None:
                _send(agent, "stop")
            while True:
                f = q.get(timeout=300)
                if f is None:
                    break
                frames.append(f)
            code = agent.wait(timeout=120)
        finally:
            stop_load.set()
            if agent.poll() is None:
                agent.kill()
                agent.wait()
    kinds = [f.get("kind") for f in frames]
    summary.update(
        commands=sent,
        exit_code=code,
        bye=bool(frames) and frames[-1].get("kind") == "bye",
        collector_on_frames=sum(1 for f in frames if f.get("kind") == "collector"
                                and f.get("state") == "on"),
        data_frames={k: kinds.count(k) for k in ("cpu_stacks", "futex", "gc", "goroutines")},
        states=" ".join(f"{f['name']}:{f['state']}" for f in frames
                        if f.get("kind") == "collector" and f.get("name") in BCC),
        errors=[f"{f.get('code')}: {f.get('msg')}" for f in frames if f.get("kind") == "error"],
        programs_seen=len(held),
        programs_left=sorted(held & set(bcc_env.bpf_programs())),
    )
    print(json.dumps(summary, indent=1))
    ok = code == 0 and summary["bye"] and not summary["programs_left"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
