"""What the host needs to drive a compiled chip, without the model file.

The host turns float inputs into the chip's integer input words (the network's
input stage: float32 pre-ops, quantizer, level map, shape) and reads integer
logits back (output shape, and the scalar float ops the graph applies to them).
``cimgen run`` loads this from the compile directory instead of importing the
ONNX model: the description is ``host.json`` (kinds, scalars, shapes, array
names) and the arrays are ``host.npz`` (float32, exactly as the importer built
them, so quantization is bit-identical).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np

from golden_model.errors import BadInputError
from golden_model.floatops import ElementwiseOp, Quantizer
from golden_model.ir import InputStage

HOST_VERSION = 1
OP_KINDS = ("add", "sub", "mul", "div", "rsub", "bn")
QUANT_KINDS = ("bipolar", "sign", "multithreshold", "intquant")


@dataclass(frozen=True, eq=False)
class HostStage:
    input: InputStage
    output_shape: tuple[int, ...]
    output_ops: tuple[ElementwiseOp, ...] = ()


class _Arrays:
    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def add(self, name: str, a: np.ndarray) -> str:
        self.arrays[name] = np.ascontiguousarray(a)
        return name


def _op_json(op: ElementwiseOp, prefix: str, arr: _Arrays) -> dict[str, Any]:
    d: dict[str, Any] = {"kind": op.kind, "eps": float(op.eps)}
    if op.kind == "bn":
        assert op.bn is not None
        d["bn"] = [arr.add(f"{prefix}_bn{i}", np.asarray(p)) for i, p in enumerate(op.bn)]
    else:
        d["const"] = arr.add(f"{prefix}_const", np.asarray(op.const))
    return d


def host_files(stage: HostStage) -> tuple[dict[str, Any], bytes]:
    """(host.json content, host.npz bytes) of a host stage."""
    arr = _Arrays()
    st = stage.input
    q = st.quantizer
    quant: dict[str, Any] = {
        "kind": q.kind, "out_scale": float(q.out_scale), "out_bias": float(q.out_bias),
        "bits": int(q.bits), "signed": bool(q.signed), "narrow": bool(q.narrow),
        "rounding": q.rounding, "scale": arr.add("quant_scale", np.asarray(q.scale)),
        "zeropt": arr.add("quant_zeropt", np.asarray(q.zeropt)),
        "thresholds": None if q.thresholds is None else arr.add("quant_thresholds",
                                                                 np.asarray(q.thresholds)),
    }
    doc = {
        "host_version": HOST_VERSION,
        "input": {"shape": [int(v) for v in st.shape],
                  "pre_ops": [_op_json(op, f"pre{i}", arr) for i, op in enumerate(st.pre_ops)],
                  "quantizer": quant, "int_scale": int(st.int_scale),
                  "int_bias": int(st.int_bias),
                  "source_shape": (None if st.source_shape is None
                                   else [int(v) for v in st.source_shape]),
                  "source_index": (None if st.source_index is None
                                   else arr.add("source_index",
                                                np.asarray(st.source_index, np.int64)))},
        "output": {"shape": [int(v) for v in stage.output_shape],
                   "ops": [_op_json(op, f"out{i}", arr) for i, op in enumerate(stage.output_ops)]},
    }
    return doc, npz_bytes(arr.arrays)


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An .npz archive, byte-reproducible (``np.savez`` stamps the current time)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name in sorted(arrays):
            one = io.BytesIO()
            np.save(one, arrays[name], allow_pickle=False)
            z.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)),
                       one.getvalue())
    return buf.getvalue()


def _layout_of(inp: dict[str, Any], shape: tuple[int, ...], arrays: dict[str, np.ndarray],
               bad: Any) -> tuple[tuple[int, ...] | None, np.ndarray | None]:
    """The input layout map (graph input -> IR order) of host.json, checked."""
    ss, si = inp.get("source_shape"), inp.get("source_index")
    if ss is None:
        if si is not None:
            raise bad("source_index without source_shape")
        return None, None
    src = tuple(int(v) for v in ss)
    size = int(np.prod(shape))
    if not src or min(src) < 1 or int(np.prod(src)) != size:
        raise bad(f"source_shape {list(src)} does not hold the {size} input elements")
    if si is None:
        return src, None
    if not isinstance(si, str) or si not in arrays:
        raise bad(f"source_index: array {si!r} not in host.npz")
    idx = arrays[si]
    if idx.dtype != np.int64 or idx.shape != (size,) or (
            size and (int(idx.min()) < 0 or int(idx.max()) >= size)):
        raise bad(f"source_index must be {size} int64 positions below {size}")
    return src, idx


def load_host(doc: Any, npz: bytes, where: str) -> HostStage:
    """The host stage from host.json (parsed) and host.npz; bad content -> BadInputError."""
    def bad(msg: str) -> BadInputError:
        return BadInputError(f"host stage: {msg}", where=where)

    try:
        with np.load(io.BytesIO(npz), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:
        raise bad(f"unreadable host.npz ({e})") from None

    def get(name: Any, what: str) -> np.ndarray:
        if not isinstance(name, str) or name not in arrays:
            raise bad(f"{what}: array {name!r} not in host.npz")
        a = arrays[name]
        if a.dtype.kind != "f":
            raise bad(f"{what}: array {name} has dtype {a.dtype}, want float")
        return a

    def op_of(d: Any, what: str) -> ElementwiseOp:
        if not isinstance(d, dict) or d.get("kind") not in OP_KINDS:
            raise bad(f"{what}: kind must be one of {', '.join(OP_KINDS)}")
        eps = float(d.get("eps", 1e-5))
        if d["kind"] == "bn":
            names = d.get("bn")
            if not isinstance(names, list) or len(names) != 4:
                raise bad(f"{what}: bn needs 4 arrays")
            p = tuple(get(n, what) for n in names)
            return ElementwiseOp("bn", bn=(p[0], p[1], p[2], p[3]), eps=eps)
        return ElementwiseOp(d["kind"], const=get(d.get("const"), what), eps=eps)

    try:
        if doc.get("host_version") != HOST_VERSION:
            raise bad(f"host_version {doc.get('host_version')} is not {HOST_VERSION}")
        inp, out = doc["input"], doc["output"]
        shape = tuple(int(v) for v in inp["shape"])
        oshape = tuple(int(v) for v in out["shape"])
        if not shape or min(shape) < 1 or not oshape or min(oshape) < 1:
            raise bad(f"shapes {list(shape)} / {list(oshape)} must be positive")
        qd = inp["quantizer"]
        if qd.get("kind") not in QUANT_KINDS:
            raise bad(f"quantizer kind must be one of {', '.join(QUANT_KINDS)}")
        thr = qd.get("thresholds")
        quant = Quantizer(qd["kind"], scale=get(qd["scale"], "quantizer"),
                          thresholds=None if thr is None else get(thr, "quantizer"),
                          out_scale=float(qd["out_scale"]), out_bias=float(qd["out_bias"]),
                          zeropt=get(qd["zeropt"], "quantizer"), bits=int(qd["bits"]),
                          signed=bool(qd["signed"]), narrow=bool(qd["narrow"]),
                          rounding=str(qd["rounding"]))
        pre = tuple(op_of(d, f"input op {i}") for i, d in enumerate(inp["pre_ops"]))
        post = tuple(op_of(d, f"output op {i}") for i, d in enumerate(out["ops"]))
        src_shape, src_index = _layout_of(inp, shape, arrays, bad)
        stage = InputStage(shape, pre, quant, int(inp["int_scale"]), int(inp["int_bias"]),
                           src_shape, src_index)
        stage.values  # noqa: B018 - the quantizer must give a level count
    except BadInputError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise bad(f"malformed ({type(e).__name__}: {e})") from None
    return HostStage(stage, oshape, post)
