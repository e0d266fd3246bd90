"""A small ELF64 reader: sections, program headers and function symbols.

Hand-written on ``struct`` + ``mmap`` rather than pyelftools because this code
runs inside the node agent, which ships to nodes that have only the standard
library and bcc. It reads only what symbolization needs, and treats the file as
hostile: every offset is bounds-checked and a malformed file raises ElfError.
"""

from __future__ import annotations

import mmap
import os
import struct
from typing import NamedTuple

ELF_MAGIC = b"\x7fELF"
SHT_SYMTAB = 2
SHT_DYNSYM = 11
SHT_NOBITS = 8
PT_LOAD = 1
STT_FUNC = 2
EM_X86_64 = 62
EM_AARCH64 = 183


class ElfError(ValueError):
    """The file is not an ELF this reader understands, or it is corrupt."""


class Section(NamedTuple):
    name: str
    type: int
    addr: int
    offset: int
    size: int
    link: int
    entsize: int


class Segment(NamedTuple):
    type: int
    flags: int
    offset: int
    vaddr: int
    filesz: int
    memsz: int


class ElfFile:
    """A read-only, memory-mapped ELF64 little-endian file.

    Args:
        fd_or_path: an open file descriptor (kept by the caller) or a path.
    """

    def __init__(self, fd_or_path) -> None:
        if isinstance(fd_or_path, int):
            fd = fd_or_path
            own = False
        else:
            fd = os.open(fd_or_path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            own = True
        try:
            st = os.fstat(fd)
            self.dev_ino = (st.st_dev, st.st_ino)
            if st.st_size < 64:
                raise ElfError(f"file of {st.st_size} bytes is too small to be ELF")
            self.data = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        finally:
            if own:
                os.close(fd)
        self.size = len(self.data)
        d = self.data
        if d[:4] != ELF_MAGIC:
            raise ElfError("not an ELF file (bad magic)")
        if d[4] != 2 or d[5] != 1:
            raise ElfError("only 64-bit little-endian ELF is supported")
        (self.e_type, self.machine, _ver, self.entry, phoff, shoff, _flags, _ehsize,
         phentsize, phnum, shentsize, shnum, shstrndx) = struct.unpack_from("<HHIQQQIHHHHHH", d, 16)
        self.segments: list[Segment] = []
        for i in range(phnum):
            off = phoff + i * phentsize
            self._check(off, 56)
            p_type, p_flags, p_off, p_vaddr, _pa, p_filesz, p_memsz, _al = struct.unpack_from(
                "<IIQQQQQQ", d, off)
            self.segments.append(Segment(p_type, p_flags, p_off, p_vaddr, p_filesz, p_memsz))
        raw = []
        for i in range(shnum):
            off = shoff + i * shentsize
            self._check(off, 64)
            raw.append(struct.unpack_from("<IIQQQQIIQQ", d, off))
        self.sections: dict[str, Section] = {}
        self.section_list: list[Section] = []
        if raw and shstrndx < len(raw):
            str_off, str_size = raw[shstrndx][4], raw[shstrndx][5]
            for (name, typ, _fl, addr, off, size, link, _info, _align, entsize) in raw:
                sec = Section(self._cstr(str_off + name, str_off + str_size), typ, addr, off,
                              size, link, entsize)
                self.section_list.append(sec)
                self.sections.setdefault(sec.name, sec)

    # -- helpers ----------------------------------------------------------
    def _check(self, off: int, n: int) -> None:
        if off < 0 or n < 0 or off + n > self.size:
            raise ElfError(f"offset {off:#x}+{n} is outside the file ({self.size} bytes)")

    def _cstr(self, off: int, limit: int | None = None) -> str:
        limit = self.size if limit is None else min(limit, self.size)
        if off >= limit:
            return ""
        end = self.data.find(b"\0", off, limit)
        if end < 0:
            end = limit
        return self.data[off:end].decode("utf-8", "replace")

    @property
    def is_pie(self) -> bool:
        """ET_DYN: loaded at a random base, so runtime addresses need a bias."""
        return self.e_type == 3

    def section_bytes(self, name: str) -> bytes | None:
        sec = self.sections.get(name)
        if sec is None or sec.type == SHT_NOBITS:
            return None
        self._check(sec.offset, sec.size)
        return self.data[sec.offset:sec.offset + sec.size]

    def vaddr_to_offset(self, vaddr: int) -> int | None:
        """File offset holding the byte at link-time address ``vaddr``."""
        for s in self.segments:
            if s.type == PT_LOAD and s.vaddr <= vaddr < s.vaddr + s.filesz:
                return vaddr - s.vaddr + s.offset
        return None

    def offset_to_vaddr(self, off: int) -> int | None:
        """Link-time address of the byte at file offset ``off`` (None if not loaded)."""
        for s in self.segments:
            if s.type == PT_LOAD and s.offset <= off < s.offset + s.filesz:
                return off - s.offset + s.vaddr
        return None

    def read_vaddr(self, vaddr: int, n: int) -> bytes | None:
        off = self.vaddr_to_offset(vaddr)
        if off is None or off + n > self.size:
            return None
        return self.data[off:off + n]

    def func_symbols(self, table: str = ".symtab") -> list[tuple[int, int, str]]:
        """``(start, size, name)`` of every defined STT_FUNC in ``table``
        (``.symtab``, or ``.dynsym``: the exported functions, which a stripped
        shared library such as libc still has), sorted by start."""
        sec = self.sections.get(table)
        if sec is None or sec.type not in (SHT_SYMTAB, SHT_DYNSYM) or sec.entsize != 24:
            return []
        self._check(sec.offset, sec.size)
        if sec.link >= len(self.section_list):
            return []
        strtab = self.section_list[sec.link]
        s_lo, s_hi = strtab.offset, strtab.offset + strtab.size
        out = []
        for (st_name, st_info, _oth, shndx, value, size) in struct.iter_unpack(
                "<IBBHQQ", self.data[sec.offset:sec.offset + sec.size - sec.size % 24]):
            if st_info & 0xF != STT_FUNC or shndx == 0 or value == 0:
                continue
            out.append((value, size, self._cstr(s_lo + st_name, s_hi)))
        out.sort()
        return out

    def symbol_value(self, name: str) -> int | None:
        """Address of any ``.symtab`` symbol named ``name`` (data or code)."""
        sec = self.sections.get(".symtab")
        if sec is None or sec.type != SHT_SYMTAB or sec.entsize != 24:
            return None
        strtab = self.section_list[sec.link]
        want = name.encode() + b"\0"
        s_lo, s_hi = strtab.offset, strtab.offset + strtab.size
        # Find the name in the string table first: one C-level search instead
        # of decoding every symbol's name.
        hits = set()
        pos = self.data.find(want, s_lo, s_hi)
        while pos >= 0:
            if pos == s_lo or self.data[pos - 1] == 0:
                hits.add(pos - s_lo)
            pos = self.data.find(want, pos + 1, s_hi)
        if not hits:
            return None
        for (st_name, _i, _o, _sh, value, _sz) in struct.iter_unpack(
                "<IBBHQQ", self.data[sec.offset:sec.offset + sec.size - sec.size % 24]):
            if st_name in hits:
                return value
        return None

    def close(self) -> None:
        try:
            self.data.close()
        except (BufferError, ValueError):
            pass
