"""The per-input dataflow of a network: steps, the tensors they read and write, and
where each tensor lives in an input's DMEM slot.

A network is a topologically ordered list of layers (``golden_model.ir``); most
read the previous layer's output, ``Tap``/``Add``/``Concat`` name theirs. A
*step* is what the code generator emits as a unit: a linear layer (with the
threshold that directly follows it, unless something else reads the raw
accumulators), a max-pool, a standalone threshold, a residual add (with its
threshold), or a concat. ``Flatten`` and ``Tap`` cost nothing: their output is
their input's storage, seen with another shape.

Memory order: activations are stored channel-fastest (HWC) for images and in
the order their producer leaves them for vectors (a Flatten keeps its input's
order, a 1-D Concat joins its inputs' orders).

Storage: every other output gets a region of the slot. With ``reuse`` the
regions are recycled once no later step reads them (first fit, in step
order); without it each output keeps its own region. Reuse follows the step
order, which is the execution order of a chain even when weights stream
(every step finishes, for an input, before the next one starts); a network
with branches whose weights stream is laid out without reuse, because a
branch can run in an earlier residency than a step before it in the list.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from golden_model.errors import BadInputError
from golden_model.ir import (
    Add,
    Concat,
    Conv2d,
    Dense,
    Flatten,
    Layer,
    LayerInfo,
    MaxPool2d,
    Network,
    Tap,
    Threshold,
    layer_name,
)

from .layout import Tensor, hwc_order


@dataclass
class Step:
    """One unit of emitted code, its operand tensors (slot offsets) and threshold."""

    kind: str  # "linear" | "pool" | "threshold" | "add" | "concat"
    index: int  # the layer it lowers (net.layers index)
    srcs: tuple[Tensor, ...]
    dst: Tensor
    act: Threshold | None = None
    act_index: int = -1  # the threshold's layer index when one is fused
    thr_addr: int = 0
    factors: tuple[int, ...] = ()  # Add: integer operand scales
    sources: tuple[int, ...] = ()  # the steps whose outputs it reads (-1: the input)
    storage: int = -1  # the slot region it writes
    src_storages: tuple[int, ...] = ()  # the regions it reads
    residency: int = 0  # where it runs (-1: a streamed linear layer, in every residency
    #                     that holds some of its tiles)

    @property
    def src(self) -> Tensor:
        return self.srcs[0]


@dataclass
class Dataflow:
    steps: list[Step]
    input: Tensor
    output: Tensor
    slot_words: int
    order_in: dict[int, np.ndarray] = field(default_factory=dict)  # Dense: input order


def _fusable(layers: tuple[Layer, ...], infos: list[LayerInfo], i: int) -> bool:
    """Layer i + 1 is a Threshold and nothing else reads layer i's raw output."""
    if i + 1 >= len(layers) or not isinstance(layers[i + 1], Threshold):
        return False
    return not any(i in info.sources for j, info in enumerate(infos) if j != i + 1)


