"""`go-k8s-debug sandbox up|status|down|kubeconfig`: the sandbox cluster from the shell."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from demo.sandbox.api import DEMO_NAMESPACE, Sandbox, SandboxError, printable


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="go-k8s-debug sandbox",
        description="A real kube-apiserver + etcd, node runtimes and sshd on this machine.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="state directory (default: $GO_K8S_DEBUG_SANDBOX or "
        "$XDG_STATE_HOME/go-k8s-debug/sandbox)",
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", parents=[common], help="start the cluster and wait until ready")
    up.add_argument("--nodes", type=int, default=1, help="number of nodes (default 1)")
    up.add_argument("--demo", action="store_true", help="also create the demo fault pods")
    up.add_argument("--timeout", type=float, default=180, help="seconds to wait (default 180)")
    st = sub.add_parser("status", parents=[common], help="what runs and how to reach it")
    st.add_argument("--json", action="store_true", help="print the status as JSON")
    sub.add_parser("down", parents=[common], help="stop everything and clean up")
    kc = sub.add_parser("kubeconfig", parents=[common], help="print the kubeconfig path")
    kc.add_argument("--restricted", action="store_true", help="the least-privilege user's")
    return p


def _print_reach(sb: Sandbox) -> None:
    """The pod list and how to reach the cluster, on stdout."""
    st = sb.status()
    out = sys.stdout
    print(f"API server   {st.get('api_url')}  (kube-apiserver {st.get('version', '?')})", file=out)
    print(f"kubeconfig   {sb.admin_kubeconfig}  (admin)", file=out)
    print(f"             {sb.restricted_kubeconfig}  (restricted: deploy/rbac.yaml)", file=out)
    for n in st["nodes"]:
        ready = "Ready" if st.get("node_ready", {}).get(n["name"]) else "NotReady"
        print(f"node         {n['name']}  {n['ip']}  {ready}   ssh -F {sb.ssh_config} {n['name']}",
              file=out)
    pods = st.get("pods") or []
    if pods:
        print("", file=out)
        rows = [("NAMESPACE", "NAME", "NODE", "STATUS", "RESTARTS", "POD IP")] + [
            (p["namespace"], p["name"], p["node"] or "", p["phase"] or "", str(p["restarts"]),
             p["pod_ip"] or "")
            for p in pods
        ]
        # Status fields are written by whoever can patch pods/status: never let them
        # reach the terminal as escape sequences.
        rows = [tuple(printable(c) for c in r) for r in rows]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip(), file=out)
    print("", file=out)
    print(f"try: kubectl --kubeconfig {sb.admin_kubeconfig} get pods -A -o wide", file=out)
    if any(p["namespace"] == DEMO_NAMESPACE for p in pods):
        print(f"     go-k8s-debug --kubeconfig {sb.admin_kubeconfig} -n {DEMO_NAMESPACE}", file=out)


def main(argv: list[str] | None = None) -> int:
    """Run one sandbox subcommand; returns the exit status."""
    args = _parser().parse_args(argv)
    sb = Sandbox(state_dir=args.state_dir)
    try:
        if args.cmd == "up":
            sb.up(nodes=args.nodes, demo=args.demo, timeout=args.timeout)
            _print_reach(sb)
        elif args.cmd == "status":
            if args.json:
                print(json.dumps(sb.status(), indent=2))
            elif not sb.is_up():
                print(f"sandbox is down (state dir {sb.state_dir})")
                return 3
            else:
                _print_reach(sb)
                for p in sb.status()["processes"]:
                    rss = f"{p['rss_kib'] / 1024:.0f} MiB" if p["rss_kib"] else "-"
                    alive = "running" if p["alive"] else "DEAD"
                    print(f"process      {p['name']:<14} pid {p['pid']:<8} {alive:<8} rss {rss}")
        elif args.cmd == "down":
            left = sb.down()
            if left:
                print("sandbox down, but these are left behind:\n  " + "\n  ".join(left),
                      file=sys.stderr)
                return 1
            print("sandbox down; nothing left behind", file=sys.stderr)
        elif args.cmd == "kubeconfig":
            path = sb.restricted_kubeconfig if args.restricted else sb.admin_kubeconfig
            if not path.exists():
                print("no kubeconfig yet: run `go-k8s-debug sandbox up` first", file=sys.stderr)
                return 1
            print(path)
    except (SandboxError, TimeoutError, FileNotFoundError, RuntimeError) as e:
        print(f"sandbox {args.cmd}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"sandbox {args.cmd}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
