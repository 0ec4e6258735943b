"""Export small BNN/TNN models with the real training tools as cimgen test fixtures.

Writes ``tests/fixtures/onnx/<name>.onnx`` exactly as the exporter produced it,
and beside it ``<name>.io.npz`` holding seeded inputs ``x``, the training
framework's own outputs ``y_framework`` for them (torch forward in eval mode for
Brevitas, ``model.predict`` for Larq) and ``acc_framework``, the framework's
output of the classifier layer (the last dense layer, before any
TensorNorm/BatchNorm/Softmax tail: integers), so that the importer can later be
checked against the training tool and not only against an ONNX executor.

Brevitas part (this interpreter)::

    pip install torch==2.13.0        # the CPU wheel on this machine's disk
    pip install -e ".[dev,export]"   # brevitas 0.13.4, onnxoptimizer, onnxscript
    python scripts/export_models.py [--out tests/fixtures/onnx] [--only tfc_w1a1 ...]

Install torch first and exactly at 2.13.0: an unpinned torch pulls a CUDA
build of several GB. The models come from ``brevitas_examples.bnn_pynq``
(FINN's BNN-PYNQ TFC/SFC/LFC/CNV, random init, ``pretrained=False``) plus a
small FINN-style residual network defined here, all exported with
``brevitas.export.export_qonnx`` on its default (torch.export) path with input
shape (1, C, H, W). Latent weights are set to exactly -1/+1 (or -1/0/+1 for
2-bit weights) so the quantizers pass them unchanged and the files compress
in git; BatchNorm and TensorNorm get seeded non-trivial statistics.

Larq part (a separate interpreter: TensorFlow 2.15 needs numpy < 2, which the
project's environment does not allow)::

    python -m venv /work/venvs/larq
    /work/venvs/larq/bin/pip install "tensorflow-cpu==2.15.1" "larq==0.13.3" \\
        "tf2onnx==1.16.1" "numpy<2"
    python scripts/export_models.py --larq-python /work/venvs/larq/bin/python

``--larq-python`` runs ``scripts/export_larq.py`` with that interpreter after
the Brevitas exports; it can also be run directly with the same arguments.

Running the script twice gives byte-identical files (checked with sha256 on
the versions above); the printed table lists each file's size and sha256. The
one edit made to the exporter's output is the removal of each node's
``pkg.torch.onnx.stack_trace`` metadata, which holds absolute paths and line
numbers of the exporting machine and script.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np
import onnx
from fixture_io import npz_bytes, pixel_inputs, write_atomic

try:
    import torch
    from brevitas.core.restrict_val import RestrictValueType
    from brevitas.export import export_qonnx
    from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear
    from brevitas_examples.bnn_pynq.models import model_with_cfg
    from brevitas_examples.bnn_pynq.models.common import CommonActQuant, CommonWeightQuant
    from brevitas_examples.bnn_pynq.models.tensor_norm import TensorNorm
    from torch import nn
except ImportError as e:  # pragma: no cover - depends on the environment
    sys.exit(f"export_models.py needs torch 2.13.0 and brevitas 0.13.4 ({e}); "
             "see the docstring for the install commands")

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "tests" / "fixtures" / "onnx"
N_SAMPLES = 8
MNIST_SHAPE = (1, 28, 28)
CIFAR_SHAPE = (3, 32, 32)
STACK_TRACE_KEY = "pkg.torch.onnx.stack_trace"


@dataclass(frozen=True)
class Fixture:
    name: str
    seed: int
    in_shape: tuple[int, ...]  # without the batch dimension
    build: Callable[[], nn.Module]
    note: str


# ---------------------------------------------------------------------------
# Parameters: few-level latent weights, seeded normalization statistics
# ---------------------------------------------------------------------------


def _levelled_weights(model: nn.Module, gen: torch.Generator) -> None:
    """Latent weights on the quantizer's own grid, so quantization leaves them unchanged."""
    for m in model.modules():
        if not isinstance(m, QuantLinear | QuantConv2d):
            continue
        bits = int(m.quant_weight().bit_width.item())
        w = m.weight
        if bits == 1:  # BipolarQuant, scale 1: sign
            levels = torch.randint(0, 2, w.shape, generator=gen) * 2 - 1
        elif bits == 2:  # narrow signed 2-bit, scale 1: ternary
            levels = torch.randint(-1, 2, w.shape, generator=gen)
        else:
            raise ValueError(f"unexpected weight bit width {bits}")
        with torch.no_grad():
            w.copy_(levels.to(w.dtype))


