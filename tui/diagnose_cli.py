"""`go-k8s-debug diagnose NAMESPACE/POD`: a headless report with an exit code.

    go-k8s-debug diagnose demo/leak --duration 30s --format json
    go-k8s-debug diagnose demo/cpu --record cpu.rec.gz --export ./bundle
    go-k8s-debug diagnose --pid 4242 --pprof-port 6060     # a local process, no cluster

Connection flags are the console's (--kubeconfig, --context, -n, -c,
--transport, --ssh-*). The report goes to stdout, progress to stderr.
Exit codes: 0 healthy, 1 warning, 2 critical, 3 could not measure (target or
node unreachable), 64 usage error (see ``tui.findings.report``).
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any, NoReturn

from tui.findings.report import EXIT_UNMEASURED, EXIT_USAGE

FORMATS = ("text", "json", "markdown")


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on bad arguments; the contract says 64 (EX_USAGE)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def parse_duration(text: str) -> float:
    """``30s``, ``2m``, ``90`` (seconds), ``1m30s``."""
    t = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        secs = float(t)
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", t)
        if not parts or "".join(n + u for n, u in parts) != t:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a duration: use e.g. 30s, 2m, 1m30s")
        mult = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
        secs = sum(float(n) * mult[u] for n, u in parts)
    if secs < 1 or secs > 3600:
        raise argparse.ArgumentTypeError(f"duration {text!r} must be between 1s and 1h")
    return secs


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="go-k8s-debug diagnose",
        description="Watch a Go pod for a while and report what is wrong, with evidence. "
        "Exit codes: 0 healthy, 1 warning, 2 critical, 3 could not measure, 64 usage error.",
    )
    p.add_argument("pod", nargs="?", metavar="NAMESPACE/POD",
                   help="the pod (NAMESPACE/POD, or POD with -n)")
    p.add_argument("--duration", type=parse_duration, default=30.0, metavar="DURATION",
                   help="how long to watch (default 30s)")
    p.add_argument("--format", choices=FORMATS, default="text", help="report format (text)")
    p.add_argument("--record", metavar="FILE", help="record every frame to FILE (for `replay`)")
    p.add_argument("--futex", action="store_true",
                   help="also trace futex waits (costs ~40 ns per syscall on the whole node)")
    p.add_argument("--export", metavar="DIR",
                   help="write a bundle (profiles, folded stacks, report) to DIR or DIR.tar.gz")
    k = p.add_argument_group("cluster (as kubectl)")
    k.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    k.add_argument("--context", help="kubeconfig context (default: the current one)")
    k.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    k.add_argument("-c", "--container", help="container (default: the first)")
    t = p.add_argument_group("reaching the node")
    t.add_argument("--transport", default="auto",
                   choices=("auto", "local", "ssh", "pprof-only"),
                   help="how to reach the node (as the console)")
    t.add_argument("-F", "--ssh-config", action="append", default=[], metavar="FILE",
                   help="OpenSSH config file")
    t.add_argument("--ssh-jump", metavar="[USER@]HOST[:PORT]", help="jump host (bastion)")
    t.add_argument("--ssh-user", help="SSH user on the nodes")
    t.add_argument("--ssh-key", metavar="FILE", help="SSH private key")
    t.add_argument("--ssh-known-hosts", metavar="FILE", help="known_hosts file")
    lo = p.add_argument_group("a local process (no cluster)")
    lo.add_argument("--pid", type=int, help="diagnose this host PID with a local agent (root)")
    lo.add_argument("--pprof-port", type=int, default=6060, help="its pprof port (6060)")
    return p


def _err(msg: str) -> None:
    # Plain text: a pod name in the message must not become markup or escapes.
    sys.stderr.write("go-k8s-debug diagnose: " + msg.replace("\x1b", "\\x1b") + "\n")


def _attach(args: argparse.Namespace) -> tuple[Any, str | None]:
    """A session on the target, or (None, reason) when it cannot be reached."""
    if args.pid is not None:
        from tui.diagnose import local_pid_session

        return local_pid_session(args.pid, args.pprof_port), None
    from tui.cluster import ClusterError, describe_api_error, pod_info
    from tui.session import KubeSessionFactory
    from tui.sources.kube import KubePodSource
    from tui.transports.ssh import SSHOptions

    try:
        source = KubePodSource(args.kubeconfig, args.context)
    except ClusterError as e:
        return None, str(e)
    ns, _, name = args.pod.rpartition("/")
    ns = ns or args.namespace or source.default_namespace
    try:
        pod = pod_info(source.core().read_namespaced_pod(name, ns, _request_timeout=15))
    except Exception as e:  # noqa: BLE001 - reported in words, exit 3
        return None, describe_api_error(e, f"read pod {ns}/{name}")
    ssh = SSHOptions(config=list(args.ssh_config), jump=args.ssh_jump, user=args.ssh_user,
                     key=args.ssh_key, known_hosts=args.ssh_known_hosts)
    factory = KubeSessionFactory(source, transport=args.transport, ssh_options=ssh,
                                 default_container=args.container)
    try:
        return factory.attach(pod, args.container), None
    except Exception as e:  # noqa: BLE001
        return None, f"could not attach to {ns}/{name}: {e}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.pid is None and not args.pod:
            raise UsageError("give NAMESPACE/POD (or --pid PID for a local process)")
        if args.pod and args.pid is not None:
            raise UsageError("give either NAMESPACE/POD or --pid, not both")
        if args.pod and (args.pod.count("/") > 1 or args.pod.endswith("/")
                         or args.pod.startswith("/")):
            raise UsageError(f"{args.pod!r} is not NAMESPACE/POD")
    except UsageError as e:
        parser.print_usage(sys.stderr)
        _err(str(e))
        return EXIT_USAGE

    from tui.diagnose import DiagnoseOptions, Diagnosis, stderr_progress
    from tui.findings.report import Report

    session, why = _attach(args)
    if session is None:
        _err(why or "could not attach")
        rep = Report(findings=[], target={"namespace": (args.pod or "").rpartition("/")[0],
                                          "pod": (args.pod or "").rpartition("/")[2]},
                     reachable=False, errors=[{"code": "unreachable", "msg": why or "",
                                               "hint": ""}])
        sys.stdout.write(rep.render(args.format))
        return EXIT_UNMEASURED
    recorder = None
    try:
        if args.record:
            from tui.record import Recorder

            recorder = Recorder(args.record, session.info)
        opts = DiagnoseOptions(duration_s=args.duration)
        if args.futex:
            opts.collectors = (*opts.collectors, "futex")
        diag = Diagnosis(session, opts, recorder=recorder, progress=stderr_progress)
        result = diag.run()
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    finally:
        session.close()
        if recorder is not None:
            recorder.close()
    report = result.report
    if args.export:
        from tui.export import export_bundle

        try:
            where = export_bundle(args.export, result.frames, report)
            stderr_progress(f"exported to {where}")
        except OSError as e:
            _err(f"could not write the export to {args.export}: {e}")
    sys.stdout.write(report.render(args.format))
    sys.stdout.flush()
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
