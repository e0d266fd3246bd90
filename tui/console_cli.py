"""`go-k8s-debug [flags] [[NAMESPACE/]POD]`: open the console on a cluster.

kubectl-style flags choose the cluster and the pods; the transport flags say
how to reach nodes. Problems a user can fix (no kubeconfig, API server down,
forbidden) are printed as sentences with what to do, never as tracebacks.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from typing import Any

from tui.cluster import ClusterError, describe_api_error, pod_info
from tui.session import TRANSPORTS, KubeSessionFactory
from tui.transports.ssh import SSHOptions

EXIT_USAGE = 2
EXIT_CLUSTER = 1
THEMES = ("default", "high-contrast", "presentation")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="go-k8s-debug",
        description="Watch a misbehaving Go pod through eBPF, cgroups and pprof.",
        epilog="Subcommands: `sandbox` (demo cluster), `diagnose` (headless report), "
        "`replay FILE` (open a recording).",
    )
    p.add_argument("pod", nargs="?", metavar="[NAMESPACE/]POD", help="attach to this pod at once")
    k = p.add_argument_group("cluster (as kubectl)")
    k.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    k.add_argument("--context", help="kubeconfig context (default: the current one)")
    k.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    k.add_argument("-A", "--all-namespaces", action="store_true", help="pods of all namespaces")
    k.add_argument("-l", "--selector", help="label selector, e.g. app=api,tier!=cache")
    k.add_argument("-c", "--container", help="container to attach to (default: the first)")
    t = p.add_argument_group("reaching the node")
    t.add_argument(
        "--transport",
        choices=TRANSPORTS,
        default="auto",
        help="auto: local if the pod is on this host and we are root, else ssh if an SSH "
        "route is configured, else pprof-only; pod: a short-lived privileged agent pod on "
        "the node (needs --agent-image; never chosen by auto)",
    )
    t.add_argument(
        "--agent-image",
        metavar="IMAGE",
        help="for --transport pod: an image with python3 and bcc (Debian: python3-bpfcc)",
    )
    t.add_argument(
        "--agent-namespace",
        default="godebug",
        metavar="NS",
        help="for --transport pod: where the agent pod goes (default godebug, from "
        "deploy/rbac.yaml)",
    )
    t.add_argument(
        "-F",
        "--ssh-config",
        action="append",
        default=[],
        metavar="FILE",
        help="OpenSSH config file (default ~/.ssh/config); Host entries named like the nodes",
    )
    t.add_argument("--ssh-jump", metavar="[USER@]HOST[:PORT]", help="jump host (bastion)")
    t.add_argument("--ssh-user", help="SSH user on the nodes")
    t.add_argument("--ssh-key", metavar="FILE", help="SSH private key")
    t.add_argument(
        "--ssh-known-hosts", metavar="FILE", help="known_hosts file (strict checking is always on)"
    )
    p.add_argument("--record", metavar="FILE", help="record every frame to FILE for `replay`")
    p.add_argument(
        "--export-dir", metavar="DIR", default=".",
        help="where `e` writes evidence archives (default: the current directory)",
    )
    p.add_argument(
        "--theme",
        help="default, or high-contrast / presentation for shared screens (T toggles)",
    )
    return p


def _err(msg: str) -> None:
    # Plain text on stderr: a pod name in the message must not become markup.
    sys.stderr.write("go-k8s-debug: " + msg + "\n")


def _split_pod(arg: str, namespace: str | None) -> tuple[str | None, str]:
    if "/" in arg:
        ns, name = arg.split("/", 1)
        return ns, name
    return namespace, arg


def _preflight(source: Any, namespace: str | None) -> str | None:
    """One small LIST, so an unreachable or forbidding API server is reported before the UI."""
    core = source.core()
    try:
        if namespace:
            core.list_namespaced_pod(namespace, limit=1, _request_timeout=(5, 15))
        else:
            core.list_pod_for_all_namespaces(limit=1, _request_timeout=(5, 15))
    except Exception as e:  # noqa: BLE001 - any failure here is reported in words
        where = f"namespace {namespace!r}" if namespace else "all namespaces"
        return describe_api_error(e, f"list pods in {where} (context {source.current_context!r})")
    return None


def _make_app(**kwargs: Any) -> Any:
    from tui.app import GoDebugApp

    # The App's constructor is CONSOLE-UI's; pass what it accepts.
    params = inspect.signature(GoDebugApp).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        dropped = [k for k in kwargs if k not in params and kwargs[k] not in (None, False)]
        if dropped:
            _err("note: this console build ignores " + ", ".join(f"--{k}" for k in dropped))
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    return GoDebugApp(**kwargs)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.transport == "pod" and not args.agent_image:
        _err(
            "--transport pod needs --agent-image IMAGE: an image the nodes can pull with "
            "python3 and bcc (e.g. FROM debian:12 + apt-get install python3-bpfcc)."
        )
        return EXIT_USAGE
    from tui.sources.kube import KubePodSource

    try:
        source = KubePodSource(args.kubeconfig, args.context)
    except ClusterError as e:
        _err(str(e))
        return EXIT_CLUSTER

    namespace: str | None
    if args.all_namespaces:
        namespace = None
    else:
        namespace = args.namespace or source.default_namespace

    initial_pod = None
    if args.pod:
        ns, name = _split_pod(args.pod, namespace)
        ns = ns or source.default_namespace
        try:
            initial_pod = pod_info(source.core().read_namespaced_pod(name, ns, _request_timeout=15))
        except Exception as e:  # noqa: BLE001
            _err(describe_api_error(e, f"read pod {ns}/{name}"))
            return EXIT_CLUSTER
        if not args.all_namespaces:
            namespace = ns
    else:
        problem = _preflight(source, namespace)
        if problem:
            _err(problem)
            return EXIT_CLUSTER

    ssh = SSHOptions(
        config=list(args.ssh_config),
        jump=args.ssh_jump,
        user=args.ssh_user,
        key=args.ssh_key,
        known_hosts=args.ssh_known_hosts,
    )
    factory = KubeSessionFactory(
        source,
        transport=args.transport,
        ssh_options=ssh,
        default_container=args.container,
        agent_namespace=args.agent_namespace,
        agent_image=args.agent_image,
    )
    if initial_pod is not None and args.container:
        try:
            from tui.cluster import select_container

            select_container(initial_pod, args.container)
        except ClusterError as e:
            _err(str(e))
            return EXIT_USAGE

    from tui.sources.base import SystemClock

    theme = (args.theme or "").lower()
    if theme and theme not in THEMES:
        _err(f"unknown theme {args.theme!r}; one of: {', '.join(THEMES)}")
        return EXIT_USAGE
    try:
        app = _make_app(
            pod_source=source,
            session_factory=factory,
            clock=SystemClock(),
            namespace=namespace,
            selector=args.selector,
            initial_pod=initial_pod.key if initial_pod is not None else None,
            record=args.record,
            export_dir=args.export_dir,
            high_contrast=theme in ("high-contrast", "presentation"),
        )
    except ImportError as e:
        _err(f"the console UI is not available in this build ({e}).")
        return EXIT_USAGE
    try:
        app.run()
    finally:
        source.stop()
    return int(getattr(app, "return_code", 0) or 0)


if __name__ == "__main__":
    sys.exit(main())
