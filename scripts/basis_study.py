"""BasisN accuracy study: digits test accuracy against basis_count and coef_bits.

For each example model and each (basis_count, coef_bits) point: the weight-space
fit alone, then layer-wise distillation plus STE fine-tuning on the train split
(``--epochs``, best training epoch kept), both measured on the 450-image test
split with the basis form's reference inference. The two reference paths are
checked against each other on the test split at every point.

Results go to docs/img/basisn/results.csv (one row per point, resumable) and
the plots to docs/img/basisn/*.png. Runtime on the 2-core machine: about
half an hour for the default grid with 1 job (the CNN dominates).

    python scripts/basis_study.py [--jobs 2] [--epochs 20] [--only bnn_mlp] [--plot-only]
    python scripts/basis_study.py --points bnn_mlp:32:4,bnn_cnn:16:4 --seeds 0,1,2,3,4

The second form re-runs single points with other seeds (seed spread); the
plots show seed 0 only.
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "img" / "basisn"
CSV = OUT / "results.csv"

# model, basis kind, mapping whose tile sets R and the column limit
SERIES = [
    ("bnn_mlp", "binary", "BNN_I"),
    ("bnn_cnn", "binary", "BNN_I"),
    ("tnn_mlp", "ternary", "TNN_I"),
    ("tnn_mlp", "binary", "BNN_I"),
]
COUNTS = [4, 8, 16, 32, 64, 128]
BITS = [2, 3, 4, 6, 8]
FIELDS = ["model", "kind", "mapping", "seg_len", "basis_count", "coef_bits", "epochs", "seed",
          "segments", "original", "fit", "distilled", "finetuned", "start", "best_epoch",
          "rel_error_fit", "seconds"]


def grid(only: str | None) -> list[tuple[str, str, str, int, int]]:
    pts = []
    for model, kind, mapping in SERIES:
        if only and model != only:
            continue
        bits = BITS if (model, kind) != ("tnn_mlp", "binary") else [4]
        for n in COUNTS:
            for k in bits:
                pts.append((model, kind, mapping, n, k))
    return pts


def parse_points(spec: str) -> list[tuple[str, str, str, int, int]]:
    """model:N:K[,...] -> grid points (the model's first series: its own basis kind)."""
    out = []
    for item in spec.split(","):
        model, n, k = item.split(":")
        kind, mapping = next((kd, mp) for md, kd, mp in SERIES if md == model)
        out.append((model, kind, mapping, int(n), int(k)))
    return out


def spread(rows: list[dict[str, str]]) -> None:
    """Seed spread of every point run with more than one seed."""
    by: dict[tuple[str, ...], list[float]] = {}
    for r in rows:
        by.setdefault((r["model"], r["kind"], r["basis_count"], r["coef_bits"]), []).append(
            float(r["finetuned"]))
    for (model, kind, n, k), accs in sorted(by.items()):
        if len(accs) > 1:
            print(f"| {model} | {kind} | {n} | {k} | {len(accs)} | {min(accs):.1%} | "
                  f"{sum(accs) / len(accs):.1%} | {max(accs):.1%} |")


def run_point(model: str, kind: str, mapping: str, n: int, k: int, epochs: int, seed: int
              ) -> dict[str, object]:
    from cimgen.basis.fit import FitConfig
    from cimgen.basis.pipeline import fit_model, load_data
    from cimgen.compiler.mappings import MAPPINGS
    from cimgen.config import XbarConfig
    from cimgen.frontend.onnx_import import load_model

    t0 = time.perf_counter()
    cfg = XbarConfig()
    m = MAPPINGS[mapping]
    seg_len, cols = cfg.rows // m.rows_per_input, cfg.cols // m.cols_per_output
    net = load_model(ROOT / "examples" / f"{model}.onnx")
    data = load_data("digits", net)
    fc = FitConfig(n, k, seg_len, kind=kind, seed=seed, max_basis=cols)
    bn, rep = fit_model(net, fc, data, epochs)
    segs = sum(ly.out_features * ly.segments for ly in bn.linear.values())
    err = sum(e.rel_error * e.outputs * e.rows for e in rep.errors_fit) / \
        sum(e.outputs * e.rows for e in rep.errors_fit)
    return {"model": model, "kind": kind, "mapping": mapping, "seg_len": seg_len,
            "basis_count": n, "coef_bits": k, "epochs": epochs, "seed": seed,
            "segments": segs, "original": rep.accuracy["original"], "fit": rep.accuracy["fit"],
            "distilled": rep.accuracy.get("distilled", ""),
            "finetuned": rep.accuracy.get("finetuned", ""), "start": rep.start,
            "best_epoch": rep.best_epoch,
            "rel_error_fit": round(err, 6), "seconds": round(time.perf_counter() - t0, 1)}


def key(row: dict[str, object]) -> tuple[str, ...]:
    return tuple(str(row[f]) for f in ("model", "kind", "mapping", "basis_count", "coef_bits",
                                       "epochs", "seed"))


def read_rows() -> list[dict[str, str]]:
    if not CSV.is_file():
        return []
    with CSV.open() as f:
        return list(csv.DictReader(f))


def write_rows(rows: list[dict[str, object]]) -> None:
    rows = sorted(rows, key=lambda r: (str(r["model"]), str(r["kind"]), int(r["basis_count"]),
                                       int(r["coef_bits"]), int(r["seed"])))
    tmp = CSV.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, FIELDS)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, CSV)


