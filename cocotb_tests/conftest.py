"""Session hook of the RTL tests: merge the functional coverage of every
simulation this session ran (cimgen.hw.coverage) into build/coverage/
(summary.json, report.md)."""

from __future__ import annotations

import time
from typing import Any

from cimgen.hw import coverage, rtl_sim

_START: dict[str, float] = {}


def pytest_sessionstart(session: Any) -> None:
    _START["t"] = time.time() - 1.0


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    if hasattr(session.config, "workerinput"):
        # An xdist worker: the controller merges once, after every worker ended.
        return
    if not rtl_sim.coverage_enabled() or not rtl_sim.build_root().is_dir():
        return
    t0 = _START.get("t", 0.0)
    files = [f for f in rtl_sim.build_root().rglob(coverage.COVERAGE_FILE)
             if f.stat().st_mtime >= t0]
    if files:
        out = rtl_sim.ROOT / "build" / "coverage"
        merged = coverage.write_report(files, out)
        print(f"\ncimgen: functional coverage of {merged['simulations']} simulation(s): "
              f"{merged['hit']}/{merged['total']} bins hit, {len(merged['holes'])} hole(s); "
              f"{out / 'report.md'}")
