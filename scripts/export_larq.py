"""Export small Larq BNN/TNN models through tf2onnx as cimgen test fixtures.

Runs under its own interpreter (TensorFlow 2.15 / Keras 2 need numpy < 2)::

    python -m venv /work/venvs/larq
    /work/venvs/larq/bin/pip install "tensorflow-cpu==2.15.1" "larq==0.13.3" \\
        "tf2onnx==1.16.1" "numpy<2"
    /work/venvs/larq/bin/python scripts/export_larq.py [--out tests/fixtures/onnx]

(or ``python scripts/export_models.py --larq-python /work/venvs/larq/bin/python``).
Writes ``<name>.onnx`` as ``tf2onnx.convert.from_keras`` returned it (default
opset, default input signature, so the batch dimension stays symbolic) and
``<name>.io.npz`` with seeded inputs ``x``, ``model.predict(x)`` as
``y_framework`` and the last QuantDense layer's output (integers, before the
BatchNorm/Softmax tail) as ``acc_framework``. Inputs are pixels k/255
rescaled to [-1, 1] outside the model, as Larq's guides do; every layer, the
first included, quantizes its input (Larq's guides leave the first layer's
input in float, which no crossbar mapping can take). Latent weights are set to
few levels (+-0.5, and 0 for ternary kernels) and BatchNorm statistics to
seeded non-trivial values.

Not byte-reproducible: tf2onnx merges equal constants (the 0.1 of every
``ste_sign``, the threshold of every ``ste_tern``) and keeps the first of them
in a node order that varies from run to run, so the surviving constant's name,
and with it the file's bytes, change; nodes, order, shapes and values do not.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fixture_io import npz_bytes, pixel_inputs, write_atomic

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
try:
    import larq as lq
    import tensorflow as tf
    import tf2onnx
except ImportError as e:  # pragma: no cover - depends on the environment
    sys.exit(f"export_larq.py needs tensorflow 2.15, larq and tf2onnx ({e}); "
             "see the docstring for the install commands")

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "tests" / "fixtures" / "onnx"
N_SAMPLES = 8
MNIST_SHAPE = (28, 28, 1)  # NHWC, as Keras takes it
# Activation threshold of the ternary model: BN outputs are O(1), so 0.5 gives
# plenty of zeros; the kernels keep Larq's default 0.05.
TERN_ACT_THRESHOLD = 0.5


@dataclass(frozen=True)
class Fixture:
    name: str
    seed: int
    build: Callable[[], tf.keras.Model]
    note: str


def _binary(**extra: object) -> dict[str, object]:
    return {"input_quantizer": "ste_sign", "kernel_quantizer": "ste_sign",
            "kernel_constraint": "weight_clip", "use_bias": False, **extra}


def larq_mlp() -> tf.keras.Model:
    return tf.keras.Sequential([
        tf.keras.Input(MNIST_SHAPE),
        tf.keras.layers.Flatten(),
        lq.layers.QuantDense(64, **_binary()),
        tf.keras.layers.BatchNormalization(scale=False),
        lq.layers.QuantDense(64, **_binary()),
        tf.keras.layers.BatchNormalization(scale=False),
        lq.layers.QuantDense(10, **_binary()),
        tf.keras.layers.BatchNormalization(scale=False),
        tf.keras.layers.Activation("softmax"),
    ])


def larq_cnn() -> tf.keras.Model:
    # Larq's MNIST guide order: conv, (pool), BN; BN keeps its scale here so some
    # gammas can be negative.
    return tf.keras.Sequential([
        tf.keras.Input(MNIST_SHAPE),
        lq.layers.QuantConv2D(16, (3, 3), **_binary()),
        tf.keras.layers.BatchNormalization(),
        lq.layers.QuantConv2D(32, (3, 3), **_binary()),
        tf.keras.layers.MaxPooling2D((2, 2)),
        tf.keras.layers.BatchNormalization(),
        lq.layers.QuantConv2D(32, (3, 3), **_binary()),
        tf.keras.layers.MaxPooling2D((2, 2)),
        tf.keras.layers.BatchNormalization(),
        tf.keras.layers.Flatten(),
        lq.layers.QuantDense(10, **_binary()),
        tf.keras.layers.BatchNormalization(),
        tf.keras.layers.Activation("softmax"),
    ])


def larq_tern_mlp() -> tf.keras.Model:
    def tern(units: int) -> lq.layers.QuantDense:
        return lq.layers.QuantDense(
            units, input_quantizer=lq.quantizers.SteTern(threshold_value=TERN_ACT_THRESHOLD),
            kernel_quantizer="ste_tern", kernel_constraint="weight_clip", use_bias=False)

    return tf.keras.Sequential([
        tf.keras.Input(MNIST_SHAPE),
        tf.keras.layers.Flatten(),
        tern(64),
        tf.keras.layers.BatchNormalization(),
        tern(64),
        tf.keras.layers.BatchNormalization(),
        tern(10),
        tf.keras.layers.BatchNormalization(),
        tf.keras.layers.Activation("softmax"),
    ])


FIXTURES: tuple[Fixture, ...] = (
    Fixture("larq_mlp", 2301, larq_mlp, "ste_sign MLP 784-64-64-10, BN(scale=False), softmax"),
    Fixture("larq_cnn", 2302, larq_cnn, "ste_sign CNN conv16-conv32-pool-conv32-pool, dense 10"),
    Fixture("larq_tern_mlp", 2303, larq_tern_mlp, "ste_tern MLP 784-64-64-10, BN, softmax"),
)


def _set_parameters(model: tf.keras.Model, rng: np.random.Generator) -> None:
    fan_in = 1
    for layer in model.layers:
        if isinstance(layer, lq.layers.QuantDense | lq.layers.QuantConv2D):
            k = layer.kernel
            fan_in = int(np.prod(k.shape[:-1]))
            ternary = "tern" in type(layer.kernel_quantizer).__name__.lower()
            levels = (-0.5, 0.0, 0.5) if ternary else (-0.5, 0.5)
            k.assign(rng.choice(levels, size=k.shape).astype(np.float32))
        elif isinstance(layer, tf.keras.layers.BatchNormalization):
            c = int(layer.moving_mean.shape[0])
            spread = float(np.sqrt(fan_in))
            if layer.gamma is not None:
                sign = np.where(rng.random(c) < 0.2, -1.0, 1.0)
                layer.gamma.assign((sign * rng.uniform(0.5, 2.0, c)).astype(np.float32))
            layer.beta.assign(rng.uniform(-0.5, 0.5, c).astype(np.float32))
            layer.moving_mean.assign((rng.uniform(-0.5, 0.5, c) * spread + 0.37)
                                     .astype(np.float32))
            layer.moving_variance.assign((rng.uniform(0.25, 1.5, c) * spread * spread)
                                         .astype(np.float32))


def export_one(fx: Fixture, out: Path) -> list[Path]:
    # Keras numbers layer names per process; a fresh session keeps each file's
    # names independent of which fixtures were exported before it.
    tf.keras.backend.clear_session()
    tf2onnx.utils.INTERNAL_NAME = 1  # tf2onnx's own per-process name counter
    tf.keras.utils.set_random_seed(fx.seed)
    model = fx.build()
    _set_parameters(model, np.random.default_rng(fx.seed))

    x = pixel_inputs(fx.seed, (N_SAMPLES, *MNIST_SHAPE)) * np.float32(2.0) - np.float32(1.0)
    y = np.asarray(model.predict(x, batch_size=N_SAMPLES, verbose=0), dtype=np.float32)
    classifier = [la for la in model.layers if isinstance(la, lq.layers.QuantDense)][-1]
    acc_model = tf.keras.Model(inputs=model.inputs, outputs=classifier.output)
    acc = np.asarray(acc_model.predict(x, batch_size=N_SAMPLES, verbose=0), dtype=np.float32)

    proto, _ = tf2onnx.convert.from_keras(model)
    data = proto.SerializeToString()
    onnx_path = out / f"{fx.name}.onnx"
    io_path = out / f"{fx.name}.io.npz"
    write_atomic(onnx_path, data)
    write_atomic(io_path, npz_bytes({"x": x.astype(np.float32), "y_framework": y,
                                     "acc_framework": acc}))
    return [onnx_path, io_path]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--only", nargs="*", default=None, help="fixture names to export")
    args = ap.parse_args(argv)
    names = {fx.name for fx in FIXTURES}
    unknown = sorted(set(args.only or ()) - names)
    if unknown:
        print(f"error: unknown fixture(s) {unknown}; known: {sorted(names)}", file=sys.stderr)
        return 2
    written: list[Path] = []
    for fx in FIXTURES:
        if args.only is None or fx.name in args.only:
            print(f"{fx.name}: {fx.note}", flush=True)
            written += export_one(fx, args.out)
    for p in written:
        digest = hashlib.sha256(p.read_bytes()).hexdigest()[:16]
        print(f"{p.stat().st_size:>10}  {digest}  {p.relative_to(args.out.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
