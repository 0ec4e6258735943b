"""ADC tables of a compiled chip: one uniform quantizer per linear layer.

Every table is ``golden_model.crossbar.uniform_adc`` over a range [lo, hi] of
the ADC input x (current units: the column current minus the nominal HRS floor
for POS reads, I_pos - I_neg for SYM reads); only the range differs between
the policies of ``adc_range`` (n = rows one READ of the layer drives at most,
N = the array's rows, dI = LRS - HRS):

| policy | POS range | SYM range |
|---|---|---|
| ``max`` | [0, n dI] | [-n dI, +n dI] |
| ``calib`` | [min x, max x] | mean(x) +- 3 std(x) |
| ``cimx_max`` | [0, N LRS] | [-N dI, +N dI] |
| ``cimx_calib`` | [max(min x - 10 uA, 0), max x] | mean(x) +- 3 std(x) |

``max`` is the largest signal the layer's READs can produce, so it never
clips and needs no data. ``cimx_max`` is CIM-Explorer's full-scale range,
fixed by the array whatever the layer uses; with small layers only a few of
its levels fall where the signal is (docs/dse.md, "ADC resolution").
Calibrated ranges are profiled on a calibration batch, one layer at a time
(see ``calibrated_adcs``).
"""

from __future__ import annotations

from dataclasses import replace
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
    from .compiled import Compiled

# CIM-Explorer's calibration lowers a POS layer's minimum by one histogram bin.
CIMX_POS_BIN_UA = 10.0
# Run indices of calibration images: far from any test image's, so that read
# noise draws (keyed by the run index) are never shared with the evaluated data.
CALIB_RUN_OFFSET = 1 << 40

CALIBRATED = ("calib", "cimx_calib")


def sense_of(cfg: XbarConfig) -> str:
    return "SYM" if MAPPINGS[cfg.mapping].sense == "SYM" else "POS"


def is_calibrated(cfg: XbarConfig) -> bool:
    return cfg.adc_range in CALIBRATED and cfg.adc_bits > 0


def layer_adc(cfg: XbarConfig, n_rows: int) -> AdcTable:
    """The ideal table (``adc_bits = 0``) or the data-free table of a layer whose
    READs drive at most ``n_rows`` rows (calibrated policies start from ``max``)."""
    sense = sense_of(cfg)
    di = cfg.lrs_units - cfg.hrs_units
    if cfg.adc_bits == 0:
        return ideal_adc(sense, cfg.rows, di)
    if cfg.adc_range == "cimx_max":
        hi = float(cfg.rows * (cfg.lrs_units if sense == "POS" else di))
        return uniform_adc(sense, cfg.adc_bits, 0.0 if sense == "POS" else -hi, hi, di)
    lo, hi = max_range(sense, n_rows, di)
    return uniform_adc(sense, cfg.adc_bits, lo, hi, di)


def default_adc(cfg: XbarConfig) -> AdcTable:
    """The table of a layer that fills the array: ``layer_adc`` with every drivable row
    (one row per input: rows // rows_per_input)."""
    return layer_adc(cfg, cfg.rows // MAPPINGS[cfg.mapping].rows_per_input)


def calibrated_range(cfg: XbarConfig, xs: np.ndarray) -> tuple[float, float]:
    """[lo, hi] of one layer from its profiled ADC inputs (current units)."""
    if xs.size == 0:
        xs = np.zeros(1)
    if sense_of(cfg) == "SYM":
        mu, sd = float(xs.mean()), float(xs.std())
        return mu - 3 * sd, mu + 3 * sd
    lo, hi = float(xs.min()), float(xs.max())
    if cfg.adc_range == "cimx_calib":
        lo = max(lo - CIMX_POS_BIN_UA / cfg.current_lsb_ua, 0.0)
    return lo, hi


def calibrated_adcs(first: Compiled, q_calib: np.ndarray) -> list[AdcTable]:
    """Per-layer ranges profiled on a calibration batch, one layer at a time.

    Layer k is profiled on the chip itself (its device map and read noise) with
    layers 0..k-1 already on their calibrated tables and layers k.. on ideal
    tables, so it sees the activations it will see in use. (Profiling every
    layer in one run through the uncalibrated MAX tables, as before, gave the
    deeper layers statistics of activations that coarse MAX tables had already
    destroyed: BNN_I on the digits CNN fell to chance at 3-4 calibrated bits.)
    """
    cfg = first.cfg
    sense = sense_of(cfg)
    di = cfg.lrs_units - cfg.hrs_units
    tables = [ideal_adc(sense, cfg.rows, di)] * len(first.adc_tables)
    for k in range(len(tables)):
        lo, hi = calibrated_range(cfg, _profile(first, tables, k, q_calib))
        tables[k] = uniform_adc(sense, cfg.adc_bits, lo, hi, di)
    return tables


def _profile(first: Compiled, tables: list[AdcTable], k: int, q: np.ndarray) -> np.ndarray:
    """Every ADC input of table k over the batch ``q``, the chip using ``tables``."""
    rows = first.cfg.rows
    # A fresh plan cache: the image's one holds ADC lookups of the other tables.
    image = replace(first.image, adc_thr=np.stack([t.padded(2 * rows)[0] for t in tables]),
                    adc_recon=np.stack([t.padded(2 * rows)[1] for t in tables]), plan_cache={})
    seen: list[np.ndarray] = []

    def probe(table: int, x: np.ndarray) -> None:
        if table == k:
            seen.append(x.reshape(-1))

    mach = Machine(image, first.runs(q.shape[0]), probe=probe, image_offset=CALIB_RUN_OFFSET)
    mach.run(first.setup_entry)
    first.load_inputs(mach, q)
    mach.run(first.infer_entry)
    return np.concatenate(seen).astype(np.float64) if seen else np.zeros(0)


def calibration_batch(net: Network, cfg: XbarConfig, path: str | None) -> np.ndarray | None:
    """Quantized calibration inputs: a file, or the digits train split for digits models."""
    if not is_calibrated(cfg):
        return None
    if path is not None:
        x = load_npy(path)
        check_inputs(net, x, where=path)
    else:
        from ..frontend.datasets import digits_for

        try:
            x, _ = digits_for(net.input.shape, "train")
        except BadInputError:
            raise BadInputError(f"adc_range = {cfg.adc_range} needs --calib X.npy for a model "
                                "that does not take digits", where="config") from None
    return quantize_input(net, x[: cfg.calib_images])
