"""The symbolizer on Go 1.19 binaries: the pclntab layout Go 1.18-1.25 write,
with ``textStart`` in the header (Go 1.26+ write 0) and, for 1.18-1.19, magic
0xfffffff0 and the 20-byte inline-tree entries.

Go 1.19.8 comes from Debian bookworm's own archive (``golang-1.19-go``, which
demo/setup.sh installs), never from a download site. References we did not
write: that toolchain's ``go tool nm``, ``go tool addr2line`` and
``go tool pprof``; the Go runtime's own traceback (SIGQUIT with
GOTRACEBACK=system prints every frame's PC, inlined frames included) of
``fzf``, a Go program Debian built with its Go 1.19 and linked externally.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import need
from ebpf_support import goprogs
from ebpf_support.runner import Drive, assert_nothing_left

from bpf.symbols import ProcessSymbolizer, open_binary
from bpf.symbols.gopclntab import MAGIC_118

GO119 = "/usr/lib/go-1.19/bin/go"
FZF = "/usr/bin/fzf"


@pytest.fixture(scope="module")
def go119() -> str:
    need(os.path.exists(GO119), "needs Debian's golang-1.19-go (demo/setup.sh installs it)")
    return GO119


def build_go119(go: str, variant: str) -> Path:
    """goprog (the eBPF tests' target) built by Go 1.19, cached on source and flags.

    The source is copied beside a go.mod that says ``go 1.19``: goprog's own
    says 1.22, which Go 1.19's compiler refuses as a -lang value.
    """
    src = goprogs.SRC / "main.go"
    h = hashlib.sha256(src.read_bytes() + variant.encode() + b"go119").hexdigest()[:12]
    out = goprogs.cache_dir() / f"goprog119-{variant}-{h}"
    if out.exists():
        return out
    work = goprogs.cache_dir() / f"goprog119-src-{h}"
    work.mkdir(exist_ok=True)
    shutil.copy(src, work / "main.go")
    (work / "go.mod").write_text("module goprog\n\ngo 1.19\n")
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=mod", GOTOOLCHAIN="local")
    tmp = out.with_suffix(".tmp")
    subprocess.run([go, "build", "-trimpath", "-o", str(tmp), *goprogs.VARIANTS[variant], "."],
                   cwd=work, env=env, check=True, capture_output=True, timeout=600)
    tmp.rename(out)
    return out


@pytest.fixture(scope="module")
def bins119(go119: str) -> dict[str, Path]:
    return {v: build_go119(go119, v) for v in goprogs.VARIANTS}


def _nm(go: str, binary: Path) -> list[tuple[int, int, str]]:
    out = subprocess.run([go, "tool", "nm", "-size", "-sort", "address", str(binary)],
                         capture_output=True, text=True, check=True).stdout
    syms = []
    for line in out.splitlines():
        parts = line.split(None, 3)
        if len(parts) == 4 and parts[2] in ("T", "t") and int(parts[1]) > 0:
            syms.append((int(parts[0], 16), int(parts[1]), parts[3]))
    return syms


def _sample(syms: list[tuple[int, int, str]], k: int = 4000) -> list[tuple[int, str]]:
    rnd = random.Random(119)
    return [(start + rnd.randrange(size), name)
            for start, size, name in rnd.choices(syms, k=k)]


def _norm(name: str) -> str:
    name = name.replace("\u00b7", ".")
    return name[:-5] if name.endswith(".abi0") else name


def _runtime_name(name: str) -> str:
    """The name as the runtime (pclntab) spells it: Go 1.18-1.20's linker
    writes everything between the first "[" and the last "]" as "[...]"
    (cmd/link/internal/ld/pcln.go, nameParts); .symtab keeps it whole."""
    i, j = name.find("["), name.rfind("]")
    return name if i < 0 or j <= i else name[:i] + "[...]" + name[j + 1:]


def _addr2line(go: str, binary: Path | str, addrs: list[int]) -> list[tuple[str, str]]:
    stdin = "".join(f"{a:#x}\n" for a in addrs)
    out = subprocess.run([go, "tool", "addr2line", str(binary)], input=stdin,
                         capture_output=True, text=True, check=True).stdout.splitlines()
    return [(out[2 * i], out[2 * i + 1]) for i in range(len(addrs))]


def test_binaries_are_go_1_19_with_text_start_in_the_header(bins119, go119) -> None:
    want = subprocess.run([go119, "env", "GOVERSION"], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert want.startswith("go1.19")
    for variant, path in bins119.items():
        b = open_binary(str(path))
        assert b.go_version == want, variant
        assert b.pclntab is not None and b.pclntab.magic == MAGIC_118, (variant, b.pclntab_error)
        assert b.pclntab.header_text_start != 0, variant  # the pre-1.26 layout
        assert b.pclntab.fixed_func_size == 40


@pytest.mark.slow
@pytest.mark.parametrize("pair", [("full", "stripped"), ("pie", "pie-stripped")])
def test_4000_addresses_name_what_go_1_19_nm_names(bins119, go119, pair) -> None:
    """4000 addresses inside functions ``go tool nm`` (Go 1.19's) lists: the
    stripped build (pclntab only), the unstripped build's .symtab and its
    pclntab all give nm's name. Non-PIE and PIE."""
    full_p, stripped_p = pair
    syms = _nm(go119, bins119[full_p])
    assert len(syms) > 2000
    full, stripped = open_binary(str(bins119[full_p])), open_binary(str(bins119[stripped_p]))
    assert full.has_symtab and not stripped.has_symtab
    picks = _sample(syms)
    bad = []
    for addr, name in picks:
        want = _norm(name)
        got = (_norm(stripped.func_name(addr) or ""),
               _norm((full.symtab_lookup(addr) or ("",))[0]),
               _norm((full.pclntab_lookup(addr) or ("",))[0]))
        if got != (_runtime_name(want), want, _runtime_name(want)):
            bad.append((hex(addr), want, got))
    assert len(picks) == 4000
    assert not bad[:10], f"{len(bad)} of 4000 differ: {bad[:10]}"


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(goprogs.VARIANTS))
def test_4000_addresses_file_line_equal_go_addr2line(bins119, go119, go_tool, variant) -> None:
    """File:line of the innermost (inlined) frame and the physical function
    equal what Go's addr2line prints. Go 1.19's addr2line reads only a
    section named .gopclntab, and a PIE's is .data.rel.ro.gopclntab (it
    prints "?"), so the PIE build is checked against the newer Go's."""
    full = "pie" if variant.startswith("pie") else "full"
    syms = [s for s in _nm(go119, bins119[full]) if not s[2].endswith(".abi0")]
    picks = _sample(syms)
    ref = go_tool if variant.startswith("pie") else go119
    theirs = _addr2line(ref, bins119[variant], [a for a, _ in picks])
    b = open_binary(str(bins119[variant]))
    bad = []
    for (addr, _name), (func, pos) in zip(picks, theirs, strict=True):
        fr = b.frames(addr)
        got = (fr[-1].func, f"{fr[0].file}:{fr[0].line}") if fr else None
        if got != (func, pos):
            bad.append((hex(addr), got, (func, pos)))
    assert not bad[:5], f"{len(bad)} of {len(picks)} differ: {bad[:5]}"


def test_inlined_frames_from_the_go_1_19_inline_tree(bins119) -> None:
    """main.mix is inlined into main.burnCPU: with the 1.18-1.19 inline tree
    (20-byte entries, go.func.* in .rodata) both frames appear, the inner at
    mix's body lines, the outer at the call site, in every build variant."""
    src = (goprogs.SRC / "main.go").read_text().splitlines()
    call_line = next(i + 1 for i, s in enumerate(src) if "h = mix(h, uint64(i))" in s)
    mix_first = next(i + 1 for i, s in enumerate(src) if s.startswith("func mix("))
    for variant, path in bins119.items():
        b = open_binary(str(path))
        start, end = b.find_function("main.burnCPU")
        inl = [b.frames(a) for a in range(start, end)]
        pairs = [f for f in inl if [x.func for x in f] == ["main.mix", "main.burnCPU"]]
        assert pairs, (variant, {tuple(x.func for x in f) for f in inl})
        for inner, outer in pairs:
            assert inner.inlined and not outer.inlined
            assert mix_first < inner.line <= mix_first + 4, (variant, inner)
            assert outer.line == call_line, (variant, outer)


@pytest.mark.slow
def test_live_go_1_19_process_pie_load_bias(bins119) -> None:
    """The runtime's own address of burnCPU (reflect) in a live process is
    named by the symbolizer for PIE and non-PIE, stripped or not."""
    for variant, path in bins119.items():
        with goprogs.running(path, "-mode", "idle") as p:
            sym = ProcessSymbolizer(p.pid)
            assert sym.labels(p.burn_addr) == ("main.burnCPU",), variant
            assert sym.labels(p.burn_addr + 1, return_address=True) == ("main.burnCPU",)


# --- a Go binary Debian built: fzf ---------------------------------------------------------


@pytest.fixture(scope="module")
def fzf() -> str:
    need(os.path.exists(FZF), "needs Debian's fzf (a Go 1.19 program; demo/setup.sh installs it)")
    return FZF


def _runtime_traceback(fzf_path: str) -> str:
    """Every goroutine's frames, with PCs, as the Go runtime prints them."""
    feeder = subprocess.Popen(["sleep", "60"], stdout=subprocess.PIPE)
    proc = subprocess.Popen([fzf_path, "--filter", "x"], stdin=feeder.stdout,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, GOTRACEBACK="system"))
    try:
        time.sleep(0.5)  # blocked reading stdin by now
        proc.send_signal(signal.SIGQUIT)
        _out, err = proc.communicate(timeout=30)
    finally:
        for p in (proc, feeder):
            if p.poll() is None:
                p.kill()
            p.wait()
        if feeder.stdout:
            feeder.stdout.close()
    return err


