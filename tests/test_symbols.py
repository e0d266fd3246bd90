"""The Go-aware symbolizer against Go's own tools, on binaries built here.

References we did not write: ``go tool nm -size`` (symbol table),
``go tool addr2line`` (pclntab file:line), ``go env GOVERSION``, and the Go
runtime's own idea of where a function lives (``reflect``) in a PIE process.
"""

from __future__ import annotations

import ast
import random
import struct
import subprocess
from pathlib import Path

import pytest
from ebpf_support import goprogs

from bpf.symbols import ElfError, Pclntab, PclntabError, ProcessSymbolizer, open_binary
from bpf.symbols.binary import Binary
from bpf.symbols.elf import ElfFile

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bins(go_tool: str) -> dict[str, Path]:
    return {v: goprogs.build(go_tool, v) for v in goprogs.VARIANTS}


def _nm(go: str, binary: Path) -> list[tuple[int, int, str]]:
    """(start, size, name) of text symbols, per ``go tool nm -size``."""
    out = subprocess.run([go, "tool", "nm", "-size", "-sort", "address", str(binary)],
                         capture_output=True, text=True, check=True).stdout
    syms = []
    for line in out.splitlines():
        parts = line.split(None, 3)
        if len(parts) == 4 and parts[2] in ("T", "t") and int(parts[1]) > 0:
            syms.append((int(parts[0], 16), int(parts[1]), parts[3]))
    return syms


def _sample(syms: list[tuple[int, int, str]], k: int = 4000) -> list[tuple[int, str]]:
    rnd = random.Random(7)
    picks = []
    for start, size, name in rnd.sample(syms, min(k, len(syms))):
        picks.append((start + rnd.randrange(size), name))
    return picks


def _norm(name: str) -> str:
    # The linker writes .symtab names with "." where the runtime's pclntab
    # has "·" (local types, e.g. ``writerOnly·1``), and mangles ABI0 asm
    # functions as "x.abi0".
    name = name.replace("\u00b7", ".")
    return name[:-5] if name.endswith(".abi0") else name


@pytest.mark.slow
def test_stripped_pclntab_names_equal_go_tool_nm(bins, go_tool) -> None:
    """Thousands of addresses: the stripped binary (pclntab only) names the
    same function as ``go tool nm`` on the unstripped build, and the
    unstripped build's .symtab path agrees too."""
    syms = _nm(go_tool, bins["full"])
    assert len(syms) > 2000
    full, stripped = open_binary(str(bins["full"])), open_binary(str(bins["stripped"]))
    assert full.has_symtab and not stripped.has_symtab
    assert stripped.pclntab is not None and stripped.is_go
    mismatches = []
    for addr, name in _sample(syms):
        want = _norm(name)
        got_strip = _norm(stripped.func_name(addr) or "")
        got_sym = full.symtab_lookup(addr)
        got_pcln = full.pclntab_lookup(addr)
        if not (got_strip == want and got_sym and _norm(got_sym[0]) == want and got_pcln
                and _norm(got_pcln[0]) == want):
            mismatches.append((hex(addr), want, got_strip, got_sym, got_pcln))
    assert not mismatches[:10], f"{len(mismatches)} mismatches, first: {mismatches[:10]}"


@pytest.mark.slow
def test_file_line_matches_go_tool_addr2line(bins, go_tool) -> None:
    syms = [s for s in _nm(go_tool, bins["full"]) if not s[2].endswith(".abi0")]
    picks = _sample(syms, 300)
    stdin = "".join(f"{a:#x}\n" for a, _ in picks)
    out = subprocess.run([go_tool, "tool", "addr2line", str(bins["stripped"])], input=stdin,
                         capture_output=True, text=True, check=True).stdout.splitlines()
    b = open_binary(str(bins["stripped"]))
    bad = []
    for i, (addr, _name) in enumerate(picks):
        func, pos = out[2 * i], out[2 * i + 1]
        fr = b.frames(addr)
        # addr2line names the physical function and the innermost position.
        got = (fr[-1].func, f"{fr[0].file}:{fr[0].line}")
        if got != (func, pos):
            bad.append((hex(addr), got, (func, pos)))
    assert not bad[:5], f"{len(bad)} of {len(picks)} differ: {bad[:5]}"


