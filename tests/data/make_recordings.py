"""Write the recorded frames and pod lists the console tests replay.

Run ``python tests/data/make_recordings.py`` to regenerate. The content follows
what the demo workloads do (demo/faultsvc): a pod leaking goroutines, a pod
throttled by a 0.2 CPU quota, a pod with a hot function behind a mutex. Frames
are built with ``bpf.schema`` so they always match the wire format. Output is
deterministic (fixed seed and start time); real recordings from
``go-k8s-debug --record`` can sit beside these.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from bpf import schema  # noqa: E402

T0 = 1_795_600_000  # 2026-11-25 08:26:40 UTC, seconds
SECONDS = 90
NS = 1_000_000_000
HZ = 99

HELLO_COLLECTORS = {
    "cpu_stacks": {"available": True, "cost": "49 Hz perf sampling: negligible"},
    "futex": {"available": True, "cost": "≈40 ns on every syscall on the node while on"},
    "goroutines": {"available": True, "cost": "one pprof index fetch per second"},
    "throttle": {"available": True, "cost": "reads cpu.stat once per second"},
    "gc": {"available": True, "cost": "uprobe on runtime.gcStart"},
}

SERVE = (
    "runtime.goexit",
    "net/http.(*conn).serve",
    "net/http.serverHandler.ServeHTTP",
    "net/http.(*ServeMux).ServeHTTP",
)
BACKGROUND = [
    (("runtime.goexit", "runtime.gcBgMarkWorker", "runtime.gcDrain", "runtime.scanobject"), 3),
    (
        (
            "runtime.mstart",
            "runtime.schedule",
            "runtime.findRunnable",
            "runtime.netpoll",
            "0x7f3a2b1c4d5e [libc.so.6]",
        ),
        2,
    ),
    (("runtime.goexit", "runtime.bgsweep", "runtime.sweepone"), 1),
]

PROFILES = {
    "leak": [
        (
            SERVE
            + (
                "main.leakHandler",
                "main.startWorker",
                "runtime.newproc",
                "runtime.newproc1",
                "runtime.malg",
            ),
            6,
        ),
        (
            SERVE
            + ("main.leakHandler", "encoding/json.Marshal", "encoding/json.(*encodeState).marshal"),
            4,
        ),
        (("runtime.goexit", "main.(*leaker).wait", "runtime.chanrecv1", "runtime.chanrecv"), 2),
    ],
    "cpu": [
        (SERVE + ("main.burnHandler", "main.burnCPU", "main.fib"), 60),
        (SERVE + ("main.burnHandler", "main.burnCPU", "main.fib", "main.fib"), 25),
        (SERVE + ("main.burnHandler", "crypto/sha256.Sum256", "crypto/sha256.block"), 8),
    ],
    "mutex": [
        (SERVE + ("main.(*store).handleUpdate", "main.(*store).update", "main.checksumAll"), 55),
        (
            SERVE
            + (
                "main.(*store).handleGet",
                "sync.(*Mutex).Lock",
                "sync.(*Mutex).lockSlow",
                "runtime.semacquire1",
                "runtime.futex",
            ),
            20,
        ),
        (
            SERVE
            + ("main.(*store).handleUpdate", "main.(*store).update", "runtime.mapassign_faststr"),
            10,
        ),
    ],
}


def frame(kind: str, sec: float, **fields: object) -> dict:
    return schema.make_frame(kind, t=int((T0 + sec) * NS), **fields)


def recording(kind: str) -> list[dict]:
    rnd = random.Random(kind)
    out = [
        frame(
            "hello",
            0.05,
            agent="0.1.0",
            host="node-1",
            kernel="6.1.0-28-amd64",
            target={"pid": 4242, "binary": "/app/faultsvc", "container": "app"},
            collectors=HELLO_COLLECTORS,
            clock_offset_ns=1_234_567,
        ),
    ]
    for name in ("cpu_stacks", "goroutines", "throttle", "gc"):
        out.append(frame("collector", 0.1, name=name, state="on", reason=""))
    out.append(
        frame(
            "collector",
            0.1,
            name="futex",
            state="off",
            reason="off by default: press f to turn it on",
        )
    )
    out.append(frame("log", 0.2, level="info", msg="pprof index reachable at 10.88.0.12:6060"))
    if kind == "mutex":
        out.append(
            frame(
                "profile",
                0.3,
                id="m1",
                profile="mutex",
                seconds=0,
                data="",
                size=0,
                empty=True,
                note="call runtime.SetMutexProfileFraction to enable it",
            )
        )
    stacks = PROFILES[kind] + BACKGROUND
    weights = [w for _, w in stacks]
    goroutines = 14.0
    for s in range(1, SECONDS + 1):
        busy = {"cpu": 0.2, "leak": 0.15, "mutex": 0.9}[kind]
        samples = max(1, int(HZ * busy * rnd.uniform(0.9, 1.1)))
        counts: dict[tuple[str, ...], int] = {}
        for _ in range(samples):
            st = rnd.choices(stacks, weights)[0][0]
            counts[st] = counts.get(st, 0) + 1
        funcs, packed = schema.intern_stacks(counts.items())
        out.append(
            frame(
                "cpu_stacks",
                s,
                interval_ns=NS,
                hz=HZ,
                samples=samples,
                lost=0,
                funcs=funcs,
                stacks=packed,
            )
        )
        if kind == "leak":
            goroutines += 2.0 + rnd.uniform(-0.5, 0.5)
        else:
            goroutines = 14 + rnd.randint(-2, 2)
        out.append(frame("goroutines", s + 0.01, count=int(goroutines), source="pprof_index"))
        if kind == "cpu":
            periods, throttled = 10, rnd.randint(8, 10)
            cont = {
                "nr_periods": periods,
                "nr_throttled": throttled,
                "throttled_ns": int(throttled * 78e6),
                "usage_ns": int(0.2 * NS),
                "quota_us": 20000,
                "period_us": 100000,
            }
            pod = dict(cont, usage_ns=int(0.21 * NS))
        else:
            usage = int(busy * NS)
            cont = {
                "nr_periods": 10,
                "nr_throttled": 0,
                "throttled_ns": 0,
                "usage_ns": usage,
                "quota_us": 200000 if kind == "mutex" else -1,
                "period_us": 100000,
            }
            pod = dict(cont)
        out.append(
            frame(
                "throttle", s + 0.02, interval_ns=NS, cgroup_version="v1", container=cont, pod=pod
            )
        )
        out.append(frame("gc", s + 0.03, interval_ns=NS, cycles=rnd.randint(0, 2), source="uprobe"))
        if kind == "mutex" and s == 30:
            out.append(
                frame(
                    "collector", s + 0.04, name="futex", state="on", reason="enabled by the console"
                )
            )
        if kind == "mutex" and s > 30:
            waits = rnd.randint(1800, 2200)
            hist = [[3, waits // 10], [5, waits // 3], [7, waits // 3], [10, waits // 5], [14, 9]]
            top = [
                {
                    "tid": 4250 + i,
                    "comm": "faultsvc",
                    "waits": waits // (2 + i),
                    "wait_ns": int(waits // (2 + i) * 180_000),
                }
                for i in range(4)
            ]
            out.append(
                frame(
                    "futex",
                    s + 0.05,
                    interval_ns=NS,
                    waits=waits,
                    wait_ns=int(waits * 150_000),
                    by_op={"0": [waits // 2, 0], "9": [waits // 2, 0]},
                    hist=hist,
                    top_threads=top,
                    timeouts=3,
                    eagain=120,
                )
            )
        if s == 45:
            out.append(
                frame(
                    "log",
                    s + 0.06,
                    level="warn",
                    msg="pprof fetch took 1.8 s (target busy); retrying next interval",
                )
            )
    return out


def pods() -> dict:
    def pod(
        ns: str,
        name: str,
        *,
        status: str = "Running",
        ready: str = "1/1",
        restarts: int = 0,
        age: int = 3600,
        node: str = "node-1",
        cpu: str | None = None,
        pprof: int | None = 6060,
        labels: dict | None = None,
        ip: str = "10.88.0.10",
    ) -> dict:
        return {
            "namespace": ns,
            "name": name,
            "uid": f"uid-{ns}-{name}"[:60],
            "status": status,
            "ready": ready,
            "restarts": restarts,
            "created": T0 + SECONDS - age,
            "node": node,
            "cpu_limit": cpu,
            "pprof_port": pprof,
            "pod_ip": ip,
            "host_ip": "10.88.0.1",
            "containers": [
                {
                    "name": "app",
                    "image": "faultsvc:dev",
                    "container_id": "containerd://" + "ab" * 32,
                    "ready": ready == "1/1",
                    "restarts": restarts,
                    "state": "running",
                    "pprof_port": pprof,
                }
            ],
            "labels": labels or {"app": name},
            "resource_version": "100",
        }

    sandbox = [
        pod(
            "demo",
            "leak-7d9f8",
            cpu="500m",
            ip="10.88.0.11",
            labels={"app": "leak", "fault": "leak"},
        ),
        pod(
            "demo",
            "cpu-hog-5c6b7",
            cpu="200m",
            ip="10.88.0.12",
            node="node-2",
            labels={"app": "cpu", "fault": "throttle"},
        ),
        pod(
            "demo",
            "mutex-84b2c",
            cpu="1",
            ip="10.88.0.13",
            labels={"app": "mutex", "fault": "lock"},
        ),
        pod("demo", "healthy-6f7a1", cpu="500m", ip="10.88.0.14", node="node-2"),
        pod(
            "demo",
            "crashy-0a1b2",
            status="CrashLoopBackOff",
            ready="0/1",
            restarts=7,
            age=900,
            ip="10.88.0.15",
        ),
        pod(
            "demo",
            "evil-[bold red]pod[/]",
            status="Running",
            pprof=None,
            ip="10.88.0.16",
            labels={"note": "\x1b[31mred\x1b[0m [link=http://x]click[/link]"},
        ),
        pod("kube-system", "coredns-6d4b75cb6d-x2v9q", pprof=None, age=86400 * 3, ip="10.88.0.2"),
        pod(
            "kube-system",
            "metrics-server-5f9f776df5-7kq4j",
            pprof=None,
            age=86400 * 3,
            node="node-2",
            ip="10.88.0.3",
        ),
        pod("payments", "ledger-0", cpu="2", restarts=1, age=7200, ip="10.88.0.20"),
        pod("payments", "ledger-1", cpu="2", age=7200, node="node-2", ip="10.88.0.21"),
        pod(
            "payments",
            "api-7c9d8-abcde",
            cpu="750m",
            status="Pending",
            ready="0/1",
            node=None,
            age=30,
            ip="",
        ),
    ]
    staging = [pod("web", "frontend-0", cpu="250m"), pod("web", "frontend-1", cpu="250m")]
    return {"contexts": {"sandbox": sandbox, "staging": staging}}


def main() -> None:
    for kind in PROFILES:
        path = HERE / f"{kind}.jsonl"
        path.write_text("".join(schema.encode(f) for f in recording(kind)))
    (HERE / "pods.json").write_text(json.dumps(pods(), indent=1, ensure_ascii=True) + "\n")
    print("wrote", ", ".join(f"{k}.jsonl" for k in PROFILES), "and pods.json to", HERE)


if __name__ == "__main__":
    main()