def _traceback_groups(text: str) -> list[tuple[int, list[tuple[str, str]], bool]]:
    """``(pc, [(func, file:line)] innermost first, top of its goroutine)`` per
    physical frame."""
    groups = []
    pending: list[tuple[str, str]] = []
    lines = text.splitlines()
    first = True
    for i in range(len(lines) - 1):
        head, pos = lines[i], lines[i + 1]
        if head.startswith("goroutine "):
            first = True
        if not pos.startswith("\t") or head.startswith("\t") or "(" not in head:
            continue
        func = head[:head.rindex("(")] if head.endswith(")") else head
        if head.startswith("created by "):
            pending = []
            continue
        where = pos.strip().split(" ")[0]
        m = re.search(r" pc=(0x[0-9a-f]+)", pos)
        pending.append((func, where))
        if m:
            groups.append((int(m.group(1), 16), pending, first))
            pending = []
            first = False
    return groups


@pytest.mark.slow
def test_debian_fzf_frames_equal_the_go_runtime_traceback(fzf) -> None:
    """Debian's fzf (Go 1.19, stripped, linked by the external linker, so
    runtime.text is not .text's start): for every PC in the runtime's own
    traceback, the symbolizer gives the same functions, inlined ones
    included, and file:line."""
    b = open_binary(fzf)
    assert b.go_version and b.go_version.startswith("go1.19") and not b.has_symtab
    assert b.pclntab is not None and b.pclntab.text_start != b.elf.sections[".text"].addr
    groups = _traceback_groups(_runtime_traceback(fzf))
    assert len(groups) >= 20, groups
    assert any(len(fr) > 1 for _pc, fr, _top in groups), "expected inlined frames in the traceback"
    bad = []
    for pc, want, top in groups:
        # Tracebacks print return addresses and look up pc-1, as we do; the
        # top frame of a thread stopped by the signal is looked up at pc.
        got = [(f.func, f"{f.file}:{f.line}") for f in b.frames(pc - 1)]
        if got != want and top:
            got = [(f.func, f"{f.file}:{f.line}") for f in b.frames(pc)]
        if got != want:
            bad.append((hex(pc), got, want))
    assert not bad, f"{len(bad)} of {len(groups)} frames differ: {bad[:5]}"


