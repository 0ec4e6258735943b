"""Integer intermediate representation of a BNN/TNN.

The network is a topologically ordered list of layers over integer tensors
(batch first, NCHW for images). Only the input stage touches floats;
everything after it is exact integer arithmetic:

    InputStage   float32 -> integer levels (bipolar, ternary, unsigned <= 8 bit, or
                 signed <= 8 bit); an optional layout map reads the graph input as the
                 model takes it (e.g. NHWC, or flattened) into the IR's shape
    Dense        acc[o] = sum_i w[o, i] * x[i],   w in {-1, +1} or {-1, 0, +1}
    Conv2d       the same over im2col patches; padding uses an explicit value
    MaxPool2d    max over windows (of activations or of accumulators)
    Flatten      NCHW -> N, C*H*W (channel-major)
    Threshold    y = out_bias + out_scale * #{k : sign[c] * acc >= t[c, k]}
    Tap          the output of an earlier layer, read again (starts a second path)
    Add          sum_k scales[k] * out[inputs[k]] of earlier activations (residual add)
    Concat       earlier activations joined along the channel (feature) axis

The last layer's output (a linear layer's accumulators, or an Add) is the
network's integer logits.

Graph contract (branches)
-------------------------
``Network.layers`` is a list in topological order. Layer ``i`` reads the
output of layer ``i - 1`` (the quantized input for ``i = 0``), except three
kinds that name what they read by layer index (``-1`` = the quantized input):

* ``Tap(source)`` outputs layer ``source``'s output unchanged. It is how a
  second path starts: a shortcut's first layer follows a ``Tap`` of the
  block's input. It costs nothing; an executor keeps ``source``'s output
  alive until its last reader (``LayerInfo.sources`` lists every reader's
  sources).
* ``Add(inputs, scales)`` outputs the elementwise integer sum
  ``sum_k scales[k] * out[inputs[k]]``. Every input is an activation (the
  output of a Threshold, of the input stage, or a MaxPool/Flatten/Concat/Tap of
  one) and all have the same shape; ``scales`` are non-zero integers (empty =
  all 1) that put operands quantized with different float scales on one
  integer grid. The sum has no activation value set: like accumulators it is
  followed by a Threshold (the quantizer after the residual add) or it is
  the logits.
* ``Concat(inputs)`` joins activations of equal spatial shape along axis 0
  of (C, H, W) or (F,); its value set is the union of its inputs'.

Every layer's output except the last must be read by some later layer (no
dead branches). A network without Tap/Add/Concat is the straight line of
earlier versions, unchanged.
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

    @staticmethod
    def signed(bits: int) -> ValueSet:
        return ValueSet(tuple(range(-(2 ** (bits - 1)), 2 ** (bits - 1))))

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
        """Bit width for bit-serial input: unsigned magnitude bits, or two's complement
        bits (sign plane included) for signed values; 1 for +-1 / ternary."""
        if self.kind == "unsigned":
            return max(1, int(self.hi).bit_length())
        if self.kind == "signed":
            return 1 + max(int(self.hi).bit_length(), int(-self.lo - 1).bit_length())
        return 1

    def describe(self) -> str:
        if self.kind in ("unsigned", "signed"):
            return f"{self.kind} {self.bits}-bit [{self.lo}..{self.hi}]"
        return f"{self.kind} {{{', '.join(str(v) for v in self.values)}}}"


@dataclass(frozen=True, eq=False)
class InputStage:
    """Float input -> integer: layout map, pre_ops (float32, ONNX order), quantizer,
    level map.

    The integer value of level L is ``int_bias + int_scale * L``. ``shape`` is
    the IR's input shape (C, H, W or F). When the model takes its input in
    another layout (NHWC, or an image it flattens itself), ``source_shape`` is
    the graph input's shape without the batch and ``source_index`` (int64,
    ``prod(shape)`` entries) gives, for each element of the IR tensor in
    row-major order, the row-major position of the graph-input element it
    reads; None means a plain row-major reshape. The layout map is applied
    first: pre_ops and quantizer are elementwise (per channel of ``shape``).
    """

    shape: tuple[int, ...]
    pre_ops: tuple[ElementwiseOp, ...]
    quantizer: Quantizer
    int_scale: int
    int_bias: int
    source_shape: tuple[int, ...] | None = None
    source_index: np.ndarray | None = None

    @property
    def graph_shape(self) -> tuple[int, ...]:
        """The shape (batch excluded) of the input the model takes."""
        return tuple(self.source_shape) if self.source_shape is not None else tuple(self.shape)

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


@dataclass(frozen=True, eq=False)
class Tap:
    """Output = the output of layer ``source`` (-1: the quantized input)."""

    source: int


@dataclass(frozen=True, eq=False)
class Add:
    """Output = sum_k scales[k] * out[inputs[k]] (integer, elementwise)."""

    inputs: tuple[int, ...]
    scales: tuple[int, ...] = ()  # empty: every scale is 1

    @property
    def factors(self) -> tuple[int, ...]:
        return tuple(self.scales) if self.scales else (1,) * len(self.inputs)


@dataclass(frozen=True, eq=False)
class Concat:
    """Output = the inputs' outputs joined along axis 0 (channels or features)."""

    inputs: tuple[int, ...]


Layer = Dense | Conv2d | MaxPool2d | Flatten | Threshold | Tap | Add | Concat
BRANCH_KINDS = (Tap, Add, Concat)


