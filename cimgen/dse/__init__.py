"""Design-space exploration: accuracy of a model across crossbar parameters and mappings.

``load_sweep`` parses and validates a sweep file (spec.py), ``run_sweep``
evaluates every (point, seed) on the golden machine in-process, in a process
pool or on a Dask cluster (engine.py) and writes results.csv, summary.md and
plots (report.py).
"""

from .engine import Progress, SweepResult, evaluate_point, run_machine, run_sweep
from .spec import Context, Sweep, build_context, load_sweep

__all__ = ["Context", "Progress", "Sweep", "SweepResult", "build_context", "evaluate_point",
           "load_sweep", "run_machine", "run_sweep"]
