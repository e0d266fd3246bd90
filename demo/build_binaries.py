"""Build the sandbox's Go binaries, cached on their inputs.

Each target is rebuilt only when its sources, go.mod/go.sum, build flags or the
Go version change. Outputs live in the user cache (outside the work tree, so a
fresh clone on the same machine reuses them) and are linked into build/bin/.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN_DIR = ROOT / "build" / "bin"
K8S_VERSION = "v1.34.4"


@dataclass(frozen=True)
class Target:
    """One binary: a Go package directory built with given flags."""

    name: str
    module_dir: str
    package: str = "."
    ldflags: str = "-s -w"
    env: dict[str, str] = field(default_factory=dict)
    note: str = ""


def _k8s_ldflags() -> str:
    major, minor = K8S_VERSION.lstrip("v").split(".")[:2]
    pairs = {
        "gitVersion": K8S_VERSION,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
    }
    flags = (f"-X k8s.io/component-base/version.{k}={v}" for k, v in pairs.items())
    return "-s -w " + " ".join(flags)


TARGETS = [
    Target(
        "sandbox-control",
        "demo/controlplane",
        ldflags=_k8s_ldflags(),
        note="kube-apiserver + etcd from Go modules: the first build takes several minutes",
    ),
    # Symbols kept: the usual production build.
    Target("faultsvc", "demo/faultsvc", ldflags=""),
    # Stripped of .symtab and DWARF: the agent must symbolize from .gopclntab.
    Target("faultsvc-stripped", "demo/faultsvc", ldflags="-s -w"),
]


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "go-k8s-debug" / "bin"


def go_binary() -> str:
    return os.environ.get("GO") or shutil.which("go") or "go"


def input_hash(t: Target, go_version: str) -> str:
    h = hashlib.sha256()
    h.update(f"{t.name}\0{t.package}\0{t.ldflags}\0{sorted(t.env.items())}\0{go_version}".encode())
    mod = ROOT / t.module_dir
    for p in sorted(mod.rglob("*")):
        if p.is_file() and (p.suffix == ".go" or p.name in ("go.mod", "go.sum")):
            h.update(str(p.relative_to(mod)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def build(t: Target, go: str, go_version: str) -> Path:
    out = cache_dir() / f"{t.name}-{input_hash(t, go_version)}"
    link = BIN_DIR / t.name
    if not out.exists():
        msg = f"  building {t.name}"
        if t.note:
            msg += f" ({t.note})"
        print(msg, file=sys.stderr, flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        env = dict(os.environ, CGO_ENABLED="0", **t.env)
        cmd = [go, "build", "-trimpath", "-o", str(tmp)]
        if t.ldflags:
            cmd += ["-ldflags", t.ldflags]
        cmd.append(t.package)
        start = time.monotonic()
        subprocess.run(cmd, cwd=ROOT / t.module_dir, env=env, check=True)
        tmp.rename(out)
        print(f"  built {t.name} in {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)
    BIN_DIR.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        if link.resolve() == out:
            return out
        link.unlink()
    link.symlink_to(out)
    return out


def main(argv: list[str]) -> int:
    go = go_binary()
    go_version = subprocess.run(
        [go, "env", "GOVERSION"], capture_output=True, text=True, check=True
    ).stdout.strip()
    wanted = set(argv)
    for t in TARGETS:
        if wanted and t.name not in wanted:
            continue
        if not (ROOT / t.module_dir).is_dir():
            print(f"  skipping {t.name}: {t.module_dir} not present", file=sys.stderr)
            continue
        build(t, go, go_version)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