@dataclass(frozen=True, eq=False)
class Network:
    input: InputStage
    layers: tuple[Layer, ...]
    input_name: str = "x"
    output_name: str = "logits"
    name: str = "net"
    metadata: dict[str, str] = field(default_factory=dict)
    # Float ops the ONNX graph applies to the integer logits (a TensorNorm
    # tail, Larq's per-class BatchNorm Mul/Add). They are host-side: the chip's
    # outputs are the integer logits; predictions and accuracy are the argmax of
    # these ops applied to them (golden_model.reference.scores).
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
    sources: tuple[int, ...] = ()  # the layers whose outputs it reads (-1: the input)


def layer_name(index: int, layer: Layer) -> str:
    return f"layer {index} ({type(layer).__name__})"


def conv_out_hw(h: int, w: int, kh: int, kw: int, stride: tuple[int, int],
                pads: tuple[int, int, int, int]) -> tuple[int, int]:
    oh = (h + pads[0] + pads[2] - kh) // stride[0] + 1
    ow = (w + pads[1] + pads[3] - kw) // stride[1] + 1
    return oh, ow


def _check_input_stage(st: InputStage, where: str) -> None:
    n = int(np.prod(st.shape))
    if st.source_shape is not None and int(np.prod(st.source_shape)) != n:
        raise BadInputError(f"input layout: source shape {tuple(st.source_shape)} and IR shape "
                            f"{tuple(st.shape)} hold different numbers of values", where=where)
    if st.source_index is not None:
        idx = np.asarray(st.source_index)
        if idx.shape != (n,) or not np.array_equal(np.sort(idx), np.arange(n)):
            raise BadInputError("input layout: source_index is not a permutation of the "
                                f"{n} input values", where=where)
    if st.values.lo < -128 or st.values.hi > 255:
        raise BadInputError(f"input levels {st.values.describe()} exceed 8 bits", where=where)


def _sources(i: int, layer: Layer) -> tuple[int, ...]:
    if isinstance(layer, Tap):
        return (layer.source,)
    if isinstance(layer, Add | Concat):
        return tuple(layer.inputs)
    return (i - 1,)


def analyze(net: Network) -> list[LayerInfo]:
    """Validate the network and return per-layer shapes, value sets and bounds."""
    _check_input_stage(net.input, f"{net.name}: input stage")
    # (shape, values, bound) of every output; index -1 is the quantized input.
    outs: dict[int, tuple[tuple[int, ...], ValueSet | None, int]] = {
        -1: (tuple(net.input.shape), net.input.values, net.input.values.max_abs)}
    infos: list[LayerInfo] = []
    read: set[int] = set()
    last_linear = -1
    shape: tuple[int, ...] = outs[-1][0]
    values: ValueSet | None = outs[-1][1]
    for i, layer in enumerate(net.layers):
        where = layer_name(i, layer)
        srcs = _sources(i, layer)
        for j in srcs:
            if not -1 <= j < i:
                raise BadInputError(f"reads layer {j}, which is not an earlier layer (layers "
                                    "are in topological order; -1 is the input)", where=where)
        read.update(srcs)
        shape, values, bound = outs[srcs[0]]
        in_shape, in_values = shape, values
        fan_in = 0
        if isinstance(layer, Tap):
            pass
        elif isinstance(layer, Add):
            if len(layer.inputs) < 2:
                raise BadInputError("an Add needs at least two inputs", where=where)
            if layer.scales and len(layer.scales) != len(layer.inputs):
                raise BadInputError(f"{len(layer.scales)} scales for {len(layer.inputs)} inputs",
                                    where=where)
            if any(int(k) != k or k == 0 for k in layer.factors):
                raise BadInputError(f"scales {list(layer.factors)} must be non-zero integers",
                                    where=where)
            bound = 0
            for j, k in zip(layer.inputs, layer.factors, strict=True):
                s_j, v_j, _ = outs[j]
                if v_j is None:
                    raise BadInputError(f"input {j} is not an activation (accumulators or a sum "
                                        "need a Threshold before an Add)", where=where)
                if s_j != shape:
                    raise BadInputError(f"input shapes differ: {list(shape)} (layer "
                                        f"{srcs[0]}) and {list(s_j)} (layer {j})", where=where)
                bound += abs(int(k)) * v_j.max_abs
            values = None
        elif isinstance(layer, Concat):
            if len(layer.inputs) < 2:
                raise BadInputError("a Concat needs at least two inputs", where=where)
            vals: set[int] = set()
            chans = 0
            for j in layer.inputs:
                s_j, v_j, _ = outs[j]
                if v_j is None:
                    raise BadInputError(f"input {j} is not an activation (Concat joins "
                                        "quantized tensors)", where=where)
                if len(s_j) != len(shape) or s_j[1:] != shape[1:]:
                    raise BadInputError(f"input shapes {list(shape)} (layer {srcs[0]}) and "
                                        f"{list(s_j)} (layer {j}) differ beyond axis 0",
                                        where=where)
                vals.update(v_j.values)
                chans += s_j[0]
            shape = (chans, *shape[1:])
            values = ValueSet(tuple(sorted(vals)))
            bound = values.max_abs
        elif isinstance(layer, Dense | Conv2d):
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
                raise BadInputError("threshold must follow a linear layer or an Add", where=where)
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
        outs[i] = (shape, values, bound)
        infos.append(LayerInfo(i, type(layer).__name__, in_shape, shape, in_values, values,
                               bound, fan_in, srcs))
    if last_linear < 0:
        raise BadInputError("network has no linear layer", where=net.name)
    if values is not None:
        raise BadInputError("the network must end in a linear layer whose accumulators are the "
                            "logits (found an activation after the last linear layer)",
                            where=net.name)
    unread = [j for j in range(-1, len(net.layers) - 1) if j not in read]
    if unread:
        j = unread[0]
        what = "the quantized input" if j < 0 else layer_name(j, net.layers[j])
        raise BadInputError(f"the output of {what} is never read (a dead branch)",
                            where=net.name)
    return infos
