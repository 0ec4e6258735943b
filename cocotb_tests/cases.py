"""Shared inputs of the RTL tests: example models, digit images, configs."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest

from cimgen.compiler import Compiled, compile_network
from cimgen.config import make_config
from cimgen.datasets import digits_for
from cimgen.onnx_import import load_model
from cimgen.rtl_sim import RtlParams, Session, inference_session, rtl_params
from golden_model.errors import BadInputError
from golden_model.ir import Network
from golden_model.reference import forward_int, quantize_input

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
MODELS = sorted(p.stem for p in EXAMPLES.glob("*.onnx"))

#: A seeded non-ideal chip: 3-bit ADCs, device-to-device variability, stuck cells.
NONIDEAL: dict[str, object] = {"adc_bits": 3, "sigma_lrs_ua": 4.0, "sigma_hrs_ua": 1.5,
                               "stuck_lrs_rate": 0.02, "stuck_hrs_rate": 0.02, "seed": 11}


@cache
def model(name: str) -> tuple[Network, np.ndarray]:
    """The network and its quantized digit images (the frozen data set order)."""
    net = load_model(EXAMPLES / f"{name}.onnx")
    x, _ = digits_for(net.input.shape)
    return net, quantize_input(net, x)


def compiled(name: str, mapping: str, **overrides: object) -> Compiled:
    net, _ = model(name)
    cfg = make_config(None, {"mapping": mapping, **overrides})
    try:
        return compile_network(net, cfg)
    except BadInputError as e:
        pytest.skip(f"{name} does not compile for {mapping}: {e}")


def images(name: str, n: int, start: int = 0) -> np.ndarray:
    return model(name)[1][start:start + n]


def reference(name: str, q: np.ndarray) -> np.ndarray:
    return np.asarray(forward_int(model(name)[0], q))


def session_and_params(comp: Compiled, q: np.ndarray, **kw: object
                       ) -> tuple[Session, RtlParams]:
    """An inference session and the RTL parameters of the compile config (the
    same parameter set, hence one Verilator build, for every mapping)."""
    return inference_session(comp, q, **kw), rtl_params(comp.image, comp.cfg.prog_words)
