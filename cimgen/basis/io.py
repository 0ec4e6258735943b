"""The basis-form directory: arrays, the source model, the ONNX export, a manifest.

Layout of ``cimgen basis fit ... -o DIR`` (deterministic, byte for byte, for a
given model, parameters and seed):

    source.onnx                 the original model, as given (input stage, geometry)
    basis.npy                   int8 [N, R] basis vectors (one crossbar column each)
    layerNNN_coefs.npy          int8 [O, S, N] coefficients of linear layer NNN
    layerNNN_scale.npy          float64 [O] W ~ scale * W_eff (fit record; unused by inference)
    layerNNN_thresholds.npy     int64 [C, K] rescaled thresholds of threshold layer NNN
    basis_form.onnx             plain-ONNX export (cimgen.basis.export) for onnxruntime
    manifest.json               format, basis, layers, fit parameters and figures,
                                sha256 of every file

It is written under a temporary name beside DIR and renamed into place. The
reader checks every file against the manifest and the arrays against the
source network; any difference is a ``BadInputError`` naming the file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from golden_model.basis import (
    Basis,
    BasisLinear,
    BasisNetwork,
    check_basis_network,
    row_orders,
)
from golden_model.errors import BadInputError
from golden_model.ir import Conv2d, Dense, Threshold

from .. import __version__
from ..fileio import write_dir_atomic
from ..frontend.onnx_import import load_model
from .export import export_model

FORMAT = "cimgen-basis-form"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


@dataclass
class BasisDir:
    bn: BasisNetwork
    manifest: dict[str, object]
    path: Path


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def _names(i: int) -> tuple[str, str, str]:
    return f"layer{i:03d}_coefs.npy", f"layer{i:03d}_scale.npy", f"layer{i:03d}_thresholds.npy"


def file_contents(bn: BasisNetwork, source: bytes
                  ) -> tuple[dict[str, bytes], list[dict[str, object]]]:
    files = {"source.onnx": source, "basis.npy": _npy(bn.basis.vectors.astype(np.int8))}
    layers: list[dict[str, object]] = []
    for i, ly in enumerate(bn.layers):
        coefs, scale, thr = _names(i)
        if isinstance(ly, BasisLinear):
            files[coefs] = _npy(ly.coefs.astype(np.int8))
            files[scale] = _npy(ly.scale.astype(np.float64))
            layers.append({"index": i, "type": type(ly.source).__name__,
                           "outputs": ly.out_features, "rows": ly.rows,
                           "segments": ly.segments, "coefs": coefs, "scale": scale})
        elif isinstance(ly, Threshold):
            files[thr] = _npy(ly.thresholds.astype(np.int64))
            layers.append({"index": i, "type": "Threshold", "thresholds": thr})
    files["basis_form.onnx"] = export_model(bn).SerializeToString()
    return files, layers




def save_basis(out_dir: str | os.PathLike[str], bn: BasisNetwork, source: bytes,
               fit: dict[str, object], metrics: dict[str, object]) -> dict[str, object]:
    """Write the directory; returns the manifest."""
    check_basis_network(bn)
    files, layers = file_contents(bn, source)
    man: dict[str, object] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "cimgen_version": __version__,
        "model": {"name": bn.original.name, "file": "source.onnx",
                  "sha256": hashlib.sha256(source).hexdigest()},
        "basis": {"file": "basis.npy", "count": bn.basis.count, "length": bn.basis.length,
                  "kind": bn.basis.kind},
        "coef_bits": bn.coef_bits,
        "layers": layers,
        "fit": fit,
        "metrics": metrics,
        "onnx": "basis_form.onnx",
        "files": {name: {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                  for name, data in sorted(files.items())},
    }
    files[MANIFEST] = (json.dumps(man, indent=2, sort_keys=True) + "\n").encode()
    write_dir_atomic(out_dir, files)
    return man


# ------------------------------------------------------------------ reading
def _load_npy(path: Path, dtype_kind: str, ndim: int) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as e:
        raise BadInputError(f"unreadable array ({type(e).__name__}: {e})", where=str(path)) \
            from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in dtype_kind or arr.ndim != ndim:
        raise BadInputError(f"expected a {ndim}-D {'integer' if dtype_kind == 'iu' else 'float'}"
                            f" array, got {getattr(arr, 'dtype', '?')} "
                            f"{getattr(arr, 'shape', '')}", where=str(path))
    return arr


def read_manifest(d: Path) -> dict[str, object]:
    if not d.is_dir():
        raise BadInputError("no such basis-form directory", where=str(d))
    mpath = d / MANIFEST
    if not mpath.is_file():
        raise BadInputError("manifest.json is missing: not a basis-form directory",
                            where=str(d))
    try:
        man = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadInputError(f"manifest is not valid JSON ({e})", where=str(mpath)) from None
    if not isinstance(man, dict) or man.get("format") != FORMAT:
        raise BadInputError(f"not a {FORMAT} manifest", where=str(mpath))
    if man.get("format_version") != FORMAT_VERSION:
        raise BadInputError(f"format_version {man.get('format_version')} is not "
                            f"{FORMAT_VERSION}", where=str(mpath))
    return man


def check_files(d: Path, man: dict[str, object]) -> None:
    """Every listed file present with its sha256; the list is exactly what the
    manifest refers to."""
    mpath = d / MANIFEST
    listed = man.get("files")
    if not isinstance(listed, dict):
        raise BadInputError("manifest has no 'files' table", where=str(mpath))
    try:
        layers = man["layers"]
        wanted = {"source.onnx", "basis.npy", str(man["onnx"])}
        for ly in layers:  # type: ignore[attr-defined]
            for key in ("coefs", "scale", "thresholds"):
                if key in ly:
                    wanted.add(str(ly[key]))
    except (KeyError, TypeError) as e:
        raise BadInputError(f"malformed manifest ({type(e).__name__}: {e})",
                            where=str(mpath)) from None
    if set(listed) != wanted:
        diff = sorted(set(listed) ^ wanted)
        raise BadInputError(f"file table and layer list disagree on: {', '.join(diff)}",
                            where=str(mpath))
    for name in sorted(listed):
        meta = listed[name]
        f = d / name
        if os.sep in name or name.startswith("."):
            raise BadInputError(f"file name '{name}' is not a plain name", where=str(mpath))
        if not f.is_file():
            raise BadInputError("file listed in the manifest is missing", where=str(f))
        data = f.read_bytes()
        if not isinstance(meta, dict) or hashlib.sha256(data).hexdigest() != meta.get("sha256"):
            raise BadInputError("sha256 differs from the manifest (file modified?)",
                                where=str(f))


def load_basis_dir(path: str | os.PathLike[str]) -> BasisDir:
    """Read and check a basis-form directory."""
    d = Path(path)
    man = read_manifest(d)
    check_files(d, man)
    mpath = str(d / MANIFEST)
    net = load_model(d / "source.onnx")
    try:
        binfo = man["basis"]
        kind = str(binfo["kind"])  # type: ignore[index]
        count, length = int(binfo["count"]), int(binfo["length"])  # type: ignore[index]
        coef_bits = int(man["coef_bits"])  # type: ignore[arg-type]
        entries = {int(e["index"]): e for e in man["layers"]}  # type: ignore[attr-defined]
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise BadInputError(f"malformed manifest ({type(e).__name__}: {e})",
                            where=mpath) from None
    vectors = _load_npy(d / "basis.npy", "iu", 2)
    if vectors.shape != (count, length):
        raise BadInputError(f"basis.npy is {vectors.shape}, the manifest says {count} vectors "
                            f"of {length} rows", where=mpath)
    basis = Basis(vectors, kind)
    orders = row_orders(net)
    layers: list[object] = list(net.layers)
    expect = {i for i, ly in enumerate(net.layers) if isinstance(ly, Dense | Conv2d | Threshold)}
    if set(entries) != expect:
        raise BadInputError(f"layers {sorted(entries)} listed, the source network has linear "
                            f"and threshold layers {sorted(expect)}", where=mpath)
    for i in sorted(entries):
        e, orig = entries[i], net.layers[i]
        try:
            if isinstance(orig, Threshold):
                t = _load_npy(d / str(e["thresholds"]), "iu", 2)
                layers[i] = Threshold(t.astype(np.int64), orig.sign, orig.out_scale,
                                      orig.out_bias)
            else:
                coefs = _load_npy(d / str(e["coefs"]), "iu", 3)
                scale = _load_npy(d / str(e["scale"]), "f", 1).astype(np.float64)
                layers[i] = BasisLinear(orig, coefs, orders[i], scale)  # type: ignore[arg-type]
        except KeyError as k:
            raise BadInputError(f"layer {i} entry lacks {k}", where=mpath) from None
    bn = BasisNetwork(net, basis, coef_bits, tuple(layers))  # type: ignore[arg-type]
    check_basis_network(bn, where=str(d))
    return BasisDir(bn, man, d)


def load_basis(path: str | os.PathLike[str]) -> BasisNetwork:
    """The basis-form network of a checked directory (for compilers and executors)."""
    return load_basis_dir(path).bn
