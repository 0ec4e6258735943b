"""System-level RTL tests: reset in the middle of runs, AXI backpressure, the
register map, Verilator lint, and the run_rtl API."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest
from cases import ROOT, compiled, images, reference, session_and_params
from progs import RANDOM_PARAMS
from scoreboard import check_sim, golden

from cimgen.hw import rtl_sim
from cimgen.hw.rtl_sim import RtlParams, RunSpec, Session
from golden_model.isa import Err

pytestmark = pytest.mark.rtl

RESET_VALUES = {"STATUS": 0, "ERROR": 0, "FAULT_PC": 0xFFFFFFFF, "CYCLES_LO": 0,
                "CYCLES_HI": 0, "INSTRET": 0, "IRQ_STATUS": 0, "IRQ_ENABLE": 0, "PROG_LEN": 0,
                "WMEM_LEN": 0, "ADC_LEN": 0, "ENTRY": 0, "READS": 0, "PROGS": 0}


def test_reset_in_the_middle_of_runs() -> None:
    """rst_ni during the setup (crossbar programming) and during an inference:
    registers return to their reset values, memories and cells keep their
    contents, and the rerun matches the golden machine's single run."""
    comp = compiled("bnn_mlp", "TNN_II")
    q = images("bnn_mlp", 2)
    sess, params = session_and_params(comp, q, reset_after=37)
    sess.runs[0].reset_after = 5003  # inside the setup's PROG sequence
    res, _ = check_sim([sess], name="reset", params=params)
    for run in (res.sessions[0][0], res.sessions[0][1]):
        chk = dict(run.reset_checked or {})
        assert chk.pop("busy_before_reset") == 1
        assert chk == RESET_VALUES


def test_axi_backpressure() -> None:
    """Random pauses on all five AXI4-Lite channels during load, start and read-back."""
    comp = compiled("bnn_mlp", "BNN_V")
    q = images("bnn_mlp", 2, start=5)
    sess, params = session_and_params(comp, q)
    _, sb = check_sim([sess], name="backpressure", params=params, backpressure=True, seed=3)
    assert sb.runs == 3


def test_register_map() -> None:
    """Reset values, read-only fields, RW with byte strobes, W1C, error responses,
    busy protection (cocotb test ``regmap``)."""
    comp = compiled("bnn_mlp", "BNN_I")
    _, params = session_and_params(comp, images("bnn_mlp", 1))
    rtl_sim.run_testcase("regmap", params, "regmap")


def test_run_rtl_api() -> None:
    comp = compiled("tnn_mlp", "TNN_III")
    q = images("tnn_mlp", 2, start=40)
    outputs, cycles, instructions, error, fault_pc, stats = rtl_sim.run_rtl(comp, q)
    np.testing.assert_array_equal(outputs, reference("tnn_mlp", q))
    exp = golden([session_and_params(comp, q)[0]])[0]
    assert list(cycles) == [r.cycles for r in exp[1:]]
    assert list(instructions) == [r.instructions for r in exp[1:]]
    assert error == [Err.NONE, Err.NONE] and list(fault_pc) == [-1, -1]
    assert stats["setup_cycles"] == exp[0].cycles and stats["sim_cycles"] > 0


def test_fault_stops_and_reports() -> None:
    """A program that faults after a few instructions: error, fault pc, 1-cycle fault."""
    img = compiled("bnn_mlp", "BNN_I").image
    from golden_model import isa

    words = [isa.encode(isa.make("NOP")), isa.encode(isa.make("ACLR")),
             isa.encode(isa.make("STA", dst=img.params.dmem_words - 2, lanes=3))]
    bad = Session(type(img)(img.params, tuple(words), img.wmem, img.dmem_init, img.adc_thr,
                            img.adc_recon, img.devmap), [RunSpec(0, reads=[(0, 4)])])
    params = rtl_sim.rtl_params(img, 1 << 20)
    res, _ = check_sim([bad], name="fault", params=params)
    run = res.sessions[0][0]
    assert (run.error, run.fault_pc, run.cycles, run.instructions) == (Err.DMEM_RANGE, 2, 3, 2)


def _lint(params: dict[str, int]) -> subprocess.CompletedProcess[str]:
    rtl_sim.setup_verilator()
    cmd = ["verilator", "--lint-only", "-Wall", "--top-module", rtl_sim.TOPLEVEL,
           *[f"-G{k}={v}" for k, v in params.items()],
           *[str(rtl_sim.RTL_DIR / s) for s in rtl_sim.RTL_SOURCES]]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=os.environ)


@pytest.mark.parametrize("params", [
    {},
    RtlParams.from_machine(RANDOM_PARAMS, 1024).__dict__,
    {"ROWS": 64, "COLS": 40, "VEC_WIDTH": 1, "ADCS": 40, "CUR_W": 32},
], ids=["default", "random-chip", "odd"])
def test_verilator_lint_clean(params: dict[str, int]) -> None:
    r = _lint(params)
    assert r.returncode == 0 and "%Warning" not in r.stderr, r.stderr[-4000:]
