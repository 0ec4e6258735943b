"""The 11 CIM-Explorer mappings as data: cell encodings and read recipes.

A mapping says how a logical weight w in {-1, 0, +1} becomes cell bits
(``rows_per_input`` x ``cols_per_output`` cells) and how a dot product is
recovered from reads: which input values drive which rows (masks), single
(POS) or differential (SYM) sensing, and an integer linear combination of
ADC codes, driven-row counts (NDRV) and the column weight sum Sum_w.
There are no mapping-specific instructions: a recipe compiles to READ and
ACC instructions only.

Geometry (explicit, for both rows and columns): a crossbar of R x C cells
holds a logical tile of (R // rows_per_input) inputs by
(C // cols_per_output) outputs. For two-column mappings the columns of a
tile are either interleaved pairs (SYM: pos at 2c, neg at 2c+1) or two
blocks (POS: first block at c, second at c + tile width).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from golden_model.isa import MASK_NEG, MASK_POS, MASK_ZERO


@dataclass(frozen=True)
class ReadSpec:
    mask_a: int  # values driving row (2)j
    mask_b: int = 0  # values driving row 2j+1 (two-row mappings)


@dataclass(frozen=True)
class Term:
    """ACC += coef * source. kind: code (of read r, column block b), ndrv (of read r),
    sumw (the column's weight sum, added once per layer)."""

    kind: str
    coef: int
    read: int = 0
    block: int = 0


@dataclass(frozen=True)
class Recipe:
    reads: tuple[ReadSpec, ...]
    terms: tuple[Term, ...]

    def terms_of(self, r: int) -> tuple[Term, ...]:
        return tuple(t for t in self.terms if t.kind != "sumw" and t.read == r)

    @property
    def sumw(self) -> int:
        return sum(t.coef for t in self.terms if t.kind == "sumw")


@dataclass(frozen=True)
class Mapping:
    name: str
    rows_per_input: int
    cols_per_output: int
    sense: str  # "POS" or "SYM"
    cells: dict[int, tuple[tuple[int, ...], ...]]  # w -> [rows_per_input][cols_per_output]
    bipolar: Recipe  # inputs in {-1, +1}
    general: Recipe  # inputs in {-1, 0, +1} (also bit-planes {0, 1})

    @property
    def col_blocks(self) -> int:
        """Columns per output that are sensed separately (POS two-column mappings)."""
        return self.cols_per_output if self.sense == "POS" else 1

    def supports_weight(self, w: int) -> bool:
        return w in self.cells

    def recipe(self, input_kind: str) -> Recipe:
        return self.bipolar if input_kind == "bipolar" else self.general

    def encode(self, w: np.ndarray) -> np.ndarray:
        """Logical tile w [F, O] -> physical cell bits [F*rpi, O*cpo] (uint8)."""
        f, o = w.shape
        rpi, cpo = self.rows_per_input, self.cols_per_output
        out = np.zeros((f * rpi, o * cpo), np.uint8)
        for val, cell in self.cells.items():
            sel = w == val
            if not sel.any():
                continue
            for r in range(rpi):
                for c in range(cpo):
                    if not cell[r][c]:
                        continue
                    if self.sense == "SYM" or cpo == 1:
                        out[r::rpi, c::cpo][sel] = 1  # interleaved pairs
                    else:
                        out[r::rpi, c * o:(c + 1) * o][sel] = 1  # column blocks
        return out


P, Z, N = MASK_POS, MASK_ZERO, MASK_NEG

_PAIR = {1: ((1, 0),), -1: ((0, 1),), 0: ((0, 0),)}
_PAIR_GENERAL = Recipe((ReadSpec(P), ReadSpec(N)), (Term("code", 1, 0), Term("code", -1, 1)))
_BNN3 = Recipe((ReadSpec(P), ReadSpec(N)), (
    Term("code", 2, 0), Term("ndrv", -1, 0), Term("code", -2, 1), Term("ndrv", 1, 1)))
_BNN4 = Recipe((ReadSpec(P), ReadSpec(N)), (
    Term("code", -2, 0), Term("ndrv", 1, 0), Term("code", 2, 1), Term("ndrv", -1, 1)))
_XOR = Recipe((ReadSpec(P, N),), (Term("code", 2, 0), Term("ndrv", -1, 0)))
_QUAD = {1: ((1, 0), (0, 1)), -1: ((0, 1), (1, 0)), 0: ((0, 0), (0, 0))}
_DIFFROWS = Recipe((ReadSpec(P, N),), (Term("code", 1, 0),))
_TNN2 = Recipe((ReadSpec(P | N), ReadSpec(N)), (Term("code", 1, 0), Term("code", -2, 1)))
_TNN3 = Recipe((ReadSpec(Z), ReadSpec(P)), (
    Term("code", 1, 0), Term("code", 2, 1), Term("sumw", -1)))
_TNN4 = Recipe((ReadSpec(P), ReadSpec(N)), (
    Term("code", 1, 0, 0), Term("code", -2, 0, 1), Term("code", -1, 1, 0), Term("code", 2, 1, 1)))
_TNN5 = Recipe((ReadSpec(P), ReadSpec(N)), (
    Term("code", 1, 0, 0), Term("code", 2, 0, 1), Term("ndrv", -1, 0),
    Term("code", -1, 1, 0), Term("code", -2, 1, 1), Term("ndrv", 1, 1)))

MAPPINGS: dict[str, Mapping] = {m.name: m for m in (
    Mapping("BNN_I", 1, 2, "SYM", _PAIR,
            Recipe((ReadSpec(P),), (Term("code", 2, 0), Term("sumw", -1))), _PAIR_GENERAL),
    Mapping("BNN_II", 1, 2, "SYM", _PAIR,
            Recipe((ReadSpec(N),), (Term("code", -2, 0), Term("sumw", 1))), _PAIR_GENERAL),
    Mapping("BNN_III", 1, 1, "POS", {1: ((1,),), -1: ((0,),)}, _BNN3, _BNN3),
    Mapping("BNN_IV", 1, 1, "POS", {1: ((0,),), -1: ((1,),)}, _BNN4, _BNN4),
    Mapping("BNN_V", 2, 1, "POS", {1: ((1,), (0,)), -1: ((0,), (1,))}, _XOR, _XOR),
    Mapping("BNN_VI", 2, 2, "SYM", _QUAD, _DIFFROWS, _DIFFROWS),
    Mapping("TNN_I", 2, 2, "SYM", _QUAD, _DIFFROWS, _DIFFROWS),
    Mapping("TNN_II", 1, 2, "SYM", _PAIR, _TNN2, _TNN2),
    Mapping("TNN_III", 1, 2, "SYM", _PAIR, _TNN3, _TNN3),
    # w = L - 2M (two's complement): +1 -> (1, 0), 0 -> (0, 0), -1 -> (1, 1)
    Mapping("TNN_IV", 1, 2, "POS", {1: ((1, 0),), 0: ((0, 0),), -1: ((1, 1),)}, _TNN4, _TNN4),
    # w + 1 = L + 2M: -1 -> (0, 0), 0 -> (1, 0), +1 -> (0, 1)
    Mapping("TNN_V", 1, 2, "POS", {-1: ((0, 0),), 0: ((1, 0),), 1: ((0, 1),)}, _TNN5, _TNN5),
)}


def mask_values(mask: int) -> set[int]:
    return {v for v, m in ((-1, MASK_NEG), (0, MASK_ZERO), (1, MASK_POS)) if mask & m}


def evaluate_recipe(mapping: Mapping, w: np.ndarray, x: np.ndarray, input_kind: str
                    ) -> np.ndarray:
    """Hand-written integer evaluation of a recipe with ideal cells and ADC.

    w [F, O] logical weights, x [B, F] inputs. Counts are computed directly
    from the cell bits, so this checks the recipe algebra independently of
    the machine and the ADC.
    """
    g = mapping.encode(w).astype(np.int64)
    rpi, cpo = mapping.rows_per_input, mapping.cols_per_output
    f, o = w.shape
    rec = mapping.recipe(input_kind)
    y = np.zeros((x.shape[0], o), np.int64)
    for r, rs in enumerate(rec.reads):
        drive = np.zeros((x.shape[0], f * rpi), np.int64)
        drive[:, 0::rpi] = np.isin(x, list(mask_values(rs.mask_a)))
        if rpi == 2:
            drive[:, 1::2] = np.isin(x, list(mask_values(rs.mask_b)))
        counts = drive @ g  # LRS cells among driven rows, per physical column
        nd = drive.sum(axis=1)
        if mapping.sense == "SYM":
            codes = [counts[:, 0::2] - counts[:, 1::2]] if cpo == 2 else [counts]
        else:
            codes = [counts[:, b * o:(b + 1) * o] for b in range(cpo)]
        for t in rec.terms_of(r):
            if t.kind == "code":
                y += t.coef * codes[t.block]
            else:
                y += t.coef * nd[:, None]
    return y + rec.sumw * w.sum(axis=0)[None, :]
