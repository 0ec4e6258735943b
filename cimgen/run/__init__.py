"""Runs: a compiled program executed on the golden machine and compared with the reference.

Takes a compiled chip and integer inputs; gives logits, cycle counts and the
comparison that ``cimgen verify`` prints.
"""

from .golden import MachineRun, cost_rows, run_golden
from .verify import VerifyReport, compare, expected_logits, verify_golden

__all__ = ["MachineRun", "VerifyReport", "compare", "cost_rows", "expected_logits", "run_golden",
           "verify_golden"]