def _fan_in(prev: nn.Module | None) -> int:
    if isinstance(prev, QuantLinear):
        return prev.in_features
    if isinstance(prev, QuantConv2d):
        k = prev.kernel_size
        return prev.in_channels * k[0] * k[1]
    return 1


def _seeded_norms(model: nn.Module, gen: torch.Generator) -> None:
    """BatchNorm/TensorNorm statistics scaled to the accumulator range of the layer before.

    About one BatchNorm gamma in five is negative (trained BNNs have them; they
    flip the threshold's direction); TensorNorm's single gamma stays positive.
    Means are non-integral so no integer accumulator sits on a threshold.
    """
    prev: nn.Module | None = None
    for m in model.modules():
        if isinstance(m, QuantLinear | QuantConv2d):
            prev = m
        if not isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d | TensorNorm):
            continue
        c = m.running_mean.numel()
        spread = float(np.sqrt(_fan_in(prev)))

        def u(lo: float, hi: float, c: int = c) -> torch.Tensor:
            return lo + (hi - lo) * torch.rand(c, generator=gen)

        sign = torch.where(torch.rand(c, generator=gen) < 0.2, -1.0, 1.0)
        if isinstance(m, TensorNorm):
            # One scale for all logits: a negative one would turn argmax into argmin,
            # which no trained classifier does.
            sign = torch.ones_like(sign)
        with torch.no_grad():
            m.weight.copy_(sign * u(0.5, 2.0))
            m.bias.copy_(u(-0.5, 0.5))
            m.running_mean.copy_(u(-0.5, 0.5) * spread + 0.37)
            m.running_var.copy_(u(0.25, 1.5) * spread * spread)


# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------


