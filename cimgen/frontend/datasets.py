"""scikit-learn's digits (1,797 8x8 images, pixel values 0..16) with a fixed split.

The split is ours and frozen: a permutation from a fixed seed puts 450 images
(25 %) in the test split and the rest in the train split. Calibration batches
(DSE's calibrated ADC range) are taken from the train split, never the test.
"""

from __future__ import annotations

import os

import numpy as np

from golden_model.errors import BadInputError
from golden_model.ir import Network
from golden_model.reference import check_inputs

from ..fileio import load_npy

SPLIT_SEED = 20250520
TEST_SIZE = 450


def _load() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:  # pragma: no cover - dev extra installs it
        raise BadInputError("the digits data set needs scikit-learn (pip install "
                            "'cimgen[dev]')", where="digits") from None
    d = load_digits()
    return d.data.astype(np.float32), d.target.astype(np.int64)


def split_indices(n: int = 1797) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    return np.sort(perm[TEST_SIZE:]), np.sort(perm[:TEST_SIZE])


def digits(split: str = "all", layout: str = "flat") -> tuple[np.ndarray, np.ndarray]:
    """(x float32, y int64). layout "flat" -> [N, 64], "image" -> [N, 1, 8, 8]."""
    x, y = _load()
    if split != "all":
        train, test = split_indices(len(y))
        idx = {"train": train, "test": test}.get(split)
        if idx is None:
            raise BadInputError(f"unknown split '{split}' (all, train, test)", where="digits")
        x, y = x[idx], y[idx]
    if layout == "image":
        x = x.reshape(-1, 1, 8, 8)
    elif layout != "flat":
        raise BadInputError(f"unknown layout '{layout}' (flat, image)", where="digits")
    return np.ascontiguousarray(x), y


def digits_for(input_shape: tuple[int, ...], split: str = "all") -> tuple[np.ndarray, np.ndarray]:
    """Digits shaped for a model's input: [64] or [1, 8, 8]."""
    if tuple(input_shape) == (64,):
        return digits(split, "flat")
    if tuple(input_shape) == (1, 8, 8):
        return digits(split, "image")
    raise BadInputError(f"model input {input_shape} is not a digits shape ([64] or [1, 8, 8])",
                        where="digits")


def default_inputs(net: Network, inputs: str | None, labels: str | None
                   ) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Inputs (float32) and optional labels: files, or all 1,797 digits."""
    if inputs is not None:
        x = load_npy(inputs)
        check_inputs(net, x, where=inputs)
        y = None
        if labels is not None:
            y = load_npy(labels)
            if y.ndim != 1 or y.shape[0] != x.shape[0]:
                raise BadInputError(f"labels shape {y.shape} does not match {x.shape[0]} "
                                    "inputs", where=labels)
        return x, y, os.path.basename(inputs)
    try:
        x, y = digits_for(net.input.graph_shape)
    except BadInputError:
        raise BadInputError("the model does not take digits; give --inputs X.npy",
                            where=net.name) from None
    return x, y, "digits (all 1,797)"
