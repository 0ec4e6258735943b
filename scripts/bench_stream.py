"""Networks larger than the chip (issue 11): costs against batch and crossbar count,
and the golden machine's speed on a large streamed model.

Model: a 784-1024-1024-1024-10 binary MLP (the FINN LFC shape; seeded random
weights and thresholds, bipolar input) on 256x256 arrays, mapping BNN_I. It
needs 100 tiles of 256x128 weights, 12.5x the 8-array chip's capacity.

1. Against ``batch`` (1, 4, 16, 64 and 88, the most that 2^18 DMEM words hold)
   on 8 arrays, and against ``num_xbars`` (4 ... 128) at batch 64: cycles,
   cell writes, energy and EDP per inference and the projected lifetime, from
   the compile report (the golden machine's counters equal the report's,
   tests/test_streaming.py).
2. Speed: the golden machine runs 2048 inputs on 8 arrays at batch 64 and the
   reference inference runs the same 2048 inputs, interleaved, in one process;
   the ratio of the best times is printed (the issue's goal: <= 2x).

    python scripts/bench_stream.py [--repeat 3] [--no-docs]

Writes docs/img/bench_stream.png and the section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import benchdoc  # scripts/ is on sys.path when a script runs
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from netgen import random_threshold  # noqa: E402

from cimgen.compiler import compile_network  # noqa: E402
from cimgen.config import make_config  # noqa: E402
from cimgen.run import run_golden  # noqa: E402
from golden_model.floatops import Quantizer  # noqa: E402
from golden_model.ir import Dense, InputStage, Layer, Network  # noqa: E402
from golden_model.reference import forward_int  # noqa: E402

SECTION = "## Networks larger than the chip (issue 11)"
SIZES = (784, 1024, 1024, 1024, 10)
PNG = ROOT / "docs" / "img" / "bench_stream.png"


def lfc_network(seed: int = 7) -> Network:
    rng = np.random.default_rng(seed)
    stage = InputStage((SIZES[0],), (), Quantizer("bipolar"), 2, -1)
    layers: list[Layer] = []
    for i in range(1, len(SIZES)):
        layers.append(Dense(rng.choice(np.array([-1, 1], np.int8), size=(SIZES[i],
                                                                           SIZES[i - 1]))))
        if i < len(SIZES) - 1:
            layers.append(random_threshold(rng, SIZES[i], SIZES[i - 1], False))
    return Network(stage, tuple(layers), name="lfc-random")


def costs(net: Network, over: dict[str, object]) -> dict[str, float]:
    rep = compile_network(net, make_config(None, {"mapping": "BNN_I", **over})).report
    return {"phases": rep.phases, "batch": rep.batch,
            "cycles": rep.cycles_per_inference, "writes": rep.cell_writes_per_inference,
            "max_writes": rep.max_cell_writes_per_batch,
            "energy": rep.energy_pj_per_inference, "write_energy": rep.energy_write_pj,
            "edp": rep.edp_pj_ns,
            "life": rep.lifetime_hours if rep.lifetime_hours is not None else float("inf")}


def table(rows: list[dict[str, float]], key: str) -> list[str]:
    out = [f"| {key} | residencies | cycles / inference | cell writes / inference | "
           "max writes of a cell / batch | energy / inference (uJ) | of which writes | "
           "EDP (pJ*s) | lifetime at 1000/s |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        life = "never rewritten" if r["life"] == float("inf") else f"{r['life']:.3g} h"
        out.append(f"| {int(r[key])} | {int(r['phases'])} | {r['cycles']:,.0f} | "
                   f"{r['writes']:,.0f} | {int(r['max_writes'])} | {r['energy'] / 1e6:.3f} | "
                   f"{100 * r['write_energy'] / r['energy']:.0f} % | "
                   f"{r['edp'] / 1e9:.4g} | {life} |")
    return out


def plot(by_batch: list[dict[str, float]], by_x: list[dict[str, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, rows, key, label in ((axes[0], by_batch, "batch", "batch (inputs per run), 8 arrays"),
                                 (axes[1], by_x, "num_xbars", "crossbars (batch 64)")):
        x = [r[key] for r in rows]
        for what, name in (("cycles", "cycles / inference"),
                           ("writes", "cell writes / inference"),
                           ("energy", "energy / inference (pJ)")):
            ax.plot(x, [max(r[what], 1e-3) for r in rows], marker="o", label=name)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("784-1024-1024-1024-10 BNN (BNN_I) on 256x256 arrays")
    fig.tight_layout()
    PNG.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PNG, dpi=110)


def best_time(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--images", type=int, default=2048)
    ap.add_argument("--no-docs", action="store_true")
    args = ap.parse_args()
    net = lfc_network()
    by_batch = [costs(net, {"num_xbars": 8, "batch": b}) for b in (1, 4, 16, 64, 88)]
    by_x = [{**costs(net, {"num_xbars": x, "batch": 64}), "num_xbars": x}
            for x in (4, 8, 16, 32, 64, 128)]
    lines = [*table(by_batch, "batch"), "", *table(by_x, "num_xbars")]
    print("\n".join(lines))

    comp = compile_network(net, make_config(None, {"mapping": "BNN_I", "num_xbars": 8,
                                                   "batch": 64}))
    rng = np.random.default_rng(1)
    q = rng.choice(np.array([-1, 1], np.int16), size=(args.images, SIZES[0]))
    ref = np.asarray(forward_int(net, q))
    run = run_golden(comp, q)
    assert np.array_equal(run.logits, ref), "machine != reference"
    # Interleaved: each round times the machine, then the reference.
    load0 = os.getloadavg()
    t_m, t_r = float("inf"), float("inf")
    for _ in range(args.repeat):
        t_m = min(t_m, best_time(lambda: run_golden(comp, q), 1))
        t_r = min(t_r, best_time(lambda: forward_int(net, q), 1))
    ratio = t_m / t_r
    speed = (f"golden machine {t_m:.3f} s, reference {t_r:.3f} s for {args.images} inputs: "
             f"machine / reference = {ratio:.2f} (goal <= 2)")
    loads = " before, ".join(", ".join(f"{v:.2f}" for v in la)
                             for la in (load0, os.getloadavg())) + " after"
    print(f"{speed} (load average {loads})")
    if not args.no_docs:
        plot(by_batch, by_x)
        cpu = os.cpu_count()
        text = "\n".join([
            SECTION, "",
            "Command: `python scripts/bench_stream.py` (CPU count "
            f"{cpu}; costs from the compile report, which the golden machine's counters equal).",
            "", "A 784-1024-1024-1024-10 binary MLP (FINN LFC shape, seeded random weights), "
            "BNN_I on 256x256 arrays: 100 tiles of 256x128 weights, 12.5x the capacity of 8 "
            "arrays. Default cost constants (`docs/energy.md`).", "",
            "Against the batch, 8 arrays:", "", *table(by_batch, "batch"), "",
            "Against the crossbar count, batch 64:", "", *table(by_x, "num_xbars"), "",
            "![costs against batch and crossbars](img/bench_stream.png)", "",
            f"Speed, {args.images} inputs on 8 arrays at batch 64, best of {args.repeat} "
            f"interleaved rounds: {speed} (load average {loads}).", ""])
        benchdoc.write_section(SECTION, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
