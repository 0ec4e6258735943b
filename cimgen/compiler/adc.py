"""ADC tables of a compiled chip: ideal, MAX range, or calibrated per layer."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from golden_model.crossbar import AdcTable, ideal_adc, max_range, uniform_adc
from golden_model.errors import BadInputError
from golden_model.ir import Network
from golden_model.machine import Machine
from golden_model.reference import check_inputs, quantize_input

from ..config import XbarConfig
from ..fileio import load_npy
from .mappings import MAPPINGS

if TYPE_CHECKING:
    from .codegen import Compiled


def default_adc(cfg: XbarConfig) -> AdcTable:
    """The ADC for ideal or max range: fixed by the array size and cell currents."""
    sense = "SYM" if MAPPINGS[cfg.mapping].sense == "SYM" else "POS"
    di = cfg.lrs_units - cfg.hrs_units
    if cfg.adc_bits == 0:
        return ideal_adc(sense, cfg.rows, di)
    lo, hi = max_range(sense, cfg.rows, di)
    return uniform_adc(sense, cfg.adc_bits, lo, hi, di)


def calibrated_adcs(first: Compiled, q_calib: np.ndarray) -> list[AdcTable]:
    """Per-layer ADC ranges from a calibration batch (CIM-Explorer's CALIB range):
    mean +- 3 sigma of the differential signal for SYM, min..max for POS."""
    cfg = first.cfg
    sense = MAPPINGS[cfg.mapping].sense
    di = cfg.lrs_units - cfg.hrs_units
    seen: dict[int, list[np.ndarray]] = {}

    def probe(table: int, x: np.ndarray) -> None:
        seen.setdefault(table, []).append(x.reshape(-1))

    mach = Machine(first.image, q_calib.shape[0], probe=probe)
    mach.run(first.setup_entry)
    mach.load_inputs(first.input.base, first.input_words(q_calib))
    mach.run(first.infer_entry)
    tables = []
    for n in range(len(first.adc_tables)):
        xs = np.concatenate(seen.get(n, [np.zeros(1)])).astype(np.float64)
        if sense == "SYM":
            mu, sd = float(xs.mean()), float(xs.std())
            lo, hi = mu - 3 * sd, mu + 3 * sd
        else:
            lo, hi = float(xs.min()), float(xs.max())
        tables.append(uniform_adc(sense, cfg.adc_bits, lo, hi, di))
    return tables


def calibration_batch(net: Network, cfg: XbarConfig, path: str | None) -> np.ndarray | None:
    """Quantized calibration inputs: a file, or the digits train split for digits models."""
    if cfg.adc_range != "calib" or cfg.adc_bits == 0:
        return None
    if path is not None:
        x = load_npy(path)
        check_inputs(net, x, where=path)
    else:
        from ..frontend.datasets import digits_for

        try:
            x, _ = digits_for(net.input.shape, "train")
        except BadInputError:
            raise BadInputError("adc_range = calib needs --calib X.npy for a model that does "
                                "not take digits", where="config") from None
    return quantize_input(net, x[: cfg.calib_images])
