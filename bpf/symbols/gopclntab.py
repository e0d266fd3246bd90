"""Go's ``.gopclntab``: function names, file:line and inlined frames for a PC.

The runtime needs this table to unwind and print tracebacks, so it survives
``-ldflags=-s -w``: it is how a stripped Go binary is symbolized. Layout from
``runtime/symtab.go`` (``pcHeader``, ``_func``, ``pcvalue``) and
``runtime/symtabinl.go`` (``inlinedCall``), Go 1.18 to 1.27. Hand-written on
``struct`` because the node agent ships with only the standard library and bcc.

Go 1.26 stopped writing ``textStart`` into the header (it is always 0): the
caller passes the ``.text`` address instead.
"""

from __future__ import annotations

import struct
from bisect import bisect_right

from ..varint import uvarint, zigzag

MAGIC_118 = 0xFFFFFFF0
MAGIC_120 = 0xFFFFFFF1
SUPPORTED_MAGICS = (MAGIC_118, MAGIC_120)
# Older tables: recognised and reported as an unsupported Go version, not parsed.
OLD_MAGICS = {0xFFFFFFFB: "1.2-1.15", 0xFFFFFFFA: "1.16-1.17"}

PCDATA_INL_TREE_INDEX = 2
FUNCDATA_INL_TREE = 3
# runtime.inlinedCall. Go 1.20+: funcID u8, pad[3], nameOff i32, parentPc i32,
# startLine i32. Go 1.18-1.19: parent i16, funcID u8, pad, file i32, line i32,
# func_ i32 (nameOff), parentPc i32. Both give the name and the parent PC,
# which is all the expansion needs.
INLINED_CALL_SIZE = 16
INLINED_CALL_SIZE_118 = 20
_INLINED_CALL = {MAGIC_120: ("<B3xiii", INLINED_CALL_SIZE),
                 MAGIC_118: ("<hBxiiii", INLINED_CALL_SIZE_118)}


class PclntabError(ValueError):
    """The bytes are not a pclntab this parser understands."""


class UnsupportedGoVersion(PclntabError):
    """A real Go pclntab, from a Go release older than 1.18."""


def unsupported_message(magic: int) -> str | None:
    """The sentence shown for a pclntab of a Go release this parser does not
    read, or None when ``magic`` is not one of those."""
    rel = OLD_MAGICS.get(magic)
    if rel is None:
        return None
    return (f"unsupported Go version: the binary's symbol table (pclntab magic {magic:#x}) is "
            f"from Go {rel}; function names are read from Go 1.18 and newer, "
            "rebuild with a newer Go or keep the ELF symbols (no -ldflags=-s)")


def header_magic(buf, off: int = 0) -> int:
    return struct.unpack_from("<I", buf, off)[0]


def looks_like_header(buf, off: int = 0) -> bool:
    """Cheap check used when scanning a file for the table (PIE binaries)."""
    if off + 8 > len(buf):
        return False
    magic, pad1, pad2, minlc, ptrsize = struct.unpack_from("<IBBBB", buf, off)
    return (magic in SUPPORTED_MAGICS and pad1 == 0 and pad2 == 0 and minlc in (1, 2, 4)
            and ptrsize in (4, 8))


