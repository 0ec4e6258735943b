"""Human-readable summary of an imported network (``cimgen inspect``)."""

from __future__ import annotations

import numpy as np

from golden_model.ir import Conv2d, Dense, MaxPool2d, Network, Threshold, analyze


def _values(a: np.ndarray) -> str:
    return "{" + ", ".join(str(int(v)) for v in np.unique(a)) + "}"


def describe(net: Network) -> str:
    infos = analyze(net)
    st = net.input
    q = st.quantizer
    lines = [
        f"model: {net.name}",
        f"input '{net.input_name}': float32 [batch, {', '.join(map(str, st.shape))}] -> "
        f"{q.kind} quantizer ({len(st.pre_ops)} float pre-ops) -> {st.values.describe()}",
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
        lines.append(f"{info.index:>3}  {info.kind:<10} {list(info.in_shape)!s:<14} "
                     f"{list(info.out_shape)!s:<14} {detail}".rstrip())
    lines.append(f"output '{net.output_name}': int64 logits [batch, {infos[-1].out_shape[0]}]"
                 + (f", then {len(net.output_ops)} scalar float op(s)" if net.output_ops else ""))
    lines.append(f"totals: {weights} weights, {thresholds} thresholds, "
                 f"{len(net.layers)} layers")
    return "\n".join(lines)
