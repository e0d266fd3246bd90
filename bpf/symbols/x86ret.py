"""Find the RET instructions of an x86-64 function, for uprobes at each return.

Uretprobes crash Go programs (they rewrite return addresses on stacks that
the Go runtime moves and unwinds), so the agent puts ordinary uprobes on every
RET of a function instead. A byte 0xC3 is only a RET at an instruction
boundary, so the function is walked instruction by instruction with a minimal
*length* decoder (prefixes, REX, VEX/EVEX, one-, two- and three-byte opcode
maps, ModRM/SIB/displacement, immediates): it needs no opcode semantics and no
dependency (nodes rarely have capstone or even binutils). ``objdump`` is used
as a cross-check in the tests, and as a fallback if the decoder meets bytes it
cannot size.
"""

from __future__ import annotations

import re
import shutil
import subprocess

_PREFIXES = frozenset((0x66, 0x67, 0xF0, 0xF2, 0xF3, 0x2E, 0x36, 0x3E, 0x26, 0x64, 0x65))

# One-byte opcodes with a ModRM byte.
_MODRM_1 = set()
for _base in (0x00, 0x08, 0x10, 0x18, 0x20, 0x28, 0x30, 0x38):
    _MODRM_1.update(range(_base, _base + 4))
_MODRM_1.update((0x63, 0x69, 0x6B, 0x80, 0x81, 0x82, 0x83, 0xC0, 0xC1, 0xC6, 0xC7, 0xF6, 0xF7,
                 0xFE, 0xFF))
_MODRM_1.update(range(0x84, 0x90))
_MODRM_1.update(range(0xD0, 0xD4))
_MODRM_1.update(range(0xD8, 0xE0))
# One-byte opcodes' immediate sizes ("z": 4, or 2 with the 0x66 prefix).
_IMM8_1 = {0x04, 0x0C, 0x14, 0x1C, 0x24, 0x2C, 0x34, 0x3C, 0x6A, 0x6B, 0x80, 0x82, 0x83, 0xA8,
           0xC0, 0xC1, 0xC6, 0xCD, 0xEB, 0xE0, 0xE1, 0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7}
_IMM8_1.update(range(0x70, 0x80))
_IMM8_1.update(range(0xB0, 0xB8))
_IMMZ_1 = {0x05, 0x0D, 0x15, 0x1D, 0x25, 0x2D, 0x35, 0x3D, 0x68, 0x69, 0x81, 0xA9, 0xC7}
_REL32_1 = {0xE8, 0xE9}
# Two-byte (0F xx) opcodes without ModRM, and with an imm8.
_NO_MODRM_2 = {0x05, 0x06, 0x07, 0x08, 0x09, 0x0B, 0x0E, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35,
               0x37, 0x77, 0xA0, 0xA1, 0xA2, 0xA8, 0xA9, 0xAA}
_NO_MODRM_2.update(range(0x80, 0x90))
_NO_MODRM_2.update(range(0xC8, 0xD0))
_IMM8_2 = {0x70, 0x71, 0x72, 0x73, 0xA4, 0xAC, 0xBA, 0xC2, 0xC4, 0xC5, 0xC6}


class DecodeError(ValueError):
    """Bytes the length decoder cannot size."""


def _modrm_len(code, i: int) -> int:
    """Bytes taken by ModRM (+SIB +displacement) starting at ``i``."""
    m = code[i]
    mod, rm = m >> 6, m & 7
    n = 1
    if mod == 3:
        return n
    if rm == 4:
        sib = code[i + 1]
        n += 1
        if mod == 0 and sib & 7 == 5:
            n += 4
    elif mod == 0 and rm == 5:
        n += 4  # RIP-relative
    if mod == 1:
        n += 1
    elif mod == 2:
        n += 4
    return n


