"""One opened binary (an executable or shared object) and its symbol tables.

``Binary`` answers "which function holds link-time address X" from ``.symtab``
when present, else from ``.gopclntab``, and expands file:line and inlined frames
from the pclntab when the binary is Go. Binaries are cached per (dev, inode) so
every pod running the same image shares one parse.
"""

from __future__ import annotations

import os
import struct
import threading
from bisect import bisect_right
from typing import NamedTuple

from .buildinfo import BUILDINFO_MAGIC, parse_go_version
from .elf import ElfError, ElfFile
from .gopclntab import (
    MAGIC_118,
    MAGIC_120,
    Pclntab,
    PclntabError,
    UnsupportedGoVersion,
    looks_like_header,
)

# moduledata (runtime/symtab.go) starts: pcHeader, 6 slices (18 words),
# findfunctab, minpc, maxpc, text (word 22). Further down, ``rodata`` is followed
# by ``gofunc``, but the words in between change between releases (1.27 added
# typedesclen, itaboffset, itabsize), so gofunc is found by that pattern.
# Go 1.18-1.19 place go.func.* in .rodata, Go 1.20+ inside the pclntab section.
_MODULEDATA_TEXT_WORD = 22
_MODULEDATA_SCAN_WORDS = 64


class Frame(NamedTuple):
    """One symbolized frame. ``file``/``line`` are empty/0 when unknown."""

    func: str
    file: str = ""
    line: int = 0
    inlined: bool = False


def _strip_abi(name: str) -> str:
    # The Go linker mangles assembly (ABI0) symbols in .symtab as "x.abi0";
    # the pclntab, runtime.FuncForPC and pprof use the plain name.
    return name[:-5] if name.endswith(".abi0") else name


