"""Start a node runtime early: warm its imports while the API server starts.

``python -m demo.sandbox.node_launcher READY_FILE TIMEOUT -- run --kubeconfig ...``

The kubernetes client (v33+, pydantic models) takes 1.5-6 s of CPU to import
`CoreV1Api`. `sandbox up` starts the node runtimes through this launcher right
after it starts kube-apiserver; the launcher imports what the runtime needs,
waits until `up` writes READY_FILE (the API server answered /readyz), then runs
the node runtime's own CLI in this same process.
"""

from __future__ import annotations

import os
import sys
import time


def main(argv: list[str]) -> int:
    """Warm imports, wait for the ready file, then hand over to the node runtime's CLI."""
    if len(argv) < 3 or "--" not in argv:
        print("usage: node_launcher READY_FILE TIMEOUT -- run ARGS...", file=sys.stderr)
        return 2
    ready, timeout = argv[0], float(argv[1])
    rest = argv[argv.index("--") + 1 :]
    from kubernetes.client import CoreV1Api  # noqa: F401  (the slow import)

    from demo.sandbox.node import __main__ as node_cli
    from demo.sandbox.node import kubelet  # noqa: F401

    deadline = time.monotonic() + timeout
    while not os.path.exists(ready):
        if time.monotonic() > deadline:
            print(f"the API server was not ready within {timeout:.0f} s", file=sys.stderr)
            return 1
        time.sleep(0.05)
    return node_cli.main(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
