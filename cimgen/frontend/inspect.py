"""Human-readable summary of an imported network (``cimgen inspect``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from golden_model.ir import Add, Concat, Conv2d, Dense, MaxPool2d, Network, Tap, Threshold, analyze

from .passes import PassReport


def _values(a: np.ndarray) -> str:
    return "{" + ", ".join(str(int(v)) for v in np.unique(a)) + "}"


def _src(j: int) -> str:
    return "input" if j < 0 else f"#{j}"


def describe(net: Network, passes: Sequence[PassReport] = ()) -> str:
    infos = analyze(net)
    st = net.input
    q = st.quantizer
    lines = [f"model: {net.name}"]
    if passes:
        lines.append(f"normalization: {len(passes)} pass(es) changed the graph")
        lines += [f"  {p.name}: {p.summary()}" for p in passes]
    else:
        lines.append("normalization: the graph was already in canonical form")
    layout = ""
    if st.source_shape is not None:
        how = "permuted and reshaped" if st.source_index is not None else "reshaped"
        layout = (f" {how} to [batch, {', '.join(map(str, st.shape))}] ->")
    lines += [
        f"input '{net.input_name}': float32 [batch, {', '.join(map(str, st.graph_shape))}] ->"
        f"{layout} {q.kind} quantizer ({len(st.pre_ops)} float pre-ops) -> "
        f"{st.values.describe()}",
        f"{'#':>3}  {'layer':<10} {'in shape':<14} {'out shape':<14} details",
    ]
    weights = thresholds = 0
    for layer, info in zip(net.layers, infos, strict=True):
        detail = ""
        if isinstance(layer, Dense | Conv2d):
            w = layer.weight
            weights += w.size
            detail = (f"weights {list(w.shape)} values {_values(w)} "
                      f"({'ternary' if (w == 0).any() else 'binary'}), fan-in {info.fan_in}, "
                      f"|acc| <= {info.acc_bound}")
            if isinstance(layer, Conv2d):
                detail += (f", stride {layer.stride}, pads {layer.pads}, "
                           f"pad value {layer.pad_value}")
        elif isinstance(layer, Threshold):
            thresholds += layer.thresholds.size
            flipped = int((layer.sign < 0).sum())
            detail = (f"{layer.thresholds.shape[1]} threshold(s) x {layer.thresholds.shape[0]} "
                      f"channels, range [{int(layer.thresholds.min())}, "
                      f"{int(layer.thresholds.max())}], {flipped} flipped -> "
                      f"{layer.values.describe()}")
        elif isinstance(layer, MaxPool2d):
            detail = f"kernel {layer.kernel}, stride {layer.stride}"
        elif isinstance(layer, Tap):
            detail = f"reads {_src(layer.source)} again"
        elif isinstance(layer, Add):
            terms = [f"{k}*{_src(j)}" if k != 1 else _src(j)
                     for j, k in zip(layer.inputs, layer.factors, strict=True)]
            detail = f"{' + '.join(terms)}, |sum| <= {info.acc_bound}"
        elif isinstance(layer, Concat):
            detail = "joins " + ", ".join(_src(j) for j in layer.inputs)
        lines.append(f"{info.index:>3}  {info.kind:<10} {list(info.in_shape)!s:<14} "
                     f"{list(info.out_shape)!s:<14} {detail}".rstrip())
    tail = ""
    if net.output_ops:
        per_class = any(op.channels() > 1 for op in net.output_ops)
        tail = (f", then {len(net.output_ops)} host-side float op(s)"
                f"{' (per class)' if per_class else ''} for the class scores")
    lines.append(f"output '{net.output_name}': int64 logits [batch, {infos[-1].out_shape[0]}]"
                 + tail)
    lines.append(f"totals: {weights} weights, {thresholds} thresholds, "
                 f"{len(net.layers)} layers")
    return "\n".join(lines)
