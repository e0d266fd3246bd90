"""``python -m demo.sandbox.node run|cleanup``: see the package docstring."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path


def _run(args: argparse.Namespace) -> int:
    from . import network
    from .kubelet import NodeAgent
    from .runtime import SandboxRuntime
    from .teardown import leave_host

    state = Path(args.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    (state / "node.json").write_text(
        json.dumps({"nodeName": args.node_name, "nodeIP": args.node_ip, "pid": os.getpid()})
    )
    network.ensure_bridge(args.node_ip)
    runtime = SandboxRuntime(state, args.node_ip)
    agent = NodeAgent(args.kubeconfig, args.node_name, args.node_ip, runtime)
    api = _start_kubelet_api(args, runtime)
    # SIGTERM/SIGINT only set a flag: the main loop stops every pod and cleans up.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: (agent.stopping.set(), agent.wake.set()))
    try:
        agent.run()
    finally:
        if api is not None:
            api.stop()
        runtime.remove_all()
        leave_host(args.node_ip)
    return 0


def _start_kubelet_api(args: argparse.Namespace, runtime):
    """Serve exec on NODE_IP:10250 with a serving cert from the sandbox CA (None if disabled)."""
    from demo.sandbox import certs

    from .kubelet_api import KubeletAPI

    log = logging.getLogger("gkd.node")
    if args.no_kubelet_api:
        log.info("kubelet API disabled (--no-kubelet-api): exec into this node's pods fails")
        return None
    # The sandbox's layout: STATE/nodes/<name> beside STATE/pki.
    pki_dir = Path(args.pki_dir) if args.pki_dir else Path(args.state_dir).parents[1] / "pki"
    pki = certs.PkiPaths(pki_dir)
    if not pki.ca_key.exists():
        log.warning("no sandbox CA in %s: serving no kubelet API (exec fails)", pki.dir)
        return None
    crt, key = certs.issue_kubelet_serving(pki, args.node_name, args.node_ip)
    api = KubeletAPI(runtime, args.node_ip, crt, key, pki.ca_crt, [certs.KUBELET_CLIENT_USER])
    api.start()
    return api


def _cleanup(args: argparse.Namespace) -> int:
    from .teardown import cleanup_state_dir, teardown_host

    cleanup_state_dir(Path(args.state_dir))
    if args.host:
        teardown_host()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m demo.sandbox.node", description="The sandbox's kubelet stand-in."
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run a node in the foreground until SIGTERM")
    r.add_argument("--kubeconfig", required=True)
    r.add_argument("--node-name", required=True)
    r.add_argument("--node-ip", required=True, help="10.88.N.1")
    r.add_argument("--state-dir", required=True)
    r.add_argument(
        "--pki-dir", help="the sandbox CA (default: STATE_DIR/../../pki, the sandbox layout)"
    )
    r.add_argument(
        "--no-kubelet-api",
        action="store_true",
        help="serve no kubelet API on NODE_IP:10250 (a node without exec)",
    )
    c = sub.add_parser("cleanup", help="remove everything a node left behind")
    c.add_argument("--state-dir", required=True)
    c.add_argument(
        "--host",
        action="store_true",
        help="also delete the bridge and shared cgroups (after the last node)",
    )
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if os.geteuid() != 0:
        print(
            "the node runtime needs root (namespaces, cgroups, the bridge): run it with sudo",
            file=sys.stderr,
        )
        return 1
    return _run(args) if args.cmd == "run" else _cleanup(args)


if __name__ == "__main__":
    sys.exit(main())