def build(net: Network, infos: list[LayerInfo], thresholds: tuple[Layer, ...],
          reuse: bool) -> Dataflow:
    """Steps and slot offsets. ``thresholds`` is the layer list whose Threshold
    objects the program applies (the rescaled ones of a basis form)."""
    layers = net.layers
    shape = tuple(net.input.shape)
    inp = Tensor(0, shape, hwc_order(shape))
    # tensor of each layer output (-1: the input), the step producing it (-1: host)
    tensor: dict[int, Tensor] = {-1: inp}
    producer: dict[int, int] = {-1: -1}
    storage_of: dict[int, int] = {-1: 0}  # tensor -> storage id (aliases share one)
    steps: list[Step] = []
    storages: list[list[int]] = [[inp.size, -1, -1]]  # size, first step, last step
    order_in: dict[int, np.ndarray] = {}
    last = len(layers) - 1
    i = 0

    def new_storage(size: int) -> int:
        storages.append([size, len(steps), len(steps)])
        return len(storages) - 1

    while i < len(layers):
        layer, info = layers[i], infos[i]
        srcs = info.sources or (i - 1,)
        where = layer_name(i, layer)
        if isinstance(layer, Flatten | Tap):
            src = tensor[srcs[0]]
            tensor[i] = Tensor(src.base, info.out_shape, src.order)
            producer[i], storage_of[i] = producer[srcs[0]], storage_of[srcs[0]]
            i += 1
            continue
        act: Threshold | None = None
        end = i
        factors: tuple[int, ...] = ()
        if isinstance(layer, Dense | Conv2d | Add) and _fusable(layers, infos, i):
            th = thresholds[i + 1]
            assert isinstance(th, Threshold)
            act, end = th, i + 1
        if isinstance(layer, Dense | Conv2d):
            kind = "linear"
            if isinstance(layer, Dense):
                order_in[i] = tensor[srcs[0]].order
        elif isinstance(layer, MaxPool2d):
            kind = "pool"
        elif isinstance(layer, Threshold):
            kind = "threshold"
            th = thresholds[i]
            assert isinstance(th, Threshold)
            act = th
        elif isinstance(layer, Add):
            kind = "add"
            factors = layer.factors
            orders = [tensor[j].order for j in layer.inputs]
            if any(not np.array_equal(orders[0], o) for o in orders[1:]):
                raise BadInputError("the operands of a residual add are stored in different "
                                    "orders (one is flattened differently); the compiler "
                                    "adds tensors in one memory order only", where=where)
        elif isinstance(layer, Concat):
            kind = "concat"
        else:  # pragma: no cover - analyze() admits no other kind
            raise BadInputError(f"{type(layer).__name__} is not compiled", where=where)
        out_shape = infos[end].out_shape
        src0 = tensor[srcs[0]]
        if kind in ("threshold", "add") or (kind == "concat" and len(out_shape) == 1):
            if kind == "concat":
                parts, off = [], 0
                for j in layer.inputs:  # type: ignore[union-attr]
                    parts.append(tensor[j].order + off)
                    off += tensor[j].size
                order = np.concatenate(parts)
            else:
                order = src0.order  # elementwise: the operands' memory order
        else:
            order = hwc_order(out_shape)
        sid = new_storage(int(np.prod(out_shape)))
        dst = Tensor(-1, out_shape, order)  # offset assigned below
        for j in srcs:
            st_j = storage_of[j]
            storages[st_j][2] = max(storages[st_j][2], len(steps))
        steps.append(Step(kind, i, tuple(tensor[j] for j in srcs), dst, act, end if act else -1,
                          factors=factors, sources=tuple(producer[j] for j in srcs),
                          storage=sid, src_storages=tuple(storage_of[j] for j in srcs)))
        for k in range(i, end + 1):
            tensor[k], producer[k], storage_of[k] = dst, len(steps) - 1, sid
        i = end + 1
    out_sid = storage_of[last]
    storages[out_sid][2] = len(steps)  # the host reads it after the run
    offsets = _allocate(storages, reuse)
    # Every tensor starts where its storage starts (aliases included).
    for st in steps:
        st.dst = Tensor(offsets[st.storage], st.dst.shape, st.dst.order)
        st.srcs = tuple(Tensor(offsets[sid], t.shape, t.order)
                        for t, sid in zip(st.srcs, st.src_storages, strict=True))
    out = tensor[last]
    out = Tensor(offsets[out_sid], out.shape, out.order)
    size = max((offsets[k] + storages[k][0] for k in range(len(storages))), default=0)
    return Dataflow(steps, Tensor(0, inp.shape, inp.order), out, size, order_in)


def _allocate(storages: list[list[int]], reuse: bool) -> list[int]:
    """Slot offset of every storage: [size, first step, last step] each."""
    offsets = [0] * len(storages)
    if not reuse:
        top = 0
        for k, (size, _, _) in enumerate(storages):
            offsets[k] = top
            top += size
        return offsets
    live: list[tuple[int, int, int]] = []  # offset, size, last step
    # The input (storage 0) is written by the host before step 0.
    order = sorted(range(len(storages)), key=lambda k: (storages[k][1], k))
    for k in order:
        size, first, _ = storages[k]
        # Regions whose last reader ran before this storage's producer are free.
        live = [r for r in live if r[2] >= first]
        pos = 0
        for off, sz, _ in sorted(live):
            if pos + size <= off:
                break
            pos = max(pos, off + sz)
        offsets[k] = pos
        live.append((pos, size, storages[k][2]))
    return offsets
