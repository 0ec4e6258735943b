"""Sweep files: parsing and complete validation before any work.

A sweep file is TOML::

    title = "ADC resolution"            # optional
    model = "../../examples/bnn_mlp.onnx"   # relative to the sweep file
    dataset = "digits"                  # the frozen test split ...
    # inputs = "x.npy"                  # ... or inputs + labels (.npy)
    # labels = "y.npy"
    # calib = "xc.npy"                  # calibration inputs when not digits
    images = 200                        # optional: the first N images only
    seeds = [0, 1, 2]
    plots = ["adc_bits"]                # optional: x axes of the plots (default: all)

    [fixed]                             # config keys (cimgen.config)
    hrs_ua = 5.0

    [sweep]                             # config keys -> lists of values
    mapping = ["BNN_I", "BNN_III"]
    adc_bits = [3, 4, 5]

The run covers the Cartesian product of the ``[sweep]`` lists (the first key
outermost, values in file order) times the seeds. Every point is checked with
``make_config`` and every distinct array geometry is compiled once, so a bad
file stops with one line (exit 2) before anything is computed or written.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from golden_model.errors import BadInputError, CimgenError
from golden_model.ir import Network

from ..config import XbarConfig, make_config

TOP_KEYS = ("title", "model", "dataset", "inputs", "labels", "calib", "images", "seeds",
            "plots", "fixed", "sweep")
DATASETS = ("digits",)


@dataclass(frozen=True)
class Sweep:
    path: Path
    title: str
    model: Path
    data: str  # human description of the evaluation data
    dataset: str | None
    inputs: Path | None
    labels: Path | None
    calib: Path | None
    images: int | None
    seeds: tuple[int, ...]
    fixed: dict[str, object]  # typed config values
    keys: tuple[str, ...]  # swept keys, file order
    values: tuple[tuple[object, ...], ...]  # typed values per swept key
    plots: tuple[str, ...] | None = None  # swept keys to plot accuracy against (None: all)
    configs: tuple[tuple[XbarConfig, ...], ...] = field(repr=False, default=())  # [point][seed]

    @property
    def n_points(self) -> int:
        return int(np.prod([len(v) for v in self.values])) if self.values else 1

    def points(self) -> list[tuple[object, ...]]:
        """Swept values of every point, in point-index order."""
        return list(itertools.product(*self.values))

    def signature(self) -> dict[str, object]:
        """What a results folder must agree with to be resumed."""
        return {
            "model_sha256": _sha256(self.model),
            "data": self.data,
            "data_sha256": [_sha256(p) for p in (self.inputs, self.labels, self.calib) if p],
            "images": self.images,
            "seeds": list(self.seeds),
            "fixed": {k: self.fixed[k] for k in sorted(self.fixed)},
            "sweep": {k: list(v) for k, v in zip(self.keys, self.values, strict=True)},
        }


def _sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


_TYPES = {f.name: {"int": int, "float": float, "str": str}[str(f.type)]
          for f in fields(XbarConfig)}


def _typed(key: str, value: object, where: str, section: str) -> object:
    """One config value, typed against the schema (so 4 and 4.0 mean the same)."""
    typ = _TYPES[key]
    if not isinstance(value, bool):
        if typ is int and isinstance(value, int):
            return value
        if typ is int and isinstance(value, float) and value.is_integer():
            return int(value)
        if typ is float and isinstance(value, int | float):
            return float(value)
        if typ is str and isinstance(value, str):
            return value
    raise BadInputError(f"{section}.{key}: expected {typ.__name__}, got {value!r}",
                        where=where)


def load_sweep(path: str | os.PathLike[str]) -> Sweep:
    """Parse and validate a sweep file; BadInputError (exit 2) on the first problem."""
    p = Path(path)
    where = os.fspath(path)
    if not p.is_file():
        raise BadInputError("no such file", where=where)
    try:
        with open(p, "rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise BadInputError(f"invalid TOML: {e}", where=where) from None
    except OSError as e:
        raise BadInputError(f"cannot read: {e.strerror}", where=where) from None

    def bad(msg: str) -> BadInputError:
        return BadInputError(msg, where=where)

    unknown = [k for k in data if k not in TOP_KEYS]
    if unknown:
        raise bad(f"unknown key '{unknown[0]}' (known: {', '.join(TOP_KEYS)})")
    base = p.resolve().parent

    def file_key(key: str) -> Path | None:
        v = data.get(key)
        if v is None:
            return None
        if not isinstance(v, str) or not v:
            raise bad(f"{key}: expected a path string, got {v!r}")
        fp = (base / v) if not os.path.isabs(v) else Path(v)
        if not fp.is_file():
            raise bad(f"{key}: no such file '{v}' (paths are relative to the sweep file)")
        return fp

    if "model" not in data:
        raise bad("missing key 'model' (path of the ONNX model)")
    model = file_key("model")
    assert model is not None
    title = data.get("title", p.stem)
    if not isinstance(title, str):
        raise bad(f"title: expected a string, got {title!r}")

    dataset = data.get("dataset")
    inputs, labels, calib = file_key("inputs"), file_key("labels"), file_key("calib")
    if (dataset is None) == (inputs is None):
        raise bad("give either dataset = \"digits\" or inputs + labels (.npy)")
    if dataset is not None and dataset not in DATASETS:
        raise bad(f"dataset: '{dataset}' is not one of {', '.join(DATASETS)}")
    if inputs is not None and labels is None:
        raise bad("inputs: needs labels = \"y.npy\" (accuracy is measured against labels)")
    if labels is not None and inputs is None:
        raise bad("labels: given without inputs")
    if dataset is not None and calib is not None:
        raise bad("calib: digits sweeps calibrate on the digits train split; remove it")
    images = data.get("images")
    if images is not None and (isinstance(images, bool) or not isinstance(images, int)
                               or images < 1):
        raise bad(f"images: expected a positive integer, got {images!r}")

    seeds = data.get("seeds")
    if seeds is None:
        raise bad("missing key 'seeds' (a list of integers, e.g. [0, 1, 2])")
    if not isinstance(seeds, list) or not seeds:
        raise bad("seeds: expected a non-empty list of integers")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < 2**63:
            raise bad(f"seeds: {s!r} is not a non-negative 63-bit integer")
    if len(set(seeds)) != len(seeds):
        raise bad("seeds: duplicate values")

    fixed_raw = data.get("fixed", {})
    sweep_raw = data.get("sweep", {})
    for name, tbl in (("fixed", fixed_raw), ("sweep", sweep_raw)):
        if not isinstance(tbl, dict):
            raise bad(f"{name}: expected a table [{name}]")
        for k in tbl:
            if k not in _TYPES:
                raise bad(f"{name}.{k}: unknown config key")
            if k == "seed":
                raise bad(f"{name}.seed: give the seeds as the top-level list 'seeds'")
    both = sorted(set(fixed_raw) & set(sweep_raw))
    if both:
        raise bad(f"{both[0]}: both fixed and swept")
    fixed = {k: _typed(k, v, where, "fixed") for k, v in fixed_raw.items()}
    keys: list[str] = []
    values: list[tuple[object, ...]] = []
    for k, v in sweep_raw.items():
        if not isinstance(v, list):
            raise bad(f"sweep.{k}: expected a list of values, got {v!r}")
        if not v:
            raise bad(f"sweep.{k}: empty list")
        typed = tuple(_typed(k, x, where, "sweep") for x in v)
        if len(set(typed)) != len(typed):
            raise bad(f"sweep.{k}: duplicate values")
        keys.append(k)
        values.append(typed)

    plots = data.get("plots")
    if plots is not None:
        if not isinstance(plots, list) or not all(isinstance(k, str) for k in plots):
            raise bad("plots: expected a list of swept keys")
        for k in plots:
            if k not in keys:
                raise bad(f"plots: '{k}' is not a swept key (swept: {', '.join(keys)})")
        plots = tuple(plots)

    desc = "digits test split" if dataset else os.path.basename(inputs)  # type: ignore[arg-type]
    sw = Sweep(path=p, title=title, model=model, data=desc, dataset=dataset, inputs=inputs,
               labels=labels, calib=calib, images=images, seeds=tuple(seeds), fixed=fixed,
               keys=tuple(keys), values=tuple(values), plots=plots)
    configs = []
    for i, pt in enumerate(sw.points()):
        row = []
        for s in sw.seeds:
            try:
                row.append(make_config(None, {**fixed, **dict(zip(keys, pt, strict=True)),
                                              "seed": s}))
            except BadInputError as e:
                raise bad(f"point {i} ({point_label(sw.keys, pt)}): "
                          f"{str(e).split(': ', 1)[1]}") from None
        configs.append(tuple(row))
    return replace(sw, configs=tuple(configs))


def point_label(keys: tuple[str, ...], values: tuple[object, ...]) -> str:
    return ", ".join(f"{k}={v}" for k, v in zip(keys, values, strict=True)) or "single point"


# ------------------------------------------------------------------ data


@dataclass
class Context:
    """Everything a worker needs to evaluate points (picklable, built once)."""

    net: Network
    q: np.ndarray  # quantized inputs [N, ...] int16
    labels: np.ndarray  # int64 [N]
    ref_pred: np.ndarray  # ideal-crossbar (= reference) predictions [N]
    calib_q: np.ndarray | None  # quantized calibration batch (train split) or None
    keys: tuple[str, ...]
    seeds: tuple[int, ...]
    configs: tuple[tuple[XbarConfig, ...], ...]
    chunk: int = 64  # images per machine batch (results do not depend on it)

    @property
    def ideal_accuracy(self) -> float:
        return float((self.ref_pred == self.labels).mean())


def needs_calib(cfg: XbarConfig) -> bool:
    return cfg.adc_range in ("calib", "cimx_calib") and cfg.adc_bits > 0


def build_context(sw: Sweep) -> Context:
    """Load the model and data, check them, and compile every distinct geometry once."""
    from golden_model.reference import check_inputs, forward_int, predict, quantize_input

    from ..compiler import compile_network
    from ..fileio import load_npy
    from ..frontend.onnx_import import load_model

    where = os.fspath(sw.path)
    net = load_model(os.fspath(sw.model))
    calib_x = None
    if sw.dataset == "digits":
        from ..frontend.datasets import digits_for

        try:
            x, y = digits_for(net.input.shape, "test")
        except BadInputError as e:
            raise BadInputError(f"dataset = \"digits\": {str(e).split(': ', 1)[1]}",
                                where=where) from None
        if any(needs_calib(c) for row in sw.configs for c in row):
            calib_x, _ = digits_for(net.input.shape, "train")
    else:
        assert sw.inputs is not None and sw.labels is not None
        x = load_npy(sw.inputs)
        check_inputs(net, x, where=os.fspath(sw.inputs))
        y = load_npy(sw.labels)
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise BadInputError(f"labels shape {list(y.shape)} does not match {x.shape[0]} "
                                "inputs", where=os.fspath(sw.labels))
        if not np.issubdtype(y.dtype, np.integer):
            raise BadInputError(f"labels dtype {y.dtype}: expected integers",
                                where=os.fspath(sw.labels))
        y = y.astype(np.int64)
        if sw.calib is not None:
            calib_x = load_npy(sw.calib)
            check_inputs(net, calib_x, where=os.fspath(sw.calib))
        elif any(needs_calib(c) for row in sw.configs for c in row):
            raise BadInputError("a calibrated adc_range needs calibration inputs: add "
                                "calib = \"xc.npy\" (never the test inputs)", where=where)
    if sw.images is not None:
        if sw.images > x.shape[0]:
            raise BadInputError(f"images = {sw.images} but the data has {x.shape[0]}",
                                where=where)
        x, y = x[: sw.images], y[: sw.images]
    q = quantize_input(net, x)
    ref = forward_int(net, q)
    assert isinstance(ref, np.ndarray)
    calib_q = quantize_input(net, calib_x) if calib_x is not None else None

    # Compile each distinct geometry (noise-free, ideal ADC) once: a mapping that
    # cannot hold the weights or a model that does not fit fails here, not mid-run.
    seen: set[XbarConfig] = set()
    for i, row in enumerate(sw.configs):
        g = replace(row[0], adc_bits=0, adc_range="max", sigma_hrs_ua=0.0, sigma_lrs_ua=0.0,
                    sigma_read_ua=0.0, stuck_lrs_rate=0.0, stuck_hrs_rate=0.0, seed=0)
        if g in seen:
            continue
        seen.add(g)
        try:
            compile_network(net, g)
        except CimgenError as e:
            pt = sw.points()[i]
            raise BadInputError(f"point {i} ({point_label(sw.keys, pt)}): {e}",
                                where=where) from None
    return Context(net=net, q=q, labels=y, ref_pred=predict(net, ref), calib_q=calib_q,
                   keys=sw.keys, seeds=sw.seeds, configs=sw.configs)
