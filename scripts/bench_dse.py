"""Throughput of the DSE engine (issue 6): images x (point, seed) runs per second.

The digits BNN MLP on the 450-image test split, 6 BNN mappings x 4 LRS sigmas
x 2 seeds (48 runs: compile with that seed's device map + golden machine on
all images), with 1 and 2 worker processes. Only the evaluation loop is
timed (validation, context building and plots are reported separately).

    python scripts/bench_dse.py [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

from cimgen.dse import load_sweep, run_sweep

ROOT = Path(__file__).resolve().parent.parent
SWEEP = """
title = "bench"
model = "{model}"
dataset = "digits"
seeds = [0, 1]
plots = []
[fixed]
hrs_ua = 5.0
lrs_ua = 30.0
[sweep]
mapping = ["BNN_I", "BNN_II", "BNN_III", "BNN_IV", "BNN_V", "BNN_VI"]
sigma_lrs_ua = [0, 4, 8, 12]
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2, help="runs per job count (best kept)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "bench.toml"
        p.write_text(SWEEP.format(model=(ROOT / "examples" / "bnn_mlp.onnx").as_posix()))
        sw = load_sweep(p)
        runs = sw.n_points * len(sw.seeds)
        print(f"load average before: {', '.join(f'{v:.2f}' for v in os.getloadavg())} "
              f"({os.cpu_count()} cores)")
        print("| jobs | runs | images | best loop s | images x runs / s | wall s (total) "
              "| CPU s (all processes) |")
        print("|---|---|---|---|---|---|---|")
        base = None
        for jobs in (1, 2):
            best = None
            for r in range(args.repeat):
                c0 = _cpu()
                t0 = time.perf_counter()
                res = run_sweep(sw, Path(tmp) / f"j{jobs}r{r}", jobs=jobs)
                wall = time.perf_counter() - t0
                cpu = _cpu() - c0
                if best is None or res.seconds < best[0]:
                    best = (res.seconds, res.throughput, wall, cpu)
            assert best is not None
            base = base or best[1]
            print(f"| {jobs} | {runs} | {res.images} | {best[0]:.2f} | {best[1]:.0f} "
                  f"(x{best[1] / base:.2f}) | {best[2]:.2f} | {best[3]:.2f} |")
        print(f"load average after: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")


def _cpu() -> float:
    """User + system CPU seconds of this process and its finished children (workers)."""
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


if __name__ == "__main__":
    main()
