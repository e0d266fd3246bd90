"""Symbolize runtime addresses of one live process.

Binaries are opened through ``/proc/PID/exe`` and ``/proc/PID/map_files/``,
never through the path strings in ``/proc/PID/maps``: in a container those
paths name files in another mount namespace (or, after chroot, host paths that
do not exist inside the root), which is why bcc's ``sym()`` prints
``[unknown]`` for such processes. The maps path is only used as a label.
"""

from __future__ import annotations

import os
import threading
from bisect import bisect_right
from typing import NamedTuple

from .binary import Binary, Frame, open_binary
from .elf import PT_LOAD, ElfError


class Mapping(NamedTuple):
    start: int
    end: int
    offset: int
    dev: int
    inode: int
    path: str


def read_maps(pid: int) -> list[Mapping]:
    """Executable file-backed mappings of ``pid``, sorted by start."""
    out = []
    with open(f"/proc/{pid}/maps", "rb") as f:
        for raw in f:
            parts = raw.split(None, 5)
            if len(parts) < 5 or b"x" not in parts[1]:
                continue
            lo, hi = parts[0].split(b"-")
            path = parts[5].strip().decode("utf-8", "replace") if len(parts) > 5 else ""
            major, minor = parts[3].split(b":")
            out.append(Mapping(int(lo, 16), int(hi, 16), int(parts[2], 16),
                               os.makedev(int(major, 16), int(minor, 16)), int(parts[4]), path))
    out.sort()
    return out


def unresolved_label(addr: int, module: str) -> str:
    return "0x{:x} [{}]".format(addr, module or "unknown")


class ProcessSymbolizer:
    """Turns addresses sampled in ``pid`` into frames.

    Args:
        pid: host pid of the process.
        inline: expand inlined calls from the pclntab.
        lines: append ``file:line`` to labels (off by default: a live call
            tree wants one node per function).
    """

    def __init__(self, pid: int, inline: bool = True, lines: bool = False) -> None:
        self.pid = pid
        self.inline = inline
        self.lines = lines
        self._lock = threading.Lock()
        self._maps: list[Mapping] = []
        self._starts: list[int] = []
        self._bins: dict[tuple[int, int], Binary | None] = {}
        self._exe_ino: tuple[int, int] | None = None
        self._labels: dict[int, tuple[str, ...]] = {}
        self._refreshed_for = -1
        self.main: Binary | None = None
        self.refresh()

    # -- mappings ----------------------------------------------------------
    def refresh(self) -> None:
        """Re-read /proc/PID/maps (new shared objects, after exec)."""
        self._maps = read_maps(self.pid)
        self._starts = [m.start for m in self._maps]
        try:
            st = os.stat(f"/proc/{self.pid}/exe")
            self._exe_ino = (st.st_dev, st.st_ino)
            self.main = open_binary(f"/proc/{self.pid}/exe")
        except (OSError, ElfError):
            self.main = None

    def _mapping(self, addr: int) -> Mapping | None:
        i = bisect_right(self._starts, addr) - 1
        if i >= 0 and addr < self._maps[i].end:
            return self._maps[i]
        return None

    def _binary(self, m: Mapping) -> Binary | None:
        key = (m.dev, m.inode)
        if key in self._bins:
            return self._bins[key]
        b = None
        if key == self._exe_ino and self.main is not None:
            b = self.main
        else:
            try:
                b = open_binary(f"/proc/{self.pid}/map_files/{m.start:x}-{m.end:x}",
                                label=os.path.basename(m.path))
            except (OSError, ElfError):
                b = None
        self._bins[key] = b
        return b

    # -- lookups -------------------------------------------------------------
    def link_address(self, addr: int) -> tuple[Binary | None, int, str]:
        """``(binary, link-time address, module label)`` for runtime ``addr``.
        Handles PIE load bias: file offset through the mapping, then the
        PT_LOAD segment that holds that offset."""
        m = self._mapping(addr)
        if m is None and self._refreshed_for != addr:
            self._refreshed_for = addr
            try:
                self.refresh()
            except OSError:
                return None, addr, "unknown"
            m = self._mapping(addr)
        if m is None:
            return None, addr, "unknown"
        module = os.path.basename(m.path) or m.path or "anon"
        b = self._binary(m)
        if b is None:
            return None, addr, module
        file_off = addr - m.start + m.offset
        for s in b.elf.segments:
            if s.type == PT_LOAD and s.offset <= file_off < s.offset + s.filesz:
                return b, file_off - s.offset + s.vaddr, module
        return b, addr, module

    def frames(self, addr: int, return_address: bool = False) -> list[Frame]:
        """Frames for ``addr``, innermost first. ``return_address``: ``addr`` is
        a return PC (every frame but the leaf), so look up ``addr - 1``."""
        b, va, _module = self.link_address(addr)
        if b is None:
            return []
        return b.frames(va - 1 if return_address else va, inline=self.inline)

    def labels(self, addr: int, return_address: bool = False) -> tuple[str, ...]:
        """Display labels for ``addr``, innermost first; ``0x<addr> [<module>]``
        when the address cannot be resolved."""
        key = addr * 2 + (1 if return_address else 0)
        hit = self._labels.get(key)
        if hit is not None:
            return hit
        with self._lock:
            b, va, module = self.link_address(addr)
            fr: list[Frame] = []
            if b is not None:
                fr = b.frames(va - 1 if return_address else va, inline=self.inline)
            if not fr and b is not None and b.unsupported_go:
                # Say why once per frame instead of a bare address: a Go release
                # older than 1.18 (its pclntab layout is not read here).
                why = f"{module}: unsupported Go version"
                out: tuple[str, ...] = (unresolved_label(addr, why),)
            elif not fr:
                out = (unresolved_label(addr, module),)
            elif self.lines:
                out = tuple(f"{f.func} {f.file}:{f.line}" if f.line > 0 else f.func
                            for f in fr)
            else:
                out = tuple(f.func for f in fr)
            if len(self._labels) > 200000:
                self._labels.clear()
            self._labels[key] = out
            return out

    def stack(self, addrs_leaf_first: list[int]) -> tuple[str, ...]:
        """A whole user stack (leaf first, as the kernel gives it) as labels
        root-first, with inlined frames expanded."""
        out: list[str] = []
        for i, a in enumerate(addrs_leaf_first):
            out.extend(self.labels(a, return_address=i > 0))
        out.reverse()
        return tuple(out)
