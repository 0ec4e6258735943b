"""Seeded random programs, valid and invalid, on a small odd-sized chip: the RTL
must match the golden machine on every DMEM word, the error code, the fault pc,
the cycle and instruction counters. All programs of a suite run in one
simulator, one after the other (crossbar cells carry over, as on a chip)."""

from __future__ import annotations

import collections

import pytest
from progs import RANDOM_PARAMS, ProgramGen, random_devmap
from scoreboard import check_sim, golden

from cimgen.hw.rtl_sim import RunSpec, Session
from golden_model.isa import Err

pytestmark = pytest.mark.rtl


def _suite(n: int, seed: int) -> list[Session]:
    gen = ProgramGen(RANDOM_PARAMS, seed)
    dev = random_devmap(RANDOM_PARAMS, seed)
    whole = [(0, RANDOM_PARAMS.dmem_words)]
    sessions = []
    for _ in range(n):
        img, entry = gen.image(dev)
        runs = [RunSpec(entry, reads=whole)]
        if gen.rng.random() < 0.3:  # run again: IN/ACC/CODE restart cleared
            runs.append(RunSpec(0, reads=whole))
        sessions.append(Session(img, runs, dmem_zero_to=RANDOM_PARAMS.dmem_words))
    return sessions


def _run(n: int, seed: int) -> None:
    sessions = _suite(n, seed)
    kinds = collections.Counter(r.error for s in golden(sessions) for r in s)
    # The generator must exercise both outcomes.
    assert kinds[Err.NONE] and sum(v for k, v in kinds.items() if k != Err.NONE), kinds
    _, sb = check_sim(sessions, name=f"random-{n}-{seed}")
    assert sb.runs >= n


def test_random_programs() -> None:
    _run(24, seed=1)


@pytest.mark.slow
def test_random_programs_300() -> None:
    _run(300, seed=1000)
