"""Sweep reports: a Markdown summary per point and CIM-Explorer-style plots."""

from __future__ import annotations

import hashlib
import itertools
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import MAPPINGS
from ..fileio import write_bytes_atomic
from .results import SweepResult
from .spec import Sweep

SUMMARY_NAME = "summary.md"
MAX_PANELS = 12


@dataclass
class PointStats:
    index: int
    values: tuple[str, ...]  # swept values as in the CSV
    n: int
    acc_mean: float
    acc_std: float
    acc_min: float
    acc_max: float
    agr_mean: float
    agr_std: float
    cycles: str
    writes_setup: str
    writes_infer: str


def _std(a: np.ndarray) -> float:
    return float(a.std(ddof=1)) if a.size > 1 else 0.0


def _span(vals: list[str]) -> str:
    u = sorted(set(vals), key=float)
    return u[0] if len(u) == 1 else f"{u[0]}..{u[-1]}"


def point_stats(sw: Sweep, rows: list[dict[str, str]]) -> list[PointStats]:
    by: dict[int, list[dict[str, str]]] = {}
    for r in rows:
        by.setdefault(int(r["point"]), []).append(r)
    out = []
    for i in sorted(by):
        rs = by[i]
        acc = np.array([float(r["accuracy"]) for r in rs])
        agr = np.array([float(r["agreement"]) for r in rs])
        out.append(PointStats(
            index=i, values=tuple(rs[0][k] for k in sw.keys), n=len(rs),
            acc_mean=float(acc.mean()), acc_std=_std(acc), acc_min=float(acc.min()),
            acc_max=float(acc.max()), agr_mean=float(agr.mean()), agr_std=_std(agr),
            cycles=_span([r["cycles_per_inference"] for r in rs]),
            writes_setup=_span([r["cell_writes_setup"] for r in rs]),
            writes_infer=_span([r["cell_writes_per_inference"] for r in rs])))
    return out


