"""Train small BNN/TNN models on scikit-learn's digits and write them as QONNX.

    python scripts/train_digits.py [--out-dir examples] [--seed 20250520]

Models (all end in the raw integer accumulators of a binary/ternary layer):

* ``bnn_mlp.onnx``: 5-bit unsigned pixels (0..16, exact) -> 3 binary dense layers
* ``tnn_mlp.onnx``: ternary pixels (MultiThreshold) -> 3 ternary dense layers
* ``bnn_mlp_large.onnx``: as bnn_mlp with 512-wide hidden layers (the DSE case study)
* ``bnn_cnn.onnx``: bipolar pixels -> 2 binary 3x3 convs (padded with -1),
  max-pool, binary dense layer

Training uses torch (CPU, the ``train`` extra), straight-through estimators,
Adam and fixed seeds. Graphs are written Brevitas-style with onnx.helper: float
latent weights behind ``BipolarQuant`` / ternary ``IntQuant`` nodes, eval-mode
``BatchNormalization`` and QONNX activation quantizers. Each file is loaded
back with ``cimgen.frontend.onnx_import.load_model`` and run with cimgen's reference
inference on the frozen test split; the script prints its accuracy and its
agreement with the torch model, and writes ``README.md`` next to the models.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from cimgen.frontend.datasets import SPLIT_SEED, digits
from cimgen.frontend.onnx_import import load_model
from golden_model.reference import infer

try:
    import torch
    import torch.nn.functional as F  # noqa: N812
    from torch import nn
except ImportError:  # pragma: no cover - depends on the environment
    sys.exit("train_digits.py needs torch: pip install 'cimgen[train]'")

QONNX_DOMAIN = "qonnx.custom_op.general"
OPSET = 17
DEFAULT_SEED = 20250520

# Ternary input levels of the TNN: pixel < 3.5 -> -1, 3.5 <= pixel < 11.5 -> 0, else +1.
TNN_INPUT_THRESHOLDS = (3.5, 11.5)
# Bipolar input of the CNN: pixel - 7.5 >= 0 -> +1 else -1.
CNN_INPUT_OFFSET = 7.5


# ---------------------------------------------------------------------------
# Quantizers with straight-through gradients
# ---------------------------------------------------------------------------


class BinarizeSTE(torch.autograd.Function):
    """Forward: +1 where x >= 0 else -1 (0 -> +1, as BipolarQuant). Backward: hardtanh STE."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        ctx.save_for_backward(x)
        return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= 1).to(grad.dtype)


class TernarizeSTE(torch.autograd.Function):
    """Forward: round(clip(x, -1, 1)) with ties to even, exactly QONNX IntQuant(bitwidth 2,
    signed, narrow, scale 1, ROUND): thresholds at +-0.5, |x| = 0.5 -> 0. Backward: STE."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        ctx.save_for_backward(x)
        return torch.round(torch.clamp(x, -1.0, 1.0))

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= 1).to(grad.dtype)


def quantize(x: torch.Tensor, ternary: bool) -> torch.Tensor:
    return TernarizeSTE.apply(x) if ternary else BinarizeSTE.apply(x)


class QuantLinear(nn.Module):
    """Dense layer with binary or ternary weights (float latent weights in [-1, 1])."""

    def __init__(self, n_in: int, n_out: int, ternary: bool) -> None:
        super().__init__()
        self.ternary = ternary
        self.weight = nn.Parameter(torch.empty(n_out, n_in).uniform_(-1.0, 1.0))

    def qweight(self) -> torch.Tensor:
        return quantize(self.weight, self.ternary)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.qweight())


class QuantConv2d(nn.Module):
    """3x3 convolution with binary weights; the input is padded with -1 (a BNN has no 0)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.ternary = False
        self.weight = nn.Parameter(torch.empty(c_out, c_in, 3, 3).uniform_(-1.0, 1.0))

    def qweight(self) -> torch.Tensor:
        return quantize(self.weight, False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (1, 1, 1, 1), value=-1.0), self.qweight())


