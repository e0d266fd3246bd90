"""Container shim: enters the pod's namespaces, pivots into the rootfs, execs the workload.

Run as ``python shim.py SPEC.json``; the node runtime starts one shim per container,
in its own session, like containerd-shim. The shim stays alive as the parent of the
container's PID 1 so that the exit status survives a restart of the node runtime: it
writes ``started`` (host PID, start time) and then ``exit`` (code, signal) files next
to the spec, which a restarted runtime reads to adopt or report the container.

Standard library only, and importable by path, so it runs without the package.
Hand-written with ctypes because Python 3.11 has no os.setns/os.unshare, and
pivot_root has no libc wrapper at all.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import time

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
SYS_PIVOT_ROOT = 155  # x86_64

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _b(s: str | None) -> bytes | None:
    return None if s is None else s.encode()


def mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    """mount(2)."""
    _check(_libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)), f"mount {target}")


def _write_json(path: str, obj: dict) -> None:
    tmp = path + ".shim.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.rename(tmp, path)


def _setup_dev(root: str) -> None:
    dev = os.path.join(root, "dev")
    mount("tmpfs", dev, "tmpfs", MS_NOSUID, "mode=755,size=64k")
    for name in ("null", "zero", "full", "random", "urandom", "tty"):
        target = os.path.join(dev, name)
        open(target, "w").close()
        mount("/dev/" + name, target, None, MS_BIND)
    for name, dest in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(dest, os.path.join(dev, name))
    os.mkdir(os.path.join(dev, "shm"))
    mount("shm", os.path.join(dev, "shm"), "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=16m")


def _inside(root: str, target: str) -> str:
    """``target`` under ``root``, refusing a path whose symlinks lead out of it."""
    path = os.path.realpath(os.path.join(root, target.lstrip("/")))
    real_root = os.path.realpath(root)
    if path != real_root and not path.startswith(real_root + os.sep):
        raise OSError(f"mount target {target} resolves outside the container root")
    return path


def _bind(root: str, source: str, target: str, read_only: bool) -> None:
    """Bind-mount a host path into the rootfs (hostPath volumes, host-backed images).

    The mount lives only in the container's private mount namespace, so it goes
    away with the container and never shows on the host.
    """
    path = _inside(root, target)
    if os.path.isdir(source):
        os.makedirs(path, exist_ok=True)
    elif not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "a").close()
    mount(source, path, None, MS_BIND | MS_REC)
    if read_only:
        # A bind mount takes MS_RDONLY only on a remount of itself.
        mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY)


def _enter_container(spec: dict) -> None:
    """In the forked child (PID 1 of the new PID namespace): cgroups, mounts, pivot_root."""
    os.setsid()
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC), "unshare mnt/uts/ipc")
    # Join the container cgroups before anything of the workload runs; "0" means "me".
    for cg in spec["cgroups"]:
        with open(os.path.join(cg, "cgroup.procs"), "w") as f:
            f.write("0")
    host = spec["hostname"].encode()[:64]
    _check(_libc.sethostname(host, len(host)), "sethostname")
    root = spec["rootfs"]
    # Keep our mounts out of the host's mount table, then make the rootfs a mount
    # point of its own: pivot_root requires new_root to be one.
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount(root, root, None, MS_BIND | MS_REC)
    mount("proc", os.path.join(root, "proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _setup_dev(root)
    mount("tmpfs", os.path.join(root, "tmp"), "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    for m in spec.get("mounts") or []:
        _bind(root, m["source"], m["target"], bool(m.get("readOnly")))
    log_fd = os.open(spec["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    # The runc way: pivot_root(".", ".") stacks the old root on top of the new
    # one; detaching it leaves only the container's tree. No chroot: the
    # process's root really is the rootfs, so /proc/PID/maps shows paths inside it.
    os.chdir(root)
    _check(_libc.syscall(SYS_PIVOT_ROOT, b".", b"."), "pivot_root")
    _check(_libc.umount2(b".", MNT_DETACH), "umount old root")
    os.chdir("/")
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(null)
    os.close(log_fd)
    os.chdir(spec.get("cwd") or "/")


def _which(name: str, env: dict) -> str:
    """``name`` looked up in the container's PATH, as execvp would.

    Not os.execvpe: it imports `warnings` for the lookup, and after pivot_root the
    shim's own standard library is no longer reachable.
    """
    if "/" in name:
        return name
    for d in (env.get("PATH") or "/usr/bin:/bin").split(":"):
        path = os.path.join(d or ".", name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise FileNotFoundError(f"executable {name!r} not found in $PATH of the container")


def main(spec_path: str) -> int:
    """Start the container described by ``spec_path`` and wait for it to exit."""
    with open(spec_path) as f:
        spec = json.load(f)
    base = os.path.dirname(spec_path)
    started_file = os.path.join(base, "started")
    exit_file = os.path.join(base, "exit")
    try:
        # hostNetwork: no netns in the spec, the container stays in the host's.
        if spec.get("netns"):
            fd = os.open(spec["netns"], os.O_RDONLY)
            _check(_libc.setns(fd, CLONE_NEWNET), "setns net")
            os.close(fd)
        # Only the PID namespace here: it applies to the child we fork next. The
        # mount namespace is unshared in the child, so its pivot_root leaves the shim's root alone.
        # hostPID: no PID namespace, the container sees (and is seen in) the host's.
        if not spec.get("hostPID"):
            _check(_libc.unshare(CLONE_NEWPID), "unshare pid")
    except OSError as e:
        _write_json(
            exit_file,
            {"exitCode": 128, "reason": "StartError", "message": str(e), "finishedAt": time.time()},
        )
        return 1
    rfd, wfd = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        try:
            _enter_container(spec)
            argv = spec["argv"]
            os.execve(_which(argv[0], spec["env"]), argv, spec["env"])
        except BaseException as e:  # anything: report it through the pipe, never return
            try:
                os.write(wfd, f"{type(e).__name__}: {e}".encode())
            finally:
                os._exit(127)
    os.close(wfd)
    msg = b""
    while True:
        chunk = os.read(rfd, 4096)
        if not chunk:
            break
        msg += chunk
    os.close(rfd)
    if not msg:
        _write_json(started_file, {"pid": pid, "startedAt": time.time()})
    _, status = os.waitpid(pid, 0)
    result: dict = {"finishedAt": time.time()}
    if msg:
        result.update(exitCode=128, reason="StartError", message=msg.decode(errors="replace"))
    elif os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        result.update(exitCode=128 + sig, signal=sig, reason="Error")
    else:
        code = os.WEXITSTATUS(status)
        result.update(exitCode=code, reason="Completed" if code == 0 else "Error")
    _write_json(exit_file, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
