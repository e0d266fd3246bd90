"""The agent as one file to ship to a node, and its content hash for caching.

Engineer-owned ``bpf.bundle.build_bundle()`` is the source of truth. Until it
exists (or if it fails) we zip the ``bpf`` package ourselves as a zipapp that
runs ``bpf.agent``: the node then needs nothing of ours installed.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

BPF_DIR = Path(__file__).resolve().parent.parent.parent / "bpf"

_MAIN = "import runpy, sys\nrunpy.run_module('bpf.agent', run_name='__main__', alter_sys=True)\n"


@dataclass(frozen=True)
class AgentBundle:
    data: bytes
    sha256: str
    #: Whether it understands ``--standby`` (started ahead, real arguments on stdin later).
    standby: bool = False

    @property
    def filename(self) -> str:
        return f"go-k8s-debug-agent-{self.sha256[:16]}.pyz"


def _from_bpf_bundle() -> bytes | None:
    try:
        from bpf.bundle import build_bundle  # type: ignore[import-not-found]
    except ImportError:
        return None
    out = build_bundle()
    if isinstance(out, (bytes, bytearray)):
        return bytes(out)
    if isinstance(out, (str, os.PathLike)):
        return Path(out).read_bytes()
    return None


def _zip_bpf() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(zipfile.ZipInfo("__main__.py", (1980, 1, 1, 0, 0, 0)), _MAIN)
        for path in sorted(BPF_DIR.rglob("*")):
            if path.suffix not in (".py", ".c", ".h") or "__pycache__" in path.parts:
                continue
            # Fixed timestamps: the same sources give the same hash, so the node cache hits.
            info = zipfile.ZipInfo(
                "bpf/" + path.relative_to(BPF_DIR).as_posix(), (1980, 1, 1, 0, 0, 0)
            )
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, path.read_bytes())
    return buf.getvalue()


_cache: AgentBundle | None = None
_cache_lock = threading.Lock()


def agent_bundle() -> AgentBundle:
    """The agent bundle to ship (``bpf.bundle`` if present, else our zipapp).

    Built once per console process and reused for every attach: zipping and
    hashing it is work an attach need not wait for, and one console ships one
    agent version (the node's cache and standby agents are keyed by its hash).
    """
    global _cache
    with _cache_lock:
        if _cache is None:
            data = _from_bpf_bundle() or _zip_bpf()
            _cache = AgentBundle(data, hashlib.sha256(data).hexdigest(), standby=True)
        return _cache
