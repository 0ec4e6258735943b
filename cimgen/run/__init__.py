"""Runs: a compiled program executed on the golden machine and compared with the reference.

Takes a compiled chip and integer inputs; gives logits, cycle counts and the
comparison that ``cimgen verify`` prints. Names resolve on first use (PEP 562):
``run_golden`` alone does not import the compiler or the non-ideal reference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cimgen._lazy import lazy_names

if TYPE_CHECKING:
    from .golden import MachineRun, cost_rows, run_golden
    from .verify import VerifyReport, compare, expected_logits, verify_golden

_WHERE = {
    "MachineRun": "golden", "cost_rows": "golden", "run_golden": "golden",
    "VerifyReport": "verify", "compare": "verify", "expected_logits": "verify",
    "verify_golden": "verify",
}

__all__ = ["MachineRun", "VerifyReport", "compare", "cost_rows", "expected_logits", "run_golden",
           "verify_golden"]


__getattr__, __dir__ = lazy_names(__name__, _WHERE, globals())
