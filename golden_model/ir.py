"""Integer intermediate representation of a BNN/TNN.

The network is a straight line of layers over integer tensors (batch first,
NCHW for images). Only the input stage touches floats; everything after it
is exact integer arithmetic:

    InputStage   float32 -> integer levels (bipolar, ternary or unsigned <= 8 bit)
    Dense        acc[o] = sum_i w[o, i] * x[i],   w in {-1, +1} or {-1, 0, +1}
    Conv2d       the same over im2col patches; padding uses an explicit value
    MaxPool2d    max over windows (of activations or of accumulators)
    Flatten      NCHW -> N, C*H*W (channel-major)
    Threshold    y = out_bias + out_scale * #{k : sign[c] * acc >= t[c, k]}

The last linear layer's accumulators are the network's integer logits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import BadInputError
from .floatops import ElementwiseOp, Quantizer


@dataclass(frozen=True)
class ValueSet:
    """The integer values a tensor can hold."""

    values: tuple[int, ...]

    @staticmethod
    def bipolar() -> ValueSet:
        return ValueSet((-1, 1))

    @staticmethod
    def ternary() -> ValueSet:
        return ValueSet((-1, 0, 1))

    @staticmethod
    def unsigned(bits: int) -> ValueSet:
        return ValueSet(tuple(range(2**bits)))

    @property
    def lo(self) -> int:
        return min(self.values)

    @property
    def hi(self) -> int:
        return max(self.values)

    @property
    def max_abs(self) -> int:
        return max(abs(self.lo), abs(self.hi))

    @property
    def kind(self) -> str:
        s = set(self.values)
        if s <= {-1, 1}:
            return "bipolar"
        if s <= {-1, 0, 1}:
            return "ternary"
        if self.lo >= 0:
            return "unsigned"
        return "signed"

    @property
    def bits(self) -> int:
        """Bit width for unsigned values (bit-serial input); 1 for +-1 / ternary."""
        if self.kind == "unsigned":
            return max(1, int(self.hi).bit_length())
        return 1

    def describe(self) -> str:
        if self.kind == "unsigned":
            return f"unsigned {self.bits}-bit [{self.lo}..{self.hi}]"
        return f"{self.kind} {{{', '.join(str(v) for v in self.values)}}}"


@dataclass(frozen=True, eq=False)
class InputStage:
    """Float input -> integer: pre_ops (float32, ONNX order), quantizer, level map.

    The integer value of level L is ``int_bias + int_scale * L``.
    """

    shape: tuple[int, ...]
    pre_ops: tuple[ElementwiseOp, ...]
    quantizer: Quantizer
    int_scale: int
    int_bias: int

    @property
    def values(self) -> ValueSet:
        n = self.quantizer.num_levels
        return ValueSet(tuple(sorted({self.int_bias + self.int_scale * k for k in range(n)})))


@dataclass(frozen=True, eq=False)
class Dense:
    weight: np.ndarray  # int8 [out, in]

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[1])


@dataclass(frozen=True, eq=False)
class Conv2d:
    weight: np.ndarray  # int8 [out_c, in_c, kh, kw]
    stride: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, bottom, right
    pad_value: int = 0


@dataclass(frozen=True, eq=False)
class MaxPool2d:
    kernel: tuple[int, int]
    stride: tuple[int, int]


@dataclass(frozen=True, eq=False)
class Flatten:
    pass


@dataclass(frozen=True, eq=False)
class Threshold:
    thresholds: np.ndarray  # int64 [C, K]
    sign: np.ndarray  # int8 [C], +1 or -1
    out_scale: int
    out_bias: int

    @property
    def values(self) -> ValueSet:
        k = int(self.thresholds.shape[1])
        return ValueSet(tuple(sorted({self.out_bias + self.out_scale * i for i in range(k + 1)})))


Layer = Dense | Conv2d | MaxPool2d | Flatten | Threshold


@dataclass(frozen=True, eq=False)
class Network:
    input: InputStage
    layers: tuple[Layer, ...]
    input_name: str = "x"
    output_name: str = "logits"
    name: str = "net"
    metadata: dict[str, str] = field(default_factory=dict)
    # Scalar float ops the ONNX graph applies to the integer logits (e.g. a
    # positive output scale); they never change the ranking.
    output_ops: tuple[ElementwiseOp, ...] = ()


@dataclass(frozen=True)
class LayerInfo:
    """Static facts about one layer, derived by ``analyze``."""

    index: int
    kind: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    in_values: ValueSet | None  # None for accumulators
    out_values: ValueSet | None
    acc_bound: int  # max |value| of the output (accumulator bound for linear layers)
    fan_in: int = 0


def layer_name(index: int, layer: Layer) -> str:
    return f"layer {index} ({type(layer).__name__})"


def conv_out_hw(h: int, w: int, kh: int, kw: int, stride: tuple[int, int],
                pads: tuple[int, int, int, int]) -> tuple[int, int]:
    oh = (h + pads[0] + pads[2] - kh) // stride[0] + 1
    ow = (w + pads[1] + pads[3] - kw) // stride[1] + 1
    return oh, ow


def analyze(net: Network) -> list[LayerInfo]:
    """Validate the network and return per-layer shapes, value sets and bounds."""
    shape = tuple(net.input.shape)
    values: ValueSet | None = net.input.values
    bound = values.max_abs
    infos: list[LayerInfo] = []
    last_linear = -1
    for i, layer in enumerate(net.layers):
        where = layer_name(i, layer)
        in_shape, in_values = shape, values
        fan_in = 0
        if isinstance(layer, Dense | Conv2d):
            if values is None:
                raise BadInputError("linear layer follows another linear layer without an "
                                    "activation between them", where=where)
            w = layer.weight
            # A range test is 10x faster than np.isin and exact for integer dtypes.
            ok = ((w >= -1) & (w <= 1)).all() if w.dtype.kind in "iu" else \
                np.isin(w, (-1, 0, 1)).all()
            if not ok:
                raise BadInputError("weights outside {-1, 0, +1}", where=where)
            if isinstance(layer, Dense):
                if len(shape) != 1 or shape[0] != layer.in_features:
                    raise BadInputError(f"input shape {shape} does not match weight "
                                        f"[{layer.out_features}, {layer.in_features}]", where=where)
                shape = (layer.out_features,)
                fan_in = layer.in_features
            else:
                if w.ndim != 4 or len(shape) != 3 or shape[0] != w.shape[1]:
                    raise BadInputError(f"input shape {shape} does not match conv weight "
                                        f"{tuple(w.shape)}", where=where)
                if layer.pad_value not in values.values and layer.pad_value != 0:
                    raise BadInputError(f"pad value {layer.pad_value} is not in the input "
                                        f"value set {values.describe()}", where=where)
                if min(layer.stride) < 1 or min(layer.pads) < 0:
                    raise BadInputError("stride must be >= 1 and pads >= 0", where=where)
                oh, ow = conv_out_hw(shape[1], shape[2], w.shape[2], w.shape[3], layer.stride,
                                     layer.pads)
                if oh < 1 or ow < 1:
                    raise BadInputError(f"kernel {tuple(w.shape[2:])} larger than padded input "
                                        f"{shape[1:]}", where=where)
                shape = (int(w.shape[0]), oh, ow)
                fan_in = int(w.shape[1] * w.shape[2] * w.shape[3])
            bound = fan_in * values.max_abs
            values = None
            last_linear = i
        elif isinstance(layer, MaxPool2d):
            if len(shape) != 3:
                raise BadInputError(f"max-pool needs a C,H,W input, got {shape}", where=where)
            kh, kw = layer.kernel
            if min(layer.kernel) < 1 or min(layer.stride) < 1:
                raise BadInputError("kernel and stride must be >= 1", where=where)
            oh, ow = conv_out_hw(shape[1], shape[2], kh, kw, layer.stride, (0, 0, 0, 0))
            if oh < 1 or ow < 1:
                raise BadInputError(f"pool kernel {layer.kernel} larger than input {shape[1:]}",
                                    where=where)
            shape = (shape[0], oh, ow)
        elif isinstance(layer, Flatten):
            shape = (int(np.prod(shape)),)
        elif isinstance(layer, Threshold):
            if values is not None:
                raise BadInputError("threshold must follow a linear layer", where=where)
            t = layer.thresholds
            if t.ndim != 2 or t.shape[0] != shape[0] or t.shape[1] < 1:
                raise BadInputError(f"thresholds shape {tuple(t.shape)} does not match "
                                    f"{shape[0]} channels", where=where)
            if layer.sign.shape != (shape[0],) or not np.isin(layer.sign, (-1, 1)).all():
                raise BadInputError("sign must be +1/-1 per channel", where=where)
            values = layer.values
            if not set(values.values) <= {-1, 0, 1}:
                raise BadInputError(f"activation values {values.values} are not binary or "
                                    "ternary", where=where)
            bound = 1
        else:  # pragma: no cover - the Layer union is closed
            raise BadInputError(f"unknown layer type {type(layer).__name__}", where=where)
        infos.append(LayerInfo(i, type(layer).__name__, in_shape, shape, in_values, values,
                               bound, fan_in))
    if last_linear < 0:
        raise BadInputError("network has no linear layer", where=net.name)
    if values is not None:
        raise BadInputError("the network must end in a linear layer whose accumulators are the "
                            "logits (found an activation after the last linear layer)",
                            where=net.name)
    return infos