class Binary:
    """Symbol tables of one ELF file. Construct with ``open_binary``."""

    def __init__(self, elf: ElfFile, label: str = "") -> None:
        self.elf = elf
        self.label = label
        self.go_version = self._go_version()
        self.pclntab: Pclntab | None = None
        self.pclntab_error = ""
        # Set when the binary is Go but older than the pclntab layouts read here.
        self.unsupported_go = ""
        self._load_pclntab()
        self.is_go = self.pclntab is not None or self.go_version is not None
        syms = elf.func_symbols()
        self.has_symtab = bool(syms)
        if self.is_go:
            syms = [(a, s, _strip_abi(n)) for (a, s, n) in syms]
        elif not syms:
            # A stripped shared library (libc): its exported functions still
            # name most frames a Go program spends time in (syscalls, cgo).
            # Sizeless entries would claim every address after them: skipped.
            syms = [x for x in elf.func_symbols(".dynsym") if x[1]]
        self._sym_starts = [a for (a, _s, _n) in syms]
        self._syms = syms

    # -- discovery ---------------------------------------------------------
    def _go_version(self) -> str | None:
        blob = self.elf.section_bytes(".go.buildinfo")
        if blob is None:
            pos = self.elf.data.find(BUILDINFO_MAGIC)
            blob = self.elf.data[pos:pos + 512] if pos >= 0 else None
        return parse_go_version(blob)

    def _find_pclntab(self) -> tuple[int | None, int | None]:
        """``(file offset, vaddr)`` of the pcHeader."""
        elf = self.elf
        sec = self._pclntab_section()
        if sec is not None and sec.size:
            return sec.offset, sec.addr
        # PIE and some external links: no section header, but the symbol.
        va = elf.symbol_value("runtime.pclntab")
        if va:
            off = elf.vaddr_to_offset(va)
            if off is not None:
                return off, va
        # Stripped PIE: scan the read-only segments for the header signature.
        for magic in (MAGIC_120, MAGIC_118):
            needle = struct.pack("<I", magic) + b"\0\0"
            pos = elf.data.find(needle)
            while pos >= 0:
                if looks_like_header(elf.data, pos):
                    va = elf.offset_to_vaddr(pos)
                    if va is not None:
                        return pos, va
                pos = elf.data.find(needle, pos + 1)
        return None, None

    def _pclntab_section(self):
        # Internally linked PIE (Go 1.18-1.19 seen) names it .data.rel.ro.gopclntab.
        secs = self.elf.sections
        return secs.get(".gopclntab") or secs.get(".data.rel.ro.gopclntab")

    def _moduledata(self, pcln_va: int) -> tuple[int, ...] | None:
        """The first words of runtime.firstmoduledata, found by its first word
        (the pcHeader address) in .go.module (Go 1.26+) or .noptrdata, checked
        by funcnametab pointing into the table and ``text`` lying in .text.
        None when a linker leaves those words for load-time relocations."""
        elf = self.elf
        text = elf.sections.get(".text")
        if text is None:
            return None
        needle = struct.pack("<Q", pcln_va)
        n = _MODULEDATA_SCAN_WORDS
        for name in (".go.module", ".noptrdata", ".data"):
            sec = elf.sections.get(name)
            if sec is None or sec.type == 8:  # SHT_NOBITS
                continue
            lo, hi = sec.offset, min(sec.offset + sec.size, elf.size)
            pos = elf.data.find(needle, lo, hi)
            while pos >= 0:
                if (pos - lo) % 8 == 0 and pos + 8 * n <= elf.size:
                    w = struct.unpack_from(f"<{n}Q", elf.data, pos)
                    if w[1] > pcln_va and text.addr <= w[_MODULEDATA_TEXT_WORD] < \
                            text.addr + text.size:
                        return w
                pos = elf.data.find(needle, pos + 1, hi)
        return None

    def _text_start(self, pcln_va: int) -> int | None:
        """runtime.text, for Go 1.26+ (whose header no longer has it). It is
        .text's start after an internal link, but an external link (cgo) puts
        C start-up code first: then the symbol, else moduledata.text."""
        va = self.elf.symbol_value("runtime.text")
        if va:
            return va
        md = self._moduledata(pcln_va)
        if md is not None:
            return md[_MODULEDATA_TEXT_WORD]
        sec = self.elf.sections.get(".text")
        return sec.addr if sec is not None else None

    def _find_gofunc(self, pcln_va: int, text_start: int | None) -> int | None:
        """Address of go:func.* (inline trees live there): from .symtab, else
        from runtime.firstmoduledata. None: no inline expansion."""
        elf = self.elf
        va = elf.symbol_value("go:func.*") or elf.symbol_value("go.func.*")
        if va:
            return va
        rodata = elf.sections.get(".rodata")
        pcln = self._pclntab_section()
        md = self._moduledata(pcln_va)
        if rodata is None or pcln is None or md is None or md[_MODULEDATA_TEXT_WORD] != text_start:
            return None
        # go:func.* follows the rodata word: take the last such pair.
        for i in range(len(md) - 1, _MODULEDATA_TEXT_WORD, -1):
            # runtime.rodata: .rodata's start, or just past it when an external
            # linker put C read-only data first.
            near_rodata = rodata.addr <= md[i - 1] < rodata.addr + 4096
            if near_rodata and any(sec.addr < md[i] < sec.addr + sec.size
                                   for sec in (pcln, rodata)):
                return md[i]
        return None

    def _load_pclntab(self) -> None:
        off, va = self._find_pclntab()
        if off is None:
            return
        elf = self.elf
        text = None
        hdr_text = struct.unpack_from("<Q", elf.data, off + 24)[0] if off + 32 <= elf.size else 0
        if hdr_text == 0:
            text = self._text_start(va)  # Go 1.26+: textStart is no longer written
        gofunc = None
        if elf.data[off:off + 4] in (struct.pack("<I", MAGIC_120), struct.pack("<I", MAGIC_118)):
            gofunc = self._find_gofunc(va, hdr_text or text)
        try:
            self.pclntab = Pclntab(elf.data, text_start=text, gofunc=gofunc,
                                   read_vaddr=elf.read_vaddr, base=off)
        except UnsupportedGoVersion as e:
            self.pclntab_error = self.unsupported_go = str(e)
        except (PclntabError, struct.error, IndexError) as e:
            self.pclntab_error = str(e)
            self.pclntab = None

    # -- lookups -------------------------------------------------------------
    def symtab_lookup(self, addr: int) -> tuple[str, int] | None:
        """``(name, start)`` from ``.symtab``."""
        i = bisect_right(self._sym_starts, addr) - 1
        if i < 0:
            return None
        start, size, name = self._syms[i]
        if size and addr >= start + size:
            return None
        return name, start

    def pclntab_lookup(self, addr: int) -> tuple[str, int] | None:
        """``(name, start)`` from ``.gopclntab``."""
        t = self.pclntab
        if t is None:
            return None
        i = t.find_func(addr)
        if i < 0:
            return None
        return t.func_name(i), t.func_entry(i)

    def func_name(self, addr: int) -> str | None:
        """Function holding link-time address ``addr``: ``.symtab`` first, then
        ``.gopclntab``."""
        hit = self.symtab_lookup(addr) if self._syms else None
        if hit is None:
            hit = self.pclntab_lookup(addr)
        return hit[0] if hit else None

    def frames(self, addr: int, inline: bool = True) -> list[Frame]:
        """Frames at ``addr``, innermost first (inlined callees, then the
        physical function). Empty when unknown.

        The physical function is named as the pclntab names it when it has
        the address: that is the runtime's own name, which tracebacks and
        pprof print (.symtab spells some differently: Go 1.18-1.20 write
        generic instantiations there in full but "[...]" in the pclntab).
        """
        try:
            hit = self.pclntab_lookup(addr)
        except (struct.error, IndexError):
            hit = None
        name = hit[0] if hit else self.func_name(addr)
        if self.pclntab is not None and inline:
            try:
                fr = self.pclntab.frames(addr)
            except (struct.error, IndexError, ValueError):  # ValueError: a corrupt varint
                fr = []
            if fr:
                out = [Frame(f, fi, ln, True) for (f, fi, ln) in fr[:-1]]
                f, fi, ln = fr[-1]
                out.append(Frame(name or f, fi, ln, False))  # name: f, or .symtab's
                return out
        return [Frame(name)] if name else []

    def find_function(self, name: str) -> tuple[int, int] | None:
        """``(start, end)`` link-time range of the function ``name``."""
        for (a, s, n) in self._syms:
            if n == name and s:
                return a, a + s
        if self.pclntab is not None:
            return self.pclntab.find(name)
        return None


_cache: dict[tuple[int, int], Binary] = {}
_cache_lock = threading.Lock()


def open_binary(path: str, label: str = "") -> Binary:
    """Open and parse ``path`` (e.g. ``/proc/PID/exe``), cached per (dev, inode).

    Raises:
        OSError: the file cannot be opened.
        ElfError: it is not a usable ELF file.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino)
        with _cache_lock:
            hit = _cache.get(key)
        if hit is not None:
            return hit
        elf = ElfFile(fd)
    finally:
        os.close(fd)
    b = Binary(elf, label or os.path.basename(path))
    with _cache_lock:
        _cache.setdefault(key, b)
        return _cache[key]


__all__ = ["Binary", "ElfError", "Frame", "open_binary"]
