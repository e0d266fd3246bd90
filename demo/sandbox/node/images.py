"""Image names the sandbox node runtime understands, and the binaries they map to.

There is no registry: an image name names a static binary on this machine.

``sandbox.local/<name>[:tag]``
    ``build/bin/<name>`` in the repository (built by ``make setup``), placed in the
    container at ``/usr/local/bin/<name>``. Examples: ``sandbox.local/faultsvc``,
    ``sandbox.local/faultsvc-stripped``.
``sandbox.local/busybox[:tag]``
    Debian's ``/bin/busybox`` (busybox-static), at ``/bin/busybox`` in the container:
    the non-Go container, e.g. ``command: ["/bin/busybox", "httpd", "-f", "-p", "6060"]``.
``sandbox.local/python3-bcc[:tag]``
    The node agent's image: python3 with bcc (Debian's python3-bpfcc). Its "layer"
    is the host's own ``/usr`` (and ``/etc/ld.so.cache``, so bcc's ``libbcc.so``
    loads), bind-mounted read-only into the rootfs: an interpreter with its
    standard library, dist-packages and LLVM is hundreds of MiB, far too much to
    copy per container the way single binaries are.
``local/<absolute path>``
    Your own program: ``local//home/me/bin/myservice`` (or ``local/home/me/bin/myservice``)
    runs that binary, placed in the container at the same absolute path. A static
    binary is best; for a dynamic one the runtime copies the libraries ``ldd`` lists.

The image's entrypoint is the binary itself; ``command``/``args`` in the pod spec
override and extend it as in Kubernetes. Any other name fails like a real pull:
the container waits with reason ``ErrImagePull``, then ``ImagePullBackOff``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
BIN_DIR = REPO_ROOT / "build" / "bin"
BUSYBOX = Path("/bin/busybox")
SYSTEM_PYTHON = "/usr/bin/python3"
BCC_PACKAGE = Path("/usr/lib/python3/dist-packages/bcc")
_digest_cache: dict[tuple[str, float, int], str] = {}


class ImagePullError(Exception):
    """The image does not name a binary the sandbox has. ``str()`` reads like containerd's error."""


@dataclass(frozen=True)
class Image:
    """A resolved image: the host binary and where it sits inside the container."""

    name: str
    host_path: Path
    container_path: str
    #: Host paths bind-mounted read-only at the same path in the container (the image's
    #: content, for images too large to copy); empty for single-binary images.
    host_mounts: tuple[str, ...] = ()

    @property
    def image_id(self) -> str:
        """``<repo>@sha256:<digest of the binary>``, the form kubelet reports."""
        return f"{_repo(self.name)}@sha256:{file_digest(self.host_path)}"


def file_digest(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_mtime, st.st_size)
    if key not in _digest_cache:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _digest_cache[key] = h.hexdigest()
    return _digest_cache[key]


def _repo(name: str) -> str:
    """The image name without tag or digest."""
    name = name.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    if ":" in last:
        last = last.split(":", 1)[0]
    return f"{head}/{last}" if head else last


def _not_found(name: str) -> ImagePullError:
    ref = name if ":" in name.rpartition("/")[2] else name + ":latest"
    return ImagePullError(
        f'failed to pull and unpack image "{ref}": failed to resolve reference "{ref}": '
        f"{ref}: not found (the sandbox maps sandbox.local/<name> to build/bin/<name>, "
        f"sandbox.local/busybox to /bin/busybox, sandbox.local/python3-bcc to the host's python3 "
        f"with bcc and local/<absolute path> to that binary)"
    )


def _python3_bcc(name: str) -> Image:
    python = Path(SYSTEM_PYTHON)
    if not python.is_file() or not BCC_PACKAGE.is_dir():
        raise ImagePullError(
            f'failed to pull and unpack image "{name}": the sandbox maps it to this host\'s '
            f"{SYSTEM_PYTHON} with bcc, and {BCC_PACKAGE} is missing "
            "(apt-get install python3-bpfcc)"
        )
    return Image(name, python, SYSTEM_PYTHON, host_mounts=("/usr", "/etc/ld.so.cache"))


def resolve(name: str, bin_dir: Path = BIN_DIR) -> Image:
    """Map an image name to a binary; raise ImagePullError if there is none."""
    repo = _repo(name.strip())
    if repo.startswith("local/"):
        path = Path("/" + repo[len("local/") :].lstrip("/"))
        if path.is_file() and os.access(path, os.X_OK):
            return Image(name, path, str(path))
        raise _not_found(name)
    if repo.startswith("sandbox.local/"):
        short = repo[len("sandbox.local/") :]
        if short == "python3-bcc":
            return _python3_bcc(name)
        if short == "busybox":
            if BUSYBOX.is_file():
                return Image(name, BUSYBOX, "/bin/busybox")
            raise _not_found(name)
        if short and "/" not in short and not short.startswith("."):
            path = bin_dir / short
            if path.is_file():
                return Image(name, path.resolve(), f"/usr/local/bin/{short}")
    raise _not_found(name)