@pytest.mark.slow
def test_debian_fzf_4000_addresses_equal_go_addr2line(fzf, go119) -> None:
    """4000 random addresses in fzf's Go text, against Go 1.19's addr2line.

    addr2line (debug/gosym) takes textStart from the .text section, not from
    the header, so for this externally linked binary it reads every address
    0x100 bytes off (the traceback test shows the header is what the runtime
    uses). It is queried at ``addr - (textStart - .text)`` to compare tables.
    """
    b = open_binary(fzf)
    t = b.pclntab
    assert t is not None
    shift = t.text_start - b.elf.sections[".text"].addr
    rnd = random.Random(4000)
    addrs = [rnd.randrange(t.text_start, t.text_end) for _ in range(4000)]
    theirs = _addr2line(go119, fzf, [a - shift for a in addrs])
    bad = []
    for addr, (func, pos) in zip(addrs, theirs, strict=True):
        fr = b.frames(addr)
        got = (fr[-1].func, f"{fr[0].file}:{fr[0].line}") if fr else ("?", "?:0")
        if got != (func, pos):
            bad.append((hex(addr), got, (func, pos)))
    assert not bad[:5], f"{len(bad)} of 4000 differ: {bad[:5]}"
    names = {b.func_name(a) for a in addrs}
    assert len(names) > 1000 and None not in names


