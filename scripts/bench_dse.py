"""Throughput of the DSE engine (issues 6, 16): points per second and images x
(point, seed) runs per second.

The digits BNN MLP on the 450-image test split, 6 BNN mappings x 4 LRS sigmas
x 2 seeds (24 points, 48 runs: compile with that seed's device map + golden
machine on all images), with 1 and 2 worker processes and on a local Dask
cluster of 2 single-threaded worker processes (``--no-dask`` skips it). Only
the evaluation loop is timed (validation, context building and plots are
reported separately).

    python scripts/bench_dse.py [--repeat 2] [--no-dask]
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
    ap.add_argument("--no-dask", action="store_true", help="skip the local Dask cluster")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "bench.toml"
        p.write_text(SWEEP.format(model=(ROOT / "examples" / "bnn_mlp.onnx").as_posix()))
        sw = load_sweep(p)
        runs = sw.n_points * len(sw.seeds)
        print(f"load average before: {', '.join(f'{v:.2f}' for v in os.getloadavg())} "
              f"({os.cpu_count()} cores)")
        print("| executor | points | runs | images | best loop s | points / s | images x runs / s "
              "| wall s (total) | CPU s (all processes) |")
        print("|---|---|---|---|---|---|---|---|---|")
        base = None
        execs: list[tuple[str, dict[str, object]]] = [("--jobs 1", {"jobs": 1}),
                                                      ("--jobs 2", {"jobs": 2})]
        cluster = None
        if not args.no_dask:
            from distributed import LocalCluster

            cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
            execs.append(("Dask LocalCluster, 2 workers", {"dask": cluster.scheduler_address}))
        try:
            for i, (name, kw) in enumerate(execs):
                best = None
                for r in range(args.repeat):
                    c0 = _cpu()
                    t0 = time.perf_counter()
                    res = run_sweep(sw, Path(tmp) / f"{i}-{r}", **kw)  # type: ignore[arg-type]
                    wall = time.perf_counter() - t0
                    cpu = _cpu() - c0
                    if best is None or res.seconds < best[0]:
                        best = (res.seconds, res.throughput, wall, cpu)
                assert best is not None
                base = base or best[1]
                print(f"| {name} | {sw.n_points} | {runs} | {res.images} | {best[0]:.2f} | "
                      f"{sw.n_points / best[0]:.2f} | {best[1]:.0f} (x{best[1] / base:.2f}) | "
                      f"{best[2]:.2f} | {best[3]:.2f} |")
        finally:
            if cluster is not None:
                cluster.close()
        print(f"load average after: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")


def _cpu() -> float:
    """User + system CPU seconds of this process and its finished children (workers)."""
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


if __name__ == "__main__":
    main()