def insn_length(code, i: int) -> int:
    """Length of the x86-64 instruction at ``code[i]``."""
    start = i
    opsize16 = False
    rex_w = False
    while code[i] in _PREFIXES:
        opsize16 |= code[i] == 0x66
        i += 1
    if 0x40 <= code[i] <= 0x4F:
        rex_w = bool(code[i] & 8)
        i += 1
    op = code[i]
    if op in (0xC4, 0xC5, 0x62):  # VEX3, VEX2, EVEX: opcode map from the payload
        if op == 0xC5:
            mp, i = 1, i + 2
        elif op == 0xC4:
            mp, i = code[i + 1] & 0x1F, i + 3
        else:
            mp, i = code[i + 1] & 0x07, i + 4
        vop = code[i]
        i += 1
        if mp == 1 and vop == 0x77:
            return i - start  # vzeroupper/vzeroall: no ModRM
        i += _modrm_len(code, i)
        if mp == 3 or (mp == 1 and vop in _IMM8_2):
            i += 1
        return i - start
    i += 1
    if op == 0x0F:
        op2 = code[i]
        i += 1
        if op2 == 0x38:
            i += 1
            return i + _modrm_len(code, i) - start
        if op2 == 0x3A:
            i += 1
            return i + _modrm_len(code, i) + 1 - start
        if op2 in _NO_MODRM_2:
            if 0x80 <= op2 <= 0x8F:
                i += 4  # jcc rel32
            return i - start
        i += _modrm_len(code, i)
        if op2 in _IMM8_2:
            i += 1
        return i - start
    if op in _MODRM_1:
        reg = (code[i] >> 3) & 7
        i += _modrm_len(code, i)
        if op == 0xF6 and reg in (0, 1):
            i += 1
        elif op == 0xF7 and reg in (0, 1):
            i += 2 if opsize16 else 4
    if op in _IMM8_1:
        i += 1
    elif op in _IMMZ_1:
        i += 2 if opsize16 else 4
    elif op in _REL32_1:
        i += 4
    elif 0xB8 <= op <= 0xBF:
        i += 8 if rex_w else (2 if opsize16 else 4)
    elif 0xA0 <= op <= 0xA3:
        i += 8
    elif op in (0xC2, 0xCA):
        i += 2
    elif op == 0xC8:
        i += 3
    elif op in (0x06, 0x07, 0x0E, 0x16, 0x17, 0x1E, 0x1F, 0x27, 0x2F, 0x37, 0x3F, 0x60, 0x61,
                0xD4, 0xD5, 0xD6, 0x9A, 0xEA):
        raise DecodeError(f"opcode {op:#x} is invalid in 64-bit mode")
    return i - start


def boundaries(code, base: int = 0) -> list[int]:
    """Addresses of every instruction start in ``code`` (loaded at ``base``)."""
    out = []
    i, n = 0, len(code)
    while i < n:
        out.append(base + i)
        try:
            i += insn_length(code, i)
        except IndexError:
            raise DecodeError(f"instruction at {base + i:#x} runs past the function") from None
    return out


def ret_addresses(code, base: int = 0) -> list[int]:
    """Addresses of the RET instructions (C3, C2 iw, and REP RET) in ``code``."""
    out = []
    for a in boundaries(code, base):
        i = a - base
        j = i
        while code[j] in _PREFIXES:
            j += 1
        if code[j] in (0xC3, 0xC2):
            out.append(a)
    return out


def ret_addresses_objdump(path: str, start: int, end: int) -> list[int] | None:
    """The same from ``objdump -d`` (None when objdump is missing or fails)."""
    exe = shutil.which("objdump")
    if exe is None:
        return None
    try:
        r = subprocess.run([exe, "-d", "--no-show-raw-insn", f"--start-address={start:#x}",
                            f"--stop-address={end:#x}", path], capture_output=True, text=True,
                           timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if r.returncode != 0:
        return None
    rx = re.compile(r"^\s*([0-9a-f]+):\s+(?:rep[a-z]*\s+|bnd\s+)?ret[qlw]?\b")
    return [int(m.group(1), 16) for m in map(rx.match, r.stdout.splitlines()) if m]