def test_inlined_frames_expanded_in_stripped_binaries(bins) -> None:
    """main.mix is inlined into main.burnCPU: the pclntab inline tree gives
    both frames, innermost first, in every build variant."""
    for variant, path in bins.items():
        b = open_binary(str(path))
        start, end = b.find_function("main.burnCPU")
        seen = {tuple(f.func for f in b.frames(a)) for a in range(start, end)}
        assert ("main.mix", "main.burnCPU") in seen, (variant, seen)
        assert ("main.burnCPU",) in seen, (variant, seen)


def test_go_version_from_buildinfo(bins, go_tool) -> None:
    want = subprocess.run([go_tool, "env", "GOVERSION"], capture_output=True, text=True,
                          check=True).stdout.strip()
    for path in bins.values():
        assert open_binary(str(path)).go_version == want


def test_non_go_elf_is_reported_as_not_go() -> None:
    b = open_binary("/bin/ls")
    assert not b.is_go and b.pclntab is None and b.go_version is None
    with pytest.raises(ElfError):
        ElfFile(str(Path(__file__)))  # a Python file is not ELF


def test_cache_per_dev_inode(bins) -> None:
    p = str(bins["stripped"])
    assert open_binary(p) is open_binary(p)


@pytest.mark.slow
def test_process_symbolizer_handles_pie_load_bias(bins) -> None:
    """The runtime reports where burnCPU lives in the live process; the
    symbolizer, reading /proc/PID/exe and maps, names it, for PIE (random
    base) and non-PIE, stripped or not."""
    for variant, path in bins.items():
        with goprogs.running(path, "-mode", "idle") as p:
            sym = ProcessSymbolizer(p.pid)
            assert sym.labels(p.burn_addr) == ("main.burnCPU",), variant
            # A return address just past the call resolves to the caller.
            assert sym.labels(p.burn_addr + 1, return_address=True) == ("main.burnCPU",)
            # Unmapped address: labelled, never an exception.
            assert sym.labels(0x10) == ("0x10 [unknown]",)
            vdso = next((m for m in open(f"/proc/{p.pid}/maps") if "[vdso]" in m), None)
            if vdso:
                lo = int(vdso.split("-")[0], 16)
                assert sym.labels(lo + 4) == (f"{lo + 4:#x} [[vdso]]",)


def _synthetic_pclntab(text_start: int, names: list[str], sizes: list[int]) -> bytes:
    """A Go 1.20-layout pclntab (magic 0xfffffff1) with ``textStart`` set, as
    Go 1.18-1.25 write it."""
    nfunc = len(names)
    hdr_size = 8 + 8 * 8
    funcnametab = b""
    name_offs = []
    for n in names:
        name_offs.append(len(funcnametab))
        funcnametab += n.encode() + b"\0"
    funcname_off = hdr_size
    pcln_off = funcname_off + len(funcnametab)
    pcln_off += (-pcln_off) % 8
    functab_size = (nfunc + 1) * 8
    funcs = b""
    func_offs = []
    entry = 0
    entries = []
    for i in range(nfunc):
        func_offs.append(functab_size + len(funcs))
        entries.append(entry)
        funcs += struct.pack("<IiiIIIIIIiBBBB", entry, name_offs[i], 0, 0, 0, 0, 0, 0, 0, 0,
                             0, 0, 0, 0)
        entry += sizes[i]
    functab = b"".join(struct.pack("<II", e, o) for e, o in zip(entries, func_offs, strict=True))
    functab += struct.pack("<II", entry, 0)
    header = struct.pack("<IBBBBQQQQQQQQ", 0xFFFFFFF1, 0, 0, 1, 8, nfunc, 0, text_start,
                         funcname_off, pcln_off, pcln_off, pcln_off, pcln_off)
    body = header + funcnametab
    body += b"\0" * (pcln_off - len(body))
    return body + functab + funcs


def test_synthetic_header_with_text_start() -> None:
    """Go 1.18-1.25 record textStart in the header (not downloadable here):
    lookups are relative to it; Go 1.26+ write 0 and need the .text address."""
    buf = _synthetic_pclntab(0x400000, ["main.a", "main.b", "runtime.c"], [0x10, 0x20, 0x8])
    t = Pclntab(buf)
    assert t.text_start == 0x400000
    assert [t.name(a) for a in (0x400000, 0x40000F, 0x400010, 0x40002F, 0x400030, 0x400037)] == [
        "main.a", "main.a", "main.b", "main.b", "runtime.c", "runtime.c"]
    assert t.name(0x3FFFFF) is None and t.name(0x400038) is None
    zero = _synthetic_pclntab(0, ["main.a"], [0x10])
    with pytest.raises(PclntabError):
        Pclntab(zero)
    assert Pclntab(zero, text_start=0x401000).name(0x401004) == "main.a"
    with pytest.raises(PclntabError):
        Pclntab(b"\xfb\xff\xff\xff" + b"\0" * 80)  # Go 1.2 table: reported, not parsed


