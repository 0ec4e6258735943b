"""BasisN against weight streaming on a chip much smaller than the model (issue 12).

For each model, on one small chip: the reprogramming (weight-streaming)
schedule at batch 1 and at a large batch, and basis mode over a grid of
basis counts and coefficient widths: cycles, cell writes, energy, latency and
EDP per inference from the compile report (the golden machine's counters equal
the report's: tests/test_streaming.py, tests/test_basis_compile.py). The basis
is fitted here in weight space (seeded); accuracy after fine-tuning is the
business of scripts/basis_study.py, whose figures docs/basisn.md shows beside
these.

    python scripts/bench_basis.py [--no-docs]

Writes docs/img/basisn/edp_vs_basis.png and the section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import benchdoc  # scripts/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cimgen.compiler import compile_network  # noqa: E402
from cimgen.compiler.codegen import fit_basis  # noqa: E402
from cimgen.compiler.mappings import MAPPINGS  # noqa: E402
from cimgen.config import make_config  # noqa: E402
from cimgen.frontend.onnx_import import load_model  # noqa: E402

SECTION = "## BasisN against weight streaming (issue 12)"
PNG = ROOT / "docs" / "img" / "basisn" / "edp_vs_basis.png"
# (model, mapping, chip): each model is at least 8x the chip's capacity.
CASES = [
    ("examples/bnn_mlp.onnx", "BNN_I", {"rows": 64, "cols": 64, "num_xbars": 1}),
    ("examples/tnn_mlp.onnx", "TNN_I", {"rows": 64, "cols": 64, "num_xbars": 2}),
    ("tests/fixtures/onnx/lfc_w1a1.onnx", "BNN_I", {"rows": 256, "cols": 256, "num_xbars": 8}),
]
GRID_N = (4, 8, 16, 32)
GRID_BITS = (2, 4, 6, 8)


def row(label: str, r) -> str:  # type: ignore[no-untyped-def]
    return (f"| {label} | {r.cycles_per_inference:,.0f} | {r.cell_writes_per_inference:,.0f} | "
            f"{r.energy_pj_per_inference / 1e3:,.2f} | {r.latency_ns_per_inference:,.0f} | "
            f"{r.edp_pj_ns:.3g} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-docs", action="store_true")
    args = ap.parse_args()
    lines: list[str] = []
    curves: dict[str, dict[int, list[tuple[int, float]]]] = {}
    for path, mapping, chip in CASES:
        net = load_model(ROOT / path)
        base = {"mapping": mapping, **chip}
        cells = sum(int(ly.weight.size) for ly in net.layers if hasattr(ly, "weight"))
        cm = MAPPINGS[mapping].rows_per_input * MAPPINGS[mapping].cols_per_output
        cap = chip["num_xbars"] * chip["rows"] * chip["cols"] // cm
        lines += [f"**{Path(path).name}** ({cells:,} weights) on {chip['num_xbars']} "
                  f"{chip['rows']}x{chip['cols']} arrays, {mapping} ({cap:,} weights at once: "
                  f"the model is {cells / cap:.1f}x the chip)", "",
                  "| schedule | cycles / inference | cell writes / inference | energy / "
                  "inference (nJ) | latency / inference (ns) | EDP (pJ*ns) |",
                  "|---|---|---|---|---|---|"]
        stream = {}
        for b in (1, 64):
            r = compile_network(net, make_config(None, {**base, "batch": b})).report
            stream[b] = r
            lines.append(row(f"weight streaming, batch {r.batch}", r))
        best = None
        curves[Path(path).stem] = {}
        for bits in GRID_BITS:
            pts = []
            for n in GRID_N:
                cfg = make_config(None, {**base, "basis_count": n, "coef_bits": bits})
                r = compile_network(fit_basis(net, cfg), cfg).report
                pts.append((n, r.edp_pj_ns))
                if bits == 4:
                    lines.append(row(f"basis mode, {n} vectors, {bits}-bit coefficients", r))
                if best is None or r.edp_pj_ns < best[1].edp_pj_ns:
                    best = ((n, bits), r)
            curves[Path(path).stem][bits] = pts
        assert best is not None
        (n, bits), r = best
        s1 = stream[1]
        lines += ["", f"Basis mode ({n} vectors, {bits}-bit) / streaming at batch 1: cycles "
                  f"{100 * r.cycles_per_inference / s1.cycles_per_inference:.3g} %, EDP "
                  f"{100 * r.edp_pj_ns / s1.edp_pj_ns:.3g} %; / streaming at batch 64: cycles "
                  f"{100 * r.cycles_per_inference / stream[64].cycles_per_inference:.3g} %, EDP "
                  f"{100 * r.edp_pj_ns / stream[64].edp_pj_ns:.3g} %.", ""]
    print("\n".join(lines))
    if args.no_docs:
        return 0
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.8))
    for ax, (name, by_bits) in zip(axes, curves.items(), strict=True):
        for bits, pts in by_bits.items():
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o",
                    label=f"{bits}-bit coefficients")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("basis vectors")
        ax.set_ylabel("EDP per inference (pJ*ns)")
        ax.set_title(name)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    PNG.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PNG, dpi=110)
    text = "\n".join([SECTION, "", "Command: `python scripts/bench_basis.py` (costs from the "
                      "compile report; default cost constants, docs/energy.md).", "", *lines,
                      "![EDP against basis count](img/basisn/edp_vs_basis.png)", ""])
    benchdoc.write_section(SECTION, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