def bnn_pynq(cfg_name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        model, _ = model_with_cfg(cfg_name, pretrained=False)
        return model
    return build


# A CNV with the same layer sequence and fewer channels: conv 16-16-pool-32-32-pool-64-64,
# FC 128-128-10 (the real one is 64-64-128-128-256-256, FC 512-512-10).
SMALL_CNV = {
    "CNV_OUT_CH_POOL": [(16, False), (16, True), (32, False), (32, True), (64, False),
                        (64, False)],
    "INTERMEDIATE_FC_FEATURES": [(64, 128), (128, 128)],
    "LAST_FC_IN_FEATURES": 128,
}


def small_cnv(cfg_name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        # CNV reads its channel table from module constants when it is built.
        cnv_module = importlib.import_module("brevitas_examples.bnn_pynq.models.CNV")
        with mock.patch.multiple(cnv_module, **SMALL_CNV):
            model, _ = model_with_cfg(cfg_name, pretrained=False)
        return model
    return build


def _act(bits: int) -> QuantIdentity:
    return QuantIdentity(act_quant=CommonActQuant, bit_width=bits, return_quant_tensor=True)


def _conv(cin: int, cout: int, k: int, stride: int, wbits: int) -> QuantConv2d:
    return QuantConv2d(cin, cout, kernel_size=k, stride=stride, padding=k // 2, bias=False,
                       weight_quant=CommonWeightQuant, weight_bit_width=wbits)


class ResBlock(nn.Module):
    """FINN-style basic block: both operands of the residual Add leave the same quantizer.

    Without a downsampling shortcut that quantizer is the one that produced the
    block's input; with one (1x1 stride-2 conv + BN), the shortcut's quantizer
    also ends the main branch. The sum is re-quantized by ``act_out``.
    """

    def __init__(self, cin: int, cout: int, stride: int, in_act: QuantIdentity,
                 wbits: int, abits: int) -> None:
        super().__init__()
        self.conv1 = _conv(cin, cout, 3, stride, wbits)
        self.bn1 = nn.BatchNorm2d(cout)
        self.act1 = _act(abits)
        self.conv2 = _conv(cout, cout, 3, 1, wbits)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Sequential | None = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(_conv(cin, cout, 1, stride, wbits),
                                          nn.BatchNorm2d(cout), _act(abits))
            self.act2 = self.shortcut[-1]
        else:
            self.act2 = in_act
        self.act_out = _act(abits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act1(self.bn1(self.conv1(x)))
        y = self.act2(self.bn2(self.conv2(y)))
        s = x if self.shortcut is None else self.shortcut(x)
        return self.act_out(y + s)


class ResNetSmall(nn.Module):
    """CIFAR-shaped residual BNN/TNN: CNV's signed 8-bit input quantizer, a 3x3 stem,
    blocks 16->16, 16->32 (stride 2, downsampling shortcut), 32->32, max-pool, dense."""

    def __init__(self, wbits: int, abits: int) -> None:
        super().__init__()
        self.in_quant = QuantIdentity(  # Q1.7 pixels, as in FINN's CNV
            act_quant=CommonActQuant, bit_width=8, min_val=-1.0, max_val=1.0 - 2.0**-7,
            narrow_range=False, restrict_scaling_type=RestrictValueType.POWER_OF_TWO)
        self.stem = _conv(3, 16, 3, 1, wbits)
        self.stem_bn = nn.BatchNorm2d(16)
        self.stem_act = _act(abits)
        self.block1 = ResBlock(16, 16, 1, self.stem_act, wbits, abits)
        self.block2 = ResBlock(16, 32, 2, self.block1.act_out, wbits, abits)
        self.block3 = ResBlock(32, 32, 1, self.block2.act_out, wbits, abits)
        self.pool = nn.MaxPool2d(2)
        self.fc = QuantLinear(32 * 8 * 8, 10, bias=False, weight_quant=CommonWeightQuant,
                              weight_bit_width=wbits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = 2.0 * x - torch.tensor([1.0], device=x.device)
        x = self.in_quant(x)
        x = self.stem_act(self.stem_bn(self.stem(x)))
        x = self.block3(self.block2(self.block1(x)))
        x = self.pool(x)
        x = x.view(x.shape[0], -1)
        return self.fc(x)


FIXTURES: tuple[Fixture, ...] = (
    Fixture("tfc_w1a1", 1301, MNIST_SHAPE, bnn_pynq("tfc_1w1a"),
            "FINN TFC 784-64-64-64-10, binary weights and activations"),
    Fixture("tfc_w1a2", 1302, MNIST_SHAPE, bnn_pynq("tfc_1w2a"),
            "TFC, binary weights, ternary (2-bit narrow) input and activations"),
    Fixture("tfc_w2a2", 1303, MNIST_SHAPE, bnn_pynq("tfc_2w2a"),
            "TFC, ternary weights, input and activations"),
    Fixture("sfc_w1a1", 1304, MNIST_SHAPE, bnn_pynq("sfc_1w1a"),
            "FINN SFC 784-256-256-256-10"),
    Fixture("lfc_w1a1", 1305, MNIST_SHAPE, bnn_pynq("lfc_1w1a"),
            "FINN LFC 784-1024-1024-1024-10"),
    Fixture("cnv_w1a1", 1306, CIFAR_SHAPE, bnn_pynq("cnv_1w1a"),
            "FINN CNV, signed 8-bit input, conv 64-64-p-128-128-p-256-256, FC 512-512-10"),
    Fixture("cnv_small_w1a1", 1307, CIFAR_SHAPE, small_cnv("cnv_1w1a"),
            "CNV layer sequence, channels 16-16-p-32-32-p-64-64, FC 128-128-10"),
    Fixture("cnv_small_w2a2", 1308, CIFAR_SHAPE, small_cnv("cnv_2w2a"),
            "small CNV, ternary weights and activations"),
    Fixture("resnet_w1a1", 1309, CIFAR_SHAPE, lambda: ResNetSmall(1, 1),
            "3 residual blocks (one downsampling), binary"),
    Fixture("resnet_w2a2", 1310, CIFAR_SHAPE, lambda: ResNetSmall(2, 2),
            "3 residual blocks (one downsampling), ternary"),
)


# ---------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------


def _drop_stack_traces(proto: onnx.ModelProto) -> None:
    """Remove the one piece of exporter output that depends on the exporting machine.

    torch.onnx records on every node the Python stack that created it: absolute
    paths of this checkout and of site-packages, and the script's line numbers.
    Everything else the exporter wrote stays as it was.
    """
    for node in proto.graph.node:
        kept = [p for p in node.metadata_props if p.key != STACK_TRACE_KEY]
        del node.metadata_props[:]
        node.metadata_props.extend(kept)


def export_one(fx: Fixture, out: Path) -> list[Path]:
    torch.manual_seed(fx.seed)
    gen = torch.Generator().manual_seed(fx.seed)
    model = fx.build()
    _levelled_weights(model, gen)
    _seeded_norms(model, gen)
    model.eval()

    x = pixel_inputs(fx.seed, (N_SAMPLES, *fx.in_shape))
    classifier = [m for m in model.modules() if isinstance(m, QuantLinear)][-1]
    seen: list[torch.Tensor] = []
    hook = classifier.register_forward_hook(lambda _m, _i, out: seen.append(out))
    with torch.no_grad():
        y = model(torch.from_numpy(x))
    hook.remove()
    y_np = np.asarray(getattr(y, "value", y).detach().numpy(), dtype=np.float32)
    acc_np = np.asarray(getattr(seen[0], "value", seen[0]).detach().numpy(), dtype=np.float32)

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tmp_onnx = Path(tmp) / f"{fx.name}.onnx"
        export_qonnx(model, torch.from_numpy(x[:1]), export_path=str(tmp_onnx))
        proto = onnx.load(tmp_onnx)
    _drop_stack_traces(proto)
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()

    onnx_path = out / f"{fx.name}.onnx"
    io_path = out / f"{fx.name}.io.npz"
    write_atomic(onnx_path, data)
    write_atomic(io_path, npz_bytes({"x": x, "y_framework": y_np, "acc_framework": acc_np}))
    return [onnx_path, io_path]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--only", nargs="*", default=None, help="fixture names to export")
    ap.add_argument("--larq-python", type=Path, default=None,
                    help="interpreter with TensorFlow 2.15/Larq/tf2onnx for export_larq.py")
    args = ap.parse_args(argv)

    names = {fx.name for fx in FIXTURES}
    unknown = sorted(set(args.only or ()) - names)
    if unknown:
        print(f"error: unknown fixture(s) {unknown}; known: {sorted(names)}", file=sys.stderr)
        return 2
    torch.use_deterministic_algorithms(True)
    written: list[Path] = []
    for fx in FIXTURES:
        if args.only is None or fx.name in args.only:
            print(f"{fx.name}: {fx.note}", flush=True)
            written += export_one(fx, args.out)
    for p in written:
        digest = hashlib.sha256(p.read_bytes()).hexdigest()[:16]
        print(f"{p.stat().st_size:>10}  {digest}  {p.relative_to(args.out.parent)}")

    if args.larq_python is not None:
        cmd = [str(args.larq_python), str(Path(__file__).with_name("export_larq.py")),
               "--out", str(args.out)]
        return subprocess.run(cmd, check=False).returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