@pytest.mark.slow
def test_go_1_27(go_tool: str) -> None:
    """Go 1.27.3 (the one other toolchain this project may fetch): stripped
    names equal nm's and inlining still expands (its moduledata grew)."""
    try:
        path = goprogs.build(go_tool, "stripped", env={"GOTOOLCHAIN": "go1.27.3"})
        full = goprogs.build(go_tool, "full", env={"GOTOOLCHAIN": "go1.27.3"})
    except subprocess.SubprocessError as e:
        pytest.skip(f"go1.27.3 toolchain not available: {e}")
    b = open_binary(str(path))
    assert b.go_version == "go1.27.3"
    syms = _nm(go_tool, full)
    bad = [(hex(a), n, b.func_name(a)) for a, n in _sample(syms, 1000)
           if _norm(b.func_name(a) or "") != _norm(n)]
    assert not bad[:5], bad[:5]
    start, end = b.find_function("main.burnCPU")
    assert any(len(b.frames(a)) == 2 for a in range(start, end))


def test_corrupt_binaries_raise_clear_errors(tmp_path: Path) -> None:
    p = tmp_path / "trunc"
    p.write_bytes(Path("/bin/ls").read_bytes()[:4096])  # section headers cut off
    with pytest.raises(ElfError, match="outside the file"):
        Binary(ElfFile(str(p)))
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(ElfError):
        open_binary(str(tmp_path / "empty"))


def test_symbols_package_is_python39_syntax() -> None:
    mine = [*(ROOT / "bpf" / "symbols").glob("*.py"), ROOT / "bpf" / "bcc_env.py",
            *(ROOT / "bpf" / "collectors" / f"{n}.py"
              for n in ("cpu_stacks", "futex", "goroutines_uprobe", "gc"))]
    for f in mine:
        ast.parse(f.read_text(), filename=str(f), feature_version=(3, 9))


@pytest.mark.slow
def test_ret_finder_agrees_with_objdump(bins) -> None:
    """The x86-64 length decoder finds the same instruction boundaries as
    objdump in every compiled function of the binary, and newproc1's RETs."""
    from bpf.symbols.x86ret import DecodeError, boundaries, ret_addresses, ret_addresses_objdump

    if not __import__("shutil").which("objdump"):
        pytest.skip("objdump (binutils) not installed: nothing to compare with")
    path = str(bins["full"])
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", path], capture_output=True,
                         text=True, check=True).stdout
    import re

    starts = {int(m.group(1), 16) for m in re.finditer(r"^\s*([0-9a-f]+):\t\S", out, re.M)}
    b = open_binary(path)
    text = b.elf.sections[".text"]
    checked, bad = 0, []
    for start, size, name in b._syms:
        if not size or not text.addr <= start < text.addr + text.size:
            continue
        try:
            got = boundaries(b.elf.read_vaddr(start, size), start)
        except DecodeError:
            got = None
        checked += 1
        if got is None or not set(got) <= starts:
            bad.append(name)
    # crypto/internal/boring/sig.StandardCrypto is a marker: data bytes in text.
    assert checked > 5000 and set(bad) <= {"crypto/internal/boring/sig.StandardCrypto"}, bad[:10]
    s, e = b.find_function("runtime.newproc1")
    rets = ret_addresses(b.elf.read_vaddr(s, e - s), s)
    assert rets and rets == ret_addresses_objdump(path, s, e)


def test_symbolizes_a_deleted_binary_and_a_chrooted_process(bins, root, tmp_path) -> None:
    """Paths in /proc/PID/maps lie for containers (chroot/pivot_root show
    paths of another root) and for deleted binaries ("(deleted)"): the
    symbolizer opens /proc/PID/exe and still names the function."""
    import shutil

    exe = tmp_path / "rootfs" / "goprog"
    exe.parent.mkdir()
    shutil.copy(bins["stripped"], exe)
    with goprogs.running(exe, "-mode", "idle") as p:
        exe.unlink()
        assert "(deleted)" in Path(f"/proc/{p.pid}/maps").read_text()
        assert ProcessSymbolizer(p.pid).labels(p.burn_addr) == ("main.burnCPU",)
    shutil.copy(bins["stripped"], exe)
    chroot = shutil.which("chroot")
    if chroot is None:
        pytest.skip("no chroot binary")
    proc = subprocess.Popen([chroot, str(exe.parent), "/goprog", "-mode", "idle"],
                            stdout=subprocess.PIPE, text=True)
    try:
        proc.stdout.readline()
        addr = int(proc.stdout.readline(), 16)
        assert ProcessSymbolizer(proc.pid).labels(addr) == ("main.burnCPU",)
    finally:
        proc.kill()
        proc.wait()