class Pclntab:
    """A parsed pclntab.

    Args:
        buf: bytes (or mmap) holding the table, starting at the pcHeader.
        text_start: address of the start of text. Used when the header's
            textStart is 0 (Go 1.26+) or to override it.
        gofunc: address of ``go:func.*`` (moduledata.gofunc), needed only for
            the inline tree; ``read_vaddr(addr, n)`` reads bytes there.
    """

    def __init__(self, buf, text_start: int | None = None, gofunc: int | None = None,
                 read_vaddr=None, base: int = 0) -> None:
        if len(buf) < base + 64:
            raise PclntabError("pclntab too short")
        magic = header_magic(buf, base)
        if magic in OLD_MAGICS:
            raise UnsupportedGoVersion(unsupported_message(magic))
        if not looks_like_header(buf, base):
            raise PclntabError(f"no Go 1.18+ pclntab header (magic {magic:#x})")
        self.buf = buf
        self.magic = magic
        self.quantum = buf[base + 6]
        self.ptrsize = buf[base + 7]
        p = self.ptrsize
        fmt = "<Q" if p == 8 else "<I"

        def word(i: int) -> int:
            return struct.unpack_from(fmt, buf, base + 8 + i * p)[0]

        self.nfunc = word(0)
        self.nfiles = word(1)
        self.header_text_start = word(2)
        self.funcname_off = word(3)
        self.cu_off = word(4)
        self.filetab_off = word(5)
        self.pctab_off = word(6)
        self.pcln_off = word(7)
        # From here on every offset is absolute within ``buf``.
        for attr in ("funcname_off", "cu_off", "filetab_off", "pctab_off", "pcln_off"):
            setattr(self, attr, getattr(self, attr) + base)
        if text_start is None:
            text_start = self.header_text_start
        if not text_start:
            raise PclntabError("pclntab has no textStart (Go 1.26+): pass the .text address")
        self.text_start = text_start
        for o in (self.funcname_off, self.cu_off, self.filetab_off, self.pctab_off, self.pcln_off):
            if o >= len(buf):
                raise PclntabError(f"pclntab header offset {o:#x} is outside the table")
        n = self.nfunc
        if n <= 0 or self.pcln_off + (n + 1) * 8 > len(buf):
            raise PclntabError(f"pclntab function table of {n} entries does not fit")
        # functab: nfunc+1 pairs of (entryoff, funcoff), entryoff sorted.
        pairs = struct.unpack_from(f"<{2 * (n + 1)}I", buf, self.pcln_off)
        self.entries: list[int] = list(pairs[0::2])
        self.funcoffs: list[int] = list(pairs[1::2])
        self.fixed_func_size = 44 if magic == MAGIC_120 else 40
        self.gofunc = gofunc
        self.read_vaddr = read_vaddr
        self._names: dict[int, str] = {}

    # -- function table --------------------------------------------------------
    @property
    def text_end(self) -> int:
        return self.text_start + self.entries[-1]

    def find_func(self, pc: int) -> int:
        """Index of the function holding ``pc``, or -1."""
        off = pc - self.text_start
        if off < 0 or off >= self.entries[-1]:
            return -1
        i = bisect_right(self.entries, off, 0, self.nfunc) - 1
        return i

    def _func(self, i: int) -> int:
        return self.pcln_off + self.funcoffs[i]

    def func_entry(self, i: int) -> int:
        return self.text_start + self.entries[i]

    def func_end(self, i: int) -> int:
        return self.text_start + self.entries[i + 1]

    def _name_at(self, name_off: int) -> str:
        s = self._names.get(name_off)
        if s is None:
            start = self.funcname_off + name_off
            end = self.buf.find(b"\0", start)
            s = bytes(self.buf[start:end if end >= 0 else len(self.buf)]).decode("utf-8", "replace")
            self._names[name_off] = s
        return s

    def func_name(self, i: int) -> str:
        name_off = struct.unpack_from("<i", self.buf, self._func(i) + 4)[0]
        return self._name_at(name_off)

    def functions(self) -> list[tuple[int, int, str]]:
        """``(start, end, name)`` of every function, in address order."""
        return [(self.func_entry(i), self.func_end(i), self.func_name(i))
                for i in range(self.nfunc)]

    def find(self, name: str) -> tuple[int, int] | None:
        """``(start, end)`` of the function called ``name``."""
        for i in range(self.nfunc):
            if self.func_name(i) == name:
                return self.func_entry(i), self.func_end(i)
        return None

    def name(self, pc: int) -> str | None:
        i = self.find_func(pc)
        return None if i < 0 else self.func_name(i)

    # -- pc-value tables -------------------------------------------------------
    def _pcvalue(self, table_off: int, entry: int, target: int) -> int:
        """Value of a pc-value table at ``target`` (runtime.pcvalue), -1 if none."""
        if table_off == 0:
            return -1
        buf = self.buf
        pos = self.pctab_off + table_off
        pc = entry
        val = -1
        first = True
        end = len(buf)
        while pos < end:
            uv = buf[pos]
            if uv == 0 and not first:
                return -1
            if uv & 0x80:
                uv, pos = uvarint(buf, pos)
            else:
                pos += 1
            val += zigzag(uv)
            pd = buf[pos]
            if pd & 0x80:
                pd, pos = uvarint(buf, pos)
            else:
                pos += 1
            pc += pd * self.quantum
            first = False
            if target < pc:
                return val
        return -1

    def _file_line(self, fo: int, entry: int, pc: int) -> tuple[str, int]:
        buf = self.buf
        pcfile, pcln, _np, cu_offset = struct.unpack_from("<IIII", buf, fo + 20)
        line = self._pcvalue(pcln, entry, pc)
        fileno = self._pcvalue(pcfile, entry, pc)
        fname = ""  # unknown (padding between functions): Frame's "empty when unknown"
        if fileno >= 0:
            idx = self.cu_off + (cu_offset + fileno) * 4
            if idx + 4 <= len(buf):
                foff = struct.unpack_from("<I", buf, idx)[0]
                if foff != 0xFFFFFFFF:
                    start = self.filetab_off + foff
                    e = buf.find(b"\0", start)
                    fname = bytes(buf[start:e]).decode("utf-8", "replace")
        return fname, line

    def _inline_tree(self, fo: int) -> tuple[int, int | None]:
        """``(pcdata offset of the inline index table, inline tree address)``."""
        if self.magic not in _INLINED_CALL or self.gofunc is None or self.read_vaddr is None:
            return 0, None
        npcdata = struct.unpack_from("<I", self.buf, fo + 28)[0]
        nfuncdata = self.buf[fo + self.fixed_func_size - 1]
        if npcdata <= PCDATA_INL_TREE_INDEX or nfuncdata <= FUNCDATA_INL_TREE:
            return 0, None
        base = fo + self.fixed_func_size
        idx_table = struct.unpack_from("<I", self.buf, base + 4 * PCDATA_INL_TREE_INDEX)[0]
        tree_off = struct.unpack_from("<I", self.buf, base + 4 * npcdata + 4 * FUNCDATA_INL_TREE)[0]
        if idx_table == 0 or tree_off == 0xFFFFFFFF:
            return 0, None
        return idx_table, self.gofunc + tree_off

    def frames(self, pc: int) -> list[tuple[str, str, int]]:
        """``[(func, file, line)]`` for ``pc``, innermost (inlined) first, the
        physical function last. Empty when ``pc`` is outside the table.

        Pass a return address minus one for non-leaf frames, as pprof does, so
        the call instruction's line is reported.
        """
        i = self.find_func(pc)
        if i < 0:
            return []
        fo = self._func(i)
        entry = self.func_entry(i)
        out = []
        idx_table, tree = self._inline_tree(fo)
        call_fmt, call_size = _INLINED_CALL[self.magic]
        cur = pc
        for _depth in range(64):  # bounded: a corrupt tree must not loop forever
            if tree is None:
                break
            ix = self._pcvalue(idx_table, entry, cur)
            if ix < 0:
                break
            raw = self.read_vaddr(tree + ix * call_size, call_size)
            if raw is None or len(raw) < call_size:
                break
            fields = struct.unpack(call_fmt, raw)
            if self.magic == MAGIC_120:
                name_off, parent_pc = fields[1], fields[2]
            else:
                name_off, parent_pc = fields[4], fields[5]
            fname, line = self._file_line(fo, entry, cur)
            out.append((self._name_at(name_off), fname, line))
            cur = entry + parent_pc
        fname, line = self._file_line(fo, entry, cur)
        out.append((self.func_name(i), fname, line))
        return out
