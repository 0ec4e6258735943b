"""``cimgen basis fit`` as a library call: fit, optional fine-tuning, figures, directory."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from golden_model.basis import BasisNetwork, check_paths_agree, forward_basis
from golden_model.errors import BadInputError
from golden_model.ir import Network
from golden_model.reference import check_inputs, forward_int, quantize_input

from ..frontend.datasets import digits_for
from .finetune import distill
from .fit import FitConfig, LayerError, check_weights, fit_weights, layer_errors, one_blas_thread
from .io import save_basis
from .ste import SteConfig, finetune_ste


@dataclass
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@dataclass
class FitReport:
    errors_fit: list[LayerError]
    errors_final: list[LayerError]
    accuracy: dict[str, float] = field(default_factory=dict)  # on the test split
    train_accuracy: list[float] = field(default_factory=list)  # per STE epoch, [0] = start
    best_epoch: int = 0
    data: str = "none"
    start: str = ""  # which network the STE epochs started from (fit or distilled)

    def metrics(self) -> dict[str, object]:
        return {
            "data": self.data,
            "accuracy_test": {k: round(v, 6) for k, v in self.accuracy.items()},
            "train_accuracy_per_epoch": [round(v, 6) for v in self.train_accuracy],
            "best_epoch": self.best_epoch,
            "finetune_start": self.start,
            "layers_fit": [_rounded(e.to_dict()) for e in self.errors_fit],
            "layers_final": [_rounded(e.to_dict()) for e in self.errors_final],
        }


def _rounded(d: dict[str, object]) -> dict[str, object]:
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in d.items()}


def _labels(y: object, n: int, where: str) -> np.ndarray:
    if not isinstance(y, np.ndarray) or y.ndim != 1 or y.shape[0] != n or \
            y.dtype.kind not in "iu":
        raise BadInputError(f"labels must be an integer vector of {n}, got "
                            f"{getattr(y, 'dtype', '?')} {getattr(y, 'shape', '')}", where=where)
    return y.astype(np.int64)


def load_data(spec: str | None, net: Network) -> Dataset | None:
    """``digits`` (the frozen split), ``none``, or an .npz with x_train, y_train,
    x_test, y_test (float32 inputs as the graph takes them, integer labels).
    Default: digits when the model takes them, else none."""
    if spec is None:
        try:
            spec = "digits" if digits_for(net.input.shape, "test") is not None else "none"
        except BadInputError:
            spec = "none"
    if spec == "none":
        return None
    if spec == "digits":
        xtr, ytr = digits_for(net.input.shape, "train")
        xte, yte = digits_for(net.input.shape, "test")
        return Dataset("digits", xtr, ytr, xte, yte)
    p = os.fspath(spec)
    if not os.path.isfile(p):
        raise BadInputError("no such file (give digits, none or an .npz)", where=p)
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    except KeyError as e:
        raise BadInputError(f"missing array {e} (needs x_train, y_train, x_test, y_test)",
                            where=p) from None
    except Exception as e:
        raise BadInputError(f"not a readable .npz ({type(e).__name__}: {e})", where=p) from None
    for split in ("train", "test"):
        check_inputs(net, arrays[f"x_{split}"], where=f"{p}: x_{split}")
    return Dataset(Path(p).name, arrays["x_train"],
                   _labels(arrays["y_train"], arrays["x_train"].shape[0], f"{p}: y_train"),
                   arrays["x_test"],
                   _labels(arrays["y_test"], arrays["x_test"].shape[0], f"{p}: y_test"))


def accuracy_of(logits: np.ndarray, y: np.ndarray) -> float:
    return float((logits.argmax(axis=1) == y).mean())


def basis_accuracy(bn: BasisNetwork, q: np.ndarray, y: np.ndarray) -> float:
    out = forward_basis(bn, q)
    assert isinstance(out, np.ndarray)
    return accuracy_of(out, y)


def fit_model(net: Network, cfg: FitConfig, data: Dataset | None, finetune: int = 0
              ) -> tuple[BasisNetwork, FitReport]:
    """Weight-space fit; with data and ``finetune`` > 0 epochs, layer-wise
    distillation then STE epochs on the training split. Accuracies on the test split."""
    check_weights(net)
    if finetune < 0:
        raise BadInputError(f"{finetune}: epochs must be >= 0", where="--finetune")
    if finetune and data is None:
        raise BadInputError("fine-tuning needs training data (--data digits or an .npz)",
                            where="--finetune")
    res = fit_weights(net, cfg)
    bn = res.bn
    rep = FitReport(res.errors, res.errors, data=data.name if data else "none")
    if data is None:
        return bn, rep
    q_test = quantize_input(net, data.x_test)
    ref = forward_int(net, q_test)
    assert isinstance(ref, np.ndarray)
    rep.accuracy["original"] = accuracy_of(ref, data.y_test)
    rep.accuracy["fit"] = basis_accuracy(bn, q_test, data.y_test)
    if finetune:
        q_train = quantize_input(net, data.x_train)
        with one_blas_thread():
            tuned = distill(bn, q_train)
            rep.accuracy["distilled"] = basis_accuracy(tuned, q_test, data.y_test)
            # Distillation matches the original's accumulators, not the labels: when
            # the fit alone is already close it can lose a little, so the STE stage
            # starts from whichever of the two does better on the training split.
            if basis_accuracy(tuned, q_train, data.y_train) >= \
                    basis_accuracy(bn, q_train, data.y_train):
                bn = tuned
            rep.start = "distilled" if bn is tuned else "fit"
            ste = finetune_ste(bn, q_train, data.y_train, SteConfig(finetune, seed=cfg.seed))
        bn = ste.bn
        rep.train_accuracy, rep.best_epoch = ste.train_accuracy, ste.best_epoch
        rep.accuracy["finetuned"] = basis_accuracy(bn, q_test, data.y_test)
        rep.errors_final = layer_errors(net, bn)
    # The two reference paths must agree on the data the figures come from.
    check_paths_agree(bn, q_test)
    return bn, rep


def fit_to_dir(model_path: str | os.PathLike[str], net: Network, cfg: FitConfig,
               data: Dataset | None, finetune: int, out_dir: str | os.PathLike[str],
               extra: dict[str, object] | None = None
               ) -> tuple[BasisNetwork, FitReport, dict[str, object]]:
    bn, rep = fit_model(net, cfg, data, finetune)
    fit = {"basis_count": cfg.basis_count, "coef_bits": cfg.coef_bits, "seg_len": cfg.seg_len,
           "basis_kind": cfg.kind, "seed": cfg.seed, "max_basis": cfg.max_basis,
           "als_iters": cfg.als_iters, "quant_iters": cfg.quant_iters, "ridge": cfg.ridge,
           "finetune_epochs": finetune, "data": rep.data, **(extra or {})}
    man = save_basis(out_dir, bn, Path(model_path).read_bytes(), fit, rep.metrics())
    return bn, rep, man
