"""Tape-out test vectors and their portable, self-checking replay testbench.

``cimgen vectors`` writes a versioned vector set (format: ``docs/vectors.md``):
memory images in ``$readmemh`` hex, the golden machine's expected registers,
cycle counts and output words, a plain Verilog-2001 replay testbench per DUT
parameter set (``cimgen.vectors.replay_tb``), the crossbar device maps, a coverage
report, a manifest and ``SHA256SUMS``. ``cimgen replay`` checks the sums and
runs the testbenches on Verilator (or Icarus Verilog).

Library entry points: :func:`model_set` (one model, given inputs),
:func:`suite_set` (the standard suite), :func:`write_set`, :func:`verify_set`,
:func:`replay`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..config import XbarConfig
from .build import Chip, Coverage, Expected, Vector, golden_group, group_vectors
from .cases import (
    FEW_ERRORS,
    error_vectors,
    model_vectors,
    random_chip,
    random_vectors,
    suite_vectors,
)
from .replay import (
    EXIT_BAD_SET,
    EXIT_FAIL,
    EXIT_PASS,
    EXIT_SKIPPED,
    ReplayResult,
    SkippedError,
    replay,
    verify_set,
)
from .writer import FORMAT_VERSION, build_files, write_set

__all__ = [
    "EXIT_BAD_SET", "EXIT_FAIL", "EXIT_PASS", "EXIT_SKIPPED", "FEW_ERRORS", "FORMAT_VERSION",
    "Chip", "Coverage", "Expected", "ReplayResult", "SkippedError", "Vector", "build_files",
    "error_vectors", "golden_group", "group_vectors", "model_set", "model_vectors",
    "random_chip", "random_vectors", "replay", "suite_set", "suite_vectors", "verify_set",
    "write_set",
]


def model_set(model: str | os.PathLike[str], cfg: XbarConfig, q: np.ndarray, *,
              mappings: Sequence[str] | None = None, calib: np.ndarray | None = None,
              errors: str = "none", n_random: int = 0, seed: int | None = None,
              inputs_meta: dict[str, Any] | None = None) -> tuple[list[Vector], dict[str, Any]]:
    """Vectors of one model on its chip: one per mapping (default: the config's),
    each a setup run and one inference run per image of ``q`` (quantized).

    ``errors``: "none", "few" (:data:`FEW_ERRORS`) or "all" assembled error
    cases on the same chip; ``n_random`` random programs on the small
    random-program chip (``seed``, default the config's)."""
    from ..frontend.onnx_import import load_model

    path = Path(model)
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    net = load_model(path)
    maps = list(mappings) if mappings else [cfg.mapping]
    vectors, _ = model_vectors(net, path.name, sha, cfg, q, maps, calib=calib)
    s = cfg.seed if seed is None else seed
    if errors != "none":
        vectors += error_vectors(vectors[0].chip, "err-",
                                 None if errors == "all" else FEW_ERRORS, seed=s)
    if n_random:
        rchip = random_chip(s)
        vectors += random_vectors(n_random, s, rchip)
    meta = {"kind": "model", "models": [{"name": path.name, "sha256": sha}],
            "inputs": inputs_meta or {"images": int(q.shape[0])}, "mappings": maps,
            "config": cfg.to_dict(), "seed": cfg.seed, "errors": errors,
            "random_programs": n_random, "random_seed": s if n_random else None}
    return vectors, meta


def suite_set(images: int = 2, n_random: int = 24, seed: int = 1, **kw: Any
              ) -> tuple[list[Vector], dict[str, Any]]:
    """The standard suite (see :func:`cimgen.vectors.cases.suite_vectors`)."""
    return suite_vectors(images=images, n_random=n_random, seed=seed, **kw)
