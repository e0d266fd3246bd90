"""Per-container root file systems: a directory holding the image's binary and a few /etc files.

The shim mounts /proc, a minimal /dev and /tmp on top inside the container's own
mount namespace, so nothing here is ever a mount point on the host and removing a
rootfs is a plain recursive delete.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from .images import Image

_LDD_PATH = re.compile(r"(/\S+) \(0x")


def _place(src: Path, dest: Path) -> None:
    """Copy ``src`` to ``dest`` unless an identical copy is there.

    A copy, not a hard link: a container writing to its binary must not change the host's.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    s = src.stat()
    try:
        d = dest.stat()
        if (d.st_size, int(d.st_mtime)) == (s.st_size, int(s.st_mtime)):
            return
    except FileNotFoundError:
        pass
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.copy2(src, tmp)
    os.replace(tmp, dest)


def shared_libraries(binary: Path) -> list[Path]:
    """The libraries a dynamic binary loads (empty for a static one)."""
    r = subprocess.run(["ldd", str(binary)], capture_output=True, text=True)
    if r.returncode != 0:
        return []
    return [Path(m) for m in _LDD_PATH.findall(r.stdout)]


def build(root: Path, image: Image, hostname: str, pod_ip: str, namespace: str) -> None:
    """Create (or refresh) a container rootfs at ``root``."""
    for d in ("proc", "dev", "tmp", "sys", "etc", "var/run", "root"):
        (root / d).mkdir(parents=True, exist_ok=True)
    if image.host_mounts:
        # The image's files come from host mounts (the shim binds them); mirror the
        # host's merged-/usr links (/bin -> usr/bin, ...) so its paths resolve inside.
        for top in ("bin", "lib", "lib64", "sbin"):
            host = Path("/") / top
            link = root / top
            if host.is_symlink() and not link.is_symlink():
                target = os.readlink(host)
                if not target.startswith("/"):  # a relative link cannot lead out of root
                    link.symlink_to(target)
    else:
        inside = root / image.container_path.lstrip("/")
        _place(image.host_path.resolve(), inside)
        for lib in shared_libraries(image.host_path):
            # Copy the target of each symlink to the path the loader asks for.
            _place(lib.resolve(), root / str(lib).lstrip("/"))
    etc = root / "etc"
    (etc / "hostname").write_text(hostname + "\n")
    (etc / "hosts").write_text(
        f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{pod_ip}\t{hostname}\n"
    )
    (etc / "resolv.conf").write_text(
        f"search {namespace}.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
    )
    (etc / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
    )
    (etc / "group").write_text("root:x:0:\nnogroup:x:65534:\n")


def remove(root: Path) -> None:
    """Delete a rootfs tree (never follows symlinks out of it)."""
    shutil.rmtree(root, ignore_errors=True)