def plot(rows: list[dict[str, str]]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    series = sorted({(r["model"], r["kind"], r["mapping"]) for r in rows})
    for model, kind, mapping in series:
        sel = [r for r in rows if (r["model"], r["kind"], r["mapping"]) == (model, kind, mapping)]
        bits = sorted({int(r["coef_bits"]) for r in sel})
        orig = float(sel[0]["original"])
        fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
        for ax, col, title in ((axes[0], "fit", "weight-space fit only"),
                               (axes[1], "finetuned", f"+ distillation + {sel[0]['epochs']} "
                                                      "STE epochs")):
            for k in bits:
                pts = sorted((int(r["basis_count"]), float(r[col]) * 100) for r in sel
                             if int(r["coef_bits"]) == k and r[col] != "")
                if pts:
                    ax.plot(*zip(*pts, strict=True), marker="o", label=f"{k}-bit coefficients")
            ax.axhline(orig * 100, color="k", lw=1, label=f"original {orig:.2%}")
            ax.axhline(orig * 100 - 2, color="k", lw=1, ls="--", label="original - 2 points")
            ax.set_xscale("log", base=2)
            ax.set_xlabel("basis vectors N")
            ax.set_title(title)
            ax.set_ylim(0, 100)
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("digits test accuracy (%)")
        axes[1].legend(loc="lower right", fontsize=8)
        fig.suptitle(f"{model}: {kind} basis, {mapping} tile ({sel[0]['seg_len']} rows), "
                     f"{sel[0]['segments']} weight segments")
        fig.tight_layout()
        p = OUT / f"{model}_{kind}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        files.append(p)
        if len(bits) < 2:
            continue
        # The other axis: fine-tuned accuracy against coef_bits, one line per N.
        fig, ax = plt.subplots(figsize=(5.5, 4))
        for n in sorted({int(r["basis_count"]) for r in sel}):
            pts = sorted((int(r["coef_bits"]), float(r["finetuned"]) * 100) for r in sel
                         if int(r["basis_count"]) == n and r["finetuned"] != "")
            ax.plot(*zip(*pts, strict=True), marker="o", label=f"N = {n}")
        ax.axhline(orig * 100, color="k", lw=1, label=f"original {orig:.2%}")
        ax.axhline(orig * 100 - 2, color="k", lw=1, ls="--", label="original - 2 points")
        ax.set_xlabel("coefficient bits K")
        ax.set_ylabel("digits test accuracy (%), fine-tuned")
        ax.set_xticks(bits)
        ax.set_ylim(50, 100)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
        ax.set_title(f"{model}: {kind} basis, {mapping}", fontsize=10)
        fig.tight_layout()
        p = OUT / f"{model}_{kind}_bits.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        files.append(p)
    return files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", help="one model (bnn_mlp, bnn_cnn, tnn_mlp)")
    ap.add_argument("--plot-only", action="store_true")
    ap.add_argument("--points", help="model:N:K,... instead of the grid")
    ap.add_argument("--seeds", help="comma-separated seeds (default: --seed)")
    args = ap.parse_args()
    seeds = [int(v) for v in args.seeds.split(",")] if args.seeds else [args.seed]
    points = parse_points(args.points) if args.points else grid(args.only)
    OUT.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, object]] = list(read_rows())  # type: ignore[arg-type]
    if not args.plot_only:
        done = {key(r) for r in rows}
        todo = [(*p, sd) for sd in seeds for p in points
                if (*map(str, p), str(args.epochs), str(sd)) not in done]
        print(f"{len(todo)} point(s) to run, {len(done)} done")
        with ProcessPoolExecutor(args.jobs) as ex:
            futs = [ex.submit(run_point, *p[:5], args.epochs, p[5]) for p in todo]
            for f in futs:
                row = f.result()
                rows.append(row)
                write_rows(rows)
                print(f"{row['model']:8} {row['kind']:8} N={row['basis_count']:<4} "
                      f"K={row['coef_bits']}  fit {float(row['fit']):.4f}  finetuned "
                      f"{float(row['finetuned']):.4f}  (original {float(row['original']):.4f})"
                      f"  {row['seconds']} s", flush=True)
    final = read_rows()
    for p in plot([r for r in final if r["seed"] == "0"]):
        print(p.relative_to(ROOT))
    spread(final)


if __name__ == "__main__":
    main()
