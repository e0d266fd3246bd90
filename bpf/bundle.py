"""Package the node agent as one self-contained file for a node with nothing of ours.

``build_bundle()`` returns a zipapp (a ``#!/usr/bin/env python3`` line plus a
zip of the ``bpf`` package, its ``.c`` files included) runnable as
``python3 agent.pyz --pid N``. It is built in memory with fixed timestamps, so
the same sources always give the same bytes and ``bundle_hash()`` can name a
cached copy on the node.

At run time the bundle unpacks itself and runs from the unpacked copy, because
bcc and the symbolizer open files (``.c`` programs) by path, which a zip
import cannot serve. When the bundle sits in a directory private to the user
(the SSH transport's cache on a node) the copy is kept beside it, named by
the bundle's content hash, with its ``.pyc`` files, so later starts skip the
unzip and the compile; otherwise it goes to a temporary directory that is
removed when the agent exits.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
SHEBANG = b"#!/usr/bin/env python3\n"
_FIXED_TIME = (2020, 1, 1, 0, 0, 0)
_SUFFIXES = (".py", ".c", ".h")

_BOOT = '''"""go-k8s-debug node agent bundle: unpacks itself and runs bpf.agent."""
import time

BOOT_AT = time.monotonic()  # the agent's hello reports start-up times from here

import hashlib
import os
import shutil
import sys
import tempfile
import zipfile


def _sweep():
    # Copies left by an agent that was SIGKILLed (no finally ran): remove those
    # whose agent pid is gone.
    base = tempfile.gettempdir()
    for name in os.listdir(base):
        parts = name.split("-")
        if name.startswith("go-k8s-debug-agent-") and len(parts) >= 6 and parts[4].isdigit():
            if not os.path.exists("/proc/" + parts[4]):
                shutil.rmtree(os.path.join(base, name), ignore_errors=True)


def _extract(here, into):
    with zipfile.ZipFile(here) as z:
        for name in z.namelist():
            if name.startswith("bpf/"):
                z.extract(name, into)


def _private(path):
    # Only a directory that no other user can write to may hold code root runs.
    st = os.lstat(path)
    return (st.st_uid in (0, os.geteuid()) and not st.st_mode & 0o022
            and not os.path.islink(path))


def _cached(here):
    """The bundle unpacked once beside it, named by its content, kept with its .pyc
    files: a warm start skips unzipping and compiling (~0.3-0.5 s). None when the
    bundle's directory is not private to us (then a temp copy is used)."""
    d = os.path.dirname(here)
    if not _private(d):
        return None
    with open(here, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    final = os.path.join(d, ".go-k8s-debug-agent-" + digest)
    if os.path.isdir(os.path.join(final, "bpf")) and _private(final):
        return final
    tmp = tempfile.mkdtemp(prefix=".go-k8s-debug-agent-unpack-", dir=d)
    try:
        _extract(here, tmp)
        os.rename(tmp, final)  # atomic: a reader never sees half a copy
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (os.path.isdir(os.path.join(final, "bpf")) and _private(final)):
            return None  # another agent raced us and lost too: use a temp copy
    return final


def _main():
    here = os.path.abspath(sys.argv[0])
    try:
        _sweep()
    except OSError:
        pass
    tmp = None
    try:
        where = _cached(here)
    except OSError:
        where = None
    if where is None:
        tmp = where = tempfile.mkdtemp(prefix="go-k8s-debug-agent-%d-" % os.getpid())
    try:
        if tmp is not None:
            _extract(here, tmp)
        sys.path.insert(0, where)
        for mod in [m for m in sys.modules if m == "bpf" or m.startswith("bpf.")]:
            del sys.modules[mod]
        from bpf.agent import main
        return main(sys.argv[1:])
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


sys.exit(_main())
'''


def _files() -> list[tuple[str, str]]:
    """(archive name, path) of every file that goes into the bundle, sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(PACKAGE_DIR):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.startswith("."))
        for fn in sorted(filenames):
            if fn.endswith(_SUFFIXES):
                path = os.path.join(dirpath, fn)
                rel = os.path.relpath(path, os.path.dirname(PACKAGE_DIR))
                out.append((rel.replace(os.sep, "/"), path))
    return sorted(out)


def build_bundle() -> bytes:
    """The agent as a runnable zipapp, byte-for-byte reproducible from the sources."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        entries = [("__main__.py", _BOOT.encode("utf-8"))]
        for arcname, path in _files():
            with open(path, "rb") as f:
                entries.append((arcname, f.read()))
        for arcname, data in entries:
            info = zipfile.ZipInfo(arcname, date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, data)
    return SHEBANG + buf.getvalue()


def bundle_hash(data: bytes | None = None) -> str:
    """A short content hash of the bundle (names the cached copy on a node)."""
    return hashlib.sha256(build_bundle() if data is None else data).hexdigest()[:16]


def write_bundle(path: str) -> str:
    """Write the bundle to ``path`` (mode 0755); returns its hash."""
    data = build_bundle()
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o755)
    return bundle_hash(data)