def summary_markdown(sw: Sweep, res: SweepResult, stats: list[PointStats],
                     plots: list[Path], plot_note: str) -> str:
    sha = hashlib.sha256(sw.model.read_bytes()).hexdigest()[:12]
    fixed = ", ".join(f"`{k} = {v!r}`" for k, v in sw.fixed.items()) or "(none)"
    swept = ", ".join(f"{k} ({len(v)})" for k, v in zip(sw.keys, sw.values, strict=True))
    lines = [
        f"# DSE: {sw.title}",
        "",
        f"- model: `{sw.model.name}` (sha256 {sha}...)",
        f"- data: {sw.data}, {res.images} images; seeds: "
        f"{', '.join(map(str, sw.seeds))} ({len(sw.seeds)} per point)",
        f"- ideal accuracy (reference inference = ideal crossbar): {res.ideal_accuracy:.4f}",
        f"- fixed: {fixed}",
        f"- swept: {swept or '(nothing)'} -> {sw.n_points} point(s), "
        f"{sw.n_points * len(sw.seeds)} run(s)",
        "",
        "Accuracy vs the labels and agreement with the ideal crossbar (fraction of "
        "identical predictions): mean ± standard deviation over seeds (ddof = 1), "
        "then [min, max]. Cycles and cell writes are per compiled program "
        "(cell writes: at setup + per inference).",
        "",
    ]
    head = ["point", *sw.keys, "accuracy", "[min, max]", "agreement", "cycles/inference",
            "cell writes"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for s in stats:
        lines.append("| " + " | ".join([
            str(s.index), *s.values, f"{s.acc_mean:.4f} ± {s.acc_std:.4f}",
            f"[{s.acc_min:.4f}, {s.acc_max:.4f}]", f"{s.agr_mean:.4f} ± {s.agr_std:.4f}",
            s.cycles, f"{s.writes_setup} + {s.writes_infer}"]) + " |")
    lines.append("")
    if plots:
        lines.append("## Plots")
        lines.append("")
        for p in plots:
            lines.append(f"![{p.stem}]({p.name})")
        lines.append("")
    if plot_note:
        lines.append(plot_note)
        lines.append("")
    return "\n".join(lines)


def _is_numeric(values: tuple[object, ...]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def plot_sweep(sw: Sweep, stats: list[PointStats], ideal: float, out: Path) -> list[Path]:
    """accuracy vs each swept parameter: one line per mapping, one panel per combination
    of the other swept parameters, the ideal accuracy as a dashed reference line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(sw.keys)
    by_vals = {s.values: s for s in stats}
    xs_keys = [k for k in keys if k != "mapping"] or (["mapping"] if "mapping" in keys else [])
    if sw.plots is not None:
        xs_keys = list(sw.plots)
    files = []
    for xk in xs_keys:
        xi = keys.index(xk)
        if len(sw.values[xi]) < 2:
            continue
        line_key = "mapping" if "mapping" in keys and xk != "mapping" else None
        li = keys.index(line_key) if line_key else None
        panel_keys = [k for k in keys if k not in (xk, line_key)]
        panel_idx = [keys.index(k) for k in panel_keys]
        panels = list(itertools.product(*(sw.values[j] for j in panel_idx)))
        if len(panels) > MAX_PANELS:
            continue
        numeric = _is_numeric(sw.values[xi])
        ncol = min(3, len(panels))
        nrow = -(-len(panels) // ncol)
        fig, axes = plt.subplots(nrow, ncol, figsize=(4.3 * ncol + 1.6, 3.1 * nrow),
                                 squeeze=False, sharey=True)
        lines_vals = sw.values[li] if li is not None else (None,)
        cmap = plt.get_cmap("tab20")
        markers = "osD^v<>Ppx*h"
        for pn, pv in enumerate(panels):
            ax = axes[pn // ncol][pn % ncol]
            for ln, lv in enumerate(lines_vals):
                xs, ys, es = [], [], []
                for xv in sw.values[xi]:
                    v: list[object] = [None] * len(keys)
                    v[xi] = xv
                    if li is not None:
                        v[li] = lv
                    for j, pvv in zip(panel_idx, pv, strict=True):
                        v[j] = pvv
                    key = tuple(repr(a) if isinstance(a, float) else str(a) for a in v)
                    s = by_vals.get(key)
                    if s is None:
                        continue
                    xs.append(xv if numeric else str(xv))
                    ys.append(s.acc_mean)
                    es.append(s.acc_std)
                if not xs:
                    continue
                label = str(lv) if lv is not None else str(sw.fixed.get("mapping", "accuracy"))
                style = "--" if label.startswith("TNN") else "-"
                # A mapping keeps its colour and marker in every plot.
                c = MAPPINGS.index(label) if label in MAPPINGS else ln
                ax.errorbar(xs, ys, yerr=es if any(es) else None, label=label,
                            color=cmap((2 * c) % 20 + (c >= 10)), ls=style,
                            marker=markers[c % len(markers)], ms=4, lw=1.2, capsize=2)
            ax.axhline(ideal, color="black", ls=":", lw=1.2, label=f"ideal ({ideal:.3f})")
            ax.set_xlabel(xk)
            if pn % ncol == 0:
                ax.set_ylabel("accuracy")
            ax.set_ylim(0, 1.02)
            ax.grid(alpha=0.3)
            if numeric:
                ticks = list(sw.values[xi])
                pos = [float(t) for t in ticks if float(t) > 0]  # type: ignore[arg-type]
                if pos and max(pos) / min(pos) >= 1000:
                    # Read counts, ages: decades apart; 0 stays on the linear part.
                    ax.set_xscale("symlog", linthresh=min(pos))
                    ax.set_xlim(-0.3 * min(pos), 2 * max(pos))
                ax.set_xticks(ticks, labels=["ideal" if xk == "adc_bits" and t == 0 else
                                             _tick(t) for t in ticks])
            if panel_keys:
                ax.set_title(", ".join(f"{k}={v}" for k, v in zip(panel_keys, pv, strict=True)),
                             fontsize=9)
        for pn in range(len(panels), nrow * ncol):
            axes[pn // ncol][pn % ncol].set_visible(False)
        h, lab = axes[0][0].get_legend_handles_labels()
        fig.legend(h, lab, loc="center right", fontsize=7, frameon=False)
        fig.suptitle(f"{sw.title}: accuracy vs {xk}", fontsize=10)
        fig.tight_layout(rect=(0, 0, 1 - 1.5 / (4.3 * ncol + 1.6), 1))
        path = out / f"accuracy_vs_{xk}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        files.append(path)
    return files


def _tick(v: object) -> str:
    """Tick label: large round numbers as powers of ten (1e6), others as written."""
    f = float(v)  # type: ignore[arg-type]
    if abs(f) >= 1e4:
        e = int(np.floor(np.log10(abs(f))))
        m = f / 10**e
        return f"1e{e}" if m == 1 else f"{m:g}e{e}"
    return str(v)


def write_reports(sw: Sweep, res: SweepResult) -> list[Path]:
    stats = point_stats(sw, res.rows)
    note = ""
    try:
        plots = plot_sweep(sw, stats, res.ideal_accuracy, res.out_dir)
    except ImportError:
        plots = []
        note = "Plots skipped: matplotlib is not installed (pip install 'cimgen[dse]')."
        print(f"cimgen: warning: {note}", file=sys.stderr)
    path = res.out_dir / SUMMARY_NAME
    write_bytes_atomic(path, summary_markdown(sw, res, stats, plots, note).encode())
    return [path, *plots]