class MLP(nn.Module):
    """Quantized input -> [dense, BN, act] * (n-1) -> dense (raw integer logits)."""

    def __init__(self, sizes: tuple[int, ...], ternary: bool) -> None:
        super().__init__()
        self.sizes = sizes
        self.ternary = ternary
        self.fcs = nn.ModuleList(QuantLinear(a, b, ternary)
                                 for a, b in itertools.pairwise(sizes))
        self.bns = nn.ModuleList(nn.BatchNorm1d(b) for b in sizes[1:-1])
        self.log_temp = nn.Parameter(torch.tensor(-0.5 * math.log(sizes[-2])))

    def quant_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.ternary:  # MultiThreshold: count(x >= t) - 1
            lo, hi = TNN_INPUT_THRESHOLDS
            return (x >= lo).float() + (x >= hi).float() - 1.0
        return torch.round(torch.clamp(x, 0.0, 31.0))  # IntQuant unsigned 5-bit, scale 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.quant_input(x)
        for i, fc in enumerate(self.fcs):
            h = fc(h)
            if i < len(self.bns):
                h = quantize(self.bns[i](h), self.ternary)
        return h


class CNN(nn.Module):
    """Bipolar 8x8 input -> conv, BN, sign -> conv, maxpool, BN, sign -> dense logits."""

    def __init__(self, c1: int, c2: int) -> None:
        super().__init__()
        self.c1, self.c2 = c1, c2
        self.conv1 = QuantConv2d(1, c1)
        self.bn1 = nn.BatchNorm2d(c1)
        self.conv2 = QuantConv2d(c1, c2)
        self.bn2 = nn.BatchNorm2d(c2)
        self.fc = QuantLinear(c2 * 16, 10, ternary=False)
        self.log_temp = nn.Parameter(torch.tensor(-0.5 * math.log(c2 * 16)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.where(x - CNN_INPUT_OFFSET >= 0, 1.0, -1.0)
        h = quantize(self.bn1(self.conv1(h)), False)
        h = F.max_pool2d(self.conv2(h), 2)
        h = quantize(self.bn2(h), False)
        return self.fc(torch.flatten(h, 1))


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    lr: float
    batch: int = 64


def latent_weights(model: nn.Module) -> list[nn.Parameter]:
    return [m.weight for m in model.modules() if isinstance(m, QuantLinear | QuantConv2d)]


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, cfg: TrainConfig, seed: int) -> None:
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    steps = cfg.epochs * math.ceil(len(y) / cfg.batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    latents = latent_weights(model)
    for epoch in range(cfg.epochs):
        model.train()
        perm = torch.randperm(len(y), generator=gen)
        total, correct = 0.0, 0
        for b in range(0, len(y), cfg.batch):
            idx = perm[b:b + cfg.batch]
            logits = model(xt[idx])
            loss = F.cross_entropy(logits * model.log_temp.exp(), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                for w in latents:
                    w.clamp_(-1.0, 1.0)
            total += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == yt[idx]).sum())
        if (epoch + 1) % max(1, cfg.epochs // 5) == 0 or epoch == cfg.epochs - 1:
            print(f"    epoch {epoch + 1:4d}  loss {total / len(y):.4f}  "
                  f"train acc {correct / len(y):.4f}")
    recalibrate_bn(model, xt)


def recalibrate_bn(model: nn.Module, xt: torch.Tensor) -> None:
    """Set every BN's running stats to the statistics of the final weights on the whole
    train split: one full-batch forward in train mode with momentum 1."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d)]
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.momentum = 1.0
    model.train()
    with torch.no_grad():
        model(xt)
    for bn, mom in zip(bns, saved, strict=True):
        bn.momentum = mom
    model.eval()


def torch_logits(model: nn.Module, x: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


# ---------------------------------------------------------------------------
# QONNX export (onnx.helper, Brevitas-style)
# ---------------------------------------------------------------------------


class Graph:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.names: set[str] = set()

    def init(self, name: str, arr: np.ndarray) -> str:
        if name not in self.names:
            self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
            self.names.add(name)
        return name

    def node(self, op: str, inputs: list[str], out: str, qonnx: bool = False,
             **attrs: object) -> str:
        self.nodes.append(helper.make_node(op, inputs, [out], name=f"{out}_{op}",
                                           domain=QONNX_DOMAIN if qonnx else "", **attrs))
        return out

    def scalars(self) -> tuple[str, str]:
        return (self.init("one", np.array(1.0, np.float32)),
                self.init("zero", np.array(0.0, np.float32)))

    def int_quant(self, x: str, out: str, bits: int, signed: bool, narrow: bool) -> str:
        one, zero = self.scalars()
        bw = self.init(f"bitwidth{bits}", np.array(float(bits), np.float32))
        return self.node("IntQuant", [x, one, zero, bw], out, qonnx=True, signed=int(signed),
                         narrow=int(narrow), rounding_mode="ROUND")

    def act(self, x: str, out: str, ternary: bool) -> str:
        if ternary:
            return self.int_quant(x, out, 2, signed=True, narrow=True)
        return self.node("BipolarQuant", [x, self.scalars()[0]], out, qonnx=True)

    def weight(self, name: str, latent: np.ndarray, ternary: bool) -> str:
        w = self.init(f"{name}_latent", latent.astype(np.float32))
        return self.act(w, f"{name}_q", ternary)

    def batchnorm(self, x: str, out: str, bn: nn.Module) -> str:
        params = [bn.weight, bn.bias, bn.running_mean, bn.running_var]
        names = [self.init(f"{out}_{k}", p.detach().numpy().astype(np.float32))
                 for k, p in zip(("scale", "bias", "mean", "var"), params, strict=True)]
        return self.node("BatchNormalization", [x, *names], out, epsilon=float(bn.eps))

    def model(self, name: str, in_shape: list[int], out: str, n_out: int,
              meta: dict[str, str]) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, name,
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", *in_shape])],
            [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["batch", n_out])],
            self.inits)
        m = helper.make_model(graph, producer_name="cimgen-train_digits",
                              opset_imports=[helper.make_opsetid("", OPSET),
                                             helper.make_opsetid(QONNX_DOMAIN, 1)])
        m.ir_version = 8
        for k, v in meta.items():
            m.metadata_props.add(key=k, value=v)
        onnx.checker.check_model(m)
        return m


def np_param(p: torch.Tensor) -> np.ndarray:
    return p.detach().numpy().astype(np.float32)


def export_mlp(model: MLP, meta: dict[str, str]) -> onnx.ModelProto:
    g = Graph()
    if model.ternary:
        t = np.tile(np.float32(TNN_INPUT_THRESHOLDS), (model.sizes[0], 1))
        h = g.node("MultiThreshold", ["x", g.init("x_thresholds", t)], "x_q", qonnx=True,
                   out_dtype="TERNARY", out_scale=1.0, out_bias=-1.0, data_layout="NC")
    else:
        h = g.int_quant("x", "x_q", 5, signed=False, narrow=False)
    n = len(model.fcs)
    for i, fc in enumerate(model.fcs):
        w = g.weight(f"fc{i}_w", np_param(fc.weight).T, model.ternary)  # MatMul: [in, out]
        h = g.node("MatMul", [h, w], "logits" if i == n - 1 else f"fc{i}")
        if i < n - 1:
            h = g.batchnorm(h, f"bn{i}", model.bns[i])
            h = g.act(h, f"act{i}", model.ternary)
    kind = "tnn" if model.ternary else "bnn"
    return g.model(f"{kind}_mlp", [model.sizes[0]], h, model.sizes[-1], meta)


def export_cnn(model: CNN, meta: dict[str, str]) -> onnx.ModelProto:
    g = Graph()
    pads = g.init("pads_hw1", np.int64([0, 0, 1, 1, 0, 0, 1, 1]))
    minus1 = g.init("minus_one", np.array(-1.0, np.float32))
    h = g.node("Sub", ["x", g.init("x_offset", np.array(CNN_INPUT_OFFSET, np.float32))],
               "x_centered")
    h = g.node("BipolarQuant", [h, g.scalars()[0]], "x_q", qonnx=True)
    h = g.node("Pad", [h, pads, minus1], "pad1", mode="constant")
    h = g.node("Conv", [h, g.weight("conv1_w", np_param(model.conv1.weight), False)], "conv1",
               kernel_shape=[3, 3], pads=[0, 0, 0, 0], strides=[1, 1])
    h = g.batchnorm(h, "bn1", model.bn1)
    h = g.act(h, "act1", False)
    h = g.node("Pad", [h, pads, minus1], "pad2", mode="constant")
    h = g.node("Conv", [h, g.weight("conv2_w", np_param(model.conv2.weight), False)], "conv2",
               kernel_shape=[3, 3], pads=[0, 0, 0, 0], strides=[1, 1])
    h = g.node("MaxPool", [h], "pool2", kernel_shape=[2, 2], strides=[2, 2])
    h = g.batchnorm(h, "bn2", model.bn2)
    h = g.act(h, "act2", False)
    h = g.node("Flatten", [h], "flat", axis=1)
    h = g.node("MatMul", [h, g.weight("fc_w", np_param(model.fc.weight).T, False)], "logits")
    return g.model("bnn_cnn", [1, 8, 8], h, 10, meta)


# ---------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    name: str
    layout: str  # digits layout: "flat" or "image"
    architecture: str
    input_quant: str
    build: object  # () -> nn.Module
    cfg: TrainConfig
    subdir: str = ""  # written to OUT_DIR/subdir (kept out of examples/*.onnx)


SPECS = (
    Spec("bnn_mlp", "flat",
         "64 -> 128 -> 64 -> 10 dense; BN + BipolarQuant between; binary weights",
         "IntQuant unsigned 5-bit, scale 1 (pixels 0..16 exact)",
         lambda: MLP((64, 128, 64, 10), ternary=False), TrainConfig(epochs=150, lr=0.01)),
    Spec("tnn_mlp", "flat",
         "64 -> 128 -> 64 -> 10 dense; BN + ternary IntQuant between; ternary weights",
         f"MultiThreshold {list(TNN_INPUT_THRESHOLDS)}, out_bias -1 -> {{-1, 0, +1}}",
         lambda: MLP((64, 128, 64, 10), ternary=True), TrainConfig(epochs=150, lr=0.01)),
    # Case study of docs/dse.md ("3 ADC bits suffice"): hidden layers of 512 inputs,
    # so their tiles fill 256-row arrays (two row tiles per layer), as in CIM-Explorer.
    Spec("bnn_mlp_large", "flat",
         "64 -> 512 -> 512 -> 10 dense; BN + BipolarQuant between; binary weights",
         "IntQuant unsigned 5-bit, scale 1 (pixels 0..16 exact)",
         lambda: MLP((64, 512, 512, 10), ternary=False), TrainConfig(epochs=100, lr=0.005),
         subdir="large"),
    Spec("bnn_cnn", "image",
         "Pad(-1)+Conv3x3 1->16, BN, BipolarQuant; Pad(-1)+Conv3x3 16->16, MaxPool 2x2, BN, "
         "BipolarQuant; Flatten 256 -> 10 dense; binary weights",
         f"Sub {CNN_INPUT_OFFSET}, BipolarQuant -> {{-1, +1}}",
         lambda: CNN(16, 16), TrainConfig(epochs=100, lr=0.01)),
)


@dataclass
class Result:
    spec: Spec
    path: Path
    weights: int
    zero_frac: float
    torch_acc: float
    cimgen_acc: float
    agree: float
    exact: float
    size: int


def count_weights(model: nn.Module) -> tuple[int, float]:
    ws = [m.qweight().detach() for m in model.modules()
          if isinstance(m, QuantLinear | QuantConv2d)]
    n = sum(w.numel() for w in ws)
    zeros = sum(int((w == 0).sum()) for w in ws)
    return n, zeros / n


def run_one(spec: Spec, out_dir: Path, seed: int) -> Result:
    print(f"== {spec.name}: {spec.architecture}")
    torch.manual_seed(seed)
    model = spec.build()  # type: ignore[operator]
    xtr, ytr = digits("train", spec.layout)
    xte, yte = digits("test", spec.layout)
    t0 = time.time()
    train(model, xtr, ytr, spec.cfg, seed)
    print(f"    trained in {time.time() - t0:.1f} s")
    meta = {"source": "scripts/train_digits.py", "seed": str(seed),
            "dataset": f"sklearn digits, cimgen.frontend.datasets split seed {SPLIT_SEED}"}
    onx = export_mlp(model, meta) if isinstance(model, MLP) else export_cnn(model, meta)
    path = out_dir / spec.subdir / f"{spec.name}.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(onx, path)

    t_logits = torch_logits(model, xte)
    net = load_model(path)
    c_logits = infer(net, xte)
    t_pred, c_pred = t_logits.argmax(1), c_logits.argmax(1)
    res = Result(spec, path, *count_weights(model),
                 torch_acc=float((t_pred == yte).mean()),
                 cimgen_acc=float((c_pred == yte).mean()),
                 agree=float((t_pred == c_pred).mean()),
                 exact=float((t_logits == c_logits).all(axis=1).mean()),
                 size=path.stat().st_size)
    print(f"    wrote {path} ({res.size} bytes, {res.weights} weights"
          + (f", {res.zero_frac:.1%} zero" if res.zero_frac else "") + ")")
    print(f"    test accuracy: torch {res.torch_acc:.4f}  cimgen reference {res.cimgen_acc:.4f}")
    print(f"    torch vs cimgen: predictions agree {res.agree:.4f}, "
          f"integer logits identical {res.exact:.4f} ({len(yte)} test images)")
    return res


def write_readme(out_dir: Path, results: list[Result], seed: int) -> None:
    cmd = "python scripts/train_digits.py" + ("" if seed == DEFAULT_SEED else f" --seed {seed}")
    if out_dir.resolve() != Path("examples").resolve():
        cmd += f" --out-dir {out_dir}"
    lines = [
        "# Example models: scikit-learn digits",
        "",
        "QONNX models trained by `scripts/train_digits.py` on the frozen train split of",
        "`cimgen.frontend.datasets.digits` (1,347 images) and evaluated on its test split (450",
        "images). Accuracies are those of cimgen's integer reference inference",
        "(`cimgen.frontend.onnx_import.load_model` + `golden_model.reference.infer`) on the",
        "test split.",
        "",
        "| model | architecture | input quantization | weights | test accuracy |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        w = f"{r.weights:,}" + (f" ({r.zero_frac:.0%} zero)" if r.zero_frac else "")
        lines.append(f"| `{r.path.relative_to(out_dir)}` | {r.spec.architecture} | "
                     f"{r.spec.input_quant} | "
                     f"{w} | {r.cimgen_acc:.2%} |")
    lines += [
        "",
        "Regenerate (CPU, deterministic; needs `pip install -e '.[train]'`, torch 2.13):",
        "",
        "```",
        cmd,
        "```",
        "",
        "`large/` holds the model of the DSE case study (docs/dse.md, \"Do 3 ADC bits",
        "suffice?\"): it is kept out of `examples/*.onnx`, which the test suites, the",
        "vector suite and the benchmarks iterate over.",
        "",
        "Conventions shared by the graphs (ops in domain `qonnx.custom_op.general`,",
        "opset 1; default-domain opset 17):",
        "",
        "- Weights are float latent weights (initializers) behind a `BipolarQuant` (scale 1;",
        "  x >= 0 -> +1) or, for the TNN, an `IntQuant` (bitwidth 2, signed, narrow, scale 1,",
        "  ROUND: |w| > 0.5 -> sign(w), else 0).",
        "- Hidden activations: eval-mode `BatchNormalization` (running statistics) followed",
        "  by `BipolarQuant` or ternary `IntQuant`; cimgen folds each into integer thresholds.",
        "- The last layer's output is the raw integer accumulator (no BN, no bias): the",
        "  logits are integers. Training scaled them by a learned positive temperature,",
        "  which is not exported (it does not change the argmax).",
        "- The CNN pads with an explicit `Pad` node of constant -1 before each convolution.",
        "",
        "Agreement between the torch model (eval mode) and cimgen on the test split:",
        "",
        "| model | torch accuracy | predictions agree | integer logits identical | file size |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| `{r.path.relative_to(out_dir)}` | {r.torch_acc:.2%} | {r.agree:.2%} | "
                     f"{r.exact:.2%} | "
                     f"{r.size / 1024:.1f} KiB |")
    (out_dir / "README.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", type=Path, default=Path("examples"),
                    help="where to write the .onnx files and README.md (default: examples)")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED,
                    help=f"torch seed for initialization and shuffling (default: {DEFAULT_SEED})")
    ap.add_argument("--only", choices=[s.name for s in SPECS], action="append",
                    help="train only this model (repeatable; README.md is then not written)")
    args = ap.parse_args(argv)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    results = [run_one(s, args.out_dir, args.seed) for s in SPECS
               if not args.only or s.name in args.only]
    if not args.only:
        write_readme(args.out_dir, results, args.seed)
        print(f"wrote {args.out_dir / 'README.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
