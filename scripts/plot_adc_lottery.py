"""Figure for docs/dse.md: why accuracy can fall with more ADC bits under a
full-scale range (issue 16), on the digits CNN's first convolution with BNN_V.

Panel (a): the layer's 9 driven rows give P = 0..9 matching cells, y = 2P - 9;
the staircases are y read through the ADC (y = 2 code - 9) with CIM-Explorer's
full-scale range [0, 256 LRS] at 5 and 6 bits and with the per-layer MAX range
[0, 9 dI] at 5 bits; the shaded band holds the 16 channel thresholds of the
following activation; the bars are how often each P occurs on the test set.
Panel (b): accuracy of BNN_V on the CNN vs ADC bits for the four range policies
(from docs/dse/adc_cnn/results.csv, scripts/sweeps/adc_cnn.toml).

Run from the repository root: ``python scripts/plot_adc_lottery.py``; it also
prints, per ADC, the fraction of first-layer activations that flip sign.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cimgen.compiler.adc import layer_adc  # noqa: E402
from cimgen.config import make_config  # noqa: E402
from cimgen.frontend.datasets import digits_for  # noqa: E402
from cimgen.frontend.onnx_import import load_model  # noqa: E402
from golden_model.ir import Threshold  # noqa: E402
from golden_model.reference import Trace, forward_int, quantize_input  # noqa: E402

OUT = ROOT / "docs" / "img" / "dse" / "adc_lottery.png"
CSV = ROOT / "docs" / "dse" / "adc_cnn" / "results.csv"
ADCS = (("cimx_max", 5, "CIM-Explorer MAX, 5 bits"), ("cimx_max", 6, "CIM-Explorer MAX, 6 bits"),
        ("max", 5, "per-layer MAX, 5 bits"))


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    net = load_model(str(ROOT / "examples" / "bnn_cnn.onnx"))
    x, _ = digits_for(net.input.shape, "test")
    tr = forward_int(net, quantize_input(net, x), trace=True)
    assert isinstance(tr, Trace)
    y0 = tr.outputs[0]  # conv 0 pre-activation [B, 16, 8, 8], y = 2P - 9
    act = net.layers[1]
    assert isinstance(act, Threshold)
    t = act.thresholds[:, 0].astype(np.int64) * act.sign.astype(np.int64)
    p = np.arange(10)
    counts = np.bincount(((y0 + 9) // 2).reshape(-1), minlength=10)

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax2 = ax.twinx()
    ax2.bar(p, counts / counts.sum(), color="0.85", width=0.6, zorder=0)
    ax2.set_ylabel("share of conv-0 outputs (test set)")
    ax.set_zorder(ax2.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.axhspan(float(t.min()) - 0.5, float(t.max()) + 0.5, color="tab:orange", alpha=0.15,
               label=f"activation thresholds ({t.min()}..{t.max()})")
    ax.plot(p, 2 * p - 9, "ko", label="ideal y = 2P - 9")
    for (policy, bits, label), style in zip(ADCS, ("-", "--", ":"), strict=True):
        cfg = make_config(None, {"mapping": "BNN_V", "adc_bits": bits, "adc_range": policy})
        di = cfg.lrs_units - cfg.hrs_units
        yq = 2 * layer_adc(cfg, 9).convert(p * di) - 9
        ax.step(p, yq, style, where="mid", lw=2, label=label)
        # Sign flips of the following activation, over every test output.
        pp = (y0 + 9) // 2
        yy = 2 * layer_adc(cfg, 9).convert(pp * di) - 9
        tt = t.reshape(1, -1, 1, 1)
        flips = float(((yy >= tt) != (y0 >= tt)).mean())
        print(f"{label}: {flips:.3f} of conv-0 activations flip")
    ax.set_xlabel("P (matching cells among the 9 driven rows)")
    ax.set_ylabel("pre-activation y")
    ax.set_title("(a) BNN_V, CNN conv 0, read through the ADC")
    ax.legend(fontsize=7, loc="upper left")

    rows = [r for r in csv.DictReader(CSV.open()) if r["mapping"] == "BNN_V"]
    for policy in ("cimx_max", "max", "cimx_calib", "calib"):
        rs = sorted((int(r["adc_bits"]), float(r["accuracy"])) for r in rows
                    if r["adc_range"] == policy)
        bx.plot([b for b, _ in rs], [a for _, a in rs], "o-", label=policy)
    bx.set_xlabel("ADC bits")
    bx.set_ylabel("accuracy (450 test images)")
    bx.set_title("(b) BNN_V on the digits CNN")
    bx.set_ylim(0, 1)
    bx.grid(alpha=0.3)
    bx.legend(fontsize=8)
    fig.tight_layout()
    tmp = OUT.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(OUT)
    print(f"-> {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