def _build_external(go: str, variant: str) -> Path:
    """goprog linked by the external linker (cgo on), cached like goprogs.build."""
    import hashlib
    import os
    import shutil

    from conftest import need

    need(shutil.which("gcc") is not None, "needs gcc for an externally linked (cgo) build")
    flags = {"ext-full": "-linkmode=external", "ext-stripped": "-linkmode=external -s -w"}[variant]
    src = goprogs.SRC / "main.go"
    h = hashlib.sha256(src.read_bytes() + flags.encode()).hexdigest()[:12]
    out = goprogs.cache_dir() / f"goprog-{variant}-{h}"
    if not out.exists():
        tmp = out.with_suffix(".tmp")
        env = dict(os.environ, CGO_ENABLED="1", GOFLAGS="-mod=mod")
        subprocess.run([go, "build", "-trimpath", "-o", str(tmp), f"-ldflags={flags}", "."],
                       cwd=goprogs.SRC, env=env, check=True, capture_output=True, timeout=600)
        tmp.rename(out)
    return out


@pytest.mark.slow
def test_externally_linked_go_1_26_binary(go_tool) -> None:
    """An external (cgo) link puts C start-up code at the start of .text, so
    runtime.text is past it; Go 1.26+ no longer write it into the pclntab
    header. The stripped build takes it from moduledata: 4000 addresses name
    what ``go tool nm`` names on the unstripped build, inlining expands, and
    the runtime's own burnCPU address (reflect) in a live process resolves."""
    full, stripped = _build_external(go_tool, "ext-full"), _build_external(go_tool, "ext-stripped")
    b = open_binary(str(stripped))
    assert not b.has_symtab and b.pclntab is not None and b.pclntab.header_text_start == 0
    assert b.pclntab.text_start != b.elf.sections[".text"].addr  # the case that matters
    t = b.pclntab
    # C functions (crt, cgo's C side) are in .symtab only: gone once stripped.
    syms = [x for x in _nm(go_tool, full) if t.text_start <= x[0] < t.text_end]
    picks = _sample(syms)
    bad = [(hex(a), n, b.func_name(a)) for a, n in picks if _norm(b.func_name(a) or "") != _norm(n)]
    assert len(picks) == 4000 and not bad[:5], f"{len(bad)} of 4000 differ: {bad[:5]}"
    start, end = b.find_function("main.burnCPU")
    assert any([f.func for f in b.frames(a)] == ["main.mix", "main.burnCPU"]
               for a in range(start, end))
    with goprogs.running(stripped, "-mode", "idle") as p:
        assert ProcessSymbolizer(p.pid).labels(p.burn_addr) == ("main.burnCPU",)


def test_stripped_libc_frames_named_from_dynsym(root) -> None:
    """A frame in a stripped libc (syscall wrappers a Go program calls through
    cgo) is named from .dynsym: the address the dynamic linker gives for
    ``getpid`` in this very process is labelled with one of the names
    ``nm -D`` lists at that address, not ``0x... [libc.so.6]``."""
    import ctypes
    import os
    import shutil

    if not shutil.which("nm"):
        pytest.skip("nm (binutils) not installed: nothing to compare with")
    libc = ctypes.CDLL(None)
    addr = ctypes.cast(libc.getpid, ctypes.c_void_p).value
    sym = ProcessSymbolizer(os.getpid())
    b, va, module = sym.link_address(addr)
    assert b is not None and module.startswith("libc"), module
    assert not b.elf.sections.get(".symtab"), "this test wants a stripped libc"
    out = subprocess.run(["nm", "-D", "--defined-only", f"/proc/{os.getpid()}/map_files/"
                          + next(f"{m.start:x}-{m.end:x}" for m in sym._maps
                                 if m.start <= addr < m.end)],
                         capture_output=True, text=True, check=True).stdout
    names = {ln.split()[2].split("@")[0] for ln in out.splitlines()
             if len(ln.split()) == 3 and int(ln.split()[0], 16) == va}
    assert "getpid" in names, names
    (label,) = sym.labels(addr)
    assert label in names, (label, names)
