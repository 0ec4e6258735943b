"""RTL tests on the small random-program chip (12x10x3, one Verilator build
shared with test_rtl_random.py): the register map, random programs under AXI
backpressure, directed boundary programs and AXI window bounds; and random
programs on a second small chip (16x8x2, other timing). With
test_rtl_random.py they form the ``fast`` subset of ``cimgen mutate``
(cimgen/hw/mutate.py), so they also serve as its killers."""

from __future__ import annotations

import pytest
from progs import RANDOM_PARAMS, ProgramGen, random_devmap
from scoreboard import check_sim
from test_rtl_random import _suite

from cimgen.hw import rtl_sim
from cimgen.hw.rtl_sim import RtlParams, RunSpec, Session
from golden_model.machine import MachineParams

pytestmark = pytest.mark.rtl

PARAMS = RtlParams.from_machine(RANDOM_PARAMS, 1024)


def test_register_map_small_chip() -> None:
    rtl_sim.run_testcase("regmap", PARAMS, "regmap-small")


def test_random_programs_backpressure() -> None:
    """Random pauses on all five channels while random programs load, run and
    are read back (seed 7)."""
    sessions = _suite(8, seed=7)
    _, sb = check_sim(sessions, name="random-bp-8-7", params=PARAMS, backpressure=True, seed=7)
    assert sb.runs >= 8


def test_boundary_programs() -> None:
    """Every range check at its last legal and first illegal value, direct and
    IB-relative (progs.boundary_cases), against the golden machine; both
    outcomes must occur for the test to mean anything."""
    from progs import boundary_sessions

    from golden_model.isa import Err

    sessions = boundary_sessions(RANDOM_PARAMS, random_devmap(RANDOM_PARAMS, 5))
    from scoreboard import golden

    outcomes = {r.error for s in golden(sessions) for r in s}
    assert Err.NONE in outcomes and {Err.DMEM_RANGE, Err.XBAR_RANGE, Err.VEC_RANGE,
                                     Err.WMEM_RANGE, Err.ADC_RANGE, Err.ILLEGAL} <= outcomes
    _, sb = check_sim(sessions, name="boundary", params=PARAMS)
    assert sb.runs == len(sessions)


def test_window_bounds() -> None:
    """Each AXI window's last word answers OKAY and the first word past it
    (past the memory, a row's chunks or a table's entries) SLVERR (cocotb
    test ``windows``)."""
    rtl_sim.run_testcase("windows", PARAMS, "windows-small")


#: A second small chip where the first one is odd: power-of-two rows, one
#: cycle per ADC group, per read and per row write, two lanes per vector step.
SECOND = MachineParams(rows=16, cols=8, num_xbars=2, dmem_words=64, wmem_words=8,
                       adc_tables=2, vec_width=2, t_read=1, t_adc=1, t_write=1,
                       adcs_per_xbar=3, hrs_units=100)


def test_random_programs_second_chip() -> None:
    gen = ProgramGen(SECOND, 21)
    dev = random_devmap(SECOND, 21)
    sessions = []
    for _ in range(12):
        img, entry = gen.image(dev)
        sessions.append(Session(img, [RunSpec(entry, reads=[(0, SECOND.dmem_words)])],
                                dmem_zero_to=SECOND.dmem_words))
    _, sb = check_sim(sessions, name="random-second-12-21")
    assert sb.runs == 12