# --- collectors on a Go 1.19 process (bcc) ---------------------------------------------------


def _pprof_top(go: str, profile: Path) -> list[tuple[str, float]]:
    out = subprocess.run([go, "tool", "pprof", "-top", "-nodecount=10", str(profile)],
                         capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        m = re.match(r"\s*[\d.]+\w*\s+([\d.]+)%\s+[\d.]+%\s+[\d.]+\w*\s+[\d.]+%\s+(\S+)", line)
        if m:
            rows.append((m.group(2), float(m.group(1))))
    return rows


@pytest.mark.ebpf
@pytest.mark.slow
@pytest.mark.parametrize("variant", ["stripped", "pie-stripped"])
def test_go_1_19_hottest_function_matches_go_1_19_pprof(bcc, bins119, go119, tmp_path,
                                                        variant) -> None:
    """cpu_stacks on a stripped Go 1.19 process: the leaf with most samples is
    the top flat function of the app's own CPU profile (Go 1.19's pprof)."""
    with goprogs.running(bins119[variant], "-mode", "cpu") as p:
        d = Drive(bcc, p.pid, ["cpu_stacks"], seconds=7, opts={"hz": 99})
        d.wait_for("started")
        prof = tmp_path / "cpu.pb.gz"
        prof.write_bytes(p.get("/debug/pprof/profile?seconds=5", timeout=60))
        events = d.finish()
    frames = d.frames("cpu_stacks")
    assert frames
    leaves: dict[str, int] = {}
    for f in frames:
        for count, ids in f["stacks"]:
            leaves[f["funcs"][ids[-1]]] = leaves.get(f["funcs"][ids[-1]], 0) + count
    ours = max(leaves, key=leaves.get)
    top = _pprof_top(go119, prof)
    assert top, "pprof printed no rows"
    allowed = {top[0][0]} | ({top[1][0]} if len(top) > 1 and top[0][1] - top[1][1] < 10 else set())
    assert ours in allowed and ours in ("main.burnCPU", "main.mix"), (ours, leaves, top)
    labels = {lbl for f in frames for lbl in f["funcs"]}
    assert "main.mix" in labels, "the inlined helper must be expanded from the 1.19 inline tree"
    assert not any(lbl.startswith("0x") and "goprog" in lbl for lbl in labels), labels
    assert_nothing_left(events)


@pytest.mark.ebpf
@pytest.mark.slow
def test_go_1_19_uprobe_goroutines_and_gc(bcc, bins119) -> None:
    """goroutines_uprobe (RETs of runtime.newproc1 found in Go 1.19 code) and
    the gc uprobes (runtime.gcStart) on a stripped Go 1.19 process: the count
    equals the app's own (pprof index) within 1; 10 forced GCs are 10 cycles."""
    with goprogs.running(bins119["stripped"], "-mode", "goroutines", "-n", "50") as p:
        # The first GC starts one gcBgMarkWorker goroutine per P: system
        # goroutines that newproc1 counts and runtime.NumGoroutine does not.
        # Start them before attaching so the comparison is like for like.
        p.get("/gc?n=1")
        port = p.pprof.rsplit(":", 1)[1]
        d = Drive(bcc, p.pid, ["goroutines_uprobe", "gc"], seconds=6,
                  opts={"pprof_port": port, "resync_s": 100000})
        d.wait_for("started")
        d.wait_for("frame")
        p.get("/set?n=150")
        p.get("/gc?n=10")
        time.sleep(1.0)
        want = p.num_goroutine()
        n_frames = len(d.frames("goroutines"))
        d.wait_for("frame", count=n_frames + 2, timeout=30)
        got = d.frames("goroutines")[-1]
        events = d.finish()
    assert got["source"] == "uprobe", got
    assert abs(got["count"] - want) <= 1, (got, want)
    assert sum(f["cycles"] for f in d.frames("gc")) == 10, d.frames("gc")
    assert_nothing_left(events)


def test_go_older_than_1_18_is_named_as_unsupported(bins119, tmp_path) -> None:
    """The same stripped binary with its pclntab magic set to Go 1.16's: not
    parsed, and every frame of it says "unsupported Go version" instead of a
    bare address."""
    from bpf.symbols.binary import Binary
    from bpf.symbols.elf import ElfFile
    from bpf.symbols.gopclntab import Pclntab, UnsupportedGoVersion

    data = bytearray(bins119["stripped"].read_bytes())
    sec = open_binary(str(bins119["stripped"])).elf.sections[".gopclntab"]
    assert data[sec.offset:sec.offset + 4] == b"\xf0\xff\xff\xff"
    data[sec.offset:sec.offset + 4] = b"\xfa\xff\xff\xff"
    old = tmp_path / "goprog116"
    old.write_bytes(bytes(data))
    b = Binary(ElfFile(str(old)), "goprog116")
    assert b.pclntab is None and b.is_go
    assert "unsupported Go version" in b.unsupported_go and "Go 1.16-1.17" in b.unsupported_go
    from bpf.target import go_symbols_note

    assert go_symbols_note(str(old)) == b.unsupported_go  # the hello frame says it too
    assert go_symbols_note(str(bins119["stripped"])) is None
    with pytest.raises(UnsupportedGoVersion, match="Go 1.2-1.15"):
        Pclntab(b"\xfb\xff\xff\xff" + b"\0" * 80)
    with goprogs.running(bins119["stripped"], "-mode", "idle") as p:
        sym = ProcessSymbolizer(p.pid)
        sym.main, sym._bins, sym._labels = b, {}, {}  # as if the process ran the old build
        (label,) = sym.labels(p.burn_addr)
    assert label == f"{p.burn_addr:#x} [{bins119['stripped'].name}: unsupported Go version]"


def test_go_1_19_newproc1_rets_agree_with_objdump(bins119) -> None:
    """The RET sites goroutines_uprobe probes, found by the length decoder in
    Go 1.19's runtime.newproc1, are objdump's; goexit1 and gcStart exist."""
    from bpf.symbols.x86ret import ret_addresses, ret_addresses_objdump

    need(shutil.which("objdump") is not None, "needs objdump (binutils)")
    for variant in ("full", "pie"):
        path = str(bins119[variant])
        b = open_binary(path)
        s, e = b.find_function("runtime.newproc1")
        rets = ret_addresses(b.elf.read_vaddr(s, e - s), s)
        assert rets and rets == ret_addresses_objdump(path, s, e), variant
        assert b.find_function("runtime.goexit1") and b.find_function("runtime.gcStart")
