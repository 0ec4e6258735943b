"""Shared inputs of the RTL tests: example models, digit images, configs."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np

from cimgen.compiler import Compiled, compile_network
from cimgen.compiler.mappings import MAPPINGS
from cimgen.config import make_config
from cimgen.frontend.datasets import digits_for
from cimgen.frontend.onnx_import import load_model
from cimgen.hw.rtl_sim import RtlParams, Session, inference_session, rtl_params
from golden_model.ir import Conv2d, Dense, Network
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


def storable(name: str, mapping: str) -> bool:
    """Whether the mapping can hold every weight value of the model (BNN_III/IV/V
    have no cell encoding for 0; compiling such a pair is an error tested in tests/)."""
    net, _ = model(name)
    values = {int(v) for layer in net.layers if isinstance(layer, Dense | Conv2d)
              for v in np.unique(layer.weight)}
    return values <= set(MAPPINGS[mapping].cells)


def storable_pairs() -> list[tuple[str, str]]:
    return [(m, mp) for m in MODELS for mp in MAPPINGS if storable(m, mp)]


def compiled(name: str, mapping: str, **overrides: object) -> Compiled:
    net, _ = model(name)
    return compile_network(net, make_config(None, {"mapping": mapping, **overrides}))


def images(name: str, n: int, start: int = 0) -> np.ndarray:
    return model(name)[1][start:start + n]


def reference(name: str, q: np.ndarray) -> np.ndarray:
    return np.asarray(forward_int(model(name)[0], q))


def session_and_params(comp: Compiled, q: np.ndarray, **kw: object
                       ) -> tuple[Session, RtlParams]:
    """An inference session and the RTL parameters of the compile config (the
    same parameter set, hence one Verilator build, for every mapping)."""
    return inference_session(comp, q, **kw), rtl_params(comp.image, comp.cfg.prog_words)
